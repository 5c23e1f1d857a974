"""The autograder against hostile submissions (escapes, floods, tampered cells, forged checkpoints, cheating
models), all graded in ONE ``grade`` run through nbgrader's gradebook.

Fixtures are built in a temporary folder from the reference notebooks and a model trained once per session with
hw4lib's quick preset (``tests/conftest.py``). The perplexity thresholds of the test config are measured from that
model: full credit just above its perplexity, so the reference must earn every point and a broken checkpoint none.
One-part mistakes and correct code in other styles are in ``test_autograder_mistakes.py``.
"""

from __future__ import annotations

import compileall
import csv
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import course, grade, sandbox
from autograder.config import load as load_config
from hw4lib import data as hw4data
from hw4lib.components import REPO_ROOT
from tests.fixtures.course_notebooks import with_test_cells
from tests.fixtures.grading import GRADED_TOKENS, reference_submission
from tests.fixtures.hostile import HOSTILE, build
from tests.test_repository import written_answers

pytestmark = pytest.mark.slow
GROUPS, GROUPS_WHY = sandbox.control_groups()
GRADED = [h for h in HOSTILE if GROUPS or not h.needs_control_groups]


@pytest.fixture(scope="session")
def graded(tmp_path_factory, trained_model, validation_trained_model, grading_config, prepared_data) -> dict:
    """Builds every hostile submission and grades them all with one ``python -m autograder grade``."""
    root = tmp_path_factory.mktemp("grading")
    source = with_test_cells(root / "source")
    reference = reference_submission(root / "reference_submission", trained_model)
    subs, out = root / "submissions", root / "out"
    subs.mkdir()
    valid = hw4data.stream(hw4data.load_split("wikitext2", "valid"))[:GRADED_TOKENS].tolist()
    ctx = {"marker": root / "PWNED", "out": out, "submissions": subs, "repo": REPO_ROOT, "valid_tokens": valid,
           "validation_trained": validation_trained_model}
    build(subs, reference, ctx, GRADED)
    hashes = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.rglob("*") if p.is_file()}
    env = dict(os.environ, HW4_DATA_DIR=str(prepared_data))
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "autograder", "grade", "--submissions", str(subs), "--out",
                             str(out), "--config", str(grading_config["path"]), "--source", str(source),
                             "--workers", "2"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    return {"rows": rows, "out": out, "subs": subs, "ctx": ctx, "config": load_config(grading_config["path"]),
            "ppl": grading_config["ppl"], "hashes": hashes, "seconds": seconds, "stdout": result.stdout,
            "source": source}


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_each_submission_gets_exactly_its_expected_score(graded, hostile):
    if hostile not in GRADED:
        pytest.skip(f"no control group for the sandbox here ({GROUPS_WHY}): not graded on this machine")
    rows = [r for r in graded["rows"] if r["student"] == hostile.name]
    config = graded["config"]
    assert sorted(r["grade_id"] for r in rows) == sorted(p.test_id for p in config.parts), rows
    if hostile.expected is None:  # its own score depends on the machine's speed; nobody else's may
        return
    verdicts = json.loads((graded["out"] / "work" / hostile.name / "verdicts.json").read_text())["verdicts"]
    for part in config.parts:
        row = next(r for r in rows if r["grade_id"] == part.test_id)
        expected = hostile.expected.get(part.name, part.points)
        assert float(row["max_score"]) == part.points
        assert float(row["score"]) == pytest.approx(expected, abs=0.011), (
            f"{hostile.name}/{part.name}: {verdicts[part.name]['message']}")
        assert row["notebook"] == part.notebook


def test_gradebook_holds_exactly_the_judged_scores(graded):
    from nbgrader.api import Gradebook

    db = graded["out"] / "course" / "gradebook.db"
    with Gradebook(f"sqlite:///{db}", course.COURSE_ID) as gb:
        students = {s.id for s in gb.students}
        assert students == {h.name for h in GRADED}
        for hostile in GRADED:
            verdicts = json.loads((graded["out"] / "work" / hostile.name / "verdicts.json").read_text())["verdicts"]
            sub = gb.find_submission(course.ASSIGNMENT, hostile.name)
            grades = {g.name: g for nb in sub.notebooks for g in nb.grades}
            assert "test_bonus" not in grades  # the forged grade cell never reached the gradebook
            for part in graded["config"].parts:
                g = grades[part.test_id]
                assert g.score == pytest.approx(verdicts[part.name]["score"], abs=1e-9)
                assert not g.needs_manual_grade
            # 100 autograded points plus the written answers (1 point each), which nbgrader leaves to the
            # formgrader: they are in the gradebook's maximum, never in grades.csv.
            assert sub.max_score == 100 + sum(written_answers().values())
    # nbgrader recorded the judged scores itself: the grader never had to correct the gradebook.
    assert "gradebook corrected" not in graded["stdout"]


def test_nothing_escaped_the_sandbox(graded, tmp_path):
    ctx = graded["ctx"]
    assert not Path(ctx["marker"]).exists(), Path(ctx["marker"]).read_text()
    db = (graded["out"] / "course" / "gradebook.db").read_bytes()
    assert b"owned" not in db
    # every submission (the attackers' classmates' included), byte for byte
    for path, digest in graded["hashes"].items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} was modified"
    assert not [p for p in graded["subs"].rglob("*") if p.is_file() and p not in graded["hashes"]], "new files"
    # the runtime every student's probe imports is the repository's, byte for byte
    runtime = graded["out"] / "work" / "_runtime"
    for path in runtime.rglob("*"):
        assert not path.is_symlink(), path
        if path.is_file() and path.suffix != ".pyc" and path.relative_to(runtime) != Path("autograder/__init__.py"):
            assert path.read_bytes() == (REPO_ROOT / path.relative_to(runtime)).read_bytes(), path
    # ... and its bytecode is what compiling those sources gives (the grader compiles them once, before any probe)
    fresh = tmp_path / "runtime"
    shutil.copytree(runtime, fresh, ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(fresh, ddir=grade.RUNTIME_MOUNT, quiet=1)
    compiled = sorted(p.relative_to(runtime) for p in runtime.rglob("*.pyc"))
    assert compiled and compiled == sorted(p.relative_to(fresh) for p in fresh.rglob("*.pyc"))
    for name in compiled:
        assert (runtime / name).read_bytes() == (fresh / name).read_bytes(), name
    # nothing written by an attacker outside its own folders: the marker it writes appears nowhere else
    attackers = {"request_overwrite", "many_files", "snooping"}
    for path in [*graded["out"].rglob("*"), *graded["subs"].rglob("*")]:
        if path.is_symlink():
            raise AssertionError(f"a link appeared at {path}")
        if path.is_file() and not attackers & set(path.parts):
            assert b"hw4-owned" not in path.read_bytes(), path
    snoop = json.loads((graded["out"] / "work" / "snooping" / "verdicts.json").read_text())["verdicts"]
    assert snoop["nt_asgd"]["score"] == 10, snoop["nt_asgd"]["message"]


def test_hostile_limits_are_enforced_per_submission(graded):
    def message(student, part):
        return json.loads((graded["out"] / "work" / student / "verdicts.json").read_text())["verdicts"][part]["message"]

    assert "not dense" in message("forged_observation", "data_loader")
    assert "num_layers is 1000" in message("giant_model_config", "val_perplexity")
    if GROUPS:
        assert "time limit" in message("fork_bomb", "nt_asgd") or "processes" in message("fork_bomb", "nt_asgd")
    assert "exited with code 0" in message("link_theft", "data_loader")


def test_the_summary_names_who_went_over_a_limit(graded):
    """The end of `grade`'s output: the limits each submission ran into, whether they ended the probe (the time
    limit) or the probe reported them (output, memory); never the reference."""
    lines = graded["stdout"].splitlines()
    assert f"graded: {len(GRADED)} of {len(GRADED)} submissions" in lines
    over = next(line for line in lines if line.startswith("over a limit"))
    died = next(line for line in lines if line.startswith("failed to run"))
    assert "infinite_loop (train_batch: time)" in over
    assert "output_flood (prediction_generation: output)" in over
    assert "memory_bomb (nt_asgd: memory)" in over
    assert "reference" not in over and "reference" not in died
    assert any(line.startswith("slowest: ") and line.count(" s") == 5 for line in lines)


def test_failures_are_explained_and_contained(graded):
    def message(student, part):
        path = graded["out"] / "work" / student / "verdicts.json"
        return json.loads(path.read_text())["verdicts"][part]["message"]

    assert "time limit" in message("infinite_loop", "train_batch")
    assert "output" in message("output_flood", "prediction_generation")
    assert "MemoryError" in message("memory_bomb", "nt_asgd") or "memory" in message("memory_bomb", "nt_asgd")
    assert "contract's AWD-LSTM predictions" in message("future_peeking_model", "val_perplexity")
    assert "contract's AWD-LSTM predictions" in message("oracle_validation_model", "val_perplexity")
    assert "trained on the validation split" in message("validation_trained_model", "val_perplexity")
    assert "weights_only" in message("pickle_checkpoint", "val_perplexity")
    assert "not finite" in message("nan_weights", "val_perplexity")
    assert "no model.pt" in message("missing_checkpoint", "val_perplexity")
    assert "do not fit" in message("checkpoint_of_another_model", "val_perplexity")
    assert "03_weight_drop.ipynb" in message("corrupt_notebook", "weight_drop")
    assert "reused at every timestep" in message("monkeypatch_checks", "locked_dropout")


def test_feedback_shows_verdicts_but_no_hidden_test_code(graded):
    html = (graded["out"] / "feedback" / "monkeypatch_checks" / "02_dropout.html").read_text()
    assert "reused at every timestep" in html
    # The hidden test lines themselves (this student's own code imports autograder.hidden, so the module name may
    # appear in the feedback; the hidden cell's call must not).
    for name in ("monkeypatch_checks", "reference"):
        html = (graded["out"] / "feedback" / name / "02_dropout.html").read_text()
        assert "BEGIN HIDDEN TESTS" not in html and "verdict</span><span class=\"p\">(</span><span class=\"s2\">" \
            not in html
        assert "autograder.hidden" not in html or name != "reference"
    for student in {h.name for h in GRADED}:
        assert (graded["out"] / "feedback" / student / "07_train_generate.html").is_file()


def test_reference_perplexity_is_the_trusted_one(graded):
    verdicts = json.loads((graded["out"] / "work" / "reference" / "verdicts.json").read_text())
    shown = re.search(r"validation perplexity ([\d.]+)", verdicts["verdicts"]["val_perplexity"]["message"])
    assert shown and math.isclose(float(shown.group(1)), graded["ppl"], rel_tol=1e-4)
    assert verdicts["seconds"] < 60, verdicts["seconds"]


def test_release_carries_no_grader_code(graded, tmp_path):
    root = course.make_course(tmp_path / "course", notebooks=graded["source"])
    result = course.nbgrader(root, "generate_assignment", course.ASSIGNMENT, "--force", check=False)
    assert result.returncode == 0, result.stderr
    released = list((root / "release" / course.ASSIGNMENT).rglob("*"))
    assert released and all(p.suffix == ".ipynb" for p in released if p.is_file())
    for nb in released:
        text = nb.read_text()
        assert "autograder.hidden" not in text and "BEGIN SOLUTION" not in text


def test_nbgrader_autograde_by_hand_judges_in_the_sandbox_too(graded, prepared_data):
    """The documented cycle: `nbgrader autograde` in the course, with no verdicts left by `grade`, still runs
    the probe and the judge (never the notebook) and records the judged scores: the monkeypatching submission
    still loses its locked-dropout points. Runs last: it regrades one student in the shared course."""
    from nbgrader.api import Gradebook

    root = graded["out"] / "course"
    verdicts = root / "verdicts" / "monkeypatch_checks.json"
    verdicts.unlink()
    os.environ["HW4_DATA_DIR"] = str(prepared_data)
    result = course.nbgrader(root, "autograde", course.ASSIGNMENT, "--student", "monkeypatch_checks", "--force",
                             check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(verdicts.read_text())["parts"]["locked_dropout"]["score"] == 6.0  # judged afresh, not reused
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course.COURSE_ID) as gb:
        patched = gb.find_submission(course.ASSIGNMENT, "monkeypatch_checks")
        assert patched.score == pytest.approx(95)
        assert gb.find_submission(course.ASSIGNMENT, "reference").score == pytest.approx(100)  # untouched


def test_a_stale_verdict_is_refused_naming_the_student(graded, prepared_data):
    """A student resubmits after grading: autograde must not record the verdict of the files it replaced.
    Runs after every other test of this module: it changes one submission, then puts it back."""
    root, student = graded["out"] / "course", "nested_userns"
    notebook = graded["subs"] / student / "04_model.ipynb"
    original = notebook.read_bytes()
    os.environ["HW4_DATA_DIR"] = str(prepared_data)
    try:
        notebook.write_bytes(original.replace(b"class LanguageModel", b"class  LanguageModel", 1))
        result = course.nbgrader(root, "autograde", course.ASSIGNMENT, "--student", student, "--force", check=False)
        said = result.stdout + result.stderr
        assert "judged on other files" in said and student in said, said[-3000:]
        assert not (root / "autograded" / student / course.ASSIGNMENT / "04_model.ipynb").exists()
    finally:
        notebook.write_bytes(original)
    result = course.nbgrader(root, "autograde", course.ASSIGNMENT, "--student", student, "--force", check=False)
    assert result.returncode == 0, result.stdout + result.stderr  # the files it was judged on: accepted again

"""One-part mistakes and correct code in other styles, graded through the sandboxed probe and the judge.

Every mistake must fail exactly the checks it breaks (in its own part, and in the later parts that use what it
broke), its stage's visible check must name it, and every correct style must earn exactly the reference's marks.
``grade_student`` is the grader's own per-student path (sandbox, probe, judge); nbgrader's gradebook is exercised
by ``test_autograder_hostile.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder import grade, judge
from autograder.config import Config
from autograder.config import load as load_config
from hw4lib import checks
from hw4lib.components import REPO_ROOT, load_components
from hw4lib.properties import PARTS
from tests.fixtures.grading import reference_submission
from tests.fixtures.mistakes import MISTAKES, STYLES, ZERO

pytestmark = pytest.mark.slow
SEED = 20_261_123
VARIANTS = MISTAKES + STYLES


def _build(dest: Path, variant, model: Path) -> Path:
    reference_submission(dest, model)
    variant.make(dest)
    return dest


def touched_parts(sub: Path, reference: Path, config: Config) -> Config:
    """``config`` with only the parts whose notebooks differ from the reference submission's.

    A part's verdict is a function of its own stages' notebooks (``judge.STAGES``: the probe loads nothing else for
    it), model.pt and the seed; a variant that leaves all of a part's notebooks and model.pt as the reference has
    them gets, for that part, exactly the reference's verdict, which ``test_reference_earns_full_marks`` checks. So
    each variant is graded on the parts it can change (every one of them, with the later parts that use what it
    changed), and the suite does not grade 64 copies of the reference's other parts.
    """
    changed = {p.name[:2] for p in reference.iterdir() if (sub / p.name).read_bytes() != p.read_bytes()}
    assert changed and changed <= {stage for stages in judge.STAGES.values() for stage in stages}, changed
    return dataclasses.replace(config, parts=tuple(p for p in config.parts if changed & set(judge.STAGES[p.name])))


@pytest.fixture(scope="module")
def judged(tmp_path_factory, trained_model, graded_cache_config, data_env) -> dict:
    root = tmp_path_factory.mktemp("mistakes")
    config = load_config(graded_cache_config["path"])  # the optional stage 8 graded, so its mistakes are judged
    runtime = grade.prepare_runtime(root / "_runtime")
    slices = grade.grading_slices(config)
    subs = {v.name: _build(root / "subs" / v.name, v, trained_model) for v in VARIANTS}
    subs["reference"] = reference_submission(root / "subs" / "reference", trained_model)
    configs = {name: touched_parts(sub, subs["reference"], config) for name, sub in subs.items() if name != "reference"}
    configs["reference"] = config

    def one(name: str) -> tuple[str, dict]:
        verdicts = grade.grade_student(subs[name], root / "work" / name, configs[name], SEED, runtime, slices)
        return name, {v.part: v for v in verdicts}

    with ThreadPoolExecutor(max_workers=2) as pool:
        return {"verdicts": dict(pool.map(one, sorted(subs))), "config": config, "subs": subs, "root": root,
                "runtime": runtime, "slices": slices}


def test_reference_earns_full_marks(judged):
    for part in judged["config"].parts:
        v = judged["verdicts"]["reference"][part.name]
        assert v.score == part.points, v.message


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_exactly_the_broken_checks_fail(judged, variant):
    graded = judged["verdicts"][variant.name]
    assert variant.part in graded and set(variant.fails) <= set(graded), (variant.name, sorted(graded))
    for part in judged["config"].parts:
        if part.name not in graded:  # none of its notebooks changed: the reference's verdict (touched_parts)
            continue
        v = graded[part.name]
        want = variant.fails.get(part.name, set())
        if want == ZERO:
            assert v.score == 0, f"{variant.name}/{part.name}: {v.message}"
            continue
        failing = {c["name"] for c in v.checks if not c["ok"]}
        assert failing == want, f"{variant.name}/{part.name}: {v.message}"
        assert (v.score == part.points) == (not want), f"{variant.name}/{part.name}: {v.score} / {part.points}"
    if variant in MISTAKES:
        own = judged["verdicts"][variant.name][variant.part]
        assert own.score < own.points, f"{variant.name} kept full marks in its own part"


@pytest.mark.parametrize("variant", MISTAKES, ids=[v.name for v in MISTAKES])
def test_visible_check_names_the_mistake(variant, tmp_path):
    """The student's own check of that stage says what is wrong, in words that point at the fix."""
    folder = tmp_path / "sub"
    folder.mkdir()
    for notebook in (REPO_ROOT / "solutions").glob("*.ipynb"):
        shutil.copy2(notebook, folder / notebook.name)
    variant.make(folder)
    components = load_components(folder, stages=judge.STAGES[variant.part])
    named = {n: getattr(components, n) for n in PARTS[variant.part].names}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(checks.CheckFailed):
        {
            "data_loader": checks.check_data_loader, "locked_dropout": checks.check_locked_dropout,
            "embedded_dropout": checks.check_embedded_dropout, "weight_drop": checks.check_weight_drop,
            "language_model": checks.check_language_model, "ar_tar": checks.check_ar_tar,
            "train_batch": checks.check_train_batch, "nt_asgd": checks.check_nt_asgd,
            "prediction_generation": checks.check_prediction_generation,
            "cache_pointer": checks.check_cache_pointer,
        }[variant.part](*named.values())
    assert variant.visible in out.getvalue(), out.getvalue()


def test_ungraded_optional_stage_changes_no_grade(judged, grading_config):
    """With stage 8 left ungraded (the default), the total stays the core's 100 and the same submissions get the
    same verdicts in every core part, even a submission whose cache is wrong; stage 8 is neither run nor scored."""
    ungraded = load_config(grading_config["path"])
    graded = judged["config"]
    assert [p.name for p in ungraded.parts] == [p.name for p in graded.parts if p.name != "cache_pointer"]
    assert [p.name for p in ungraded.ungraded] == ["cache_pointer"]
    assert sum(p.points for p in ungraded.parts) == 100
    assert sum(p.points for p in graded.parts) == 100 + graded.part("cache_pointer").points
    for name in ("reference", "cache_sees_itself"):
        verdicts = grade.grade_student(judged["subs"][name], judged["root"] / "ungraded" / name, ungraded, SEED,
                                       judged["runtime"], judged["slices"])
        got = {v.part: v for v in verdicts}
        assert set(got) == {p.name for p in ungraded.parts}
        for part, v in got.items():
            # cache_sees_itself was graded on stage 8 only: its core parts are the reference's (touched_parts)
            want = judged["verdicts"][name].get(part) or judged["verdicts"]["reference"][part]
            assert (v.score, v.checks) == (want.score, want.checks), f"{name}/{part}: {v.message}"
        assert sum(v.score for v in verdicts) == 100, name

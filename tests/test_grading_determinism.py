"""Grading is a pure function of (submission, grading seed): the same submissions graded with four workers, with two,
and in three shards (``grade --shard I/3``, two workers each) merged by ``merge``, give the same grades.csv and the
same messages however the threads interleave, and the shards and the merge write byte for byte the grades.csv,
feedback and verdict records that one run writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import grade, shards
from hw4lib.components import REPO_ROOT
from tests.fixtures.course_notebooks import with_test_cells
from tests.fixtures.grading import reference_submission
from tests.fixtures.mistakes import MISTAKES, STYLES

pytestmark = pytest.mark.slow
WORKERS = (4, 2)  # one unsharded grading run each
SHARDS = 3  # and one run in three shards, then a merge
SEED = "4242"
# Styles whose components draw random numbers (masks, samples): the draws must not depend on other threads.
RANDOM_STYLES = ("style_dropouts", "style_weight_drop", "style_generation")
MISTAKE = "loader_targets_not_shifted"  # one part short: a student whose verdicts differ from the others'


def _autograder(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "autograder", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained_model, grading_config, prepared_data) -> dict:
    """{name: (out folder, the last command's result)} for the runs "workers4", "workers2" and "sharded"."""
    root = tmp_path_factory.mktemp("determinism")
    source = with_test_cells(root / "source")
    subs = root / "subs"
    reference_submission(subs / "reference", trained_model)
    for variant in [*STYLES, *MISTAKES]:
        if variant.name in (*RANDOM_STYLES, MISTAKE):
            variant.make(reference_submission(subs / variant.name, trained_model))
    env = dict(os.environ, HW4_DATA_DIR=str(prepared_data))
    common = ["--submissions", str(subs), "--config", str(grading_config["path"])]
    done = {}
    for workers in WORKERS:
        out = root / f"workers{workers}"
        done[f"workers{workers}"] = (out, _autograder("grade", *common, "--out", str(out), "--source", str(source),
                                                      "--workers", str(workers), "--seed", SEED, env=env))
    parts = [root / f"shard{i}" for i in range(SHARDS)]
    shard_runs = [_autograder("grade", *common, "--out", str(part), "--workers", "2", "--seed", SEED,
                              "--shard", f"{i}/{SHARDS}", *(["--progress"] if i == 0 else []), env=env)
                  for i, part in enumerate(parts)]
    merged = root / "merged"
    done["sharded"] = (merged, _autograder("merge", *common, "--shards", *map(str, reversed(parts)), "--out",
                                           str(merged), "--source", str(source), env=env))
    return {"runs": done, "subs": subs, "shards": parts, "shard_runs": shard_runs, "config": grading_config["path"]}


def _messages(out: Path) -> dict:
    return {p.parent.name: {k: v["message"] for k, v in json.loads(p.read_text())["verdicts"].items()}
            for p in sorted((out / "work").glob("*/verdicts.json"))}


def test_same_submissions_same_seed_same_grades(runs):
    tables = {name: (out / "grades.csv").read_text() for name, (out, _) in runs["runs"].items()}
    messages = {name: _messages(out) for name, (out, _) in runs["runs"].items()}
    first = tables["workers4"]
    assert all(t == first for t in tables.values()), tables
    assert all(m == messages["workers4"] for m in messages.values())
    assert len(messages["workers4"]) == 2 + len(RANDOM_STYLES)
    rows = [line.split(",") for line in first.splitlines()[1:]]
    short = [row for row in rows if float(row[3]) != float(row[4])]
    assert [(row[0], row[2]) for row in short] == [(MISTAKE, "test_data_loader")], first  # shifted_by_one: 2 points
    assert float(short[0][4]) - float(short[0][3]) == 2


def _files(folder: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob(pattern)) if p.is_file()}


def _without_seconds(raw: bytes) -> dict:
    """A judge's record without the seconds it took and where they went (wall-clock times, never the same twice);
    all else stays."""
    record = json.loads(raw)
    assert record.pop("seconds") > 0
    timing = record.pop("timing")
    assert timing["perplexity"] > 0 and timing["probe_parts"]["start"] > 0 and len(timing["probe_parts"]) > 1
    return record


def test_three_shards_and_a_merge_write_what_one_run_writes(runs):
    """grades.csv, every feedback page and every verdict record byte for byte. nbgrader's feedback holds no time
    stamp (this run places no timestamp.txt, and its feedback template prints none), so nothing there is normalised;
    the one field that is, in work/<student>/verdicts.json, is the judge's own wall-clock seconds."""
    (one, _), (merged, _) = runs["runs"]["workers4"], runs["runs"]["sharded"]
    assert (merged / "grades.csv").read_bytes() == (one / "grades.csv").read_bytes()
    feedback = _files(one, "feedback/*/*")
    assert len(feedback) >= 5 and _files(merged, "feedback/*/*") == feedback
    records = _files(one, "course/verdicts/*.json")
    assert len(records) == 5 and _files(merged, "course/verdicts/*.json") == records
    judged = _files(one, "work/*/verdicts.json")
    assert judged.keys() == _files(merged, "work/*/verdicts.json").keys()
    for name, raw in _files(merged, "work/*/verdicts.json").items():
        assert _without_seconds(raw) == _without_seconds(judged[name]), name
    # each shard judged its share only (every third student by id) and wrote no grades of its own
    students = sorted(records)
    for i, folder in enumerate(runs["shards"]):
        assert sorted(_files(folder, "course/verdicts/*.json")) == students[i::SHARDS]
        assert not (folder / "grades.csv").exists() and not (folder / "feedback").exists()
    # the bar only where --progress asked for it (shard 0); plain lines everywhere else
    assert "submission/s" in runs["shard_runs"][0].stderr or "s/submission" in runs["shard_runs"][0].stderr
    for result in [*runs["shard_runs"][1:], *(r for _, r in runs["runs"].values())]:
        assert "submission/s" not in result.stderr and "s/submission" not in result.stderr
    assert "slowest: " in runs["runs"]["sharded"][1].stdout


def test_merge_refuses_shards_that_do_not_belong_together(runs, tmp_path):
    """Refused before nbgrader runs: a missing shard, a shard listed twice, a submission changed since its shard
    judged it. (Seeds, configs and submission sets that differ: tests/test_autograder_units.py.)"""
    subs, parts, config = runs["subs"], runs["shards"], runs["config"]
    with pytest.raises(shards.ShardMismatch, match=r"missing \[2\]; given twice \[0\]"):
        grade.merge([parts[0], parts[1], parts[0]], subs, tmp_path / "a", config_path=config)
    changed = tmp_path / "subs"
    shutil.copytree(subs, changed)
    notebook = changed / "reference" / "01_data_loader.ipynb"
    notebook.write_bytes(notebook.read_bytes().replace(b"class LanguageModelDataLoader",
                                                       b"class  LanguageModelDataLoader", 1))
    with pytest.raises(shards.ShardMismatch, match=r"files differ .*\(collected again since\?\): reference;"):
        grade.merge(parts, changed, tmp_path / "b", config_path=config)
    assert not (tmp_path / "b" / "grades.csv").exists()

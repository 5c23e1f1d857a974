"""Grading is a pure function of (submission, grading seed): the same submissions graded several times, with four,
two and three workers at once, give the same grades.csv and the same messages, however the threads interleave."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hw4lib.components import REPO_ROOT
from tests.fixtures.course_notebooks import with_test_cells
from tests.fixtures.grading import reference_submission
from tests.fixtures.mistakes import STYLES

pytestmark = pytest.mark.slow
WORKERS = (4, 2, 3)  # one grading run each


def test_same_submissions_same_seed_same_grades(tmp_path, trained_model, grading_config, prepared_data):
    source = with_test_cells(tmp_path / "source")
    subs = tmp_path / "subs"
    reference_submission(subs / "reference", trained_model)
    # Styles whose components draw random numbers (masks, samples): the draws must not depend on other threads.
    for variant in STYLES:
        if variant.name in ("style_dropouts", "style_weight_drop", "style_generation"):
            variant.make(reference_submission(subs / variant.name, trained_model))
    env = dict(os.environ, HW4_DATA_DIR=str(prepared_data))
    tables, messages = [], []
    for run, workers in enumerate(WORKERS):
        out = tmp_path / f"out{run}"
        result = subprocess.run(
            [sys.executable, "-m", "autograder", "grade", "--submissions", str(subs), "--out", str(out), "--config",
             str(grading_config["path"]), "--source", str(source), "--workers", str(workers), "--seed", "4242"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        tables.append((out / "grades.csv").read_text())
        messages.append({p.parent.name: {k: v["message"] for k, v in json.loads(p.read_text())["verdicts"].items()}
                         for p in sorted((out / "work").glob("*/verdicts.json"))})
    assert all(t == tables[0] for t in tables), tables
    assert all(m == messages[0] for m in messages)
    scores = [line.split(",") for line in tables[0].splitlines()[1:]]
    assert scores and all(float(row[3]) == float(row[4]) for row in scores), tables[0]

"""The similarity report: students who wrote their own code from the same stubs are not flagged; a copy with
renamed variables is; the stubs alone share nothing."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from autograder.similarity import FLAG_AT
from tests.fixtures.mistakes import STYLES

REPO = Path(__file__).resolve().parent.parent

# What a student who copies renames: the words a reader would notice first.
RENAMES = {"mask": "keep", "hidden": "state", "weight": "w_mat", "inputs": "tokens", "targets": "labels",
           "logits": "scores", "loss": "objective", "batch_size": "n_cols", "self.p": "self.rate", "x": "z"}


def _rename(folder: Path) -> None:
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in RENAMES) + r")\b")
    for path in folder.glob("*.ipynb"):
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
                cell.source = pattern.sub(lambda m: RENAMES[m.group(1)], cell.source)
        nbformat.write(nb, str(path))


def test_own_work_is_not_flagged_and_a_renamed_copy_is(tmp_path):
    subs = tmp_path / "submitted"
    shutil.copytree(REPO / "solutions", subs / "ana")  # the reference, as one student wrote it
    # another student: every part in another style (each part's first style: the later ones edit lines of the
    # reference that the first replaced)
    shutil.copytree(REPO / "solutions", subs / "ben")
    for part in dict.fromkeys(style.part for style in STYLES):
        next(style for style in STYLES if style.part == part).make(subs / "ben")
    shutil.copytree(subs / "ben", subs / "cem")  # cem copied ben and renamed things
    _rename(subs / "cem")
    shutil.copytree(REPO / "notebooks", subs / "dan")  # the stubs, untouched
    (subs / "eve").mkdir()
    shutil.copytree(subs / "ana", subs / "eve" / "hw4")  # nbgrader's layout: a folder per assignment
    nbformat.write(nbformat.v4.new_notebook(), str(subs / "eve" / "hw4" / "00_welcome.ipynb"))
    (subs / "eve" / "hw4" / "99_broken.ipynb").write_text("{ not json")  # a corrupt file is skipped, not fatal

    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "autograder", "similarity", "--submissions", str(subs),
                             "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    with open(out / "similarity.csv") as fh:
        rows = list(csv.DictReader(fh))
    score = {frozenset((r["student_a"], r["student_b"])): float(r["score"]) for r in rows}
    assert len(rows) == 10 and [float(r["score"]) for r in rows] == sorted(score.values(), reverse=True)
    assert all(0.0 <= s <= 1.0 for s in score.values())

    assert score[frozenset(("ben", "cem"))] >= 0.9  # renaming hides nothing
    assert score[frozenset(("ana", "eve"))] >= 0.9  # the same code, whatever the folder layout
    assert score[frozenset(("ana", "ben"))] < FLAG_AT  # own work from the same stubs
    assert score[frozenset(("ana", "cem"))] < FLAG_AT
    assert max(score[frozenset(("dan", other))] for other in ("ana", "ben", "cem", "eve")) == 0.0  # stubs only
    assert {tuple(sorted((r["student_a"], r["student_b"]))) for r in rows if float(r["score"]) >= FLAG_AT} == {
        ("ben", "cem"), ("ana", "eve")}
    html = (out / "similarity.html").read_text()
    assert "ben.py" in html and "cem.py" in html
    assert "2 of 10 pairs" in result.stdout

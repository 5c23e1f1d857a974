"""Similarity report: which pairs of submissions share code beyond what the release gave everyone.

``python -m autograder similarity --submissions DIR --out OUT``. The course this one grew from sent its
submissions to MOSS; this does the same locally with copydetect (winnowed fingerprints of tokenized code, the MOSS
method): identifiers, strings and comments are normalized away, so renaming variables does not hide a copy, and
every fingerprint of the released stubs is boilerplate, so the code all students were given never counts.

Only graded cells are compared (the same cells the grader loads, :func:`hw4lib.components.graded_cells`), one file
per student. The score of a pair is the larger of the two shares copydetect reports (the share of A's fingerprinted
code found in B, and of B's in A), so a student who copied a classmate's work into a larger submission still shows.
A score is a lead for a human to read in the HTML report, never a verdict.
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

from hw4lib.components import REPO_ROOT, ComponentLoadError, graded_cells

# copydetect's defaults (noise 25, guarantee 30 characters of normalized code) find matches of about one line;
# ours ask for about two lines, so that idioms every PyTorch programmer writes the same way do not add up.
NOISE_T, GUARANTEE_T = 40, 50
FLAG_AT = 0.5  # pairs at or above this share are listed as flagged in the printed summary


def student_code(folder: Path) -> str:
    """The graded cells of every notebook under ``folder`` (any depth: flat or nbgrader's layout), in file order."""
    parts = []
    for nb in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in nb.parts:
            continue
        try:
            cells = graded_cells(nb)
        except ComponentLoadError as err:
            logging.warning("%s: %s (compared without it)", nb, err)
            continue
        parts += [f"# {nb.name} cell {index}\n{source}\n" for index, source in cells]
    return "\n".join(parts)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def report(submissions: Path, out: Path, release: Path | None = None) -> list[dict]:
    """Writes ``out/similarity.csv`` (student_a, student_b, score; highest first) and ``out/similarity.html``;
    returns the rows."""
    from copydetect import CopyDetector

    students = sorted(p for p in Path(submissions).iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(students) < 2:
        raise SystemExit(f"error: {submissions} holds {len(students)} student folder(s); a report compares pairs")
    out.mkdir(parents=True, exist_ok=True)
    files = {s.name: _write(out / "code" / f"{s.name}.py", student_code(s)) for s in students}
    boilerplate = _write(out / "boilerplate" / "release.py", student_code(release or REPO_ROOT / "notebooks"))

    detector = CopyDetector(extensions=["py"], noise_t=NOISE_T, guarantee_t=GUARANTEE_T, display_t=0.0,
                            autoopen=False, silent=True, out_file=str(out / "similarity.html"))
    for path in files.values():
        detector.add_file(str(path))
    detector.add_file(str(boilerplate), type="boilerplate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copydetect's own deprecation warnings (pkg_resources)
        detector.run()
        detector.generate_html_report()

    index = {path: i for i, path in enumerate(detector.test_files)}
    names = sorted(files)
    rows = []
    for a_pos, a in enumerate(names):
        for b in names[a_pos + 1:]:
            i, j = index[str(files[a])], index[str(files[b])]
            share_ab, share_ba = detector.similarity_matrix[i, j]
            rows.append({"student_a": a, "student_b": b, "score": round(float(max(share_ab, share_ba, 0.0)), 4)})
    rows.sort(key=lambda r: (-r["score"], r["student_a"], r["student_b"]))
    with open(out / "similarity.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["student_a", "student_b", "score"])
        writer.writeheader()
        writer.writerows(rows)
    return rows

"""What a hidden-test cell calls: ``autograder.hidden.verdict("<part>")``.

The checks themselves live in ``autograder/judge.py`` and run outside the student's process; this only reports
the judged verdict, so a cell stays a one-liner that shows no test code (in the notebook, the feedback or a
traceback). During grading the ``InjectVerdicts`` preprocessor fills these cells without running them; this
function serves a kernel that does run one (an instructor's notebook, or a hand-configured autograde).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class HiddenTestsFailed(AssertionError):
    """The part earned zero points; the message says which checks failed and why."""


def verdict(part: str) -> float | None:
    """Prints the judged verdict of ``part``; raises on zero, returns the score on partial credit.

    Returning the score makes it the cell's last value, which nbgrader reads as partial credit. Without
    verdicts (``HW4_VERDICTS`` unset) nothing was judged: under nbgrader's autograde that is a zero, never
    silent full marks; elsewhere it only says where the hidden tests run.
    """
    path = os.environ.get("HW4_VERDICTS")
    if not path or not Path(path).is_file():
        if os.environ.get("NBGRADER_EXECUTION") == "autograde":
            raise HiddenTestsFailed(f"{part}: not judged (grade with `python -m autograder grade`)")
        print(f"The hidden tests of {part!r} run when the notebook is graded.")
        return None
    entry = json.loads(Path(path).read_text()).get("parts", {}).get(part)
    if entry is None:
        raise HiddenTestsFailed(f"{part}: no verdict recorded")
    score, points = float(entry["score"]), float(entry["points"])
    print(f"{part}: {score:g} / {points:g} points\n{entry['message']}")
    if score <= 0:
        raise HiddenTestsFailed(f"{part}: 0 / {points:g} points")
    return score if score < points else None

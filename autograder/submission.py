"""A student's submission folder as the grader reads it: where it lies, the caps on its files, and the digest that
ties a verdict to the files it was judged on.

Kept apart from ``grade`` (which imports torch) because nbgrader's own ``autograde`` checks every verdict against
the collected files through ``InjectVerdicts``: a second of importing torch there bought nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from autograder import course, untrusted_files

MAX_NOTEBOOK_MB = 64
MAX_MODEL_MB = 1024


def folder(submissions: Path, student: str) -> Path:
    """``DIR/<student>/``, or ``DIR/<student>/hw4/`` when ``DIR`` is an nbgrader course's ``submitted/`` (after
    ``nbgrader collect``), so the instructor can grade what the exchange delivered as it lies."""
    path = Path(submissions) / student
    nested = path / course.ASSIGNMENT
    return nested if nested.is_dir() and not nested.is_symlink() else path


def cap_bytes(name: str) -> int:
    """The largest file of this name the grader reads (``model.pt`` or a notebook)."""
    return (MAX_MODEL_MB if name == "model.pt" else MAX_NOTEBOOK_MB) * 2**20


def digest(path: Path, names: list[str]) -> str:
    """sha256 over the names and contents of the files ``names`` in the folder ``path`` that the grader would read
    (regular files within their caps, as the grader copies them); absent or refused files count as absent."""
    total = hashlib.sha256()
    for name in sorted(names):
        try:
            content = untrusted_files.read_regular(path / name, cap_bytes(name))
        except untrusted_files.Refused:
            continue
        total.update(f"{name}\0{hashlib.sha256(content).hexdigest()}\0".encode())
    return total.hexdigest()

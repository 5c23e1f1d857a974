"""Helpers for the notebook tests: what students see (hidden tests stripped), kernels with the right setup."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
RELEASE = REPO / "notebooks"
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.S | re.M)


def strip_hidden(source: str) -> str:
    """A cell's source without its ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` blocks."""
    return HIDDEN.sub("", source)


def stripped_copy(src: Path, dest_dir: Path) -> Path:
    """Writes ``src`` with every hidden-test block removed into ``dest_dir``; returns the new path."""
    nb = nbformat.read(str(src), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_hidden(cell.source)
    dest = Path(dest_dir) / src.name
    nbformat.write(nb, str(dest))
    return dest


def stripped_set(src_dir: Path, dest_dir: Path) -> list[Path]:
    """All notebooks of a folder, hidden tests stripped (later stages load the earlier ones from disk)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    return [stripped_copy(p, dest_dir) for p in sorted(Path(src_dir).glob("*.ipynb"))]


def kernel_env(quick: bool = True) -> dict[str, str]:
    """The environment of a notebook kernel: hw4lib importable, quick mode, prepared data if we know it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    if quick:
        env["HW4_QUICK"] = "1"
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return env


def copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True)


SOLUTION_DELIMITER = re.compile(r"^[ \t]*#+ ?(BEGIN|END) SOLUTION[ \t]*\n?", re.M)


def fill_with_reference(path: Path, delimiters: bool = True) -> None:
    """Every graded (solution) cell of a released notebook gets the reference answer from ``solutions/``: what a
    student who got everything right submits. ``delimiters=False`` leaves out the ``### BEGIN/END SOLUTION``
    lines, which a student's answer would not have (a written answer shows them as headings)."""
    reference = nbformat.read(str(SOLUTIONS / Path(path).name), as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source if delimiters else SOLUTION_DELIMITER.sub("", c.source)
               for c in reference.cells if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = answers[meta["grade_id"]]
    nbformat.write(nb, str(path))

"""The one loader of notebook code: builds a Python module from the graded cells of a set of notebooks.

Students write the AWD-LSTM components in the notebooks' graded cells; the instructor's reference lives in the
same cells of ``solutions/``. Everything that needs the components (the training CLI, the tests, the benchmarks,
the autograder) loads them through :func:`load_components`, so there is exactly one copy of the reference and a
student's code runs through exactly the same path as the instructor's.

Which cells count: code cells whose nbgrader metadata says ``"solution": true`` (the graded answers) and code
cells tagged ``hw4-export`` (each stage's imports). Cells run in notebook order, notebooks in file-name order,
all in one module namespace, so stage 4's ``LanguageModel`` sees stage 3's ``WeightDrop``.
"""

from __future__ import annotations

import itertools
import linecache
import sys
import types
from collections.abc import Iterable
from pathlib import Path

import nbformat

from hw4lib.errors import HW4Error

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPORT_TAG = "hw4-export"
_counter = itertools.count()


class ComponentLoadError(HW4Error):
    """A notebook could not be read, or one of its graded cells failed to run."""


def notebook_paths(source: str | Path = "solutions") -> list[Path]:
    """The notebooks of a set: ``"solutions"``, ``"notebooks"``, a folder, or one ``.ipynb`` file."""
    path = Path(source)
    if str(source) in ("solutions", "notebooks") and not path.exists():
        path = REPO_ROOT / str(source)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ComponentLoadError(f"no notebook or folder of notebooks at {path}")
    found = sorted(p for p in path.glob("*.ipynb") if not p.name.startswith("."))
    if not found:
        raise ComponentLoadError(f"no .ipynb files in {path}")
    return found


def graded_cells(path: Path) -> list[tuple[int, str]]:
    """(cell index, source) of the cells the loader runs, in notebook order."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as err:  # nbformat raises several types for damaged JSON
        raise ComponentLoadError(
            f"{path.name} is not a readable notebook ({type(err).__name__}: {err}). "
            "Restore it from your last good copy or re-download the release."
        ) from err
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        if meta.get("nbgrader", {}).get("solution") or EXPORT_TAG in meta.get("tags", []):
            cells.append((index, cell.get("source", "")))
    return cells


def load_components(
    source: str | Path = "solutions",
    *,
    stages: Iterable[str] | None = None,
    before: str | None = None,
    module_name: str | None = None,
) -> types.ModuleType:
    """Runs the graded cells of a notebook set and returns them as one module.

    ``stages`` keeps only notebooks whose name starts with one of the given prefixes (``["02", "03"]``);
    ``before`` keeps only notebooks whose name sorts before it (a later stage loading the earlier ones).
    Tracebacks into the module show the notebook name, cell index and the student's own lines.
    """
    paths = notebook_paths(source)
    if stages is not None:
        prefixes = tuple(stages)
        paths = [p for p in paths if p.name.startswith(prefixes)]
    if before is not None:
        paths = [p for p in paths if p.name < before]
    name = module_name or f"hw4_components_{next(_counter)}"
    module = types.ModuleType(name, f"Graded cells of {', '.join(p.name for p in paths)}")
    module.__dict__["__notebooks__"] = [str(p) for p in paths]
    # Registered so that pickling by reference and dataclasses inside the cells resolve the module.
    sys.modules[name] = module
    for path in paths:
        for index, source_code in graded_cells(path):
            filename = f"<{path.name} cell {index}>"
            linecache.cache[filename] = (len(source_code), None, source_code.splitlines(True), filename)
            try:
                code = compile(source_code, filename, "exec")
            except SyntaxError as err:
                raise ComponentLoadError(
                    f"{path.name}, cell {index}: syntax error on line {err.lineno}: {err.msg}"
                ) from err
            try:
                exec(code, module.__dict__)
            except Exception as err:
                raise ComponentLoadError(
                    f"{path.name}, cell {index} raised {type(err).__name__}: {err}"
                ) from err
    return module

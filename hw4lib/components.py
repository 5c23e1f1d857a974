"""The one loader of notebook code: builds a Python module from the graded cells of a set of notebooks.

Students write the AWD-LSTM components in the notebooks' graded cells; the instructor's reference lives in the
same cells of ``solutions/``. Everything that needs the components (the training CLI, the tests, the benchmarks,
the autograder) loads them through :func:`load_components`, so there is exactly one copy of the reference and a
student's code runs through exactly the same path as the instructor's.

Which cells count: code cells whose nbgrader metadata says ``"solution": true`` (the graded answers) and code
cells tagged ``hw4-export`` (each stage's imports) run whole. From every other code cell except the hidden-test
cells, only its *definitions* run: imports, functions, classes and constants (``NAME = literal``), so a helper a
student writes in a cell of their own, or ``np`` from a stage's setup cell, is there when the grader loads the
stage, as it was in the student's kernel; plots, checks, widgets and training in those cells never run, nor do
imports of the presentation modules (matplotlib, ipywidgets, IPython, ``hw4lib.viz``/``checks``). A definition
never replaces a name a graded cell defines. Cells run in notebook order, notebooks in file-name order, all in one
module namespace, so stage 4's ``LanguageModel`` sees stage 3's ``WeightDrop``.

``context`` stages (the grader passes the graded stages before a part's own) contribute only their definitions,
leniently (a cell that fails is skipped): a later stage's code may use a name an earlier stage defines, as
``checks.load_earlier`` made it available in the student's kernel, and a broken earlier notebook costs nothing.
"""

from __future__ import annotations

import ast
import itertools
import json
import linecache
import sys
import types
from collections.abc import Iterable
from pathlib import Path

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


PRESENTATION = ("matplotlib", "ipywidgets", "IPython", "hw4lib.viz", "hw4lib.checks", "hw4lib.lab.plots")
# Decorators that only wrap a definition (a decorator call such as ``@interact(...)`` would run a widget)
PLAIN_DECORATORS = ("torch.no_grad", "torch.inference_mode", "functools.wraps", "functools.lru_cache",
                    "functools.cache", "dataclass", "dataclasses.dataclass", "staticmethod", "classmethod",
                    "property", "cache", "lru_cache", "no_grad")


class Notebook(types.SimpleNamespace):
    """A notebook as the loader needs it: ``cells``, a list of dicts with ``cell_type``, ``metadata`` and
    ``source`` (one string)."""

    cells: list[dict]


_notebooks: dict[tuple, Notebook] = {}


def _read(path: Path) -> Notebook:
    """The notebook, parsed once per version of the file (the grader loads the same notebooks for several parts;
    nothing here changes a parsed notebook)."""
    info = path.stat()
    key = (str(path), info.st_mtime_ns, info.st_size)
    if key not in _notebooks:
        if len(_notebooks) > 64:
            _notebooks.clear()
        _notebooks[key] = _parse(path)
    return _notebooks[key]


def _parse(path: Path) -> Notebook:
    """Reads a notebook's JSON directly rather than with ``nbformat``: importing nbformat pulls in jsonschema's
    format checkers, about a second of start-up in every notebook and every sandboxed probe of the grader, and
    the loader needs only the cells. Only an nbformat 3 notebook goes through nbformat, to be converted."""
    try:
        raw = json.loads(path.read_bytes())
        if isinstance(raw, dict) and raw.get("nbformat") == 3:
            import nbformat  # a notebook from before 2015: rare, let nbformat convert it

            raw = json.loads(nbformat.writes(nbformat.reads(path.read_text(), as_version=4)))
        return Notebook(cells=_cells(raw))
    except Exception as err:  # damaged JSON, or JSON that is no notebook
        raise ComponentLoadError(
            f"{path.name} is not a readable notebook ({type(err).__name__}: {err}). "
            "Restore it from your last good copy or re-download the release."
        ) from err


def _cells(raw: object) -> list[dict]:
    """The cells of a parsed nbformat 4 document, each source joined into one string (the format stores it as a
    string or a list of lines); ValueError for anything else."""
    if not isinstance(raw, dict) or raw.get("nbformat") != 4 or not isinstance(raw.get("cells"), list):
        raise ValueError("not an nbformat 4 notebook (no 'nbformat': 4 and 'cells' list)")
    cells = []
    for index, cell in enumerate(raw["cells"]):
        source = cell.get("source", "") if isinstance(cell, dict) else None
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        meta = cell.get("metadata", {}) if isinstance(cell, dict) else None
        if not isinstance(source, str) or not isinstance(meta, dict) or \
                not isinstance(meta.get("nbgrader", {}), dict) or not isinstance(meta.get("tags", []), list):
            raise ValueError(f"cell {index} is malformed (a cell is an object with a string 'source' and "
                             "metadata whose 'nbgrader' is an object and 'tags' a list)")
        cells.append({"cell_type": cell.get("cell_type"), "metadata": meta, "source": source})
    return cells


def _is_graded(cell: dict) -> bool:
    meta = cell.get("metadata", {})
    return bool(meta.get("nbgrader", {}).get("solution")) or EXPORT_TAG in meta.get("tags", [])


def graded_cells(path: Path) -> list[tuple[int, str]]:
    """(cell index, source) of the cells the loader runs whole, in notebook order."""
    return [(i, c.get("source", "")) for i, c in enumerate(_read(path).cells)
            if c.get("cell_type") == "code" and _is_graded(c)]


def _presentation(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in PRESENTATION)


def _useful_import(node: ast.Import | ast.ImportFrom) -> ast.stmt | None:
    """The import without its presentation modules (and without ``*``), or None when nothing is left."""
    if isinstance(node, ast.ImportFrom):
        base = ("." * node.level) + (node.module or "")
        names = [a for a in node.names if a.name != "*" and not _presentation(f"{base}.{a.name}")]
        if _presentation(base) or not names:
            return None
    else:
        names = [a for a in node.names if not _presentation(a.name)]
        if not names:
            return None
    return ast.copy_location(type(node)(**{**{f: getattr(node, f) for f in node._fields}, "names": names}), node)


def _plain_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, (ast.Name, ast.Attribute)) and ast.unparse(target) in PLAIN_DECORATORS


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _defined(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return {t.id for t in targets if isinstance(t, ast.Name)}


def definitions(source: str, protected: set[str] = frozenset()) -> ast.Module | None:
    """The top-level imports, functions, classes and constants of a cell, as a module to compile (None when it has
    none or does not parse); definitions of a ``protected`` name are left out."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    kept = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            node = _useful_import(node)  # the import without its presentation modules
            ok = node is not None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            ok = all(_plain_decorator(d) for d in node.decorator_list)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            ok = node.value is not None and all(isinstance(t, ast.Name) for t in targets) and _literal(node.value)
        else:
            ok = False
        if ok and not (_defined(node) & protected):
            kept.append(node)
    return ast.Module(body=kept, type_ignores=[]) if kept else None


def _graded_names(notebooks: list[Notebook]) -> set[str]:
    """Names a graded cell of these notebooks defines at top level."""
    names: set[str] = set()
    for nb in notebooks:
        for cell in nb.cells:
            if cell.get("cell_type") == "code" and _is_graded(cell):
                try:
                    names |= {n for node in ast.parse(cell.get("source", "")).body for n in _defined(node)}
                except (SyntaxError, ValueError):
                    pass
    return names


def load_components(
    source: str | Path = "solutions",
    *,
    stages: Iterable[str] | None = None,
    before: str | None = None,
    context: Iterable[str] = (),
    module_name: str | None = None,
) -> types.ModuleType:
    """Runs the graded cells of a notebook set, and the definitions of its other cells, and returns one module.

    ``stages`` keeps only notebooks whose name starts with one of the given prefixes (``["02", "03"]``);
    ``before`` keeps only notebooks whose name sorts before it (a later stage loading the earlier ones);
    ``context`` names earlier stages whose definitions are loaded first, leniently (see the module's docstring).
    Tracebacks into the module show the notebook name, cell index and the student's own lines.
    """
    every = notebook_paths(source)
    paths = every
    if stages is not None:
        prefixes = tuple(stages)
        paths = [p for p in paths if p.name.startswith(prefixes)]
    if before is not None:
        paths = [p for p in paths if p.name < before]
    context_paths = [p for p in every if p.name.startswith(tuple(context)) and p not in paths]
    name = module_name or f"hw4_components_{next(_counter)}"
    module = types.ModuleType(name, f"Graded cells of {', '.join(p.name for p in paths)}")
    module.__dict__["__notebooks__"] = [str(p) for p in paths]
    # Registered so that pickling by reference and dataclasses inside the cells resolve the module.
    sys.modules[name] = module
    notebooks = [_read(p) for p in paths]
    protected = _graded_names(notebooks)
    for path in context_paths:
        try:
            nb = _read(path)
        except ComponentLoadError:
            continue
        for index, source_code, _ in _code_cells(nb):
            _run(definitions(source_code, protected), path, index, source_code, module, strict=False)
    for path, nb in zip(paths, notebooks, strict=True):
        for index, source_code, graded in _code_cells(nb):
            if graded:
                try:
                    code = compile(source_code, f"<{path.name} cell {index}>", "exec")
                except SyntaxError as err:
                    raise ComponentLoadError(
                        f"{path.name}, cell {index}: syntax error on line {err.lineno}: {err.msg}"
                    ) from err
                _run(code, path, index, source_code, module, strict=True)
            else:
                _run(definitions(source_code, protected), path, index, source_code, module, strict=False)
    return module


def _code_cells(nb: Notebook) -> Iterable[tuple[int, str, bool]]:
    """(index, source, whether it is a graded cell) of every code cell but the hidden-test cells."""
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "code" and not cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            yield index, cell.get("source", ""), _is_graded(cell)


def _run(code: ast.Module | types.CodeType | None, path: Path, index: int, source_code: str,
         module: types.ModuleType, strict: bool) -> None:
    """Executes one cell's code in the module; a graded cell's failure is the student's error (``strict``),
    a definition that fails is skipped, as a cell the student never ran."""
    if code is None:
        return
    filename = f"<{path.name} cell {index}>"
    linecache.cache[filename] = (len(source_code), None, source_code.splitlines(True), filename)
    try:
        exec(code if isinstance(code, types.CodeType) else compile(code, filename, "exec"), module.__dict__)
    except Exception as err:
        if strict:
            raise ComponentLoadError(f"{path.name}, cell {index} raised {type(err).__name__}: {err}") from err

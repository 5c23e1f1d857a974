"""The layout's rules: who may import whom (the package docstrings say why).

The student's library (``hw4lib``) never imports the lab's tools (``hw4lib.lab``), the grader or the deployment;
the grader and the deployment never import the lab; the lab never imports the grader or the deployment.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "hw4lib"
LAB = LIBRARY / "lab"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (``from a import b`` gives ``a`` and ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def breaches(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(REPO) if REPO in path.parents else path} imports {module}"
        for path in files
        for module in imported_modules(path)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    )


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


RULES = {
    "the student's library": (
        [p for p in python_files(LIBRARY) if LAB not in p.parents and p.name != "__main__.py"],
        ("hw4lib.lab", "autograder", "deploy", "solutions"),
    ),
    "the lab's tools": (python_files(LAB), ("autograder", "deploy", "solutions")),
    "the grader": (python_files(REPO / "autograder"), ("hw4lib.lab", "deploy", "solutions")),
    "the deployment": (python_files(REPO / "deploy"), ("hw4lib.lab", "solutions")),
}


@pytest.mark.parametrize("role", RULES)
def test_each_role_imports_only_what_its_docstring_allows(role):
    files, forbidden = RULES[role]
    assert files, f"no Python files for {role}"
    assert breaches(files, forbidden) == []


def test_the_rule_finds_an_import_inside_a_function(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("import torch\n\ndef f():\n    from hw4lib.lab import training\n    return training\n")
    assert breaches([planted], ("hw4lib.lab",)) == [f"{planted} imports hw4lib.lab",
                                                    f"{planted} imports hw4lib.lab.training"]
    assert breaches([planted], ("autograder", "hw4lib.labs")) == []


def test_the_students_library_loads_without_the_lab():
    """Importing every module of the student's library (as a notebook and the grader's sandbox do) loads no module
    of ``hw4lib.lab``."""
    names = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in RULES["the student's library"][0]
    )
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('hw4lib.lab')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

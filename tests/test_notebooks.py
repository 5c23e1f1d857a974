"""The notebooks: structure, release in sync with the solutions, solutions run under nbval, stubs never crash.

The hidden-test cells import ``autograder.hidden``, which only exists where the autograder is installed; like a
student, these tests run copies with the hidden blocks stripped (``tests/notebook_tools.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tests.notebook_tools import RELEASE, SOLUTIONS, kernel_env, strip_hidden, stripped_set

PARTS = {
    "01_data_loader.ipynb": {"data_loader": 10},
    "02_dropout.ipynb": {"locked_dropout": 8, "embedded_dropout": 6},
    "03_weight_drop.ipynb": {"weight_drop": 12},
    "04_model.ipynb": {"language_model": 12},
    "05_regularization_trainer.ipynb": {"ar_tar": 6, "train_batch": 8},
    "06_nt_asgd.ipynb": {"nt_asgd": 10},
    "07_train_generate.ipynb": {"prediction_generation": 8, "val_perplexity": 20},
}
# Optional stages: graded only when autograder/config.toml says `graded = true`; the core above stays 100.
OPTIONAL = {"08_cache_pointer.ipynb": {"cache_pointer": 10}}
UNGRADED = ["09_ablation.ipynb"]  # never graded: no parts, no points (test_ablation.py)
VOLATILE_CELL_KEYS = {"execution", "collapsed", "scrolled", "ExecuteTime"}


def _nb(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def test_every_stage_exists_in_both_sets():
    names = [p.name for p in sorted(SOLUTIONS.glob("*.ipynb"))]
    assert names[0] == "00_welcome.ipynb" and names[1:] == list(PARTS) + list(OPTIONAL) + UNGRADED
    assert [p.name for p in sorted(RELEASE.glob("*.ipynb"))] == names


@pytest.mark.parametrize("folder", [SOLUTIONS, RELEASE], ids=["solutions", "notebooks"])
def test_committed_without_outputs(folder):
    for path in sorted(folder.glob("*.ipynb")):
        for cell in _nb(path).cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs: clear them"


def test_hidden_test_cells_follow_their_checks():
    total = 0
    for name, parts in {**PARTS, **OPTIONAL}.items():
        cells = _nb(SOLUTIONS / name).cells
        ids = [_grade_id(c) for c in cells]
        for part, points in parts.items():
            index = ids.index(f"test_{part}")
            cell = cells[index]
            meta = cell.metadata["nbgrader"]
            assert meta == {"grade": True, "solution": False, "locked": True, "grade_id": f"test_{part}",
                            "points": points, "schema_version": 3, "task": False}, name
            assert cell.source == (
                "# Hidden tests for this part run here when your notebook is graded.\n"
                "### BEGIN HIDDEN TESTS\n"
                "import autograder.hidden\n"
                f'autograder.hidden.verdict("{part}")\n'
                "### END HIDDEN TESTS"
            )
            assert ids[index - 1] == f"check_{part}", f"{name}: the visible check must precede test_{part}"
            if part != "val_perplexity":
                assert ids.index(part) < index - 1, f"{name}: the solution cell {part} must come before its check"
            total += points if name in PARTS else 0
    assert total == 100


def test_optional_stage_adds_points_only_when_graded(tmp_path):
    """nbgrader's total is the sum of the source notebooks' grade cells: 100 with stage 8 ungraded (its test cell
    is left out of the course's source), 100 plus its points when the instructor grades it."""
    from autograder import course
    from autograder.config import load as load_config

    def source_points(config_path: Path | None) -> dict[str, float]:
        root = course.make_course(tmp_path / f"course-{config_path is None}", config=load_config(config_path))
        return {_grade_id(c): c.metadata["nbgrader"]["points"] for p in (root / "source" / "hw4").glob("*.ipynb")
                for c in _nb(p).cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}

    default = load_config()
    assert [p.name for p in default.ungraded] == ["cache_pointer"]  # the shipped default: stage 8 not graded
    ungraded = source_points(None)
    assert "test_cache_pointer" not in ungraded
    assert sum(v for k, v in ungraded.items() if k.startswith("test_")) == 100
    text = default.path.read_text()
    graded_config = tmp_path / "graded.toml"
    graded_config.write_text(re.sub(r"(?m)^graded = false$", "graded = true", text))
    graded = source_points(graded_config)
    assert graded.pop("test_cache_pointer") == OPTIONAL["08_cache_pointer.ipynb"]["cache_pointer"]
    assert graded == ungraded
    release = [_grade_id(c) for c in _nb(RELEASE / "08_cache_pointer.ipynb").cells]
    assert "test_cache_pointer" not in release and "check_cache_pointer" in release  # released as ungraded


def _slug(heading: str) -> str:
    """GitHub's (and JupyterLab's) anchor for a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip("# ").lower()).replace(" ", "-")


@pytest.mark.parametrize("folder", [SOLUTIONS, RELEASE], ids=["solutions", "notebooks"])
def test_every_graded_stage_shows_its_contract(folder):
    """Each graded stage's notebook renders its part of docs/components.md (checks.contract: no docs/ on a hub), and
    its links into components.md (a clone, GitHub) name headings that exist."""
    components = (SOLUTIONS.parent / "docs" / "components.md").read_text()
    anchors = {_slug(line) for line in components.splitlines() if line.startswith("#")}
    for name in [*PARTS, *OPTIONAL]:
        stage = int(name[:2])
        cells = _nb(folder / name).cells
        calls = [c.source for c in cells if c.cell_type == "code" and f"checks.contract({stage})" in c.source]
        assert len(calls) == 1, f"{folder.name}/{name}: no cell shows the contract with checks.contract({stage})"
        links = re.findall(r"components\.md#([\w-]+)", "\n".join(c.source for c in cells))
        assert set(links) <= anchors, f"{folder.name}/{name}: dead links {set(links) - anchors}"


def test_solution_cells_keep_their_grade_ids():
    for name, parts in {**PARTS, **OPTIONAL}.items():
        ids = {_grade_id(c) for c in _nb(SOLUTIONS / name).cells}
        for part in parts:
            if part != "val_perplexity":
                assert part in ids, f"{name} lost its solution cell {part}"


def _normalized(path: Path) -> dict:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        for key in VOLATILE_CELL_KEYS:
            cell.get("metadata", {}).pop(key, None)
    return nb


@pytest.mark.slow
def test_release_is_what_nbgrader_makes_of_the_solutions(tmp_path):
    from autograder import course

    out = tmp_path / "release"
    course.release(tmp_path / "course", out)
    made = sorted(p.name for p in out.glob("*.ipynb"))
    assert made == sorted(p.name for p in RELEASE.glob("*.ipynb"))
    for name in made:
        assert _normalized(out / name) == _normalized(RELEASE / name), (
            f"notebooks/{name} differs from the release of solutions/{name}: run `python -m autograder release`"
        )


def test_release_has_no_solutions_and_no_hidden_tests():
    for path in sorted(RELEASE.glob("*.ipynb")):
        text = path.read_text()
        assert "### BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text, path.name


def test_strip_hidden():
    source = "# keep\n### BEGIN HIDDEN TESTS\nimport autograder.hidden\n### END HIDDEN TESTS\nkeep()\n"
    assert strip_hidden(source) == "# keep\nkeep()\n"


@pytest.mark.slow
def test_solutions_run_under_nbval(tmp_path, prepared_data):
    """`pytest --nbval-lax` on every solution notebook (hidden blocks stripped), in quick mode."""
    stripped_set(SOLUTIONS, tmp_path)
    env = kernel_env(quick=True)
    env["HW4_DATA_DIR"] = str(prepared_data)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )
    elapsed = time.perf_counter() - start
    print(f"nbval on {len(list(SOLUTIONS.glob('*.ipynb')))} solution notebooks: {elapsed:.0f} s")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert elapsed < 600, f"the solution notebooks took {elapsed:.0f} s in quick mode; the budget is 600 s"


@pytest.mark.slow
def test_release_runs_top_to_bottom_with_stubs(tmp_path, prepared_data, monkeypatch):
    """Every released notebook runs to the end: checks fail in words, no raw NotImplementedError tracebacks,
    and the kernel stays alive."""
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    paths = stripped_set(RELEASE, tmp_path)
    env = kernel_env(quick=True)
    env["HW4_DATA_DIR"] = str(prepared_data)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for path in paths:
        nb = _nb(path)
        client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(tmp_path)}})
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            # the kernel manager is asynchronous: a bare is_alive() is a coroutine, always truthy
            assert run_sync(client.km.is_alive)(), f"{path.name}: the kernel died"
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            grade_id = _grade_id(cell) or ""
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            for output in cell.outputs:
                if output.output_type == "error":
                    assert len(output.traceback) <= 2, (
                        f"{path.name} cell {grade_id or cell.source[:40]!r} shows a long traceback:\n"
                        + "\n".join(output.traceback)[-1500:]
                    )
            if grade_id.startswith("check_") and grade_id != "check_val_perplexity":
                assert "not implemented yet" in text, f"{path.name} {grade_id}: {text[:300]!r}"
                assert "Traceback" not in text

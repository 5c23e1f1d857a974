"""The nbgrader course: one assignment, ``hw4``, whose source notebooks are ``solutions/``.

The course root (default ``autograder/course/``, not in git) is made on demand, so a fresh clone needs no
setup step, and a test can make a private one in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from autograder.config import Config
from autograder.config import load as load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO_ROOT / "solutions"
RELEASE_DIR = REPO_ROOT / "notebooks"
DEFAULT_ROOT = Path(__file__).resolve().parent / "course"
ASSIGNMENT = "hw4"
COURSE_ID = "awd-course"

CONFIG = '''\
# Written by autograder/course.py; regenerated on every release.
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.db_url = "sqlite:///" + {db!r}
c.Exchange.root = {exchange!r}
# The checks print friendly explanations; nbgrader must not treat warnings on stderr as failures.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = ".*(Warning|warn).*"
c.Execute.raise_on_iopub_timeout = False
c.Validator.validate_all = True  # see VALIDATE_CONFIG
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
# nbgrader's own sanitize step, with OverwriteCells able to restore any deleted test cell (see preprocessors.py).
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "autograder.preprocessors.RestoreGradeCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# A deleted or edited test cell is restored from the source instead of turning into a manual grade.
c.RestoreGradeCells.add_missing_cells = True
# No kernel runs student code here: the sandboxed probe and the judge (python -m autograder grade) decide,
# and InjectVerdicts writes each judged verdict into its hidden-test cell for SaveAutoGrades to record.
c.Autograde.autograde_preprocessors = [
    "autograder.preprocessors.InjectVerdicts",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.InjectVerdicts.verdicts_dir = {verdicts!r}
# Late work: AssignLatePenalties (above) compares the submission's time with the assignment's due date in the
# gradebook (set from the roster: autograder.nbgrader_plugins.set_due_dates) and takes 10 % of each notebook's
# score per started hour late. The time is the one collect recorded in submitted/<student>/hw4/timestamp.txt:
# TrustedCollect's, from the kernel, with the filesystem exchange; ngshare's server's with ngshare (whose site
# config replaces this collect).
c.AssignLatePenalties.plugin_class = "autograder.nbgrader_plugins.PercentPerHour"
c.PercentPerHour.percent_per_hour = 10.0
c.ExchangeFactory.collect = "autograder.nbgrader_plugins.TrustedCollect"
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests",
]
{extra}
# A deployment's settings (deploy/course_setup.py: the shared exchange, where the grader leaves verdicts) live in
# their own file, so that regenerating this one (python -m autograder release) keeps them. Missing: ignored.
load_subconfig({site!r}, path={root!r})  # noqa: F821
'''
SITE_CONFIG = "nbgrader_site_config.py"

# nbgrader's validate (command line or the Validate button) only looks at grade cells, and a released test cell
# holds nothing but a comment: an unfinished notebook "passed". validate_all also reports every code cell that
# ends in an error, so an unfinished part shows up as its failing visible check ("CheckFailed: ...") and the
# cells that need it ("NotImplementedError: a part used here is not implemented yet ..."). Validation runs with
# NBGRADER_EXECUTION set, so hw4lib.config.quick_mode() shrinks the training cells.
VALIDATE_CONFIG = "c.Validator.validate_all = True\n"

STUDENT_CONFIG = '''\
# Written by deploy/course_setup.py: this user's course and exchange.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.Exchange.root = {exchange!r}
''' + VALIDATE_CONFIG


def drop_ungraded_tests(notebook: Path, config: Config) -> None:
    """Removes the hidden-test cell of every ungraded optional part from ``notebook`` (a copy in ``source/``).

    nbgrader's total is the sum of the grade cells' points, so an optional stage the instructor does not grade
    must carry none: its notebook is released with its component and visible check, and nothing is graded.
    """
    drop = {part.test_id for part in config.ungraded if part.notebook == notebook.name}
    if not drop:
        return
    nb = nbformat.read(str(notebook), as_version=4)
    nb.cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in drop]
    nbformat.write(nb, str(notebook))


def make_course(root: Path = DEFAULT_ROOT, extra_config: str = "", notebooks: Path | None = None,
                config: Config | None = None, keep_source: bool = False) -> Path:
    """Creates (or refreshes) the course root: its config and ``source/hw4`` copied from ``solutions/``.

    Only notebooks are copied into ``source/``: nbgrader copies every other file there into the release, and
    the checks in ``autograder/`` must never reach students. ``notebooks`` replaces ``solutions/`` (tests).
    ``config`` (default ``autograder/config.toml``) says which optional parts are graded.

    ``keep_source``: an existing, non-empty ``source/hw4`` is left as it is (a deployment's course root, where
    ``source/`` is the instructor's to edit: the hub and ``deploy/course_setup.py`` run this on every start,
    and copying ``solutions/`` over it again would lose their edits). Without it (``python -m autograder release``,
    the grader's own course per run) ``source/`` always mirrors ``solutions/``.
    """
    config = config or load_config()
    root = Path(root).resolve()
    source = root / "source" / ASSIGNMENT
    if not (keep_source and source.is_dir() and any(source.iterdir())):
        source.mkdir(parents=True, exist_ok=True)
        for old in source.glob("*.ipynb"):
            old.unlink()
        for notebook in sorted(Path(notebooks or SOLUTIONS).glob("*.ipynb")):
            shutil.copy2(notebook, source / notebook.name)
            drop_ungraded_tests(source / notebook.name, config)
    (root / "nbgrader_config.py").write_text(
        CONFIG.format(
            root=str(root),
            course_id=COURSE_ID,
            db=str(root / "gradebook.db"),
            exchange=str(root / "exchange"),
            verdicts=str(root / "verdicts"),
            extra=extra_config,
            site=SITE_CONFIG,
        )
    )
    return root


def nbgrader(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs one of nbgrader's own commands in the course root."""
    env = dict(os.environ)
    env.setdefault("HW4_QUICK", "1")
    # nbgrader shells out to `alembic`, which lives beside this interpreter (a venv is often not on PATH).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # The course config names autograder.preprocessors: the repository must be importable from the course root.
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=root,
        env=env,
        check=check,
        capture_output=True,
        text=True,
    )


def release(root: Path = DEFAULT_ROOT, out: Path = RELEASE_DIR, config: Config | None = None) -> list[Path]:
    """``nbgrader generate_assignment`` on ``solutions/``, then copies the student version to ``out``."""
    root = make_course(root, config=config)
    result = nbgrader(root, "generate_assignment", ASSIGNMENT, "--force", check=False)
    if result.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{result.stdout}\n{result.stderr}")
    released = root / "release" / ASSIGNMENT
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ipynb"):
        old.unlink()
    written = []
    for notebook in sorted(released.glob("*.ipynb")):
        shutil.copy2(notebook, out / notebook.name)
        written.append(out / notebook.name)
    return written


def ship_grading_bar(config: Config) -> Path:
    """Writes the perplexity bar the student's library shows (``hw4lib/grading_bar.json``): students, on a hub or
    in a release without ``autograder/``, see the thresholds their model is graded against."""
    from hw4lib import checks

    bar = checks.grading_bar(config.path)
    checks.SHIPPED_BAR.write_text(json.dumps(bar, indent=1, sort_keys=True) + "\n")
    return checks.SHIPPED_BAR


def ship_measured() -> Path:
    """Copies the measured runs the notebooks show (``docs/data/*.csv``, ``*.json``) into the student's library
    (``hw4lib/measured/``, read by ``hw4lib.files.measured``): a student's server on the hub has no ``docs/``."""
    from hw4lib import files

    shutil.rmtree(files.SHIPPED_MEASURED, ignore_errors=True)
    files.SHIPPED_MEASURED.mkdir()
    for path in sorted(files.MEASURED_SOURCE.iterdir()):
        if path.suffix in files.SHIPPED_SUFFIXES:
            shutil.copyfile(path, files.SHIPPED_MEASURED / path.name)
    return files.SHIPPED_MEASURED


def ship_contract() -> Path:
    """Copies ``docs/components.md`` (the one source) into the student's library (``hw4lib/contract.md``), which
    ``checks.contract(stage)`` renders in the notebooks: a student's server on the hub or a release has no
    ``docs/``."""
    from hw4lib import checks

    shutil.copyfile(REPO_ROOT / "docs" / "components.md", checks.SHIPPED_CONTRACT)
    return checks.SHIPPED_CONTRACT

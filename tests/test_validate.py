"""Student-side validation (``nbgrader validate``) with the course's student config: a finished notebook
passes; an unfinished one is told which parts are not done, without a stack trace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from autograder import course
from tests.notebook_tools import RELEASE, REPO, fill_with_reference

NOTEBOOK = "01_data_loader.ipynb"


def _validate(folder: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("HW4_QUICK", None)  # nbgrader's own NBGRADER_EXECUTION must be what shrinks the heavy cells
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run([sys.executable, "-m", "nbgrader", "validate", NOTEBOOK], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)


def test_validate_tells_a_student_what_is_not_done(tmp_path, data_env):
    config = course.STUDENT_CONFIG.format(course_id=course.COURSE_ID, exchange=str(tmp_path / "exchange"))
    for name in ("filled", "empty"):
        (tmp_path / name).mkdir()
        shutil.copy2(RELEASE / NOTEBOOK, tmp_path / name / NOTEBOOK)
        (tmp_path / name / "nbgrader_config.py").write_text(config)
    fill_with_reference(tmp_path / "filled" / NOTEBOOK)

    done = _validate(tmp_path / "filled")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Success! Your notebook passes all the tests." in done.stdout, done.stdout[-3000:]

    todo = _validate(tmp_path / "empty")
    out = todo.stdout
    assert "VALIDATION FAILED" in out, (out[-3000:], todo.stderr[-3000:])
    # The part's visible check names it, and the cells that use it say the part is not written yet.
    assert "checks.check_data_loader(LanguageModelDataLoader)" in out and "CheckFailed" in out, out[-3000:]
    assert "not implemented yet" in out, out[-3000:]
    assert "You did not provide a response." in out  # the written answers
    assert "Traceback" not in out + todo.stderr and 'File "' not in out, out[-3000:]

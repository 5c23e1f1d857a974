"""The servers' view of the clone (deploy/hub/runtime.py) for layouts this machine does not have.

tests/test_hub.py runs the real thing with the clone and venv where they are here; these check the plan for
CI's layout (clone, venv and data under /root, Python from pyenv in /root) and a world-readable /opt clone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from deploy.hub import runtime


@pytest.fixture
def layout(monkeypatch):
    def use(repo: str, prefix: str, base_prefix: str, closed: tuple[str, ...]):
        monkeypatch.setattr(sys, "prefix", prefix)
        monkeypatch.setattr(sys, "base_prefix", base_prefix)
        monkeypatch.setattr(Path, "resolve", lambda self, strict=False: Path(str(self)))

        def hidden(path: Path) -> Path | None:
            return next((Path(c) for c in closed if Path(path).is_relative_to(c)), None)

        monkeypatch.setattr(runtime, "hidden_ancestor", hidden)
        return Path(repo)

    return use


def test_ci_layout_under_root(layout):
    repo = layout("/root/clone", "/root/clone/.venv", "/root/.pyenv/versions/3.11.7", ("/root",))
    # One tmpfs over /root; inside it, read-only, only what a student's server runs on (not the clone).
    assert runtime.view_for("student", repo, repo / "data").plan() == [(Path("/root"), [
        Path("/root/clone/.venv"), Path("/root/clone/data"), Path("/root/clone/hw4lib"),
        Path("/root/.pyenv/versions/3.11.7")])]
    instructor = runtime.view_for("instructor", repo, repo / "data").plan()
    assert [h for h, _ in instructor] == [Path("/root")]
    exposed = instructor[0][1]
    assert Path("/root/clone") in exposed
    # The clone is bound before the venv inside it, so the venv's bind lands on the clone's.
    assert exposed.index(Path("/root/clone")) < exposed.index(Path("/root/clone/.venv"))


def test_world_readable_clone_still_hides_solutions_from_students(layout):
    repo = layout("/opt/awd", "/opt/awd/.venv", "/usr", ())
    assert runtime.view_for("student", repo, repo / "data").plan() == [
        (Path("/opt/awd"), [Path("/opt/awd/.venv"), Path("/opt/awd/data"), Path("/opt/awd/hw4lib")])]
    assert runtime.view_for("instructor", repo, repo / "data").plan() == []


def test_unknown_role_is_refused(layout):
    repo = layout("/opt/awd", "/opt/awd/.venv", "/usr", ())
    with pytest.raises(ValueError, match="unknown role"):
        runtime.view_for("grader", repo, repo / "data")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_student_cannot_move_the_course_aside_in_the_hubs_exchange():
    """The hub's exchange is 1777 (sticky): anybody may create, nobody may rename or remove another's entry."""
    from deploy.hub import accounts

    top = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        exchange = accounts.ensure_exchange(top / "exchange")
        assert exchange.stat().st_mode & 0o7777 == 0o1777
        (exchange / "awd-course" / "outbound").mkdir(parents=True)  # the instructor's (here root's) course folder
        moved = subprocess.run(["runuser", "-u", "nobody", "--", "mv", str(exchange / "awd-course"),
                                str(exchange / "aside")], capture_output=True, text=True)
        assert moved.returncode != 0 and (exchange / "awd-course" / "outbound").is_dir(), moved.stderr
        made = subprocess.run(["runuser", "-u", "nobody", "--", "mkdir", str(exchange / "theirs")],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr  # creating stays open, as nbgrader needs
    finally:
        shutil.rmtree(top)

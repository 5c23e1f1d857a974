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


STUDENT_PROBE = """
import json, os, sys
from hw4lib import checks
repo = sys.argv[1]
print(json.dumps({"checks": checks.__file__, "bar": checks.grading_bar(), "contract": checks.contract(1).data,
                  "visible": sorted(os.listdir(repo))}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to build the view and act as another user")
def test_a_students_view_holds_the_contract_and_the_grading_bar():
    """What a student's kernel on the hub reaches: the spawner's view of this clone (runtime.view_for, laid out by
    the same preexec_fn), as another user, with the spawner's PYTHONPATH. Stage 7's thresholds and each stage's
    contract must come from hw4lib alone: autograder/config.toml and docs/components.md are out of sight."""
    import json
    import pwd

    from autograder.config import DEFAULT_CONFIG
    from hw4lib import checks

    repo = Path(__file__).resolve().parent.parent
    view = runtime.view_for("student", repo, repo / "data")
    nobody = pwd.getpwnam("nobody")

    def become_nobody() -> None:  # JupyterHub's own step after the view: drop to the user's uid
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    stage = Path(tempfile.mkdtemp(dir="/tmp"))  # root-only and empty, outside every hidden folder
    try:
        os.chmod(stage, 0o700)
        probe = subprocess.run([sys.executable, "-c", STUDENT_PROBE, str(repo)], cwd="/", capture_output=True,
                               text=True, timeout=120, preexec_fn=runtime.preexec_with_view(view, stage, become_nobody),
                               env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "HOME": "/"})
    finally:
        stage.rmdir()
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout)
    # Only what a student's server runs on: hw4lib/, and the data and the venv when they live in the clone (CI).
    inside = [p for p in (repo / "data", Path(sys.prefix).resolve()) if p.is_relative_to(repo)]
    assert seen["visible"] == sorted({"hw4lib", *(p.relative_to(repo).parts[0] for p in inside)}), seen["visible"]
    assert not {"solutions", "autograder", "docs"} & set(seen["visible"])
    assert Path(seen["checks"]) == repo / "hw4lib" / "checks.py"
    assert seen["bar"] == checks.grading_bar(DEFAULT_CONFIG) and seen["bar"]["full"] < seen["bar"]["zero"]
    source = (repo / "docs" / "components.md").read_text()
    assert seen["contract"] == checks.contract_text(1, source)
    assert "### Stage 1: LanguageModelDataLoader" in seen["contract"]

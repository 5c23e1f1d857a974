"""The servers' view of the clone (deploy/hub/runtime.py) for layouts this machine does not have.

tests/test_hub.py runs the real thing with the clone and venv where they are here; these check the plan for
CI's layout (clone, venv and data under /root, Python from pyenv in /root) and a world-readable /opt clone.
"""

from __future__ import annotations

import sys
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

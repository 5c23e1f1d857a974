"""LocalProcessSpawner for the course: JupyterLab as the user, in the course's view of the clone, per role,
each server's whole process tree (kernels, terminals, whatever they start) in a control group of its own.

LocalProcessSpawner has JupyterHub's ``mem_limit`` and ``cpu_limit`` traits but ignores them (it only passes them
on as MEM_LIMIT/CPU_LIMIT). Here they are enforced, with ``max_processes``, by the same cgroup code the grader
uses per submission (``autograder/cgroups.py``: v1 here, v2 where that is what the machine has): the server joins
its group in the ``preexec_fn``, as root, before it drops to the user's uid, so nothing it starts runs outside.
The group is part of the spawner's state in the hub's database, like the pid, so a restarted hub finds both.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Integer, List, Unicode

from autograder import cgroups
from deploy.hub import runtime

# What a terminal in JupyterLab runs when the account's login shell is none (the hub's accounts have nologin).
TERMINAL_SHELL = "/bin/bash"
NO_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "")


class CourseSpawner(LocalProcessSpawner):
    """Each server gets its role's Jupyter config (nbgrader extensions, course, exchange) and mount view."""

    repo = Unicode(help="the clone: hw4lib for everyone, the whole of it for the instructor").tag(config=True)
    data_dir = Unicode(help="prepared WikiText-2 and PTB (HW4_DATA_DIR)").tag(config=True)
    role_config_root = Unicode(help="<root>/<role>/ holds that role's Jupyter and nbgrader config").tag(config=True)
    stage_dir = Unicode(help="empty root-only directory used to build each mount view").tag(config=True)
    tag = Unicode(help="AWD_HUB_TAG in every server's environment: the hub's run folder").tag(config=True)
    instructors = List(Unicode(), help="the roster's instructors: they get the instructor's view and config; "
                       "everybody else (graders too, for now) a student's").tag(config=True)

    max_processes = Integer(512, help="pids.max of each server's group: processes and threads of the server, "
                            "its kernels and terminals together (a fork bomb stops there)").tag(config=True)

    _group: cgroups.Group | None = None

    def role_of(self, user: str) -> str:
        return "instructor" if user in self.instructors else "student"

    def quota(self) -> cgroups.Quota:
        if not self.mem_limit or not self.cpu_limit:
            # A hub that promised limits must not start servers without them (jupyterhub_config.py sets both).
            raise RuntimeError("CourseSpawner needs mem_limit and cpu_limit")
        return cgroups.Quota(self.max_processes, int(self.mem_limit) // 2**20, float(self.cpu_limit))

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        view = runtime.view_for(self.role_of(name), Path(self.repo), Path(self.data_dir))
        then = runtime.preexec_with_view(view, Path(self.stage_dir), super().make_preexec_fn(name))
        if self._group is None:
            raise RuntimeError("no control group for the server (start() makes it)")
        procs = [p.encode() for p in self._group.procs_files]

        def preexec() -> None:
            # In the child, before exec and still root: join the group first, so that even the mount setup and
            # everything the server later starts count against its limits.
            pid = str(os.getpid()).encode()
            for path in procs:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            then()

        return preexec

    async def start(self) -> Any:
        # A fresh group per start: a name with the user's and a random part (a crashed hub's leftovers never clash).
        self._group = cgroups.Group.create(self.quota(), f"awd-hub-{self.user.name}-{os.urandom(4).hex()}")
        try:
            return await super().start()
        except BaseException:
            self._close_group()
            raise

    async def poll(self) -> int | None:
        status = await super().poll()
        if status is not None:
            self._close_group()  # the server died (out of memory, say): its kernels go with it
        return status

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        self._close_group()  # kernels and anything else the server left behind

    def _close_group(self) -> None:
        if self._group is not None:
            self._group.close()
            self._group = None

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self._group is not None:
            state["cgroup"] = {"kind": self._group.kind, "dirs": [str(d) for d in self._group.dirs]}
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        group = state.get("cgroup")
        if group:
            self._group = cgroups.Group.existing(group["kind"], group["dirs"])

    def clear_state(self) -> None:
        # JupyterHub clears the state once the server has stopped; LocalProcessSpawner's poll() does it too, the
        # moment it finds the pid gone. Either way the server is over: its group (and what is left in it) goes.
        super().clear_state()
        self._close_group()

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if env.get("SHELL", "") in NO_SHELLS:
            # LocalProcessSpawner passes on the login shell, which JupyterLab's terminals run: nologin would close
            # every terminal at once. The hub's accounts have none so that they cannot ssh in; a terminal inside
            # the server (its own mount namespace) is the way in that the course means.
            env["SHELL"] = TERMINAL_SHELL
        bindir = str(Path(self.cmd[0]).parent) if self.cmd else ""
        env.update({
            # The venv first: nbgrader runs `alembic`, and a terminal's `jupyter`/`nbgrader` must be this venv's.
            "PATH": os.pathsep.join(p for p in (bindir, "/usr/local/bin", "/usr/bin", "/bin") if p),
            "PYTHONPATH": self.repo,
            "HW4_DATA_DIR": self.data_dir,
            # After ~/.jupyter, before the venv's etc/jupyter: the role decides which nbgrader extensions load.
            "JUPYTER_CONFIG_PATH": str(Path(self.role_config_root) / self.role_of(self.user.name)),
            "AWD_HUB_TAG": self.tag,
        })
        return env


def stop_all(run_dir: Path, timeout: float = 20) -> list[int]:
    """Stops every server a stopped hub left running (``cleanup_servers = False`` keeps them over a restart), from
    the spawners' state in the hub's database: SIGTERM, then each server's group is closed (SIGKILL to whatever is
    left in it) and removed. Returns the pids that were signalled. Run it only while the hub is stopped."""
    db = Path(run_dir) / "jupyterhub.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        states = [json.loads(row[0]) for row in conn.execute("SELECT state FROM spawners") if row[0]]
    signalled = []
    for state in states:
        pid = state.get("pid")
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
                signalled.append(pid)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for pid in signalled:
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and not _zombie(pid):
            time.sleep(0.1)
    for state in states:
        group = state.get("cgroup")
        found = cgroups.Group.existing(group["kind"], group["dirs"]) if group else None
        if found is not None:
            found.close()
    return signalled


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


if __name__ == "__main__":
    # python -m deploy.hub.spawner stop-all RUN_DIR: after stopping the hub, when its servers should stop too.
    if len(sys.argv) != 3 or sys.argv[1] != "stop-all":
        sys.exit("usage: python -m deploy.hub.spawner stop-all RUN_DIR   (the hub stopped first)")
    print(f"stopped servers: {stop_all(Path(sys.argv[2]))}")

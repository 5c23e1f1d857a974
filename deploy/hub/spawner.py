"""LocalProcessSpawner for the course: JupyterLab as the user, in the course's view of the clone, per role."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import List, Unicode

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

    def role_of(self, user: str) -> str:
        return "instructor" if user in self.instructors else "student"

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        view = runtime.view_for(self.role_of(name), Path(self.repo), Path(self.data_dir))
        return runtime.preexec_with_view(view, Path(self.stage_dir), super().make_preexec_fn(name))

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

"""The course's shared formgrader: a JupyterHub managed service ``<course_id>`` run as the course account.

nbgrader's documented setup for one class with several graders ("Using nbgrader with JupyterHub"): one notebook
server, under a Unix account of the course's own (``grader-<course_id>``) that owns the course root and the
gradebook, reached at ``/services/<course_id>/`` by the ``instructors`` and ``graders`` groups only (the role
below). One process writes the SQLite gradebook, and no person's home or account holds the course.

JupyterHub would start a service with ``user`` through its ``_ServiceSpawner`` (a LocalProcessSpawner that only
setuids before exec): without the mount view the users' servers get (``deploy/hub/runtime.py``), a course account
could not even start the interpreter when the clone or the Python lives under ``/root`` (0700). So the hub starts
it as root through ``python -m deploy.hub.service_account`` (as it starts ngshare), which does what
``CourseSpawner`` does for the instructor's server: a control group with the servers' limits, the instructor's view
of the clone in a mount namespace of its own, then the course account's uid, groups and home, and ``exec`` of
``jupyterhub.singleuser``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from autograder import cgroups
from deploy.hub import service_account

TERMINAL_SHELL = "/bin/bash"  # the account has nologin; the service's terminals are the course's way in


def account_name(course_id: str) -> str:
    """The course account's Unix name (nbgrader's example: ``grader-course101``)."""
    return f"grader-{course_id}"


def role(course_id: str) -> dict:
    """The ``c.JupyterHub.load_roles`` entry: who may open the service. Students have no such scope, so the hub
    refuses them (403) at its OAuth step, before the service sees a request."""
    return {"name": f"{course_id}-graders", "description": "the course's shared formgrader",
            "groups": ["instructors", "graders"], "scopes": [f"access:services!service={course_id}"]}


def service(course_id: str, port: int, home: Path, role_config: Path, repo: Path, data_dir: Path, stage: Path,
            quota: cgroups.Quota) -> dict:
    """The ``c.JupyterHub.services`` entry: the hub starts (as root, no ``user``) and stops it with itself."""
    python = sys.executable
    command = service_account.command(account_name(course_id), "instructor", repo, data_dir, stage, quota,
                                      [python, "-m", "jupyterhub.singleuser", f"--ServerApp.root_dir={home}"])
    return {
        "name": course_id,
        "url": f"http://127.0.0.1:{port}",
        "command": command,
        "cwd": str(home),
        "environment": {
            # The instructor's Jupyter config: the formgrader on, the course root, frame-ancestors 'self'.
            "JUPYTER_CONFIG_PATH": str(role_config),
            "PYTHONPATH": str(repo),  # this module, then the course config's autograder imports
            "HW4_DATA_DIR": str(data_dir),
            # The venv first: nbgrader runs `alembic`, and a terminal's `nbgrader`/`python` must be this venv's.
            "PATH": os.pathsep.join((str(Path(python).parent), "/usr/local/bin", "/usr/bin", "/bin")),
            "SHELL": TERMINAL_SHELL,
        },
        # Only the role's groups get past the hub: no consent page for them.
        "oauth_no_confirm": True,
    }

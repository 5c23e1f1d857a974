"""The course's shared formgrader: a JupyterHub managed service ``<course_id>`` run as the course account.

nbgrader's documented setup for one class with several graders ("Using nbgrader with JupyterHub"): one notebook
server, under a Unix account of the course's own (``grader-<course_id>``) that owns the course root and the
gradebook, reached at ``/services/<course_id>/`` by the ``instructors`` and ``graders`` groups only (the role
below). One process writes the SQLite gradebook, and no person's home or account holds the course.

JupyterHub would start a service with ``user`` through its ``_ServiceSpawner`` (a LocalProcessSpawner that only
setuids before exec): without the mount view the users' servers get (``deploy/hub/runtime.py``), a course account
could not even start the interpreter when the clone or the Python lives under ``/root`` (0700). So the hub starts
this module as root instead (``python -m deploy.hub.course_service``), which does what ``CourseSpawner`` does for
the instructor's server: a control group with the servers' limits, the instructor's view of the clone in a mount
namespace of its own, then the course account's uid, groups and home, and ``exec`` of ``jupyterhub.singleuser``.
It stays behind as root only to forward the hub's signals and remove the group once the server is gone.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import sys
from pathlib import Path

from autograder import cgroups
from deploy.hub import runtime

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
    command = [python, "-m", "deploy.hub.course_service", "--account", account_name(course_id),
               "--repo", str(repo), "--data-dir", str(data_dir), "--stage", str(stage),
               "--processes", str(quota.processes), "--memory-mb", str(quota.memory_mb), "--cores", str(quota.cores),
               "--", python, "-m", "jupyterhub.singleuser", f"--ServerApp.root_dir={home}"]
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


def drop_to(name: str) -> None:
    """The account's groups (the staff group: the course config imports autograder/), gid, then uid."""
    entry = pwd.getpwnam(name)
    os.initgroups(name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=name, LOGNAME=name)
    os.chdir(entry.pw_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.hub.course_service", description=__doc__.splitlines()[0])
    parser.add_argument("--account", required=True)
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--stage", required=True, type=Path, help="the root-only folder the views are built on")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cores", type=float, required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("deploy.hub.course_service: runs as root (it builds a mount view, then drops to the account)")
    pwd.getpwnam(args.account)  # fail here, as root, with the name, rather than in the child
    view = runtime.view_for("instructor", args.repo, args.data_dir)
    group = cgroups.Group.create(cgroups.Quota(args.processes, args.memory_mb, args.cores),
                                 f"awd-hub-{args.account}-{os.urandom(4).hex()}")
    pid = os.fork()
    if pid == 0:  # the server: in the group first, so the mount setup and all it starts count
        try:
            for path in group.procs_files:
                Path(path).write_text(str(os.getpid()))
            runtime.apply_view(view, args.stage)
            drop_to(args.account)
            os.execvp(args.command[0], args.command)
        except BaseException as error:  # never return into the parent's code as the child
            print(f"deploy.hub.course_service: {error}", file=sys.stderr, flush=True)
        os._exit(127)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        group.close()  # the server's kernels and terminals go with it
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())

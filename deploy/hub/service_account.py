"""A hub service run as an unprivileged Unix account, in a server's view and control group.

JupyterHub starts a managed service with ``user`` through its ``_ServiceSpawner``, a LocalProcessSpawner that only
setuids before ``exec``: without the mount view the users' servers get (``deploy/hub/runtime.py``), an account could
not even start the interpreter when the clone or the Python lives under ``/root`` (0700). So the hub starts
``python -m deploy.hub.service_account`` as root instead, which does what ``CourseSpawner`` does for a server: a
control group with the given limits, the role's view of the clone in a mount namespace of its own, then the
account's uid, groups and home, and ``exec`` of the service's command. It stays behind as root only to forward the
hub's signals and remove the group once the service is gone. Used for the course's formgrader
(``deploy/hub/course_service.py``, the instructor's view) and ngshare (``deploy/hub/ngshare.py``, a student's view).
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


def command(account: str, view: str, repo: Path, data_dir: Path, stage: Path, quota: cgroups.Quota,
            argv: list[str]) -> list[str]:
    """The ``command`` of a ``c.JupyterHub.services`` entry that runs ``argv`` as ``account`` through this module
    (the entry itself gives no ``user``: the hub starts it as root)."""
    return [sys.executable, "-m", "deploy.hub.service_account", "--account", account, "--view", view,
            "--repo", str(repo), "--data-dir", str(data_dir), "--stage", str(stage),
            "--processes", str(quota.processes), "--memory-mb", str(quota.memory_mb), "--cores", str(quota.cores),
            "--", *argv]


def drop_to(name: str) -> None:
    """The account's groups (for the course account, the staff group: the course config imports autograder/),
    gid, then uid."""
    entry = pwd.getpwnam(name)
    os.initgroups(name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=name, LOGNAME=name)
    os.chdir(entry.pw_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.hub.service_account", description=__doc__.splitlines()[0])
    parser.add_argument("--account", required=True)
    parser.add_argument("--view", choices=("instructor", "student"), required=True,
                        help="which server's view of the clone (runtime.view_for)")
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--stage", required=True, type=Path, help="the root-only folder the views are built on")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cores", type=float, required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("deploy.hub.service_account: runs as root (it builds a mount view, then drops to the account)")
    pwd.getpwnam(args.account)  # fail here, as root, with the name, rather than in the child
    view = runtime.view_for(args.view, args.repo, args.data_dir)
    group = cgroups.Group.create(cgroups.Quota(args.processes, args.memory_mb, args.cores),
                                 f"awd-hub-{args.account}-{os.urandom(4).hex()}")
    pid = os.fork()
    if pid == 0:  # the server: in the group first, so the mount setup and all it starts count
        try:
            group.join(os.getpid())
            runtime.apply_view(view, args.stage)
            drop_to(args.account)
            os.execvp(args.command[0], args.command)
        except BaseException as error:  # never return into the parent's code as the child
            print(f"deploy.hub.service_account: {error}", file=sys.stderr, flush=True)
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

"""The hub's Unix accounts, the nbgrader exchange and the instructor's course root, made idempotently (as root).

Kept apart from the hub's config and launcher so that it can later be merged with (or replaced by)
``deploy/course_setup.py``: nothing else in ``deploy/hub/`` creates users or directories outside the run folder.

The passwords are for a demo only: each account's password is its own name. A real class logs in with the
institution's accounts (PAM against LDAP/Kerberos, or an OAuthenticator) and never uses these.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

INSTRUCTOR = "awd-instructor"
STUDENTS = ("awd-alice", "awd-bob", "awd-carol")
USERS = (INSTRUCTOR, *STUDENTS)


def demo_password(user: str) -> str:
    """The demo password of a hub account (documented in docs/deploy.md): the account's own name."""
    return user


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: Path


def account(name: str) -> Account:
    entry = pwd.getpwnam(name)
    return Account(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PermissionError(f"{what} needs root (it creates Unix users and sets their passwords); run with sudo")


def ensure_users(users: tuple[str, ...] = USERS, set_passwords: bool = True) -> dict[str, Account]:
    """Creates the Unix users that do not exist yet (``useradd -m``) and sets their demo passwords.

    Homes are made 0700 whatever ``HOME_MODE`` says: a student must not read another's work, nor the
    instructor's course root (it holds the solutions and the gradebook).
    """
    _require_root("creating the hub's users")
    for name in users:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True, text=True)
    if set_passwords:
        lines = "".join(f"{name}:{demo_password(name)}\n" for name in users)
        subprocess.run(["chpasswd"], input=lines, check=True, capture_output=True, text=True)
    accounts = {name: account(name) for name in users}
    for acc in accounts.values():
        acc.home.mkdir(parents=True, exist_ok=True)
        os.chown(acc.home, acc.uid, acc.gid)
        os.chmod(acc.home, 0o700)
    return accounts


def ensure_exchange(root: Path) -> Path:
    """nbgrader's filesystem exchange: everybody may create entries (nbgrader requires ``ugo+rwx``), and the sticky
    bit keeps anybody from renaming or removing another's (``deploy.course_setup.make_exchange``): with 0777 a
    student could move ``exchange/<course>`` aside and put an ``outbound/`` of their own making in its place.

    nbgrader itself then makes ``<course>/outbound`` world-readable and ``<course>/inbound`` writable but not
    listable (0733) on the first ``release_assignment``, so students cannot see each other's submissions.
    """
    from deploy.course_setup import make_exchange

    return make_exchange(root)


def ensure_course_root(root: Path, owner: Account, exchange: Path) -> Path:
    """The instructor's nbgrader course (``autograder.course.make_course``), owned by the instructor.

    Its config is the course's own (course id, gradebook, the sandboxed grader's preprocessors) with the shared
    exchange instead of the course-local one, so ``release_assignment`` reaches the students, and the verdicts
    read from where ``python -m autograder grade --out grading`` (run in the course root) leaves them, as
    ``deploy/course_setup.py`` does: otherwise the formgrader's autograde would not find them and would grade
    every submission again, with the default grading config.
    """
    from autograder.course import make_course
    from deploy.course_setup import VERDICTS

    root = Path(root)
    make_course(root, extra_config=f"c.Exchange.root = {str(exchange)!r}\n"
                                   f"c.InjectVerdicts.verdicts_dir = {str(root.resolve() / VERDICTS)!r}\n")
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chown(dirpath, owner.uid, owner.gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), owner.uid, owner.gid)
    return root


def remove_tree(path: Path) -> None:
    """Removes a folder this module made (tests), ignoring one that is already gone."""
    shutil.rmtree(path, ignore_errors=True)

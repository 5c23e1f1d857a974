"""The hub's Unix accounts and groups, the nbgrader exchange and the instructor's course root (as root).

Who has an account comes from the course's one roster (``deploy/roster.py``), shared with
``deploy/course_setup.py``. The course sets no password: a class logs in with the passwords the institution
(or the instructor, with ``passwd``/``chpasswd``) gave the Unix accounts, through PAM. Only
``start.sh --demo`` sets demo passwords (each account's own name), for trying the hub on a machine nobody
else can reach. Accounts the hub creates get no login shell (``/usr/sbin/nologin``): they are for the hub,
not for ssh; PAM's ``login`` service does not look at the shell, so they still sign in to the hub.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deploy.course_setup import ensure_user

NOLOGIN = "/usr/sbin/nologin"


def demo_password(user: str) -> str:
    """The demo password of a hub account (``start.sh --demo`` only; docs/deploy.md): the account's own name."""
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
        raise PermissionError(f"{what} needs root (it creates Unix users and groups); run with sudo")


def ensure_users(users: Iterable[str]) -> dict[str, Account]:
    """Creates the Unix users that do not exist yet (``useradd -m -s /usr/sbin/nologin``, no password: the
    account cannot sign in until someone sets one). Existing accounts keep their shell and password.

    Homes are made 0700 whatever ``HOME_MODE`` says: a student must not read another's work, nor the
    instructor's course root (it holds the solutions and the gradebook).
    """
    _require_root("creating the hub's users")
    accounts = {name: account(ensure_user(name, shell=NOLOGIN).pw_name) for name in users}
    for acc in accounts.values():
        acc.home.mkdir(parents=True, exist_ok=True)
        os.chown(acc.home, acc.uid, acc.gid)
        os.chmod(acc.home, 0o700)
    return accounts


def set_demo_passwords(users: Iterable[str]) -> None:
    """Sets each account's password to its own name (``start.sh --demo``; never for a class)."""
    _require_root("setting passwords")
    lines = "".join(f"{name}:{demo_password(name)}\n" for name in users)
    subprocess.run(["chpasswd"], input=lines, check=True, capture_output=True, text=True)


def ensure_staff_group(group: str, members: Iterable[str]) -> str:
    """The Unix group that may enter the course's closed folders (``solutions/``, ``autograder/``), with
    ``members`` in it. Members already in it stay; nobody is removed (that is the administrator's call)."""
    _require_root("creating the staff group")
    subprocess.run(["groupadd", "-f", group], check=True, capture_output=True, text=True)
    for user in members:
        subprocess.run(["gpasswd", "-a", user, group], check=True, capture_output=True, text=True)
    return group


def reachable_by(user: str, paths: Iterable[Path]) -> list[Path]:
    """Which of ``paths`` ``user`` can read or enter, asked of the kernel by a process of that user (its
    groups included), wherever the user's processes run: the hub's servers, but also cron, at or ssh."""
    paths = [str(p) for p in paths]
    script = 'for p; do if test -r "$p" || test -x "$p"; then printf "%s\\n" "$p"; fi; done'
    result = subprocess.run(["runuser", "-u", user, "--", "sh", "-c", script, "sh", *paths],
                            check=True, capture_output=True, text=True, cwd="/")
    return [Path(line) for line in result.stdout.splitlines()]


def ensure_exchange(root: Path) -> Path:
    """nbgrader's filesystem exchange: everybody may create entries (nbgrader requires ``ugo+rwx``), and the sticky
    bit keeps anybody from renaming or removing another's (``deploy.course_setup.make_exchange``): with 0777 a
    student could move ``exchange/<course>`` aside and put an ``outbound/`` of their own making in its place.

    nbgrader itself then makes ``<course>/outbound`` world-readable and ``<course>/inbound`` writable but not
    listable (0733) on the first ``release_assignment``, so students cannot see each other's submissions.
    """
    from deploy.course_setup import make_exchange

    return make_exchange(root)


def ensure_course_root(root: Path, owner: Account, exchange: Path, due: dict[str, str] | None = None,
                       ngshare_url: str | None = None) -> Path:
    """The nbgrader course (``autograder.course.make_course``), owned by ``owner`` (the course account on the hub).

    Its config is the course's own (course id, gradebook, the sandboxed grader's preprocessors) with the shared
    exchange instead of the course-local one, so ``release_assignment`` reaches the students, and the verdicts
    read from where ``python -m autograder grade --out grading`` (run in the course root) leaves them, as
    ``deploy/course_setup.py`` does: otherwise the formgrader's autograde would not find them and would grade
    every submission again, with the default grading config.

    ``source/`` is copied from ``solutions/`` only when the course has none yet: from then on it is the
    instructor's. ``due`` (the roster's due dates) goes into the gradebook (``set_due_dates``).

    With ``ngshare_url`` the course's own config names ngshare's exchange classes too, as ``course_setup`` does:
    the course config is read after the role's, and its filesystem ``TrustedCollect`` would otherwise replace
    ngshare's collect, which then finds no submission.
    """
    from autograder.course import make_course
    from autograder.nbgrader_plugins import set_due_dates
    from deploy.course_setup import VERDICTS, exchange_service_config

    root = Path(root)
    # keep_source: this runs on every hub start, and source/ is the instructor's own from the first one on
    make_course(root, keep_source=True, extra_config=f"c.Exchange.root = {str(exchange)!r}\n"
                                   f"c.InjectVerdicts.verdicts_dir = {str(root.resolve() / VERDICTS)!r}\n"
                                   + exchange_service_config(ngshare_url))
    if due:
        set_due_dates(root, due)  # before the chown below: the gradebook may be created here
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chown(dirpath, owner.uid, owner.gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), owner.uid, owner.gid)
    return root


def remove_tree(path: Path) -> None:
    """Removes a folder this module made (tests), ignoring one that is already gone."""
    shutil.rmtree(path, ignore_errors=True)

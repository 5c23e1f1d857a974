"""Sets up the course on one machine for nbgrader's filesystem exchange, as root. Run it again at any time.

``python deploy/course_setup.py`` (options: ``--help``) does, for the roster in ``deploy/roster.toml``:

* a local Unix user per person of the roster (instructors, graders, students; ``useradd -m``, with a login shell:
  they run nbgrader from it; existing users are kept as they are), whose home only they may enter;
* the exchange directory (``Exchange.root``) writable by everyone, as nbgrader's docs ask (``chmod ugo+rw``),
  plus the sticky bit so nobody can delete or rename another user's entries at its top. nbgrader makes the rest
  itself: ``<course>/outbound`` readable by all, ``<course>/inbound`` write-and-enter only (students cannot
  list it, so they cannot find each other's submissions), ``<course>/feedback`` enter only;
* a runtime everybody can read (``--runtime``): a virtualenv of this project's packages on this same Python
  (copied there when other users cannot reach it), ``hw4lib`` and the prepared data. It exists because the
  project's own ``.venv`` is often unusable by other users: the repository (which holds ``solutions/``) must not
  be reachable by students, and the interpreter the venv was made from may live under ``/root`` (pyenv), which
  only root can enter;
* the instructor's copy of the grader (``--code``: ``autograder/``, ``hw4lib/``, ``solutions/``; mode 0700) and
  course root (``--course``, made by ``autograder.course.make_course``; mode 0700: it holds ``source/`` and
  ``gradebook.db``), both owned by the instructor;
* each user's ``~/.jupyter/nbgrader_config.py`` (course id, ``Exchange.root``), and the course root's
  ``nbgrader_site_config.py`` (the exchange, and where ``python -m autograder grade`` leaves its verdicts).

Everything it makes for a person is owned by that person. It also says whether the grader's bubblewrap sandbox
works when the instructor (not root) runs it: it needs unprivileged user namespaces.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: python deploy/course_setup.py
    sys.path.insert(0, str(REPO_ROOT))

from autograder import course  # noqa: E402
from deploy import roster as roster_file  # noqa: E402

SITE_CONFIG = course.SITE_CONFIG
VERDICTS = Path("grading") / "course" / "verdicts"  # in the course root: python -m autograder grade --out grading
# The roster is shared with deploy/hub/ (deploy/roster.py): one list of who is in the course.
ROSTER, Roster = roster_file.ROSTER, roster_file.Roster


def load_roster(path: Path = ROSTER, members_csv: Path | None = None, **paths: Path | None) -> Roster:
    """The roster file (plus an LMS's CSV class list), with any of its paths replaced (``deploy/roster.py``)."""
    return roster_file.load(path, members_csv, **paths)


def ensure_user(name: str, shell: str = "/bin/bash") -> pwd.struct_passwd:
    """The user ``name``, created with a home directory and ``shell`` if it does not exist yet (an existing
    account is left as it is: its shell and password are the institution's)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if shutil.which("useradd") is None:
            raise RuntimeError("useradd is not installed (Debian: apt-get install -y passwd)") from None
        subprocess.run(["useradd", "-m", "-s", shell, name], check=True, capture_output=True, text=True)
        return pwd.getpwnam(name)


def make_exchange(root: Path) -> Path:
    """nbgrader's exchange root: everybody may create entries (nbgrader's requirement), nobody may remove others'."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o1777)
    for parent in root.parents:  # every user must be able to reach it
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise RuntimeError(f"{parent} is not searchable by other users, so the exchange {root} is unreachable")
    return root


def reachable_by_others(path: Path) -> bool:
    """Whether a user who is neither the owner nor in the group can reach and read ``path``."""
    path = Path(path).resolve()
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def shared_interpreter(dest: Path) -> Path:
    """This Python's interpreter, runnable by every user: itself when others can reach it, else a copy of its
    installation in ``dest`` (hard links). Another build of the same version will not do: the installed packages
    were resolved against this one (soupsieve's patterns fail on Python 3.11.2's ``re``, for one).

    A copied pyenv Python still looks for ``libpython`` where it was built (its RUNPATH, e.g. under ``/root``),
    so users of such a copy need ``LD_LIBRARY_PATH`` (``user_env`` sets it; the grader's sandbox passes it on).
    """
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if reachable_by_others(base) and reachable_by_others(Path(sys.base_prefix)):
        return base
    prefix = Path(sys.base_prefix).resolve()
    link_tree(prefix, dest)
    return dest / base.relative_to(prefix)


def link_tree(src: Path, dest: Path, skip: tuple[str, ...] = ()) -> None:
    """``dest`` holds ``src``'s files, world-readable: hard links where the file already is (no copy of a
    gigabyte of torch), copies where it is not or where a link is impossible (another filesystem).

    Compiled bytecode comes along: other users cannot write it into a root-owned runtime, and without it every
    ``import torch`` would compile thousands of modules again (seconds per process).
    """
    src, dest = Path(src), Path(dest)
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not d.startswith(skip)]
        rel = Path(dirpath).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(dest / rel, 0o755)
        for name in filenames:
            if name.startswith(skip):
                continue
            s, d = Path(dirpath) / name, dest / rel / name
            if s.is_symlink():
                d.symlink_to(os.readlink(s))
                continue
            mode = s.stat().st_mode
            try:
                if not mode & stat.S_IROTH:
                    raise PermissionError  # a link would share the private mode
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)
                os.chmod(d, (mode | 0o444 | (0o111 if mode & 0o100 else 0)) & 0o755)


def make_runtime(dest: Path, data_dir: Path) -> Path:
    """The world-readable runtime: ``venv/`` (this environment's packages), ``hw4lib/`` and ``data/``.

    Rebuilt from scratch each time, so it always matches the repository it was made from.
    """
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    os.chmod(dest, 0o755)
    venv = dest / "venv"
    python = shared_interpreter(dest / "python")
    env = {**os.environ, **runtime_env(dest)}
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    # Only what this function writes itself is chmodded: a chmod of a hard link would change the original too.
    subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
    rel_site = Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)
    # The editable install of this project points into the repository; the runtime's hw4lib replaces it.
    link_tree(Path(sys.prefix) / rel_site, venv / rel_site, skip=("__editable__",))
    for extra in ("share", "etc"):  # nbconvert's templates (feedback HTML), Jupyter's config of the packages
        if (Path(sys.prefix) / extra).is_dir():
            link_tree(Path(sys.prefix) / extra, venv / extra)
    old_python = str(Path(sys.prefix) / "bin" / "python")
    for script in sorted((Path(sys.prefix) / "bin").iterdir()):
        target = venv / "bin" / script.name
        if target.exists() or script.is_symlink() or not script.is_file():
            continue
        head = script.read_bytes()[:200]
        if head.startswith(f"#!{old_python}".encode()):  # console scripts (nbgrader shells out to alembic)
            text = script.read_text().split("\n", 1)
            target.write_text(f"#!{venv / 'bin' / 'python'}\n{text[1] if len(text) > 1 else ''}")
            os.chmod(target, 0o755)
    shutil.copytree(REPO_ROOT / "hw4lib", dest / "hw4lib", ignore=shutil.ignore_patterns("__pycache__"))
    link_tree(Path(data_dir), dest / "data")
    subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(dest / "hw4lib")], check=True,
                   env=env)
    subprocess.run(["chmod", "-R", "a+rX", str(dest / "hw4lib")], check=True)
    return dest


def chown_tree(path: Path, user: str) -> None:
    subprocess.run(["chown", "-R", f"{user}:", str(path)], check=True)


def make_instructor_code(dest: Path, instructor: str) -> Path:
    """The instructor's private copy of what grading needs: the grader, hw4lib and the reference solutions."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "course")  # autograder/course/: a local course root
    for name in ("autograder", "hw4lib", "solutions"):
        shutil.copytree(REPO_ROOT / name, dest / name, ignore=ignore)
    chown_tree(dest, instructor)
    os.chmod(dest, 0o700)
    return dest


def exchange_service_config(ngshare_url: str | None) -> str:
    """The nbgrader config lines that replace the exchange directory by the ngshare service (none without one)."""
    if ngshare_url is None:
        return ""
    from deploy.hub import ngshare

    return ngshare.nbgrader_config(ngshare_url)


def make_instructor_course(roster: Roster, ngshare_url: str | None = None) -> Path:
    """The course root (config, ``source/hw4`` the first time only, the roster's due dates in the gradebook),
    owned by the instructor and closed to everybody else."""
    root = course.make_course(roster.course, keep_source=True)  # the instructor's edits of source/ survive a rerun
    (root / SITE_CONFIG).write_text(
        "# Written by deploy/course_setup.py: this machine's exchange and where the grader leaves its verdicts.\n"
        "c = get_config()  # noqa: F821\n"
        f"c.Exchange.root = {str(roster.exchange)!r}\n"
        f"c.InjectVerdicts.verdicts_dir = {str(root / VERDICTS)!r}\n"
        + exchange_service_config(ngshare_url)
    )
    if roster.due:
        from autograder.nbgrader_plugins import set_due_dates

        set_due_dates(root, roster.due)  # before the chown: the gradebook may be created here
    chown_tree(root, roster.instructor)
    os.chmod(root, 0o700)
    return root


def write_user_config(user: str, course_id: str, exchange: Path, ngshare_url: str | None = None) -> Path:
    """``~/.jupyter/nbgrader_config.py`` of ``user``: which course, where its exchange is (the directory, or the
    ngshare service when ``ngshare_url`` is given), how to validate."""
    entry = pwd.getpwnam(user)
    jupyter = Path(entry.pw_dir) / ".jupyter"
    jupyter.mkdir(exist_ok=True)
    path = jupyter / "nbgrader_config.py"
    path.write_text(course.STUDENT_CONFIG.format(course_id=course_id, exchange=str(exchange))
                    + exchange_service_config(ngshare_url))
    for p in (jupyter, path):
        os.chown(p, entry.pw_uid, entry.pw_gid)
    return path


def runtime_env(runtime: Path) -> dict[str, str]:
    """What processes of the runtime's Python need in their environment (see ``shared_interpreter``)."""
    lib = Path(runtime) / "python" / "lib"
    return {"LD_LIBRARY_PATH": str(lib)} if lib.is_dir() else {}


def user_env(roster: Roster, user: str) -> dict[str, str]:
    """The environment a user's nbgrader and Python run with: the shared runtime; the instructor's own code."""
    home = pwd.getpwnam(user).pw_dir
    code = roster.code if user == roster.instructor else roster.runtime
    return {"HOME": home, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
            "PATH": f"{roster.runtime / 'venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(code), "HW4_DATA_DIR": str(roster.runtime / "data"), **runtime_env(roster.runtime)}


def run_as(user: str, argv: list[str], env: dict[str, str], cwd: Path,
           check: bool = True) -> subprocess.CompletedProcess:
    """``argv`` as ``user`` (runuser), with exactly ``env``."""
    cmd = ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"as {user}: {' '.join(argv)} failed ({result.returncode}):\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def sandbox_works_as(user: str) -> tuple[bool, str]:
    """Whether bubblewrap can make the grader's namespaces when ``user`` (not root) runs it, and why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, "bubblewrap is not installed"
    # the grader's namespaces and mount flags (autograder/sandbox.py), over a read-only view of this machine
    result = subprocess.run(
        ["runuser", "-u", user, "--", bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--uid",
         "65534", "--gid", "65534", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--size",
         str(2**20), "--tmpfs", "/tmp", "--remount-ro", "/", "true"],
        cwd="/", capture_output=True, text=True)
    if result.returncode == 0:
        return True, "unprivileged user namespaces work"
    knobs = []
    for knob in ("/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/user/max_user_namespaces",
                 "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
        if Path(knob).exists():
            knobs.append(f"{knob} = {Path(knob).read_text().strip()}")
    return False, f"bwrap as {user}: {result.stderr.strip()} ({'; '.join(knobs)})"


def setup(roster: Roster, data_dir: Path | None = None, log=print, ngshare_url: str | None = None) -> Roster:
    """Everything above, in order. Idempotent: users and the instructor's ``source/`` and gradebook are kept,
    the rest is rewritten.

    With ``ngshare_url`` nbgrader uses that exchange service (``deploy/hub/ngshare.py``; the course on it is made
    by ``ngshare.create_course`` with the instructor's hub token) and the exchange directory stays unused.
    """
    if os.geteuid() != 0:
        raise RuntimeError("course_setup must run as root (it creates users and chowns their files)")
    from hw4lib import data

    for user in roster.users:
        # Homes closed to others: a student's fetched notebooks and nbgrader cache live there.
        os.chmod(ensure_user(user).pw_dir, 0o700)
    make_exchange(roster.exchange)
    make_runtime(roster.runtime, Path(data_dir) if data_dir else data.data_dir())
    make_instructor_code(roster.code, roster.instructor)
    make_instructor_course(roster, ngshare_url)
    for user in roster.users:
        write_user_config(user, roster.course_id, roster.exchange, ngshare_url)
    works, why = sandbox_works_as(roster.instructor)
    log(f"exchange {roster.exchange}; course root {roster.course}; runtime {roster.runtime}")
    log(f"grader sandbox as {roster.instructor}: {'yes' if works else 'NO'} ({why})"
        + ("" if works else "; grade as root: see docs/deploy.md"))
    return roster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--roster", type=Path, default=ROSTER)
    parser.add_argument("--members", type=Path, default=None,
                        help="a CSV class list (columns username,role) added to the roster's people")
    for name in ("exchange", "course", "runtime", "code"):
        parser.add_argument(f"--{name}", type=Path, default=None, help=f"replaces the roster's {name} path")
    parser.add_argument("--ngshare-url", default=None,
                        help="use the ngshare exchange service at this URL (e.g. http://HUB/services/ngshare)")
    parser.add_argument("--data", type=Path, default=None, help="prepared data (default: HW4_DATA_DIR or data/)")
    args = parser.parse_args(argv)
    roster = load_roster(args.roster, args.members, exchange=args.exchange, course=args.course, runtime=args.runtime,
                         code=args.code)
    setup(roster, args.data, ngshare_url=args.ngshare_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

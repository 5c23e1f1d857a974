"""What a single-user server may see of the clone and of the Python that runs it.

Two problems, one mechanism:

1. The servers run as the students' Unix users, but the interpreter, the venv, ``hw4lib`` and the data may
   live where those users cannot go: CI clones under ``/root`` (mode 0700), and pyenv's Python lives in
   ``/root/.pyenv``. Making ``/root`` traversable would expose every world-readable file in it.
2. When the clone *is* world-readable, a student's kernel could read ``solutions/`` and ``autograder/``.

So each server starts in its own mount namespace (set up as root in the spawner's ``preexec_fn``, before
JupyterHub drops to the user's uid): every directory the user must not see into is covered by an empty tmpfs,
and the paths that server needs are bound back, read-only, at their own paths (the venv's absolute paths, its
``pyvenv.cfg`` and the editable install keep working). Students get ``hw4lib/`` and the data from the clone,
the instructor the whole clone (the course config imports ``autograder``). The process keeps its PID (no
wrapper process), so JupyterHub's signals reach the server itself. Nothing is mounted on the host.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.unshare.argtypes = [ctypes.c_int]
    return libc


def hidden_ancestor(path: Path) -> Path | None:
    """The outermost directory on the way to ``path`` that other users cannot traverse (no ``o+x``)."""
    current = Path("/")
    for part in Path(path).resolve().parts[1:]:
        current = current / part
        if current.is_dir() and not os.stat(current).st_mode & stat.S_IXOTH:
            return current
        if not current.is_dir():
            break
    return None


@dataclass(frozen=True)
class View:
    """Directories covered by an empty tmpfs, and the paths bound back read-only inside them."""

    hide: tuple[Path, ...]
    expose: tuple[Path, ...]

    def plan(self) -> list[tuple[Path, list[Path]]]:
        """For each outermost hidden directory, the exposed paths under it (the rest need no bind)."""
        hide = sorted({p.resolve() for p in self.hide}, key=lambda p: (len(p.parts), str(p)))
        outer: list[Path] = []
        for path in hide:
            if not any(path.is_relative_to(o) for o in outer):
                outer.append(path)
        expose = sorted({p.resolve() for p in self.expose}, key=lambda p: (len(p.parts), str(p)))
        return [(h, [e for e in expose if e.is_relative_to(h) and e != h]) for h in outer]


def runtime_paths(repo: Path, data_dir: Path) -> dict[str, Path]:
    """The paths a server needs: the base interpreter, the venv, the library, the clone, the data."""
    return {
        "base_prefix": Path(sys.base_prefix).resolve(),
        "prefix": Path(sys.prefix).resolve(),
        "hw4lib": (repo / "hw4lib").resolve(),
        "repo": repo.resolve(),
        "data": Path(data_dir).resolve(),
    }


def view_for(role: str, repo: Path, data_dir: Path) -> View:
    """The student's view hides the clone but ``hw4lib/`` (and the venv/data if inside); the instructor's not."""
    paths = runtime_paths(repo, data_dir)
    if role == "student":
        expose = [paths["base_prefix"], paths["prefix"], paths["hw4lib"], paths["data"]]
        hide = [paths["repo"]]
    elif role == "instructor":
        expose = [paths["base_prefix"], paths["prefix"], paths["repo"], paths["data"]]
        hide = []
    else:
        raise ValueError(f"unknown role {role!r}: expected 'student' or 'instructor'")
    hide += [a for a in (hidden_ancestor(p) for p in expose) if a is not None]
    return View(tuple(hide), tuple(expose))


def _check(result: int, libc: ctypes.CDLL, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(libc: ctypes.CDLL, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), libc, f"mount {source} on {target}")


def apply_view(view: View, stage: Path, libc: ctypes.CDLL | None = None) -> None:
    """Enters a new mount namespace and lays out ``view`` in it. Runs as root, in the child, before exec.

    Each hidden directory is rebuilt on ``stage`` (a root-only empty directory) while the real paths are still
    reachable, then moved over the directory it replaces.
    """
    libc = libc or _libc()
    _check(libc.unshare(CLONE_NEWNS), libc, "unshare(CLONE_NEWNS)")
    # Private: nothing mounted here propagates back to the host (or to other users' servers).
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    for hidden, exposed in view.plan():
        _mount(libc, "tmpfs", str(stage), "tmpfs", MS_NOSUID, "mode=0755,size=1m")
        for path in exposed:
            target = stage / path.relative_to(hidden)
            target.mkdir(parents=True, exist_ok=True)
            _mount(libc, str(path), str(target), None, MS_BIND | MS_REC)
            _mount(libc, None, str(target), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        _mount(libc, str(stage), str(hidden), None, MS_MOVE)


def preexec_with_view(view: View, stage: Path, then: Callable[[], None]) -> Callable[[], None]:
    """A ``preexec_fn`` that lays out ``view`` (as root), then runs ``then`` (JupyterHub's setuid step)."""
    libc = _libc()  # loaded before the fork: the child should not dlopen

    def preexec() -> None:
        apply_view(view, stage, libc)
        then()

    return preexec


def describe(view: View) -> Iterable[str]:
    """One line per hidden folder, for the start script's log."""
    for hidden, exposed in view.plan():
        yield f"{hidden} hidden; read-only inside: {', '.join(map(str, exposed)) or 'nothing'}"

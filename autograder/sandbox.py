"""Runs untrusted code in a bubblewrap sandbox with resource limits.

Student code must not read the hidden checks, the solutions, the gradebook or other students' files, must not
reach the network, and must not outlive or outgrow its budget. Debian's ``bwrap`` gives that without a
home-made jail: a fresh mount namespace holding only the system's read-only runtime (``/usr``, the Python
prefix and its venv) plus the folders the caller binds; new user (uid ``nobody``), PID, network, IPC and UTS
namespaces; and ``--die-with-parent`` so a killed grader takes the sandbox with it. The rlimits (CPU seconds,
address space, file size, no core dumps) are set by ``prlimit`` before ``bwrap`` executes and are inherited.
The wall clock is enforced by the caller's ``watchdog``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 150
    memory_mb: int = 4096
    file_mb: int = 16
    threads: int = 1

    @classmethod
    def from_config(cls, limits: dict) -> Limits:
        return cls(int(limits["cpu_s"]), int(limits["memory_mb"]), int(limits["file_mb"]), int(limits["threads"]))


@dataclass
class Outcome:
    """How the sandboxed process ended: its exit code (-N for signal N), or why the watchdog killed it."""

    returncode: int | None
    killed: str | None  # why the watchdog killed it, if it did
    seconds: float


def _system_binds() -> list[str]:
    """Read-only binds for the interpreter: system libraries, the Python prefix and the venv, nothing else."""
    paths = ["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/alternatives"]
    paths += [sys.base_prefix, sys.prefix, str(Path(sys.executable).resolve().parent.parent)]
    args, seen = [], set()
    for path in paths:
        real = os.path.realpath(path)
        if real in seen or not os.path.exists(real):
            continue
        seen.add(real)
        args += ["--ro-bind", real, real]
        if path != real and os.path.islink(path):
            args += ["--symlink", real, path]
    return args


def bwrap_command(argv: list[str], ro: dict[str, Path], rw: dict[str, Path], env: dict[str, str]) -> list[str]:
    """The bwrap command line: ``ro``/``rw`` map sandbox paths to host folders."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError("bubblewrap is not installed: apt-get install -y bubblewrap")
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
           "--die-with-parent", "--new-session", "--clearenv", "--proc", "/proc", "--dev", "/dev",
           "--tmpfs", "/tmp", *_system_binds()]
    for inside, host in ro.items():
        cmd += ["--ro-bind", str(host), inside]
    for inside, host in rw.items():
        cmd += ["--bind", str(host), inside]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return [*cmd, "--chdir", "/tmp", *argv]


def prlimit_prefix(limits: Limits) -> list[str]:
    """util-linux ``prlimit`` sets the rlimits in the child before it execs ``bwrap`` (inherited by the probe).

    A ``preexec_fn`` would do the same, but forking with one in a threaded grader can deadlock.
    """
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise RuntimeError("prlimit (util-linux) is not installed")
    mb = 1024 * 1024
    return [prlimit, f"--cpu={limits.cpu_s}:{limits.cpu_s + 5}", f"--as={limits.memory_mb * mb}",
            f"--fsize={limits.file_mb * mb}", "--core=0", "--"]


def run(argv: list[str], *, ro: dict[str, Path], rw: dict[str, Path], limits: Limits, log: Path,
        watchdog: Callable[[float], str | None], pass_fds: tuple[int, ...] = (),
        env: dict[str, str] | None = None) -> Outcome:
    """Runs ``argv`` in the sandbox; ``watchdog(elapsed)`` returns a reason to kill it, polled every 50 ms.

    stdout and stderr go to ``log`` (capped by the file-size limit: a flood ends the process, not the disk).
    """
    threads = str(limits.threads)
    full_env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
                "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONHASHSEED": "0", **(env or {})}
    if "LD_LIBRARY_PATH" in os.environ:  # the interpreter's own libpython (a copied Python: deploy/course_setup.py)
        full_env.setdefault("LD_LIBRARY_PATH", os.environ["LD_LIBRARY_PATH"])
    cmd = bwrap_command(argv, ro, rw, full_env)
    start = time.monotonic()
    killed = None
    with open(log, "wb") as out:
        proc = subprocess.Popen([*prlimit_prefix(limits), *cmd], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=pass_fds)
        for fd in pass_fds:
            os.close(fd)  # the child holds the write end; the reader must see EOF when it exits
        while proc.poll() is None:
            reason = watchdog(time.monotonic() - start)
            if reason:
                killed = reason
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
                break
            time.sleep(0.05)
    code = proc.returncode
    if code is not None and code > 128 and code - 128 in signal.valid_signals():
        code = -(code - 128)  # bwrap reports its child's death by signal N as exit status 128 + N
    return Outcome(code, killed, time.monotonic() - start)

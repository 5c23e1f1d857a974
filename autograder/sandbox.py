"""Runs untrusted code in a bubblewrap sandbox with resource limits.

Student code must not read the hidden checks, the solutions, the gradebook or other students' files, must not
reach the network, and must not outlive or outgrow its budget. Debian's ``bwrap`` gives that without a
home-made jail: a fresh mount namespace holding only the system's read-only runtime (``/usr``, the Python
prefix and its venv) plus the folders the caller binds; new user (uid ``nobody``), PID, network, IPC and UTS
namespaces, with no further user namespaces inside (``--disable-userns``); a private ``/tmp`` of bounded size;
and ``--die-with-parent`` so a killed grader takes the sandbox with it. The rlimits (CPU seconds, address space,
file size, no core dumps) are set by ``prlimit`` before ``bwrap`` executes and are inherited by every process.
What rlimits cannot bound for the submission as a whole (processes, the memory of all of them and of ``/tmp``,
the cores its threads use) a control group per run bounds (``autograder.cgroups``), where the machine allows one.
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

from autograder import cgroups


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 150
    memory_mb: int = 4096  # each process's address space, and (with a control group) all processes together
    file_mb: int = 16
    threads: int = 1  # the threads the probe asks for, and (with a control group) the cores the submission gets
    processes: int = 64  # processes and threads of the whole submission (control group only)
    tmp_mb: int = 64  # the private /tmp

    @classmethod
    def from_config(cls, limits: dict) -> Limits:
        return cls(int(limits["cpu_s"]), int(limits["memory_mb"]), int(limits["file_mb"]), int(limits["threads"]),
                   int(limits.get("processes", cls.processes)), int(limits.get("tmp_mb", cls.tmp_mb)))


@dataclass
class Outcome:
    """How the sandboxed process ended: its exit code (-N for signal N), or why the watchdog killed it."""

    returncode: int | None
    killed: str | None  # why the watchdog killed it, if it did
    seconds: float
    limit_hit: str | None = None  # "memory" or "processes": the control group's quota it ran into


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


def bwrap_command(argv: list[str], ro: dict[str, Path], rw: dict[str, Path], env: dict[str, str],
                  tmp_mb: int = Limits.tmp_mb) -> list[str]:
    """The bwrap command line: ``ro``/``rw`` map sandbox paths to host folders."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError("bubblewrap is not installed: apt-get install -y bubblewrap")
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--uid", "65534", "--gid", "65534",
           "--die-with-parent", "--new-session", "--clearenv", "--proc", "/proc", "--dev", "/dev",
           "--size", str(tmp_mb * 2**20), "--tmpfs", "/tmp", *_system_binds()]
    for inside, host in ro.items():
        cmd += ["--ro-bind", str(host), inside]
    for inside, host in rw.items():
        cmd += ["--bind", str(host), inside]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    # bwrap's own root and /dev are tmpfs mounts without a size: read-only, so /tmp is the one place to write
    return [*cmd, "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp", *argv]


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


_GROUPS: tuple[bool, str] | None = None


def control_groups() -> tuple[bool, str]:
    """(whether each run gets a control group here, how or why not); probed once per process."""
    global _GROUPS
    if _GROUPS is None:
        _GROUPS = cgroups.available()
    return _GROUPS


def run(argv: list[str], *, ro: dict[str, Path], rw: dict[str, Path] | None = None, limits: Limits, log: Path,
        watchdog: Callable[[float], str | None], pass_fds: tuple[int, ...] = (),
        env: dict[str, str] | None = None) -> Outcome:
    """Runs ``argv`` in the sandbox; ``watchdog(elapsed)`` returns a reason to kill it, polled every 50 ms.

    stdout and stderr go to ``log`` (capped by the file-size limit: a flood ends the process, not the disk).
    ``pass_fds`` are inherited by the sandboxed process (and closed here once it has them).
    """
    threads = str(limits.threads)
    full_env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
                "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONHASHSEED": "0", **(env or {})}
    if "LD_LIBRARY_PATH" in os.environ:  # the interpreter's own libpython (a copied Python: deploy/course_setup.py)
        full_env.setdefault("LD_LIBRARY_PATH", os.environ["LD_LIBRARY_PATH"])
    cmd = bwrap_command(argv, ro, rw or {}, full_env, limits.tmp_mb)
    group = None
    if control_groups()[0]:
        group = cgroups.Group.create(cgroups.Quota(limits.processes, limits.memory_mb, float(limits.threads)))
    start = time.monotonic()
    killed, limit_hit = None, None
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen([*(group.join_prefix() if group else []), *prlimit_prefix(limits), *cmd],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, pass_fds=pass_fds)
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
    finally:
        if group is not None:
            limit_hit = group.limit_hit()
            group.close()
    code = proc.returncode
    if code is not None and code > 128 and code - 128 in signal.valid_signals():
        code = -(code - 128)  # bwrap reports its child's death by signal N as exit status 128 + N
    return Outcome(code, killed, time.monotonic() - start, limit_hit)


def doctor() -> list[tuple[str, bool, str]]:
    """What this machine enforces for each submission: (what, enforced, how or why not), for
    ``python -m autograder doctor`` and the first lines of ``grade``."""
    rows = []
    bwrap = shutil.which("bwrap")
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip() if bwrap else ""
    try:
        outcome = run(["/bin/true"], ro={}, limits=Limits(cpu_s=5, memory_mb=256, file_mb=1), log=Path(os.devnull),
                      watchdog=lambda elapsed: "timed out" if elapsed > 20 else None)
        works, why = outcome.returncode == 0, f"exit status {outcome.returncode}"
    except (OSError, RuntimeError) as err:
        works, why = False, str(err)
    rows.append(("sandbox (bubblewrap: no network, no other files, no nested user namespaces, read-only but a "
                 "private /tmp of bounded size)", works, version if works else why))
    rows.append(("CPU seconds, address space and file size per process (prlimit)", shutil.which("prlimit") is not None,
                 "util-linux prlimit" if shutil.which("prlimit") else "prlimit is not installed"))
    groups, how = control_groups()
    rows.append(("processes, memory of all processes and /tmp together, and cores per submission (control group)",
                 groups, how if groups else f"{how}: a fork bomb, a memory hog or a thread hog can slow the "
                 "submissions graded beside it (run the grader as root, or delegate a cgroup v2 subtree to its user)"))
    return rows

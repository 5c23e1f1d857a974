"""Limits for a whole submission, not per process: one control group per sandbox run.

rlimits bound each process of a sandbox on its own; they cannot bound the number of processes (``RLIMIT_NPROC``
does not apply to root, under whose uid the sandbox's user namespace runs), the memory of several processes and of
the sandbox's ``/tmp`` together, or the cores a student's threads take from the submission graded beside it. A
control group does: ``pids.max`` (fork bombs, thread floods), ``memory.limit_in_bytes`` / ``memory.max`` (every
process and every tmpfs page they write), and a CFS quota of ``cores`` CPUs (however many threads the student starts).

Both cgroup layouts are handled: v1 (one hierarchy per controller, as on this project's machines) and v2 (the unified
hierarchy of current systemd distributions, where the grader's own cgroup must be delegated to the user running it).
Where neither can be written (no root, no delegation), ``available()`` says why, and the grader runs with rlimits only
(``python -m autograder doctor`` reports it).
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("pids", "memory", "cpu")
# Accounting only (no limit): where v1 mounts cpuacct apart from cpu, a group gets a directory there too, so that
# its CPU time can be read (``cpu_usage_ns``); v2's cpu.stat has it.
ACCOUNTING = "cpuacct"
PERIOD_US = 100_000
_counter = itertools.count()


@dataclass(frozen=True)
class Quota:
    processes: int
    memory_mb: int
    cores: float


def _own_path(controller: str) -> str | None:
    """This process's cgroup path for ``controller`` (v1), or for the unified hierarchy (``controller=''``)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if (controller == "" and names == "") or controller in names.split(","):
            return path
    return None


def _v2_parent() -> Path | None:
    if not (ROOT / "cgroup.controllers").is_file():
        return None
    own = _own_path("")
    return None if own is None else ROOT / own.lstrip("/")


def _v1_parents() -> dict[str, Path] | None:
    parents = {}
    for controller in CONTROLLERS:
        mount = ROOT / controller
        own = _own_path(controller)
        if not (mount / "cgroup.procs").is_file() or own is None:
            return None
        parents[controller] = mount / own.lstrip("/")
    return parents


def available() -> tuple[bool, str]:
    """(whether per-submission groups can be made here, how or why not)."""
    try:
        group = Group.create(Quota(8, 64, 1.0))
    except OSError as err:
        return False, f"cannot create a control group ({err.strerror}: {err.filename})"
    except RuntimeError as err:
        return False, str(err)
    kind = group.kind
    group.close()
    return True, f"cgroup {kind}: processes, memory and cores per submission"


class Group:
    """One control group (in each controller's hierarchy on v1) with a quota; ``procs_files`` are the files a
    process writes its pid to in order to join (``join_prefix`` does it before exec'ing the sandbox)."""

    def __init__(self, kind: str, dirs: list[Path]) -> None:
        self.kind, self.dirs = kind, dirs

    @classmethod
    def create(cls, quota: Quota, name: str | None = None) -> Group:
        """A new group with ``quota``, under this process's own group; ``name`` defaults to a unique one."""
        name = name or f"hw4-grader-{os.getpid()}-{next(_counter)}"
        parent = _v2_parent()
        if parent is not None:
            return cls._create_v2(parent / name, quota)
        parents = _v1_parents()
        if parents is None:
            raise RuntimeError("no writable cgroup v1 controllers (pids, memory, cpu) or cgroup v2 hierarchy")
        dirs = []
        try:
            for base in parents.values():
                path = base / name
                path.mkdir()
                dirs.append(path)
            group = cls("v1", dirs)
            pids, memory, cpu = (parents[c] / name for c in CONTROLLERS)
            (pids / "pids.max").write_text(str(quota.processes))
            (memory / "memory.limit_in_bytes").write_text(str(quota.memory_mb * 2**20))
            if (memory / "memory.memsw.limit_in_bytes").exists():  # no swapping out of the limit either
                (memory / "memory.memsw.limit_in_bytes").write_text(str(quota.memory_mb * 2**20))
            (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(int(quota.cores * PERIOD_US)))
            own = _own_path(ACCOUNTING)
            if own is not None and (ROOT / ACCOUNTING / "cgroup.procs").is_file():
                account = ROOT / ACCOUNTING / own.lstrip("/") / name
                if account.resolve() not in {d.resolve() for d in dirs}:  # not co-mounted with cpu
                    account.mkdir()
                    dirs.append(account)
            return group
        except OSError:
            cls("v1", dirs).close()
            raise

    @classmethod
    def _create_v2(cls, path: Path, quota: Quota) -> Group:
        parent = path.parent
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        missing = [c for c in CONTROLLERS if c not in enabled]
        if missing:
            # cgroup v2 enables controllers for a group's children only while the group holds no process itself
            # ("no internal processes"): the grader first moves itself into a leaf of its own, then enables them.
            # Not exercised on this project's machines (cgroup v1); where a write is refused, available() says so.
            leaf = parent / "hw4-grader-self"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
        path.mkdir()
        group = cls("v2", [path])
        try:
            (path / "pids.max").write_text(str(quota.processes))
            (path / "memory.max").write_text(str(quota.memory_mb * 2**20))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
            (path / "cpu.max").write_text(f"{int(quota.cores * PERIOD_US)} {PERIOD_US}")
        except OSError:
            group.close()
            raise
        return group

    @classmethod
    def existing(cls, kind: str, dirs: list[str]) -> Group | None:
        """The group that ``dirs`` (from ``self.dirs``, saved elsewhere) name, if it still exists: a JupyterHub
        restarted while servers ran finds their groups again."""
        paths = [Path(d) for d in dirs]
        if not paths or not all((p / "cgroup.procs").is_file() for p in paths):
            return None
        return cls(kind, paths)

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def join_prefix(self) -> list[str]:
        """A command prefix that moves itself into the group, then execs the rest (``... -- CMD``): the sandbox
        starts inside the group, before any student code runs."""
        script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'
        return ["/bin/sh", "-c", script, "hw4-join", *self.procs_files, "--"]

    def _read(self, name: str) -> str:
        for d in self.dirs:
            if (d / name).is_file():
                try:
                    return (d / name).read_text()
                except OSError:
                    return ""
        return ""

    def join(self, pid: int) -> None:
        """Moves ``pid`` into the group (root, or the group's delegate); its children are born inside it."""
        for procs in self.procs_files:
            Path(procs).write_text(str(pid))

    def pids(self) -> set[int]:
        return {int(p) for p in self._read("cgroup.procs").split()}

    def cpu_usage_ns(self) -> int:
        """CPU time used by every process the group ever held (v1 ``cpuacct.usage``, v2 ``cpu.stat``)."""
        if self.kind == "v1":
            return int(self._read("cpuacct.usage") or 0)
        stat = dict(line.split() for line in self._read("cpu.stat").splitlines() if len(line.split()) == 2)
        return int(stat.get("usage_usec", 0)) * 1000

    def limit_hit(self) -> str | None:
        """Which quota the group ran into, if any (read before ``close``)."""
        # v1 counts OOM kills in memory.oom_control, v2 in memory.events (both "oom_kill N")
        memory = self._read("memory.oom_control" if self.kind == "v1" else "memory.events")
        counts = dict(line.split()[:2] for line in memory.splitlines() if len(line.split()) >= 2)
        if int(counts.get("oom_kill", 0)) > 0:
            return "memory"
        events = self._read("pids.events").split()
        if len(events) >= 2 and events[0] == "max" and int(events[1]) > 0:
            return "processes"
        return None

    def close(self) -> None:
        """Kills whatever is left in the group, then removes it."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = {int(p) for p in self._read("cgroup.procs").split()}
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass

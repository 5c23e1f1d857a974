"""Grading a class in shards (``grade --shard I/N``) on several machines, and merging their verdicts.

A shard runs only the probe and the judge for its share of the students and writes, under its own folder, the same
files an unsharded ``grade`` writes for them (``work/<student>/verdicts.json`` and the verdict record
``course/verdicts/<student>.json``), then ``shard.json``, its manifest, last: a shard without one did not finish.
``merge`` checks that the shards belong together, copies their files into one folder and runs nbgrader once
(``grade.record_grades``). An unsharded ``grade`` is the shard 0/1 merged on its own folder: one code path.

Which students a shard takes: the valid student ids sorted, then every N-th from index I (``Shard.take``). Shares
differ by at most one student, and the assignment is a function of the sorted list alone, so every shard computes
it without talking to the others; it moves when a student is added, which is why every shard must see the same
submission set (the merge checks). A stable hash of the id would keep a student's shard when others come and go,
but balances only on average; a class is graded from one collected folder, so balance wins.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from autograder.config import Config

MANIFEST = "shard.json"


class ShardMismatch(RuntimeError):
    """Shards that must not be merged: the message lists every reason."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (written ``index/count``, counting from 0, as Kubernetes and Slurm do)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/8"`` -> Shard(2, 8)."""
        try:
            index, count = (int(x) for x in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, students: list[str]) -> list[str]:
        """This shard's students: every ``count``-th of the sorted ids, starting at ``index``."""
        return sorted(students)[self.index :: self.count]


WHOLE = Shard(0, 1)


def config_digest(config: Config) -> str:
    """sha256 of the grading config file: the shards and the merge must grade by the same one."""
    return hashlib.sha256(config.path.read_bytes()).hexdigest()


def record_path(out: Path, student: str) -> Path:
    """The verdict record nbgrader's ``InjectVerdicts`` reads (``<course>/verdicts/<student>.json``)."""
    return out / "course" / "verdicts" / f"{student}.json"


def work_path(out: Path, student: str) -> Path:
    """The judge's full record: verdicts, seed, seconds, which probes were stopped and why."""
    return out / "work" / student / "verdicts.json"


def write_manifest(out: Path, shard: Shard, seed: int, config: Config, students: list[str]) -> dict:
    """Written after the shard's last verdict: what was graded, with which seed and config, out of which set."""
    manifest = {"shard": str(shard), "seed": seed, "config_sha256": config_digest(config), "students": students,
                "graded": shard.take(students)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifests(folders: list[Path]) -> list[tuple[Path, dict]]:
    """(folder, manifest) of every shard folder, in the order given; a folder without one is refused."""
    found, problems = [], []
    for folder in folders:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            problems.append(f"{folder}: no {MANIFEST} (the shard did not finish, or this is not a shard's --out)")
            continue
        found.append((Path(folder), json.loads(path.read_text())))
    if problems:
        raise ShardMismatch("\n".join(problems))
    return found


def check(shards: list[tuple[Path, dict]], students: list[str], config: Config, seed: int | None = None) -> int:
    """The grading seed the shards share, after checking that they are exactly the shards 0..N-1 of one grading:
    the same seed (``seed``, when the merge is given one), the same config file as the merge's, the same student ids
    as the merge's submissions folder, each shard's share as ``Shard.take`` assigns it, and every verdict file
    present. Raises ``ShardMismatch`` listing every problem found."""
    problems = []
    seeds = {m["seed"] for _, m in shards}
    if len(seeds) != 1:
        problems.append("the shards were graded with different seeds: "
                        + ", ".join(f"{folder} seed {m['seed']}" for folder, m in shards)
                        + " (give every shard the same --seed)")
    elif seed is not None and seeds != {seed}:
        problems.append(f"the shards were graded with seed {next(iter(seeds))}, not the --seed {seed} given")
    digest = config_digest(config)
    for folder, m in shards:
        if m["config_sha256"] != digest:
            problems.append(f"{folder}: graded with another config file than {config.path} (sha256 differs)")
    parsed = [(folder, Shard.parse(m["shard"]), m) for folder, m in shards]
    counts = {s.count for _, s, _ in parsed}
    if len(counts) != 1:
        problems.append("the shards split the class differently: " + ", ".join(f"{f}: {s}" for f, s, _ in parsed))
    else:
        count = counts.pop()
        indices = sorted(s.index for _, s, _ in parsed)
        if indices != list(range(count)):
            missing = sorted(set(range(count)) - set(indices))
            twice = sorted({i for i in indices if indices.count(i) > 1})
            said = [f"missing {missing}" if missing else "", f"given twice {twice}" if twice else ""]
            problems.append(f"need each of the shards 0..{count - 1} once: " + "; ".join(s for s in said if s))
    for folder, shard, m in parsed:
        if m["students"] != students:
            gone, new = sorted(set(m["students"]) - set(students)), sorted(set(students) - set(m["students"]))
            problems.append(f"{folder}: graded from another submission set (not in the merge's submissions: "
                            f"{_names(gone)}; not in the shard's: {_names(new)})")
        elif m["graded"] != shard.take(students):
            problems.append(f"{folder}: its students are not shard {shard}'s share")
        for student in m["graded"]:
            for path in (record_path(folder, student), work_path(folder, student)):
                if not path.is_file():
                    problems.append(f"{folder}: {student} has no {path.relative_to(folder)}")
    if problems:
        raise ShardMismatch("\n".join(problems))
    return seeds.pop()


def _names(students: list[str], most: int = 5) -> str:
    shown = ", ".join(students[:most]) or "none"
    return shown + (f" and {len(students) - most} more" if len(students) > most else "")


def gather(shards: list[tuple[Path, dict]], out: Path) -> None:
    """Copies every shard's verdict files into ``out`` byte for byte (a shard whose folder is ``out`` stays as is).
    Only the verdicts move: each shard's copies of the submissions and its probe logs stay in its own ``work/``."""
    for folder, manifest in shards:
        if folder.resolve() == out.resolve():
            continue
        for student in manifest["graded"]:
            for path in (record_path, work_path):
                dest = path(out, student)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path(folder, student), dest)

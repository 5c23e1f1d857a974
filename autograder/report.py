"""What the instructor sees while a class is graded and after: a progress bar, then a summary.

The bar (tqdm: submissions done, the rate, the time left) goes to stderr, and only when stderr is a terminal or
``--progress`` asks for it, so logs and tests keep plain lines. The summary is read back from the judge's records
(``work/<student>/verdicts.json``), so ``grade``, ``grade --shard`` and ``merge`` print it alike.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

#: Why a probe was stopped (``grade._death``): these are limits; any other reason means the part failed to run.
LIMITS = ("time", "memory", "processes", "output")
SLOWEST = 5
NAMED = 10  # students named per line of the summary; the rest are counted


@contextmanager
def progress(total: int, enabled: bool | None, log: Callable[[str], None]) -> Iterator[
        tuple[Callable[[], None], Callable[[str], None]]]:
    """(advance one submission, log a line without tearing the bar). ``enabled=None``: only if stderr is a
    terminal (tqdm's ``disable=None``)."""
    # smoothing=0: the rate is submissions done over time elapsed, which is what predicts the time left when
    # several workers finish in bursts
    with tqdm(total=total, unit="submission", file=sys.stderr, smoothing=0, dynamic_ncols=True,
              disable=None if enabled is None else not enabled) as bar:
        def say(line: str) -> None:
            with tqdm.external_write_mode():
                log(line)

        yield bar.update, say


def _names(items: list[str]) -> str:
    more = len(items) - NAMED
    return ", ".join(items[:NAMED]) + (f" and {more} more" if more > 0 else "")


def summary(out: Path, students: list[str]) -> list[str]:
    """Lines for the end of a run: how many were graded, whose probe failed to run or went over a limit (and in
    which part), and the slowest submissions with their seconds."""
    died, over, seconds = [], [], {}
    for student in students:
        path = out / "work" / student / "verdicts.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        seconds[student] = float(record["seconds"])
        stopped = record.get("stopped", {})
        limits = [f"{part}: {why}" for part, why in stopped.items() if why in LIMITS]
        others = [f"{part}: {why}" for part, why in stopped.items() if why not in LIMITS]
        if limits:
            over.append(f"{student} ({', '.join(limits)})")
        if others:
            died.append(f"{student} ({', '.join(others)})")
    lines = [f"graded: {len(seconds)} of {len(students)} submissions"]
    lines.append(f"failed to run (a part's probe died): {len(died)}" + (f": {_names(died)}" if died else ""))
    lines.append(f"over a limit (time, memory, processes, output): {len(over)}"
                 + (f": {_names(over)}" if over else ""))
    slowest = sorted(seconds.items(), key=lambda item: (-item[1], item[0]))[:SLOWEST]
    if slowest:
        lines.append("slowest: " + ", ".join(f"{student} {s:.1f} s" for student, s in slowest))
    return lines


NBGRADER_TIMING = "nbgrader_seconds.json"  # written by grade.record_grades


def timing_table(out: Path) -> list[str]:
    """Where a grading run's seconds went, as a Markdown table: per submission the median (and the range over the
    students) of the probe's start (sandbox, interpreter, imports), each part in the probe, the judge's perplexity
    and its properties (from ``work/<student>/verdicts.json``); then nbgrader's three commands over the class.
    Each submission's phases run one after the other on one core; with W workers, W submissions run at once."""
    records = [json.loads(p.read_text()) for p in sorted((out / "work").glob("*/verdicts.json"))]
    records = [r for r in records if "timing" in r]
    rows: dict[str, list[float]] = {}
    for r in records:
        t = r["timing"]
        phases = {"probe: start (sandbox, Python, torch, imports)": t["probe_parts"].get("start", 0.0)}
        phases.update({f"probe: {part}": s for part, s in t["probe_parts"].items() if part != "start"})
        phases["probe: the rest (copying the submission, the sandbox's set-up and end)"] = \
            t["probe"] - sum(t["probe_parts"].values())
        phases.update({"judge: perplexity of both slices (reference model, student's weights)": t["perplexity"],
                       "judge: properties": t["properties"],
                       "one submission, all phases": r["seconds"]})
        for name, s in phases.items():
            rows.setdefault(name, []).append(s)
    lines = [f"| phase ({len(records)} submissions) | median s | min s | max s |", "|---|---|---|---|"]
    for name, values in rows.items():
        values = sorted(values)
        lines.append(f"| {name} | {values[len(values) // 2]:.2f} | {values[0]:.2f} | {values[-1]:.2f} |")
    nb = out / NBGRADER_TIMING
    if nb.is_file():
        record = json.loads(nb.read_text())
        for command, s in record["seconds"].items():
            lines.append(f"| nbgrader {command}, {record['students']} students, once | {s:.2f} | | |")
    return lines

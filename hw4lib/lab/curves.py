"""``python -m hw4lib curves RUN_DIR [RUN_DIR ...]``: time-to-perplexity curves of training runs.

Reads each run folder's ``metrics.json`` (written by :mod:`hw4lib.lab.training` at every check), and gives:

* a CSV, one row per validation check and one for the final score: ``run, wall_min, step, tokens, valid_ppl,
  scope`` (``scope`` is ``check``, the periodic checks' slice of the validation split, or ``final``, the final
  evaluation: the whole split unless the run sliced it);
* a plot of validation perplexity against wall-clock minutes (log scale);
* the perplexity at given minutes (``--at 15,30,60``), interpolated linearly in log-perplexity between the two
  checks around that minute, and, when exactly two runs are given, the ratio first / second at those minutes.

:func:`read_csv` reads such a CSV back (the measured runs in ``docs/data/``, which stage 7 shows students).

Wall-clock minutes are the trainer's ``wall_s`` (training, checks and checkpoints, summed over resumes). Runs
written before the trainer recorded it have only ``elapsed_s`` (time in training steps): their minutes are
flagged ``training time`` in the printout and are not comparable with wall-clock ones.

Between the last check and the end of the run (the final evaluation), the model no longer changes, so a minute
in that stretch reads the last check's value; a minute after the run ended, or before its first check, has none.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw4lib import files
from hw4lib.errors import HW4Error


@dataclass
class Curve:
    run: str
    points: list[dict[str, Any]]  # the checks, in order: wall_min, step, tokens, valid_ppl
    final: dict[str, Any] | None  # the final evaluation, when the run finished
    clock: str  # "wall" or "training time"
    end_min: float | None  # when the run ended (finished) or its last record


def load_curve(run_dir: str | Path, name: str | None = None) -> Curve:
    """The curve of one run folder (its ``metrics.json``)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise HW4Error(f"no metrics.json in {run_dir}: is it a run folder written by `python -m hw4lib train`?")
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HW4Error(f"{path} is not valid JSON: {err}") from err
    history = metrics.get("history") or []
    wall = all("wall_s" in h for h in history) and ("wall_s" in metrics or not history)
    key = "wall_s" if wall else "elapsed_s"
    points = [
        {"wall_min": h[key] / 60, "step": h["step"], "tokens": h["tokens"], "valid_ppl": h["val_ppl"]}
        for h in history
    ]
    end = metrics.get(key)
    end_min = end / 60 if end is not None else (points[-1]["wall_min"] if points else None)
    final = None
    if metrics.get("finished") and metrics.get("val_ppl") is not None:
        final = {"wall_min": end_min, "step": metrics.get("steps"), "tokens": metrics.get("tokens"),
                 "valid_ppl": metrics["val_ppl"]}
    return Curve(name or Path(run_dir).resolve().name, points, final, "wall" if wall else "training time", end_min)


def read_csv(path: str | Path) -> dict[str, Curve]:
    """The curves of a CSV written by :func:`write_csv` (``python -m hw4lib curves --csv``), by run name, in the
    file's order. A bare file name is a measured run's (:func:`hw4lib.files.measured`: ``docs/data/``, or the copy
    the release ships)."""
    path = Path(path)
    if not path.is_file() and path.parent == Path("."):
        with contextlib.suppress(FileNotFoundError):
            path = files.measured(path.name)
    if not path.is_file():
        raise HW4Error(f"no curves file {path}: it is written by `python -m hw4lib curves RUN ... --csv FILE`")
    out: dict[str, Curve] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            point = {"wall_min": float(row["wall_min"]), "step": int(row["step"]), "tokens": int(row["tokens"]),
                     "valid_ppl": float(row["valid_ppl"])}
            curve = out.setdefault(row["run"], Curve(row["run"], [], None, "wall", None))
            if row["scope"] == "final":
                curve.final = point
            else:
                curve.points.append(point)
            curve.end_min = point["wall_min"]
    return out


def ppl_at(curve: Curve, minute: float) -> float | None:
    """Perplexity at ``minute`` (module docstring: log-linear between checks, flat after the last check until
    the run's end, ``None`` outside)."""
    pts = curve.points
    if not pts or minute < pts[0]["wall_min"]:
        return None
    for a, b in zip(pts, pts[1:], strict=False):
        if a["wall_min"] <= minute <= b["wall_min"]:
            span = b["wall_min"] - a["wall_min"]
            w = 0.0 if span <= 0 else (minute - a["wall_min"]) / span
            return math.exp((1 - w) * math.log(a["valid_ppl"]) + w * math.log(b["valid_ppl"]))
    last = pts[-1]
    if minute == last["wall_min"] or (curve.end_min is not None and minute <= curve.end_min):
        return last["valid_ppl"]
    return None


def write_csv(curves: list[Curve], path: str | Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run", "wall_min", "step", "tokens", "valid_ppl", "scope"])
        for c in curves:
            rows = [(p, "check") for p in c.points] + ([(c.final, "final")] if c.final else [])
            for p, scope in rows:
                writer.writerow([c.run, f"{p['wall_min']:.3f}", p["step"], p["tokens"], f"{p['valid_ppl']:.4f}",
                                 scope])


def plot_curves(curves: list[Curve], path: str | Path, minutes: list[float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for c in curves:
        line, = ax.plot([p["wall_min"] for p in c.points], [p["valid_ppl"] for p in c.points], "o-", ms=3,
                        label=f"{c.run} (checks)" + ("" if c.clock == "wall" else " [training time]"))
        if c.final:
            ax.plot([c.final["wall_min"]], [c.final["valid_ppl"]], "*", ms=12, color=line.get_color(),
                    label=f"{c.run} final {c.final['valid_ppl']:.1f}")
    for m in minutes or []:
        ax.axvline(m, color="grey", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("wall-clock minutes (training, checks and evaluation)")
    ax.set_ylabel("validation perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(curves: list[Curve], minutes: list[float]) -> dict[str, Any]:
    """Perplexity of each run at each minute, and first / second when there are two runs."""
    out: dict[str, Any] = {"at_min": minutes, "runs": {c.run: [ppl_at(c, m) for m in minutes] for c in curves},
                           "clock": {c.run: c.clock for c in curves}}
    if len(curves) == 2:
        a, b = (out["runs"][c.run] for c in curves)
        out["ratio"] = {"of": f"{curves[0].run} / {curves[1].run}",
                        "values": [x / y if x is not None and y is not None else None for x, y in zip(a, b,
                                                                                                     strict=True)]}
    return out


def _names(dirs: list[str]) -> list[str]:
    names = [Path(d).resolve().name for d in dirs]
    return names if len(set(names)) == len(names) else [str(Path(d)) for d in dirs]


def _cmd_curves(args: argparse.Namespace) -> int:
    curves = [load_curve(d, n) for d, n in zip(args.runs, _names(args.runs), strict=True)]
    minutes = [float(m) for m in args.at.split(",") if m.strip()] if args.at else []
    if args.csv:
        write_csv(curves, args.csv)
    if args.plot:
        plot_curves(curves, args.plot, minutes)
    result = summary(curves, minutes)
    fmt = lambda v, f="{:.1f}": "-" if v is None else f.format(v)  # noqa: E731
    print("minute  " + "  ".join(f"{c.run:>14s}" for c in curves) + ("   ratio" if "ratio" in result else ""))
    for i, m in enumerate(minutes):
        row = f"{m:6g}  " + "  ".join(f"{fmt(result['runs'][c.run][i]):>14s}" for c in curves)
        if "ratio" in result:
            row += f"   {fmt(result['ratio']['values'][i], '{:.3f}')}"
        print(row)
    for c in curves:
        if c.clock != "wall":
            print(f"note: {c.run} has no wall-clock record; its minutes are training time", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curves", help="validation perplexity against wall-clock minutes of run folders",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--csv", help="write run, wall_min, step, tokens, valid_ppl, scope rows here")
    p.add_argument("--plot", help="write the plot (PNG) here")
    p.add_argument("--at", default="15,30,60", help="minutes at which to print the interpolated perplexity")
    p.add_argument("--json", help="also write the figures at those minutes (and the ratio) as JSON")
    p.set_defaults(func=_cmd_curves)

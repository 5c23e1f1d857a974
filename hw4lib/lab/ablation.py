"""The ablation (issue 12): one technique removed per row, our measured rows beside the paper's Table 4.

The rows are runs of the ``cpu`` preset on PTB at one wall-clock budget each, measured by
``benchmarks/ablation.py`` into ``docs/data/ablation_ptb.csv``; the paper's numbers are quoted in
``docs/data/paper_table4.csv``. A row's cost is its validation perplexity minus the ``full`` row's at the same
budget (Δ); :func:`compare` puts our Δ beside the paper's (PTB validation) and says where the orderings differ.

Each row is compared with the ``full`` row of its own *sitting* (one run of the runner, or several back to back):
the host's speed is not constant even when the machine is idle (the same ``full`` row made 3,053 tokens/s at 04:22
UTC and 4,811 tokens/s at 08:01 UTC on 2026-12-01), and at a wall-clock budget speed is perplexity. So the
runner measures ``full`` first in every sitting that has none.

Fine-tuning (the paper's "– fine-tuning" row) is a separate phase after training (``hw4lib/lab/finetune.py``), not
something a row of the runner removes: it has no row here.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw4lib import files
from hw4lib.components import REPO_ROOT
from hw4lib.errors import HW4Error
from hw4lib.lab.training import TrainConfig, get_preset

RUNS_CSV = REPO_ROOT / "docs" / "data" / "ablation_ptb.csv"
PAPER_CSV = REPO_ROOT / "docs" / "data" / "paper_table4.csv"
COMMAND = "python benchmarks/ablation.py ROW ... --minutes M --csv docs/data/ablation_ptb.csv"


def _measured(path: Path) -> Path:
    """``path`` in ``docs/data/``, or the release's copy in ``hw4lib/measured/`` (a hub's student has no docs/)."""
    try:
        return files.measured(path.name)
    except FileNotFoundError:
        return path  # the callers say what is missing

NEVER = 10**9  # a nonmono no run reaches: NT-ASGD's trigger never fires
ROWS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_weight_drop": {"wdrop": 0.0},
    "no_embedding_dropout": {"dropoute": 0.0},
    "no_locked_dropout": {"dropout": 0.0, "dropouth": 0.0, "dropouti": 0.0},
    "no_ar_tar": {"alpha": 0.0, "beta": 0.0},
    "no_weight_decay": {"weight_decay": 0.0},
    "no_nt_asgd": {"nonmono": NEVER, "lr_decay_frac": 0.0},
    "no_variable_bptt": {"bptt_p_full": 1.0, "bptt_std": 0.0},
    "no_weight_tying": {"tie_weights": False},
    "no_independent_embedding": {"embed_size": 400},
}
# Our row -> the paper's Table 4 row it removes the same technique as (None: the paper has no such row).
PAPER_ROWS: dict[str, str | None] = {
    "full": "AWD-LSTM (tied)",
    "no_weight_drop": "– weight-dropping",
    "no_embedding_dropout": "– embedding dropout",
    "no_locked_dropout": None,
    "no_ar_tar": "– AR/TAR",
    "no_weight_decay": "– weight decay",
    "no_nt_asgd": "– NT-AvSGD",
    "no_variable_bptt": "– variable sequence lengths",
    "no_weight_tying": None,
    "no_independent_embedding": "– full sized embedding",
}
LABELS = {"no_weight_drop": "weight drop", "no_embedding_dropout": "embedding dropout",
          "no_locked_dropout": "locked dropout", "no_ar_tar": "AR/TAR", "no_weight_decay": "weight decay",
          "no_nt_asgd": "NT-ASGD", "no_variable_bptt": "variable BPTT", "no_weight_tying": "weight tying",
          "no_independent_embedding": "independent\nembedding size"}
FIELDS = ["row", "overrides", "dataset", "minutes", "val_ppl", "tokens", "tokens_per_s", "asgd_trigger_step",
          "wall_s", "sitting"]


def config_for(row: str, minutes: float, dataset: str = "ptb", **sizes: Any) -> TrainConfig:
    """The ``cpu`` preset with ``row``'s technique removed and a wall-clock budget of ``minutes``.

    ``sizes`` are further overrides that make a run small (``max_train_tokens``, ``max_valid_tokens``,
    ``eval_tokens``); they must not touch what the row removes.
    """
    if row not in ROWS:
        raise HW4Error(f"unknown ablation row {row!r}; choose one of {', '.join(ROWS)}")
    clash = set(sizes) & set(ROWS[row])
    if clash:
        raise HW4Error(f"{', '.join(sorted(clash))} is what the row {row!r} sets: leave it out of the sizes")
    return get_preset("cpu", dataset, wall_budget_min=minutes, **ROWS[row], **sizes)


def _data_lines(path: Path) -> list[str]:
    """The lines of a CSV without its ``#`` comment lines (the citation of a quoted table)."""
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def read_paper_table(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """The paper's Table 4: row name -> {"ptb_val", "ptb_test", "wt2_val", "wt2_test"} (perplexity)."""
    path = Path(path) if path else _measured(PAPER_CSV)
    if not path.is_file():
        raise HW4Error(f"the paper's Table 4 is missing at {path}: restore docs/data/paper_table4.csv from git")
    table = {}
    for r in csv.DictReader(_data_lines(path)):
        table[r["row"]] = {k: float(v) for k, v in r.items() if k != "row"}
    return table


def read_runs(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The measured rows of ``benchmarks/ablation.py``, typed (``asgd_trigger_step`` is None when it did not
    fire). A clear :class:`HW4Error` when the file is absent: it is made one run at a time, on an idle machine."""
    path = Path(path) if path else _measured(RUNS_CSV)
    if not path.is_file():
        raise HW4Error(
            f"no measured ablation rows yet: {path} does not exist. The rows are measured one run at a time on an "
            f"otherwise idle machine with `{COMMAND}` (start with the `full` row)."
        )
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = [f for f in FIELDS if rows and f not in rows[0] and f != "sitting"]  # older files: one sitting
    if missing:
        raise HW4Error(f"{path} lacks the columns {', '.join(missing)}: it was not written by benchmarks/ablation.py")
    runs = []
    for r in rows:
        trigger = (r["asgd_trigger_step"] or "").strip()
        runs.append({
            "row": r["row"], "dataset": r["dataset"], "minutes": float(r["minutes"]), "val_ppl": float(r["val_ppl"]),
            "tokens": int(r["tokens"]), "tokens_per_s": float(r["tokens_per_s"] or 0.0),
            "asgd_trigger_step": int(trigger) if trigger not in ("", "None") else None,
            "wall_s": float(r["wall_s"]), "sitting": r.get("sitting") or "",
        })
    return runs


def budgets(runs: list[dict[str, Any]], dataset: str = "ptb") -> list[float]:
    """The budgets (minutes) that have a ``full`` row, the ones a comparison can be made at."""
    return sorted({r["minutes"] for r in runs if r["row"] == "full" and r["dataset"] == dataset})


@dataclass
class RowComparison:
    """One removed technique: our run at the budget and the paper's row (either may be missing: None)."""

    row: str
    paper_row: str | None
    ppl: float | None = None  # our validation perplexity
    delta: float | None = None  # ours: row minus full, same budget
    paper_ppl: float | None = None
    paper_delta: float | None = None  # the paper's PTB validation: row minus full
    rank: int | None = None  # 1 = the removal that costs the most, among rows both tables have
    paper_rank: int | None = None
    tokens: int | None = None
    asgd_trigger_step: int | None = None

    @property
    def ratio(self) -> float | None:
        """Our perplexity over the full model's (1.05: removing it costs 5 %)."""
        return None if self.delta is None or self.ppl is None else self.ppl / (self.ppl - self.delta)

    @property
    def paper_ratio(self) -> float | None:
        if self.paper_delta is None or self.paper_ppl is None:
            return None
        return self.paper_ppl / (self.paper_ppl - self.paper_delta)


@dataclass
class Comparison:
    """Every row at one budget beside the paper, and the places where the two orderings differ."""

    minutes: float | None  # None: no measured rows (the paper's side only)
    full: RowComparison
    rows: list[RowComparison]  # the removals, in ROWS order (full excluded)
    differences: list[str] = field(default_factory=list)

    def table(self) -> str:
        """A plain-text table: our Δ and rank beside the paper's."""
        def num(x: float | None, fmt: str) -> str:
            return "—" if x is None else format(x, fmt)

        lines = [f"{'removed':26} {'ppl':>7} {'Δ':>7} {'rank':>4} | {'paper row':28} {'val':>5} {'Δ':>6} {'rank':>4}",
                 f"{'nothing (full)':26} {num(self.full.ppl, '.1f'):>7} {'':>7} {'':>4} | "
                 f"{self.full.paper_row or '':28} {num(self.full.paper_ppl, '.1f'):>5}"]
        for r in self.rows:
            lines.append(
                f"{r.row:26} {num(r.ppl, '.1f'):>7} {num(r.delta, '+.1f'):>7} {num(r.rank, 'd'):>4} | "
                f"{r.paper_row or '(no such row)':28} {num(r.paper_ppl, '.1f'):>5} {num(r.paper_delta, '+.1f'):>6} "
                f"{num(r.paper_rank, 'd'):>4}"
            )
        return "\n".join(lines)


def _ranks(values: dict[str, float]) -> dict[str, int]:
    """1 for the largest value (the costliest removal), ties sharing the better rank."""
    ordered = sorted(values.values(), reverse=True)
    return {name: ordered.index(v) + 1 for name, v in values.items()}


def compare(runs: list[dict[str, Any]], minutes: float, paper: dict[str, dict[str, float]] | None = None,
            dataset: str = "ptb") -> Comparison:
    """Our Δ (row minus ``full`` at ``minutes``, the ``full`` of the row's own sitting) beside the paper's (PTB
    validation, row minus full).

    A row measured more than once at the budget counts with its latest run. A row whose sitting has no ``full``
    row gets no Δ (a ``full`` of another sitting ran at another speed). Ranks order the removals by their cost
    among the rows both tables have; ``differences`` names every such row whose rank differs, every removal that
    did not cost perplexity here although it does in the paper, and every row left without a Δ.
    """
    paper = read_paper_table() if paper is None else paper
    at, fulls = {}, {}
    for r in runs:
        if r["dataset"] == dataset and math.isclose(r["minutes"], minutes):
            at[r["row"]] = r  # the file is in the order of measurement: the latest run wins
            if r["row"] == "full":
                fulls[r["sitting"]] = r
    if "full" not in at:
        have = budgets(runs, dataset)
        where = f"full rows exist at {', '.join(f'{m:g}' for m in have)} minutes" if have else "no full row at all"
        raise HW4Error(
            f"no `full` row at {minutes:g} minutes on {dataset} ({where}): every Δ is a row minus the full model at "
            f"the same budget. Measure it with `python benchmarks/ablation.py full --minutes {minutes:g}`."
        )
    return _comparison(at, fulls, paper, minutes)


def paper_only(paper: dict[str, dict[str, float]] | None = None) -> Comparison:
    """The paper's side alone (no measured rows yet): what the plot shows before the first run."""
    return _comparison({}, {}, read_paper_table() if paper is None else paper, None)


def _comparison(at: dict[str, dict[str, Any]], fulls: dict[str, dict[str, Any]], paper: dict[str, dict[str, float]],
                minutes: float | None) -> Comparison:
    paper_full = paper[PAPER_ROWS["full"]]["ptb_val"]
    result = []
    without_full = []
    for name in ROWS:
        paper_row = PAPER_ROWS[name]
        run = at.get(name)
        entry = RowComparison(name, paper_row)
        if run is not None:
            entry.ppl, entry.tokens, entry.asgd_trigger_step = run["val_ppl"], run["tokens"], run["asgd_trigger_step"]
            if name == "full":
                entry.delta = 0.0
            elif run["sitting"] in fulls:
                entry.delta = run["val_ppl"] - fulls[run["sitting"]]["val_ppl"]
            else:
                sitting = run["sitting"] or "unnamed"
                without_full.append(f"{name}: measured in a sitting without a full row ({sitting}), so it has no Δ: "
                                    "measure both again in one sitting")
        if paper_row is not None and paper_row in paper:
            entry.paper_ppl = paper[paper_row]["ptb_val"]
            entry.paper_delta = entry.paper_ppl - paper_full if name != "full" else 0.0
        result.append(entry)
    full, removals = result[0], result[1:]
    both = [r for r in removals if r.delta is not None and r.paper_delta is not None]
    ours, theirs = _ranks({r.row: r.delta for r in both}), _ranks({r.row: r.paper_delta for r in both})
    for r in both:
        r.rank, r.paper_rank = ours[r.row], theirs[r.row]
    differences = []
    for r in sorted(both, key=lambda r: r.paper_rank):
        if r.rank != r.paper_rank:
            differences.append(f"{r.row}: rank {r.rank} of {len(both)} here (Δ {r.delta:+.1f}), rank {r.paper_rank} "
                               f"in the paper (Δ {r.paper_delta:+.1f})")
    for r in both:
        if r.delta <= 0 < r.paper_delta:
            differences.append(f"{r.row}: removing it did not cost perplexity here (Δ {r.delta:+.1f}); in the paper "
                               f"it costs {r.paper_delta:+.1f}")
    differences += without_full
    return Comparison(minutes=minutes, full=full, rows=removals, differences=differences)


def plot(comparison: Comparison, ax: Any = None) -> Any:
    """Grouped bars per removed technique: our perplexity relative to the full model (%) beside the paper's.
    A row one side lacks is marked on the axis instead of a bar. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ax is None:
        fig, ax = plt.subplots(figsize=(11, 4.2))
    else:
        fig = ax.figure
    rows = comparison.rows
    width = 0.38
    for i, r in enumerate(rows):
        for offset, ratio, color, missing in (
            (-width / 2, r.ratio, "tab:blue", "not measured"),
            (width / 2, r.paper_ratio, "tab:orange", "no row in the paper"),
        ):
            if ratio is None:
                ax.text(i + offset, 0, missing, rotation=90, ha="center", va="bottom", fontsize=7, color="gray")
            else:
                ax.bar(i + offset, 100 * (ratio - 1), width, color=color)
    measured = comparison.minutes is not None
    budget = f"{comparison.minutes:g}-minute budget per row" if measured else "no measured rows yet"
    ours = (f"ours: cpu preset, {comparison.minutes:g} min per row (full {comparison.full.ppl:.1f})" if measured
            else f"ours: not measured yet ({COMMAND})")
    paper = f"paper, Table 4 (full {comparison.full.paper_ppl:.1f})"
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(rows)), [LABELS[r.row] for r in rows], fontsize=8)
    ax.set(ylabel="validation perplexity vs full (%)",
           title=f"PTB, one technique removed: {budget} vs the paper (above 0: removing it costs)")
    ax.legend(handles=[Patch(color="tab:blue", label=ours), Patch(color="tab:orange", label=paper)], fontsize=8)
    fig.tight_layout()
    return fig

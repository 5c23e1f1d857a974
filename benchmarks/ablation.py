"""The ablation at the laptop's scale: the `cpu` preset on PTB, one technique removed per row, equal budgets.

    python benchmarks/ablation.py full no_weight_drop --minutes 10 --csv docs/data/ablation_ptb.csv

One run at a time on an otherwise idle machine (the rows compare only if their minutes are comparable). Each row
trains the reference components from the `cpu` preset on PTB with the row's overrides and the same wall-clock
budget (checks and the final evaluation included), then appends one line to the CSV: the row, its overrides,
the budget, the whole-split validation perplexity, training tokens and tokens/s, the step at which NT-ASGD's
trigger fired (empty if it did not) and the sitting. Rows may be added over several sittings; a row already in the
CSV with the same budget is skipped unless --again is given. Each row is compared with the `full` row of its own
sitting (the host's speed differs between sittings, and at a wall-clock budget speed is perplexity), so a sitting
without one measures `full` first. A sitting is one invocation (its start time) unless --sitting names one.

What each row removes (the paper's Table 4 names the same techniques):

* ``no_weight_drop``: DropConnect on ``W_hh`` (``wdrop = 0``);
* ``no_embedding_dropout``: ``dropoute = 0``;
* ``no_locked_dropout``: the variational dropouts on the input, between layers and on the output (all 0);
* ``no_ar_tar``: ``alpha = beta = 0``;
* ``no_weight_decay``: ``weight_decay = 0``;
* ``no_nt_asgd``: plain constant-rate SGD (the trigger can never fire) and no budget-aware decay either;
* ``no_variable_bptt``: fixed windows of ``bptt`` tokens (``p_full = 1``, ``std = 0``);
* ``no_weight_tying``: an untied decoder (the last layer is then ``H`` wide);
* ``no_independent_embedding``: embedding size equal to the hidden size (400 instead of 200).

The rows and their mapping to the paper's Table 4 live in ``hw4lib/lab/ablation.py`` (the notebook 09_ablation reads
the CSV with it, and a student runs one row there with their own components).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hw4lib.components import load_components  # noqa: E402
from hw4lib.lab.ablation import FIELDS, ROWS, RUNS_CSV, config_for, read_runs  # noqa: E402
from hw4lib.lab.training import train  # noqa: E402


def add_sitting_column(path: Path) -> None:
    """Files from before sittings were recorded get the column, empty (their rows are one sitting)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if "sitting" in (reader.fieldnames or []):
            return
        rows = list(reader)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({**r, "sitting": ""} for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="+", choices=sorted(ROWS))
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of every row")
    parser.add_argument("--dataset", default="ptb", choices=["ptb", "wikitext2"])
    parser.add_argument("--csv", type=Path, default=RUNS_CSV)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--again", action="store_true", help="rerun rows already in the CSV")
    parser.add_argument("--max-train-tokens", type=int, help="a slice of the training split (tests)")
    parser.add_argument("--sitting", default=time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
                        help="a label for runs that compare with each other (default: this invocation's start)")
    args = parser.parse_args(argv)
    components = load_components("solutions")
    measured = [r for r in read_runs(args.csv) if r["minutes"] == args.minutes] if args.csv.is_file() else []
    skip = set() if args.again else {r["row"] for r in measured}
    rows = [name for name in dict.fromkeys(args.rows) if name not in skip]
    for name in sorted(set(args.rows) & skip):
        print(f"{name}: already in {args.csv} at {args.minutes} minutes (--again reruns it)")
    has_full = any(r["row"] == "full" and r["dataset"] == args.dataset and r["sitting"] == args.sitting
                   for r in measured)
    if rows and "full" not in rows and not has_full:
        print(f"sitting {args.sitting} has no full row at {args.minutes:g} minutes: measuring it first")
        rows.insert(0, "full")
    if args.csv.is_file():
        add_sitting_column(args.csv)  # before the first append: older files lack the column
    for name in rows:
        config = config_for(name, args.minutes, args.dataset, max_train_tokens=args.max_train_tokens)
        metrics = train(config, components, args.out / f"{name}-{args.minutes:g}min", resume=False,
                        progress=False, log=lambda *_: None)
        line = {"row": name, "overrides": json.dumps(ROWS[name], sort_keys=True), "dataset": args.dataset,
                "minutes": args.minutes, "val_ppl": round(metrics["val_ppl"], 3), "tokens": metrics["tokens"],
                "tokens_per_s": round(metrics["tokens_per_s"] or 0.0, 1),
                "asgd_trigger_step": metrics["asgd_trigger_step"], "wall_s": metrics["wall_s"],
                "sitting": args.sitting}
        new = not args.csv.is_file()
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(line)
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

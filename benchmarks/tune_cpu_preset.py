"""Short tuning runs of the `cpu` preset: the settings docs/training.md compares, one run at a time.

    python benchmarks/tune_cpu_preset.py B C D --minutes 8 --out runs/tune   # on an otherwise idle machine

Each run trains the reference components from the `cpu` preset with the overrides named below on a wall-clock
budget of ``--minutes`` (checks every 300 batches on the preset's 40,000-token checking slice; the final score on
the same slice, so that a short run is not dominated by scoring the whole split), and prints the perplexity of
every check with its wall-clock minute. The preset itself is setting D plus the budget-aware decay.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hw4lib.components import load_components  # noqa: E402
from hw4lib.lab.training import get_preset, train  # noqa: E402

LIGHT = dict(dropout=0.1, dropouth=0.05, dropouti=0.1, dropoute=0.02, wdrop=0.1)
EARLIER = dict(num_layers=3, bptt=70, lr=30.0, dropout=0.2, dropouth=0.1, dropouti=0.2, dropoute=0.02, wdrop=0.2)
SETTINGS = {
    "earlier": EARLIER,  # the preset before the tuning
    "B": {**EARLIER, "bptt": 35, **LIGHT},
    "C": {**EARLIER, "bptt": 35, **LIGHT, "num_layers": 2},
    "D": {**EARLIER, "bptt": 35, **LIGHT, "num_layers": 2, "lr": 45.0},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", choices=sorted(SETTINGS))
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=Path("runs/tune"))
    args = parser.parse_args()
    components = load_components("solutions")
    for name in args.settings:
        config = get_preset("cpu", wall_budget_min=args.minutes, eval_interval=300, lr_decay_frac=0.0,
                           max_valid_tokens=40_000, **SETTINGS[name])
        metrics = train(config, components, args.out / name, resume=False, progress=False, log=lambda *_: None)
        checks = [(round(h["wall_s"] / 60, 2), round(h["val_ppl"], 1)) for h in metrics["history"]]
        print(json.dumps({"setting": name, "overrides": SETTINGS[name], "checks_min_ppl": checks,
                          "tokens_per_s": round(metrics["tokens_per_s"])}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

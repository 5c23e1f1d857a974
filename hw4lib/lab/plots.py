"""Training curves: what a student looks at instead of reading the log."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_training(history: Sequence[dict[str, Any]], path: str | Path | None = None, ax=None, reference=None):
    """Train and validation perplexity against training tokens, with the NT-ASGD switch marked.

    ``reference`` (a :class:`hw4lib.lab.curves.Curve`, e.g. from ``curves.read_csv``) adds a measured run's validation
    checks on the same axis, for comparison. Returns the matplotlib figure; writes it to ``path`` when given.
    """
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    tokens = [h["tokens"] / 1e6 for h in history]
    ax.plot(tokens, [math.exp(min(h["train_loss"], 50)) for h in history], "o-", label="train (with dropout)")
    ax.plot(tokens, [h["val_ppl"] for h in history], "s-", label="validation")
    if reference is not None:
        ax.plot([p["tokens"] / 1e6 for p in reference.points], [p["valid_ppl"] for p in reference.points], ".--",
                color="tab:gray", label=f"validation of the measured run {reference.run}")
    for h in history:
        if h.get("switched_to_asgd"):
            ax.axvline(h["tokens"] / 1e6, color="tab:red", linestyle="--", label="NT-ASGD starts averaging")
    ax.set_yscale("log")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig

"""Stages 0 and 1: the corpus (Zipf, article lengths, what no regularization does), the loader's windows and
batches.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from hw4lib import files
from hw4lib.viz.friendly import friendly


def token_frequency_plot(articles: Sequence[np.ndarray], vocab: np.ndarray, top: int = 12) -> None:
    """Rank-frequency (Zipf) plot, the most frequent words, and the distribution of article lengths."""
    counts = np.bincount(np.concatenate(articles), minlength=len(vocab))
    order = np.argsort(-counts)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    ranks = np.arange(1, len(counts) + 1)
    axes[0].loglog(ranks, counts[order], lw=2)
    axes[0].set(xlabel="rank of the word type", ylabel="occurrences", title="Zipf: a few words are most tokens")
    share = counts[order[:top]].sum() / counts.sum()
    axes[1].barh([str(vocab[i]) for i in order[:top]][::-1], counts[order[:top]][::-1])
    axes[1].set(title=f"the {top} most frequent types: {share:.0%} of all tokens", xlabel="occurrences")
    axes[2].hist([len(a) for a in articles], bins=40)
    axes[2].set(xlabel="tokens per article", ylabel="articles", title=f"{len(articles)} articles")
    fig.tight_layout()
    plt.show()


def overfit_plot(path: str | Path | None = None) -> None:
    """Train against validation perplexity of an LSTM with no regularization, per epoch, from the CSV that
    ``benchmarks/overfit_unregularized.py`` measured (``docs/data/overfit_unregularized.csv``)."""
    if path is None:
        try:
            path = files.measured("overfit_unregularized.csv")
        except FileNotFoundError:
            path = files.MEASURED_SOURCE / "overfit_unregularized.csv"
    path = Path(path)
    if not path.is_file():
        print(f"(overfit_plot: {path} is missing; run python benchmarks/overfit_unregularized.py)")
        return
    lines = path.read_text().splitlines()
    notes = [line[2:] for line in lines if line.startswith("# ")]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    epoch = np.array([int(r["epoch"]) for r in rows])
    train, valid = (np.array([float(r[k]) for r in rows]) for k in ("train_ppl", "valid_ppl"))
    best = int(np.argmin(valid))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.semilogy(epoch[1:], train[1:], "o-", label="training text")
    ax.semilogy(epoch[1:], valid[1:], "o-", label="validation text")
    ax.axvline(epoch[best], color="tab:gray", ls=":", label=f"best validation: epoch {epoch[best]}, "
               f"{valid[best]:.0f}")
    ax.set(xlabel="epoch", ylabel="perplexity (log scale)",
           title=f"no regularization: after epoch {epoch[best]} it memorizes (last: train {train[-1]:.0f}, "
                 f"valid {valid[-1]:.0f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()
    for note in notes:
        print(note)


def positions_in_window(lengths: Sequence[int], n_tokens: int) -> np.ndarray:
    """For the first ``n_tokens`` tokens of a column: their position inside the window that holds them."""
    pos = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, int)
    return pos[:n_tokens]


def window_positions_plot(epochs: Sequence[Sequence[int]], bptt: int, n_tokens: int = 300) -> None:
    """How far back the gradient reaches from each of the first ``n_tokens`` tokens of a column (its position
    inside its window), fixed windows against the given epochs' drawn lengths, on a column whose text stays in
    the same order every epoch (``shuffle=False``, or PTB, one document)."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 3.4), sharey=True)
    fixed = positions_in_window([bptt] * (n_tokens // bptt + 1), n_tokens)
    for e in range(3):
        axes[0].plot(fixed, lw=1.5, alpha=0.8, label=f"epoch {e}")
    axes[0].set(
        title=f"fixed windows of {bptt}: the same tokens get reach 0 every epoch",
        xlabel="token index in the column (text in a fixed order)",
        ylabel="gradient reach (earlier tokens\nin the same window)",
    )
    for e, lengths in enumerate(epochs):
        axes[1].plot(positions_in_window(lengths, n_tokens), lw=1.2, alpha=0.8, label=f"epoch {e}")
    if not epochs:
        axes[1].text(
            0.5,
            0.5,
            "your loader's windows appear here\nonce you have written it",
            ha="center",
            va="center",
            transform=axes[1].transAxes,
            fontsize=12,
            color="tab:gray",
        )
    axes[1].set(title="variable-length windows: the cuts move every epoch", xlabel="token index in the column")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    plt.show()
    if epochs:
        n = min(n_tokens, min(sum(lengths) for lengths in epochs))
        half = bptt // 2
        best_fixed = positions_in_window([bptt] * (n // bptt + 1), n)
        best_drawn = np.max([positions_in_window(lengths, n) for lengths in epochs], axis=0)
        print(f"tokens of the first {n} whose gradient never reaches {half} tokens back in {len(epochs)} epochs: "
              f"fixed windows {np.mean(best_fixed < half):.0%}, drawn windows {np.mean(best_drawn < half):.0%}")


def window_length_density(x: np.ndarray, bptt: int, p_full: float = 0.95, std: float = 5.0) -> np.ndarray:
    """The density of the drawn length before rounding and clamping: p N(bptt, std) + (1 - p) N(bptt / 2, std)."""
    def normal(mean: float) -> np.ndarray:
        return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))

    return p_full * normal(bptt) + (1 - p_full) * normal(bptt / 2)


def length_histogram(lengths: Sequence[int], bptt: int, p_full: float = 0.95, std: float = 5.0) -> None:
    """Histogram of drawn window lengths with bptt and bptt/2 marked, and the theoretical mixture density
    p N(bptt, std) + (1 - p) N(bptt/2, std) scaled to the number of draws (std is a standard deviation)."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    lengths = np.asarray(lengths)
    ax.hist(lengths, bins=np.arange(lengths.min() - 0.5, lengths.max() + 1.5), color="tab:blue",
            label="your loader's lengths")
    x = np.linspace(lengths.min() - 1, lengths.max() + 1, 400)
    ax.plot(x, len(lengths) * window_length_density(x, bptt, p_full, std), color="tab:orange", lw=2,
            label=f"{p_full:g}·N({bptt}, {std:g}²) + {1 - p_full:.2g}·N({bptt / 2:g}, {std:g}²)")
    for x0, label in ((bptt, "bptt"), (bptt / 2, "bptt / 2")):
        ax.axvline(x0, color="k", ls="--", lw=1)
        ax.text(x0, ax.get_ylim()[1] * 0.9, f" {label}", fontsize=9)
    ax.set(xlabel="window length seq_len", ylabel="batches", title=f"{len(lengths)} drawn window lengths")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    plt.show()


@friendly
def batch_layout_plot(batches: Sequence[tuple], articles: Sequence[np.ndarray], max_rows: int = 120) -> None:
    """How the stream is cut: one column per batch element, colour = article, lines = window boundaries.

    ``articles`` must hold distinct ids (:func:`hw4lib.checks.toy_articles`) so each token names its article.
    """
    owner = {}
    for k, article in enumerate(articles):
        for token in article.tolist():
            owner[token] = k
    inputs = torch.cat([b[0] for b in batches]).numpy()[:max_rows]
    image = np.vectorize(lambda t: owner.get(int(t), -1))(inputs)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(image, aspect="auto", cmap="tab10", interpolation="nearest", vmin=0, vmax=9)
    edge = 0
    for _, _, seq_len in batches:
        edge += int(seq_len)
        if edge >= len(image):
            break
        ax.axhline(edge - 0.5, color="k", lw=2)
    ax.set(
        xlabel="batch element (column b of the (N // B, B) matrix)",
        ylabel="row = position in the stream",
        title="colour = article, black line = one batch ends",
    )
    ax.set_xticks(range(image.shape[1]))
    fig.tight_layout()
    plt.show()

"""Stages 7 and 8: temperature and top-k, and the continuous cache pointer.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from hw4lib.errors import HW4Error


def sampling_distribution_plot(logits: torch.Tensor, vocab: np.ndarray, temperatures: Sequence[float] = (0.5, 1.0, 1.5),
                               top_k: int | None = 5, shown: int = 15, show: bool = True) -> plt.Figure | None:
    """The next-word distribution softmax(z / τ) for a few temperatures, and what top-k keeps (one prefix's
    logits ``(V,)``; no top-k panel when ``top_k`` is None). Drawn with torch from the logits your ``prediction``
    returned. ``show=False`` returns the figure undrawn (a widget displays it into its own output); shown, it returns
    nothing, so a notebook cell ending with this call does not draw it twice."""
    logits = logits.detach().float()
    order = torch.argsort(logits, descending=True)[:shown]
    words = [str(vocab[i]) for i in order.tolist()]
    x = np.arange(shown)
    fig, axes = plt.subplots(1, 2 if top_k else 1, figsize=(14 if top_k else 8, 3.8), sharey=True, squeeze=False)
    axes = axes[0]
    width = 0.8 / len(temperatures)
    for j, tau in enumerate(temperatures):
        probs = torch.softmax(logits / tau, dim=-1)[order].numpy()
        axes[0].bar(x + j * width, probs, width, label=f"τ = {tau:g} (top {shown} hold {probs.sum():.0%})")
    axes[0].set(title="temperature: τ < 1 sharpens, τ > 1 flattens", ylabel="probability")
    if top_k:
        kth = torch.topk(logits, top_k).values[-1]
        kept = torch.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)[order].numpy()
        full = torch.softmax(logits, dim=-1)[order].numpy()
        axes[1].bar(x - 0.2, full, 0.4, label="τ = 1, all words", color="tab:gray")
        axes[1].bar(x + 0.2, kept, 0.4, label=f"τ = 1, top-{top_k}: renormalized", color="tab:green")
        axes[1].set(title=f"top-{top_k}: every word outside the {top_k} largest logits gets probability 0")
    for ax in axes:
        ax.set_xticks(x + (0.4 - width / 2 if ax is axes[0] else 0))
        ax.set_xticklabels(words, rotation=60, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    if not show:
        return fig
    plt.show()
    return None


def find_repeat(ids: Sequence[int], vocab: np.ndarray, max_count: int = 3, span: int = 40) -> tuple[int, int]:
    """(first, second): two positions of one rare word (a real word of 4+ letters, at most ``max_count`` times in
    ``ids``) at most ``span`` apart, the pair a cache should exploit; raises when the text has none."""
    ids = [int(i) for i in ids]
    counts: dict[int, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    last: dict[int, int] = {}
    for pos, word in enumerate(ids):
        text = str(vocab[word])
        if counts[word] <= max_count and text.isalpha() and len(text) >= 4:
            if word in last and pos - last[word] <= span:
                return last[word], pos
            last[word] = pos
    raise HW4Error(f"no rare word repeats within {span} positions in this text; give a longer one")


def cache_scores_picture(keys: torch.Tensor, words: Sequence[int], vocab: np.ndarray, first: int, second: int,
                         before: int = 4) -> None:
    """The scores h_i·h_t between positions of one text (keys (N, H) of one column, ``words[i]`` the word read at
    position i) around a repeat: the row of the word before the second occurrence is where the cache should
    point at the position before the first. Future positions (i >= t) are blank: the cache never sees them."""
    lo, hi = max(0, first - before), min(len(words), second + 2)
    h = keys[lo:hi].double()
    scores = (h @ h.t()).numpy()
    n = hi - lo
    scores[np.triu_indices(n)] = np.nan  # i >= t: not in the cache
    labels = [str(vocab[int(w)]) for w in words[lo:hi]]
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.3 * n), min(10, 1.5 + 0.3 * n)))
    im = ax.imshow(scores, cmap="viridis")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("cached position i (the word read there)")
    ax.set_ylabel("current position t (the word read there)")
    t, i = second - 1 - lo, first - 1 - lo
    if 0 <= i < t:
        ax.add_patch(plt.Rectangle((i - 0.5, t - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_title(f"h_i·h_t; red: at '{labels[t]}' the cache can point at the position after which "
                 f"'{vocab[int(words[second])]}' came", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    plt.show()


def cache_grid_plot(rows: Sequence[dict], ppl_model: float) -> None:
    """Validation perplexity over λ, one line per θ (rows from :func:`hw4lib.lab.cache_pointer.grid_search`)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for theta in sorted({r["theta"] for r in rows}):
        mine = sorted((r for r in rows if r["theta"] == theta), key=lambda r: r["lambdah"])
        ax.plot([r["lambdah"] for r in mine], [r["ppl"] for r in mine], "o-", label=f"θ = {theta:g}")
    ax.axhline(ppl_model, color="grey", linestyle="--", label="model alone")
    ax.set_xlabel("λ (the cache's share)")
    ax.set_ylabel("validation perplexity")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.show()

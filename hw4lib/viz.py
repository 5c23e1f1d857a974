"""Pictures and widgets for the teaching notebooks.

Every function that runs a student's component catches ``NotImplementedError`` and says the picture appears
once the component is written, so a fresh release runs top to bottom. Randomness is seeded. Nothing here
implements a component: the pictures either draw the idea with numpy or run the student's own code.
"""

from __future__ import annotations

import csv
import functools
import html
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import torch
import torch.nn as nn

from hw4lib import files
from hw4lib.errors import HW4Error
from hw4lib.prompting import Continuation, continue_prompt, encode_prompt


def _friendly(func: Callable) -> Callable:
    """Turns a stub's NotImplementedError into one printed line instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NotImplementedError:
            plt.close("all")
            print(f"({func.__name__}: this picture appears once the component it draws is implemented)")
            return None

    return wrapper


# ------------------------------------------------------------------------------------------------------------
# Stage 0: the data
# ------------------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------------------
# Stage 1: windows and batches
# ------------------------------------------------------------------------------------------------------------


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


@_friendly
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


# ------------------------------------------------------------------------------------------------------------
# Stage 2: dropout masks
# ------------------------------------------------------------------------------------------------------------


def idea_masks(p: float, seed: int, steps: int = 12, features: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """(standard, locked) keep-masks of one sequence as pictures (timesteps x features), drawn with numpy."""
    rng = np.random.default_rng(seed)
    standard = (rng.random((steps, features)) >= p).astype(float)
    locked = np.repeat((rng.random((1, features)) >= p).astype(float), steps, axis=0)
    return standard, locked


def student_mask(LockedDropout: type, p: float, seed: int, steps: int = 12, features: int = 24) -> np.ndarray:
    """Keep-mask (timesteps x features) of batch element 0 drawn by the student's LockedDropout."""
    torch.manual_seed(seed)
    module = LockedDropout(p)
    module.train()
    with torch.no_grad():
        out = module(torch.ones(steps, 2, features))
    return (out[:, 0].numpy() != 0).astype(float)


def mask_figure(p: float, seed: int, LockedDropout: type | None = None) -> plt.Figure:
    """Standard dropout next to a locked mask (and the student's class when given)."""
    standard, locked = idea_masks(p, seed)
    panels = [
        ("standard dropout:\na new mask at every timestep", standard),
        ("locked dropout (the idea):\none mask for the whole sequence", locked),
    ]
    note = None
    if LockedDropout is not None:
        try:
            panels.append(("your LockedDropout\n(batch element 0)", student_mask(LockedDropout, p, seed)))
        except NotImplementedError:
            note = "your LockedDropout:\nnot implemented yet"
        except Exception as err:  # show the student's error in the picture, not as a traceback
            note = f"your LockedDropout raised\n{type(err).__name__}"
    n = len(panels) + (note is not None)
    fig, axes = plt.subplots(1, n, figsize=(4.3 * n, 3.6))
    for ax, (title, mask) in zip(axes, panels, strict=False):
        ax.imshow(mask, cmap="Greys_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set(title=title, xlabel="feature", ylabel="timestep")
    if note is not None:
        axes[-1].text(0.5, 0.5, note, ha="center", va="center", fontsize=12, color="tab:red")
        axes[-1].set_axis_off()
    fig.suptitle(
        f"white = kept (scaled by 1/(1-p) = {1 / (1 - p):.2f}), black = dropped;  p = {p:.2f}, seed = {seed}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def dropout_widget(LockedDropout: type | None = None, p: float = 0.5, seed: int = 0) -> None:
    """Sliders for p and the seed; redraws the masks (with the student's class when given) on every change.

    Displays the widget itself and returns None (returning it would show it a second time).
    """
    import ipywidgets as widgets
    from IPython.display import display

    p_slider = widgets.FloatSlider(value=p, min=0.05, max=0.9, step=0.05, description="p", continuous_update=False)
    seed_slider = widgets.IntSlider(value=seed, min=0, max=20, description="seed", continuous_update=False)
    out = widgets.Output()

    def draw(_: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            mask_figure(p_slider.value, seed_slider.value, LockedDropout)
            plt.show()

    p_slider.observe(draw, names="value")
    seed_slider.observe(draw, names="value")
    box = widgets.VBox([widgets.HBox([p_slider, seed_slider]), out])
    display(box)
    draw()


def sentence_ids(vocab: np.ndarray, words: Sequence[str]) -> torch.Tensor:
    """Ids of words (unknown words map to <unk>) as a (T, 1) LongTensor."""
    return torch.tensor(encode_prompt(words, vocab).ids, dtype=torch.long).view(-1, 1)


def _render_sentence(words: Sequence[str], dropped: Sequence[bool], title: str) -> str:
    spans = []
    for word, gone in zip(words, dropped, strict=True):
        text = html.escape(word)
        if gone:
            spans.append(f"<span style='background:#f4cccc;text-decoration:line-through;color:#900'>{text}</span>")
        else:
            spans.append(f"<span>{text}</span>")
    return f"<p><b>{html.escape(title)}</b><br>{' '.join(spans)}</p>"


def embedding_dropout_demo(
    words: Sequence[str],
    vocab: np.ndarray,
    embedded_dropout: Callable | None = None,
    p: float = 0.3,
    seeds: Sequence[int] = (0, 1, 2),
) -> None:
    """Shows which words a few draws drop: with the idea (numpy) or with the student's embedded_dropout."""
    from IPython.display import HTML, display

    ids = sentence_ids(vocab, words)
    parts = []
    for seed in seeds:
        if embedded_dropout is None:
            rng = np.random.default_rng(seed)
            gone_types = rng.random(len(vocab)) < p
            dropped = [bool(gone_types[i]) for i in ids[:, 0].tolist()]
            title = f"idea, seed {seed}: every occurrence of a dropped type goes"
        else:
            torch.manual_seed(seed)
            embed = nn.Embedding(len(vocab), 8)
            try:
                with torch.no_grad():
                    out = embedded_dropout(embed, ids, dropout=p)
            except NotImplementedError:
                print("(your embedded_dropout is not implemented yet: the demo runs once it is)")
                return
            dropped = (out[:, 0].abs().sum(dim=1) == 0).tolist()
            title = f"your embedded_dropout, seed {seed}"
        parts.append(_render_sentence(words, dropped, title))
    display(HTML("".join(parts)))


# ------------------------------------------------------------------------------------------------------------
# Stage 3: the weight-dropped LSTM
# ------------------------------------------------------------------------------------------------------------


def idea_weight_drop(p: float = 0.5, size: int = 12, seed: int = 0) -> None:
    """DropConnect as a picture (numpy): one W_hh, and the masked copies two forward passes would use."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(size, size))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = [("W_hh", weight)] + [
        (f"pass {k}: W_hh * M{k} / (1-p), used at every timestep", weight * (rng.random(weight.shape) >= p) / (1 - p))
        for k in (1, 2)
    ]
    limit = np.abs(panels[1][1]).max()
    for ax, (title, w) in zip(axes, panels, strict=True):
        ax.imshow(w, cmap="RdBu", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set(title=title, xlabel="from unit", ylabel="to unit")
        ax.title.set_fontsize(9)
    fig.tight_layout()
    plt.show()


def lstm_with_weight(lstm: nn.LSTM, weight_hh: torch.Tensor) -> nn.LSTM:
    """A plain one-layer nn.LSTM with the wrapped module's weights and the given hidden-to-hidden weight."""
    plain = nn.LSTM(lstm.input_size, lstm.hidden_size)
    with torch.no_grad():
        plain.weight_ih_l0.copy_(lstm.weight_ih_l0)
        plain.bias_ih_l0.copy_(lstm.bias_ih_l0)
        plain.bias_hh_l0.copy_(lstm.bias_hh_l0)
        plain.weight_hh_l0.copy_(weight_hh)
    return plain


@_friendly
def weight_drop_heatmaps(WeightDrop: type, hidden: int = 12, p: float = 0.5, seed: int = 0) -> None:
    """The raw W_hh, the dropped W_hh of two forward passes, and the per-timestep recomputation error."""
    torch.manual_seed(seed)
    wrapped = WeightDrop(nn.LSTM(6, hidden), ["weight_hh_l0"], dropout=p)
    wrapped.train()
    x = torch.randn(20, 2, 6)
    used, errors = [], []
    for _ in range(2):
        with torch.no_grad():
            out, _ = wrapped(x)
            weight = wrapped.module.weight_hh_l0.detach().clone()
            again, _ = lstm_with_weight(wrapped.module, weight)(x)
        used.append(weight)
        errors.append((out - again).abs().amax(dim=(1, 2)).numpy())
    raw = wrapped.module.weight_hh_l0_raw.detach()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.3]})
    limit = float(used[0].abs().max())
    for ax, (title, w) in zip(
        axes,
        (("raw W_hh (learned)", raw), ("dropped W_hh, pass 1", used[0]), ("dropped W_hh, pass 2", used[1])),
        strict=False,
    ):
        ax.imshow(w[:hidden].numpy(), cmap="RdBu", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set(title=title + "\n(input-gate rows)", xlabel="from unit", ylabel="to unit")
    for k, err in enumerate(errors):
        axes[3].semilogy(np.maximum(err, 1e-12), marker="o", label=f"pass {k + 1}")
    axes[3].set(
        title="|your output - nn.LSTM(module.weight_hh_l0)|\nper timestep (flat = one mask per pass)",
        xlabel="timestep",
        ylim=(1e-12, 1),
    )
    axes[3].legend()
    fig.tight_layout()
    plt.show()


def time_lstm(seq_len: int = 70, batch: int = 20, size: int = 256, repeats: int = 3) -> dict[str, float]:
    """Seconds per forward+backward (the fastest of ``repeats``): a Python loop of LSTMCell steps against one fused
    nn.LSTM call."""
    torch.manual_seed(0)
    lstm = nn.LSTM(size, size)
    cell = nn.LSTMCell(size, size)
    x = torch.randn(seq_len, batch, size)

    def fused() -> None:
        lstm(x)[0].sum().backward()

    def loop() -> None:
        h = c = torch.zeros(batch, size)
        outs = []
        for t in range(seq_len):
            h, c = cell(x[t], (h, c))
            outs.append(h)
        torch.stack(outs).sum().backward()

    timings = {}
    for name, run in (("per-timestep loop (LSTMCell)", loop), ("fused nn.LSTM", fused)):
        run()  # warm up
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        timings[name] = min(seconds)  # the fastest repeat: what the code costs, not what else the machine did
    return timings


def timing_plot(timings: dict[str, float]) -> None:
    fig, ax = plt.subplots(figsize=(7, 2.4))
    names = list(timings)
    ax.barh(names, [timings[n] * 1000 for n in names], color=["tab:red", "tab:green"][: len(names)])
    for i, n in enumerate(names):
        ax.text(timings[n] * 1000, i, f" {timings[n] * 1000:.0f} ms", va="center")
    ax.set(xlabel="milliseconds per forward + backward")
    fig.tight_layout()
    plt.show()


# ------------------------------------------------------------------------------------------------------------
# Stage 5: what AR and TAR do
# ------------------------------------------------------------------------------------------------------------


def activation_plot(runs: dict[str, torch.Tensor], unit_count: int = 3) -> None:
    """``runs``: label -> last-layer raw output (T, B, H) after training. Traces over time and a histogram."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 3.6))
    colors = ["tab:gray", "tab:blue", "tab:orange", "tab:green"]
    for (label, out), color in zip(runs.items(), colors, strict=False):
        out = out.detach()
        for u in range(unit_count):
            axes[0].plot(out[:, 0, u].numpy(), color=color, alpha=0.8, label=label if u == 0 else None)
        axes[1].hist(
            out.flatten().numpy(),
            bins=60,
            alpha=0.5,
            color=color,
            label=f"{label}: mean h² = {out.pow(2).mean():.3f}, mean Δh² = {(out[1:] - out[:-1]).pow(2).mean():.3f}",
        )
    axes[0].set(title=f"{unit_count} units of the last layer over time", xlabel="timestep", ylabel="activation")
    axes[1].set(title="all last-layer activations", xlabel="activation", ylabel="count")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    plt.show()



def clipping_demo(stream: np.ndarray, steps: int = 100, lr: float = 30.0, clip: float = 0.25, vocab: int = 2000,
                  size: int = 64, batch: int = 10, bptt: int = 35, seed: int = 0) -> dict[str, Any]:
    """Why ``train_batch`` clips: a plain one-layer ``nn.LSTM`` language model (not your components) trained twice on
    the same batches of ``stream`` with plain SGD at rate ``lr``, once with the gradient's global norm clipped to
    ``clip`` and once without. Ids above ``vocab - 1`` become ``vocab - 1`` (ids are sorted by frequency), so it
    runs in seconds. Left: the training loss per step; right: the gradient norm before clipping."""

    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.lstm = nn.Embedding(vocab, size), nn.LSTM(size, size)
            self.out = nn.Linear(size, vocab)

        def forward(self, x: torch.Tensor, hidden: Any = None) -> tuple[torch.Tensor, Any]:
            y, hidden = self.lstm(self.embed(x), hidden)
            return self.out(y), hidden

    ids = torch.as_tensor(np.minimum(np.asarray(stream[: batch * (steps * bptt + 1)]), vocab - 1), dtype=torch.long)
    columns = ids[: len(ids) // batch * batch].view(batch, -1).t()
    runs: dict[str, dict[str, list[float]]] = {}
    for label, limit in ((f"clipped to {clip:g}", clip), ("not clipped", math.inf)):
        torch.manual_seed(seed)
        model = TinyLM()
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        hidden, losses, norms = None, [], []
        for k in range(min(steps, (columns.size(0) - 1) // bptt)):
            x, y = columns[k * bptt:(k + 1) * bptt], columns[k * bptt + 1:(k + 1) * bptt + 1]
            if hidden is not None:
                hidden = tuple(h.detach() for h in hidden)
            logits, hidden = model(x, hidden)
            loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), limit)))
            opt.step()
            losses.append(loss.item())
        runs[label] = {"loss": losses, "grad_norm": norms}
    fig, axes = plt.subplots(1, 2, figsize=(14, 3.4))
    for (label, run), color in zip(runs.items(), ("tab:blue", "tab:red"), strict=True):
        axes[0].plot(run["loss"], color=color, label=label)
        axes[1].semilogy(run["grad_norm"], color=color, alpha=0.8, label=label)
    axes[0].axhline(math.log(vocab), color="k", ls=":", lw=1, label=f"ln V = {math.log(vocab):.2f} (a uniform guess)")
    axes[0].set(xlabel="step", ylabel="training loss (nats)", title=f"plain SGD at lr {lr:g}, the same batches")
    axes[1].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[1].axhline(clip, color="k", ls="--", lw=1, label=f"clip = {clip:g}")
    axes[1].set(xlabel="step", ylabel="gradient norm before clipping", title="the global gradient norm")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()
    return runs


# ------------------------------------------------------------------------------------------------------------
# Stage 6: NT-ASGD on a problem small enough to see
# ------------------------------------------------------------------------------------------------------------


def trigger_picture(losses: Sequence[float], nonmono: int, switch_at: int | None) -> None:
    """A scripted validation curve: the window of the last ``nonmono`` checks and the check that switches."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot(range(len(losses)), losses, "o-", label="validation loss at check t")
    if switch_at is not None:
        best_old = min(losses[: switch_at - nonmono])
        ax.axhline(best_old, color="tab:gray", ls=":", label=f"best before the last {nonmono} checks")
        ax.axvspan(
            switch_at - nonmono - 0.5,
            switch_at - 0.5,
            color="tab:orange",
            alpha=0.15,
            label=f"last {nonmono} checks (not compared)",
        )
        ax.axvline(switch_at, color="tab:red", ls="--", label=f"switch to averaging at t = {switch_at}")
    ax.set(xlabel="check t", ylabel="validation loss", title=f"the non-monotonic trigger, n = {nonmono}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


@_friendly
def ntasgd_demo(
    NTASGD: type, epochs: int = 40, steps: int = 25, lr: float = 0.3, nonmono: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Noisy SGD on a 2-D quadratic: the validation curve with the trigger, raw iterates and their average."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.tensor([1.0, -1.0])
    curvature = torch.tensor([1.0, 4.0])
    w = nn.Parameter(torch.tensor([-2.0, 2.0]))
    opt = NTASGD([w], lr=lr, nonmono=nonmono)
    val, trajectory, trigger_epoch = [], [], None
    for epoch in range(epochs):
        for _ in range(steps):
            opt.zero_grad()
            noise = torch.randn(2, generator=gen) * 1.5
            w.grad = curvature * (w.detach() - target) + noise
            opt.step()
            trajectory.append(w.detach().clone())
        loss = float(0.5 * (curvature * (w.detach() - target) ** 2).sum())
        if opt.record(loss):
            trigger_epoch = epoch
        val.append(loss)
    with opt.averaged():
        averaged = w.detach().clone()
    avg_loss = float(0.5 * (curvature * (averaged - target) ** 2).sum())
    traj = torch.stack(trajectory).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(14, 4))
    axes[0].semilogy(val, marker=".", label="validation loss of the live weights")
    if trigger_epoch is not None:
        axes[0].axvline(trigger_epoch, color="tab:red", ls="--", label=f"trigger (epoch {trigger_epoch})")
    axes[0].axhline(avg_loss, color="tab:green", label=f"averaged weights: {avg_loss:.4f}")
    axes[0].set(xlabel="epoch (one record() call each)", ylabel="loss", title="validation and the trigger")
    axes[0].legend()
    axes[1].plot(traj[:, 0], traj[:, 1], ".", ms=2, alpha=0.4, label="raw iterates")
    axes[1].plot(*target.numpy(), "k+", ms=16, mew=2, label="optimum")
    axes[1].plot(*averaged.numpy(), "*", color="tab:green", ms=16, label="average since the trigger")
    axes[1].set(xlabel="w[0]", ylabel="w[1]", title="raw iterates bounce around; their average does not")
    axes[1].legend()
    fig.tight_layout()
    plt.show()
    return {"val": val, "trigger_epoch": trigger_epoch, "averaged_loss": avg_loss, "final_loss": val[-1]}


# ------------------------------------------------------------------------------------------------------------
# Stage 3 and 4: what weight_hh_l0 holds
# ------------------------------------------------------------------------------------------------------------


def gate_blocks_plot(hidden: int = 8, p: float = 0.5, seed: int = 0) -> None:
    """``nn.LSTM``'s ``weight_hh_l0`` is four (H, H) gate matrices stacked, (4H, H): input, forget, cell, output
    (PyTorch's order). One DropConnect mask over it drops connections of all four gates, once per pass."""
    torch.manual_seed(seed)
    lstm = nn.LSTM(hidden, hidden)
    weight = lstm.weight_hh_l0.detach().numpy()
    mask = np.random.default_rng(seed).random(weight.shape) >= p
    fig, axes = plt.subplots(1, 2, figsize=(9, 5))
    for ax, image, title in ((axes[0], weight, f"weight_hh_l0 {tuple(weight.shape)}"),
                             (axes[1], weight * mask / (1 - p), f"one DropConnect mask, p = {p}")):
        ax.imshow(image, cmap="coolwarm", aspect="auto", vmin=-0.7, vmax=0.7, interpolation="nearest")
        for k, gate in enumerate(("input i", "forget f", "cell g", "output o")):
            ax.axhline((k + 1) * hidden - 0.5, color="k", lw=1)
            ax.text(hidden - 0.4, k * hidden + hidden / 2, f" {gate}", va="center", fontsize=9)
        ax.set(title=title, xlabel="from h[t-1] (H)", ylabel="to the gates (4H)")
    fig.tight_layout()
    plt.show()


# ------------------------------------------------------------------------------------------------------------
# Stage 6: the trigger by hand
# ------------------------------------------------------------------------------------------------------------


def trigger_table(losses: Sequence[float], nonmono: int) -> None:
    """Algorithm 1's trigger traced by hand: for each check t, v_t, the best value older than the last n checks
    (``min(logs[:t - n])``) and whether this check switches (only the first time)."""
    print(f"n = {nonmono}")
    print(f"{'t':>3} {'v_t':>6}  {'min(logs[:t-n])':>16}  switch?")
    switched = False
    for t, v in enumerate(losses):
        if t > nonmono:
            best = min(losses[: t - nonmono])
            switch = not switched and v > best
            note = "yes: worse than the best older value" if switch else ("(already averaging)" if switched else "no")
            print(f"{t:>3} {v:>6g}  {best:>16g}  {note}")
            switched = switched or switch
        else:
            print(f"{t:>3} {v:>6g}  {'-':>16}  no: t <= n, nothing old enough to compare")


# ------------------------------------------------------------------------------------------------------------
# Stage 7: what to expect from the run, the learning rate over the budget
# ------------------------------------------------------------------------------------------------------------


def measured_curves_plot(runs: dict[str, Any], title: str) -> None:
    """Validation perplexity against wall-clock minutes of measured runs (``hw4lib.curves.read_csv``): the
    periodic checks (on the checking slice) as lines, each run's final score (the whole split) as a star."""
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for curve in runs.values():
        line, = ax.plot([p["wall_min"] for p in curve.points], [p["valid_ppl"] for p in curve.points], "o-", ms=3,
                        label=f"{curve.run}: checks (checking slice)")
        if curve.final:
            ax.plot([curve.final["wall_min"]], [curve.final["valid_ppl"]], "*", ms=13, color=line.get_color(),
                    label=f"{curve.run}: final, whole split {curve.final['valid_ppl']:.1f}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set(xlabel="wall-clock minutes (training, checks and the final evaluation)", ylabel="validation perplexity",
           title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def lr_schedule_plot(lr: float, budget_min: float | None, decay_frac: float) -> None:
    """The rate the trainer gives the optimizer over a wall-clock budget: ``lr`` until the last ``decay_frac`` of
    the training time, then linearly to 0 at its end (drawn with the end at the budget; the trainer keeps back a
    reserve for the last check and the final evaluation, so its end comes a little earlier). Constant without a
    decay, as in the paper."""
    fig, ax = plt.subplots(figsize=(9, 2.6))
    end = budget_min or 60.0
    t = np.linspace(0, end, 400)
    scale = np.clip((end - t) / (decay_frac * end), 0, 1) if decay_frac and budget_min else np.ones_like(t)
    ax.plot(t, lr * scale, lw=2)
    if decay_frac and budget_min:
        ax.axvline((1 - decay_frac) * end, color="tab:gray", ls=":", label=f"the decay starts: {1 - decay_frac:.0%} of "
                   "the training time")
        ax.legend(fontsize=8)
    ax.set(xlabel="wall-clock minutes" if budget_min else "minutes (no budget: the rate never changes)",
           ylabel="optimizer.lr", ylim=(0, lr * 1.1),
           title=f"lr {lr:g}" + (f", decayed over the last {decay_frac:.0%} of {budget_min:g} minutes" if decay_frac
                                 and budget_min else ", constant"))
    fig.tight_layout()
    plt.show()


# ------------------------------------------------------------------------------------------------------------
# Stage 7: temperature and top-k
# ------------------------------------------------------------------------------------------------------------


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


def continuation_html(result: Continuation) -> str:
    """The prompt (unknown words struck through and shown as <unk>), the continuation in bold, and the note
    naming the unknown words."""
    unknown = set(result.prompt.unknown)
    prompt = " ".join(
        f"<span style='background:#fde9c8' title='not in the vocabulary'><s>{html.escape(w)}</s> &lt;unk&gt;</span>"
        if w in unknown else html.escape(w) for w in result.prompt.words
    )
    parts = [f"<p class='hw4-continuation'>{prompt} <b>{html.escape(result.text)}</b></p>"]
    if result.unknown_note:
        parts.append(f"<p class='hw4-unknown-note' style='color:#9a5b00'>{html.escape(result.unknown_note)}</p>")
    return "".join(parts)


def generator_widget(
    model: nn.Module,
    vocab: np.ndarray,
    generation: Callable[..., torch.Tensor],
    prediction: Callable[..., torch.Tensor] | None = None,
    *,
    prompt: str = "The game was",
    seed: int = 0,
) -> None:
    """A prompt box, sliders for temperature, top-k (0 = off) and length, a greedy box and a Generate button;
    the continuation comes from your ``generation`` through :func:`hw4lib.prompting.continue_prompt` (a fresh
    generator seeded with the seed box on every press, so the same settings give the same text). With your
    ``prediction``, also the prompt's next-word distribution (top 10) at τ = 1 and the chosen τ.

    Displays the widget itself and returns None (returning it would show it a second time).
    """
    import ipywidgets as widgets
    from IPython.display import HTML, display

    wide, label = widgets.Layout(width="420px"), {"description_width": "100px"}
    text = widgets.Text(value=prompt, description="prompt", placeholder="a few words",
                        layout=widgets.Layout(width="70%"))
    temperature = widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.05, description="temperature τ",
                                      continuous_update=False, layout=wide, style=label)
    top_k = widgets.IntSlider(value=0, min=0, max=100, description="top-k (0 = off)", continuous_update=False,
                              layout=wide, style=label)
    n_words = widgets.IntSlider(value=20, min=1, max=60, description="words", continuous_update=False, layout=wide,
                                style=label)
    greedy = widgets.Checkbox(value=False, description="greedy (arg-max: ignores τ and top-k)", indent=False)
    seed_box = widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                      layout=widgets.Layout(width="160px"))
    button = widgets.Button(description="Generate", button_style="primary", icon="play")
    out = widgets.Output()

    def generate(_: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            try:
                result = continue_prompt(model, vocab, generation, text.value, n_words.value, greedy=greedy.value,
                                         temperature=temperature.value, top_k=top_k.value or None,
                                         seed=seed_box.value)
            except NotImplementedError:
                print("(generation: the continuation appears once your generation is implemented)")
                return
            except HW4Error as err:
                print(err)
                return
            except Exception as err:  # the student's error in words, not a traceback inside the widget
                print(f"your generation raised {type(err).__name__}: {err}")
                return
            display(HTML(continuation_html(result)))
            if prediction is None:
                return
            try:
                ids = torch.tensor(result.prompt.ids, dtype=torch.long).view(-1, 1)
                logits = prediction(model, ids.to(next(model.parameters()).device))[0]
            except NotImplementedError:
                print("(prediction: the next-word distribution appears once your prediction is implemented)")
                return
            except Exception as err:  # same: in words
                print(f"your prediction raised {type(err).__name__}: {err}")
                return
            temps = (1.0,) if greedy.value or temperature.value == 1.0 else (1.0, temperature.value)
            fig = sampling_distribution_plot(logits.cpu(), vocab, temperatures=temps,
                                             top_k=None if greedy.value else top_k.value or None, shown=10,
                                             show=False)
            # displayed as an image into `out` by hand: plt.show() from a button's callback left the chart out
            # now and then (seen in CI), as it depends on pyplot's figure registry at that moment
            display(fig)
            plt.close(fig)

    def sync(_: Any = None) -> None:
        temperature.disabled = top_k.disabled = greedy.value

    greedy.observe(sync, names="value")
    button.on_click(generate)
    controls = widgets.VBox([
        text,
        widgets.HBox([widgets.VBox([temperature, top_k, n_words]), widgets.VBox([greedy, seed_box, button])]),
    ])
    display(widgets.VBox([controls, out]))
    generate()


# ------------------------------------------------------------------------------------------------------------
# Stage 8: the continuous cache pointer
# ------------------------------------------------------------------------------------------------------------


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
    """Validation perplexity over λ, one line per θ (rows from :func:`hw4lib.cache_pointer.grid_search`)."""
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

"""Stages 2 to 4: dropout masks (locked, embedding, on the weights), what ``weight_hh_l0`` holds, the fused LSTM's
speed.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn

from hw4lib.prompting import encode_prompt
from hw4lib.viz.friendly import friendly


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


@friendly
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

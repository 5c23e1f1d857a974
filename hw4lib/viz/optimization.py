"""Stages 5 to 7: what AR and TAR do, clipping, NT-ASGD's trigger and average, what to expect from the run and
the learning rate over the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import torch
import torch.nn as nn

from hw4lib.viz.friendly import friendly


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


@friendly
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


def measured_curves_plot(runs: dict[str, Any], title: str) -> None:
    """Validation perplexity against wall-clock minutes of measured runs (``hw4lib.lab.curves.read_csv``): the
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

"""``python -m hw4lib bench``: training and evaluation speed of the AWD-LSTM against plain LSTMs, side by side.

For each size set and precision, in one process, on the same random batches:

* ``awd``: the reference AWD-LSTM training step, every regularization on: the components' own ``train_batch``
  (embedding dropout, locked dropout, weight-dropped ``W_hh``, AR/TAR, clipping, NT-ASGD's step) with the
  dropouts of the preset the size set comes from;
* ``plain``: a stack of plain ``nn.LSTM`` layers of the same sizes (tied decoder), cross-entropy, backward, the
  same clipping, a plain SGD step: the speed the AWD-LSTM's regularization is measured against;
* ``cell``: the same stack written as a per-timestep ``nn.LSTMCell`` loop (what a from-scratch LSTM costs);
* ``eval``: :func:`hw4lib.perplexity.evaluate_nll` (the one perplexity of the trainer and the grader) of the
  AWD-LSTM, batch 10, on a random stream.

Method: one warm-up step of each (allocator, kernel selection, oneDNN primitive caches), then ``rounds`` rounds in
which every variant runs ``steps`` steps, the order rotating from round to round so that a slow spell of a shared
machine does not favour one side; the report gives medians over rounds. ``awd_vs_plain`` is the median of the
per-round ratios ``plain time / awd time`` (1.0: regularization for free).

Peak memory of a training step: the growth of the process's resident set during one step, read from Linux's
``VmHWM`` after resetting it (``/proc/self/clear_refs``), after ``malloc_trim`` has given free heap back; where that
reset is unavailable, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` deltas (a lifetime high-water mark, so a step
that stays under an earlier peak reads 0). ``tracemalloc`` does not see torch's allocations. The method used is
in the report (``memory_method``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from hw4lib.cpu_runtime import (
    bf16_supported,
    malloc_trim,
    precision_context,
    runtime_info,
    set_threads,
    tune_malloc,
)
from hw4lib.errors import HW4Error
from hw4lib.lab.training import get_preset
from hw4lib.perplexity import evaluate_nll

# name: sizes, and the (preset, dataset) whose regularization the AWD-LSTM step uses.
SIZE_SETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab=500, embed=16, hidden=32, layers=2, batch=4, bptt=10, preset=("quick", "wikitext2")),
    "cpu": dict(vocab=33_278, embed=200, hidden=400, layers=2, batch=20, bptt=35, preset=("cpu", "wikitext2")),
    "paper": dict(vocab=10_000, embed=400, hidden=1150, layers=3, batch=20, bptt=70, preset=("paper", "ptb")),
}
VARIANTS = ("awd", "plain", "cell", "eval")
EVAL_BATCH = 10


def layer_sizes(embed: int, hidden: int, layers: int) -> list[tuple[int, int]]:
    """(input, hidden) of each LSTM layer of the AWD-LSTM shape with a tied decoder: E -> H -> ... -> H -> E."""
    sizes = [embed] + [hidden] * (layers - 1) + [embed]
    return [(sizes[i], sizes[i + 1]) for i in range(layers)]


def train_flops(tokens: int, embed: int, hidden: int, layers: int, vocab: int) -> float:
    """Floating-point operations of one training step on ``tokens`` = batch x bptt tokens, matrix products only.

    An LSTM layer with input size I and hidden size H multiplies, per token, a (I + H) vector by a (I + H) x 4H
    matrix: 2 * 4H * (I + H) FLOPs forward. The tied decoder multiplies the last layer's output (size E) by E x V:
    2 * E * V FLOPs forward. The backward pass costs twice the forward (the gradients with respect to the inputs
    and to the weights are one product each), so a training step is 3x the forward::

        FLOPs = 3 * tokens * ( sum over layers of 8 * H_l * (I_l + H_l)  +  2 * E * V )

    Element-wise work (gates, dropout masks, the softmax, the optimizer) and the embedding lookup are left out:
    they are memory-bound and small next to the products. The same count applies to all three variants.
    """
    lstm = sum(8 * h * (i + h) for i, h in layer_sizes(embed, hidden, layers))
    return 3.0 * tokens * (lstm + 2 * embed * vocab)


class PlainStack(nn.Module):
    """Embedding, one ``nn.LSTM`` per layer with the AWD-LSTM's sizes, tied decoder; no regularization."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, embed)
        self.rnns = nn.ModuleList(nn.LSTM(i, h) for i, h in layer_sizes(embed, hidden, layers))
        self.decoder = nn.Linear(embed, vocab)
        self.decoder.weight = self.encoder.weight

    def forward(self, x: torch.Tensor, hidden: Any = None) -> tuple[torch.Tensor, list]:
        out, new_hidden = self.encoder(x), []
        for i, rnn in enumerate(self.rnns):
            out, h = rnn(out, None if hidden is None else hidden[i])
            new_hidden.append(tuple(t.detach() for t in h))
        return self.decoder(out), new_hidden


class CellStack(nn.Module):
    """The same stack as :class:`PlainStack` written as a per-timestep loop over ``nn.LSTMCell`` s."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, embed)
        self.cells = nn.ModuleList(nn.LSTMCell(i, h) for i, h in layer_sizes(embed, hidden, layers))
        self.decoder = nn.Linear(embed, vocab)
        self.decoder.weight = self.encoder.weight

    def forward(self, x: torch.Tensor, hidden: Any = None) -> tuple[torch.Tensor, list]:
        out = self.encoder(x)
        if hidden is None:
            hidden = [(out.new_zeros(x.size(1), c.hidden_size), out.new_zeros(x.size(1), c.hidden_size))
                      for c in self.cells]
        new_hidden = []
        for cell, (h, c) in zip(self.cells, hidden, strict=True):
            steps = []
            for t in range(out.size(0)):
                h, c = cell(out[t], (h, c))
                steps.append(h)
            out = torch.stack(steps)
            new_hidden.append((h.detach(), c.detach()))
        return self.decoder(out), new_hidden


def _plain_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, state: dict,
                key: str, clip: float) -> None:
    opt.zero_grad(set_to_none=True)
    logits, state[key] = model(x, state[key])
    F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1)).backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss_kb() -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in kB from /proc/self/status, or None."""
    try:
        with open("/proc/self/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if line.startswith(("VmRSS", "VmHWM")))
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def step_memory_mb(step: Callable[[], None]) -> tuple[float, str]:
    """Growth of the resident set during one call of ``step``, in MB, and the method used (module docstring)."""
    malloc_trim()
    if _reset_hwm() and _rss_kb() is not None:
        before, _ = _rss_kb()  # type: ignore[misc]
        step()
        _, peak = _rss_kb()  # type: ignore[misc]
        return max(0, peak - before) / 1024, "VmHWM after /proc/self/clear_refs reset, minus VmRSS before"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024  # bytes on macOS, kB on Linux
    return max(0, after - before) * scale, "ru_maxrss delta (lifetime high-water mark: 0 when under an earlier peak)"


def gemm_gflops(m: int, k: int, n: int, precision: str, device: torch.device, reps: int = 5) -> float:
    """The machine's rate on the decoder's product, (m x k) @ (k x n), in the given precision: median of ``reps``."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device)
    b = torch.randn(k, n, generator=gen).to(device)
    times = []
    with precision_context(precision, device):
        a @ b  # warm-up
        for _ in range(reps):
            _sync(device)
            start = time.perf_counter()
            a @ b
            _sync(device)
            times.append(time.perf_counter() - start)
    return 2.0 * m * k * n / statistics.median(times) / 1e9


def measure(size_name: str, precision: str, *, components: Any, rounds: int = 5, steps: int = 3,
            eval_windows: int = 4, device: str = "cpu", variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """The report of one size set in one precision (see the module docstring)."""
    if size_name not in SIZE_SETS:
        raise HW4Error(f"unknown size set {size_name!r}; choose from {', '.join(SIZE_SETS)}")
    s = SIZE_SETS[size_name]
    dev = torch.device(device)
    vocab, embed, hidden, layers, batch, bptt = (s[k] for k in ("vocab", "embed", "hidden", "layers", "batch", "bptt"))
    cfg = get_preset(s["preset"][0], s["preset"][1], embed_size=embed, hidden_size=hidden, num_layers=layers,
                     batch_size=batch, bptt=bptt)
    C = components
    torch.manual_seed(0)
    awd = C.LanguageModel(**cfg.model_config(vocab)).to(dev)
    awd_opt = C.NTASGD(awd.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    plain = PlainStack(vocab, embed, hidden, layers).to(dev)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    cell = CellStack(vocab, embed, hidden, layers).to(dev)
    cell_opt = torch.optim.SGD(cell.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (bptt, batch), generator=gen).to(dev)
    y = torch.randint(0, vocab, (bptt, batch), generator=gen).to(dev)
    eval_stream = torch.randint(0, vocab, (eval_windows * bptt * EVAL_BATCH + EVAL_BATCH,), generator=gen)
    state: dict[str, Any] = {"awd": None, "plain": None, "cell": None}
    autocast = lambda: precision_context(precision, dev)  # noqa: E731

    def awd_step() -> None:
        with autocast():
            _, state["awd"] = C.train_batch(awd, awd_opt, x, y, state["awd"], bptt, bptt, alpha=cfg.alpha,
                                            beta=cfg.beta, clip=cfg.clip)

    def plain_step() -> None:
        with autocast():
            _plain_step(plain, plain_opt, x, y, state, "plain", cfg.clip)

    def cell_step() -> None:
        with autocast():
            _plain_step(cell, cell_opt, x, y, state, "cell", cfg.clip)

    def eval_pass() -> None:
        with autocast():
            evaluate_nll(awd, eval_stream, batch_size=EVAL_BATCH, bptt=bptt)

    run = {"awd": awd_step, "plain": plain_step, "cell": cell_step, "eval": eval_pass}
    work = {"awd": steps, "plain": steps, "cell": steps, "eval": 1}
    tokens = {"awd": steps * bptt * batch, "plain": steps * bptt * batch, "cell": steps * bptt * batch,
              "eval": eval_windows * bptt * EVAL_BATCH}
    names = [v for v in VARIANTS if v in variants]
    for name in names:  # warm-up
        run[name]()
    rows = []
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        row: dict[str, float] = {}
        for name in order:
            _sync(dev)
            start = time.perf_counter()
            for _ in range(work[name]):
                run[name]()
            _sync(dev)
            row[f"{name}_s"] = time.perf_counter() - start
        rows.append(row)

    def median_tok_s(name: str) -> float:
        return statistics.median(tokens[name] / row[f"{name}_s"] for row in rows)

    flops = train_flops(bptt * batch, embed, hidden, layers, vocab)
    gemm = gemm_gflops(bptt * batch, embed, vocab, precision, dev)
    report: dict[str, Any] = {
        "size_set": size_name, "precision": precision,
        "sizes": {"vocab": vocab, "embed": embed, "hidden": hidden, "layers": layers, "batch": batch, "bptt": bptt},
        "regularization": {k: getattr(cfg, k) for k in ("dropout", "dropouth", "dropouti", "dropoute", "wdrop",
                                                         "alpha", "beta", "weight_decay", "clip")},
        "rounds": rows,
        "train_flops_per_step": flops,
        "gemm_gflops": gemm,
        "gemm_shape": [bptt * batch, embed, vocab],
    }
    for name in names:
        report[f"{name}_tok_s"] = median_tok_s(name)
    for name in ("awd", "plain", "cell"):
        if name in names:
            achieved = flops * median_tok_s(name) / (bptt * batch) / 1e9
            report[f"{name}_gflops"] = achieved
            report[f"{name}_of_gemm"] = achieved / gemm
    if "awd" in names and "plain" in names:
        report["awd_vs_plain"] = statistics.median(row["plain_s"] / row["awd_s"] for row in rows)
    if "cell" in names and "plain" in names:
        report["cell_vs_plain"] = statistics.median(row["plain_s"] / row["cell_s"] for row in rows)
    memory: dict[str, float] = {}
    for name in ("awd", "plain", "cell"):
        if name in names:
            memory[name], method = step_memory_mb(run[name])
            report["memory_method"] = method
    report["step_peak_mb"] = memory
    return report


def benchmark(sizes: list[str], precisions: list[str], *, impl: str = "solutions", rounds: int = 5, steps: int = 3,
              eval_windows: int = 4, device: str = "cpu", threads: int | None = None,
              variants: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """Every size set in every precision; precisions the device cannot run natively are reported as skipped."""
    from hw4lib.components import load_components

    tuned = tune_malloc()
    set_threads(threads)
    components = load_components(impl)
    results: dict[str, dict[str, Any]] = {}
    for size in sizes:
        results[size] = {}
        for precision in precisions:
            if precision == "bf16" and not bf16_supported(str(torch.device(device))):
                results[size][precision] = {"skipped": "bf16 does not run natively on this device"}
                continue
            results[size][precision] = measure(size, precision, components=components, rounds=rounds, steps=steps,
                                               eval_windows=eval_windows, device=device, variants=variants)
    return {
        "machine": {**runtime_info(device), "malloc_tuned": tuned},
        "method": {"rounds": rounds, "steps_per_round": steps, "eval_windows": eval_windows, "impl": impl,
                   "statistic": "median over rounds", "awd_vs_plain": "median of per-round plain time / awd time"},
        "results": results,
    }


def format_table(report: dict[str, Any]) -> str:
    """The results as a Markdown table (the one BENCHMARKS.md holds)."""
    cols = ["size set", "precision", "awd tok/s", "plain tok/s", "cell tok/s", "awd_vs_plain", "eval tok/s",
            "awd GFLOP/s", "GEMM GFLOP/s", "awd step peak MB"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for size, by_precision in report["results"].items():
        for precision, r in by_precision.items():
            if "skipped" in r:
                lines.append(f"| {size} | {precision} | skipped: {r['skipped']} |" + " |" * (len(cols) - 3))
                continue
            cell = lambda key, fmt="{:,.0f}", r=r: fmt.format(r[key]) if key in r else "-"  # noqa: E731
            lines.append("| " + " | ".join([
                size, precision, cell("awd_tok_s"), cell("plain_tok_s"), cell("cell_tok_s"),
                cell("awd_vs_plain", "{:.3f}"), cell("eval_tok_s"), cell("awd_gflops", "{:.1f}"),
                cell("gemm_gflops", "{:.1f}"), f"{r['step_peak_mb'].get('awd', float('nan')):,.0f}",
            ]) + " |")
    return "\n".join(lines)


def _cmd_bench(args: argparse.Namespace) -> int:
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    for s in sizes:
        if s not in SIZE_SETS:
            raise HW4Error(f"unknown size set {s!r}; choose from {', '.join(SIZE_SETS)}")
    for p in precisions:
        if p not in ("fp32", "bf16"):
            raise HW4Error(f"unknown precision {p!r}; choose fp32 and/or bf16")
    report = benchmark(sizes, precisions, impl=args.impl, rounds=args.rounds, steps=args.steps,
                       eval_windows=args.eval_windows, device=args.device, threads=args.threads)
    report = {"command": "python -m hw4lib bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else None,
              **report}
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(format_table(report))
    for size, by_precision in report["results"].items():
        for precision, r in by_precision.items():
            if "awd_vs_plain" in r:
                print(f"{size} {precision}: AWD-LSTM / plain nn.LSTM throughput {r['awd_vs_plain']:.3f} "
                      f"({r['awd_tok_s']:.0f} vs {r['plain_tok_s']:.0f} tokens/s)", file=sys.stderr)
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="training/evaluation speed: AWD-LSTM vs plain nn.LSTM vs LSTMCell loop",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="cpu,paper", help=f"comma-separated size sets: {', '.join(SIZE_SETS)}")
    p.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16 (bf16 skipped where "
                                                             "the device does not run it natively)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians over them)")
    p.add_argument("--steps", type=int, default=3, help="training steps per variant and round")
    p.add_argument("--eval-windows", type=int, default=4, help="evaluation windows (batch 10 x bptt) per round")
    p.add_argument("--impl", default="solutions", help="whose components run the AWD-LSTM step")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    p.add_argument("--json", help="also write the full report (every round) to this file")
    p.set_defaults(func=_cmd_bench)


"""The one perplexity of the course: notebooks, the CLI, the benchmarks and the autograder all use it.

Evaluation reads the split as one running text (articles in their given order, never shuffled), cuts it into
``batch_size`` contiguous columns, and walks them in windows of ``bptt`` tokens, carrying the hidden state, so
every token after the first of a column is predicted with all the context the model has seen. The score is the
mean negative log-likelihood over every predicted token; perplexity is its exponential.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hw4lib.errors import HW4Error

Data = Sequence[np.ndarray] | np.ndarray | torch.Tensor


def as_stream(data: Data, max_tokens: int | None = None) -> torch.Tensor:
    """A 1-D LongTensor of token ids from a list of articles, an array or a tensor (first ``max_tokens``)."""
    if isinstance(data, torch.Tensor):
        flat = data.reshape(-1).long()
    elif isinstance(data, np.ndarray) and data.dtype != object:
        flat = torch.from_numpy(data.reshape(-1).astype(np.int64))
    else:
        flat = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.int64) for a in data]))
    return flat[:max_tokens] if max_tokens is not None else flat


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) -> (N // B, B): column b is the b-th contiguous slice of the stream."""
    rows = len(stream) // batch_size
    if rows < 2:
        raise HW4Error(f"{len(stream)} tokens are too few for {batch_size} columns of at least 2 tokens")
    return stream[: rows * batch_size].view(batch_size, rows).t().contiguous()


def window_bounds(rows: int, bptt: int) -> list[tuple[int, int]]:
    """(start, length) of the evaluation windows over ``rows`` rows (the autograder reads the same ones)."""
    return [(i, min(bptt, rows - 1 - i)) for i in range(0, rows - 1, bptt)]


def windows(columns: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive (inputs, targets) windows of at most ``bptt`` rows, targets shifted by one."""
    for start, length in window_bounds(columns.size(0), bptt):
        yield columns[start : start + length], columns[start + 1 : start + 1 + length]


def _picked_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) of every position, (T * B, 1) float64, from logits (T, B, V) of any floating type."""
    flat = logits.reshape(-1, logits.size(-1))
    index = targets.reshape(-1, 1)
    picked = torch.empty(flat.size(0), 1, dtype=torch.float64, device=logits.device)
    # Row blocks of about 8 MB in float64 instead of the whole (T, B, V) at once: the same row-wise log-softmax,
    # so the same numbers to the last bit, without two window-sized float64 copies (186 MB each at the cpu
    # preset's 700 x 33,278) going through memory. nll_sum sums over the same (T, B, 1) layout as before.
    rows = max(1, (1 << 23) // (8 * max(1, flat.size(1))))
    for start in range(0, flat.size(0), rows):
        block = F.log_softmax(flat[start : start + rows].double(), dim=-1)
        picked[start : start + rows] = block.gather(-1, index[start : start + rows])
    return picked


def target_log_softmax(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under ``logits`` (T, B, V) at every position of ``targets`` (T, B): (T, B) float64."""
    return _picked_log_probs(logits, targets).view(targets.shape)


def _checked(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``logits`` if they are (T, B, V) for ``targets`` (T, B); else the error a student can act on."""
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise HW4Error(
            f"the model returned logits of shape {tuple(logits.shape)}; expected (T, B, V) = "
            f"({targets.size(0)}, {targets.size(1)}, vocab_size)"
        )
    return logits


def nll_sum(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed negative log-likelihood of ``targets`` (T, B) under ``logits`` (T, B, V), in float64.

    Logits of any floating type (bf16 under autocast included) are cast to float64 before the log-softmax, so the
    score's own arithmetic never runs in reduced precision.
    """
    return float(-_picked_log_probs(_checked(logits, targets), targets).view(*targets.shape, 1).sum())


@torch.no_grad()
def target_log_probs(model: torch.nn.Module, columns: torch.Tensor, bounds: Sequence[tuple[int, int]]) -> torch.Tensor:
    """log p(target) at every position of the given windows of ``columns``, the hidden state carried from one
    window to the next: (sum of the window lengths, B), float64. The autograder compares the student's model with
    the reference on the same weights through this."""
    out, hidden = [], None
    for start, length in bounds:
        logits, hidden = model(columns[start : start + length], hidden)[:2]
        targets = columns[start + 1 : start + 1 + length]
        out.append(target_log_softmax(logits, targets))
    return torch.cat(out)


@torch.no_grad()
def evaluate_nll(
    model: torch.nn.Module,
    data: Data,
    *,
    batch_size: int = 10,
    bptt: int = 70,
    max_tokens: int | None = None,
    progress: bool = False,
    window_log_probs: list[torch.Tensor] | None = None,
) -> float:
    """Mean negative log-likelihood (nats per token) of ``data`` under ``model``, in eval mode.

    ``model(inputs (T, B), hidden)`` must return ``(logits (T, B, V), hidden, ...)``. Returns ``nan`` when
    the model produces non-finite scores (NaN weights), so callers decide how to report it. Given a list as
    ``window_log_probs``, appends each window's log p(target), (T, B) float64, to it: the autograder's
    consistency check reads the first windows' from the same pass (what :func:`target_log_probs` gives for them,
    bit for bit) instead of running the model over them again.
    """
    device = next(model.parameters()).device
    columns = batchify(as_stream(data, max_tokens), batch_size).to(device)
    was_training = model.training
    model.eval()
    total, count, hidden = 0.0, 0, None
    try:
        steps = windows(columns, bptt)
        if progress:
            steps = tqdm(steps, total=math.ceil((columns.size(0) - 1) / bptt), desc="evaluate", leave=False)
        for inputs, targets in steps:
            logits, hidden = model(inputs, hidden)[:2]
            picked = _picked_log_probs(_checked(logits, targets), targets)
            total += float(-picked.view(*targets.shape, 1).sum())
            count += targets.numel()
            if window_log_probs is not None:
                window_log_probs.append(picked.view(targets.shape))
    finally:
        model.train(was_training)
    mean = total / count
    return mean if math.isfinite(mean) else float("nan")


def perplexity(model: torch.nn.Module, data: Data, **kwargs) -> float:
    """``exp`` of :func:`evaluate_nll` (same keyword arguments)."""
    nll = evaluate_nll(model, data, **kwargs)
    return math.exp(nll) if math.isfinite(nll) else float("nan")


def earned_share(ppl: float, full: float, zero: float) -> float:
    """The share of the perplexity points (grader and stage-7 check): all at or below ``full``, none at or above
    ``zero``, linear between."""
    if not math.isfinite(ppl) or ppl >= zero:
        return 0.0
    return 1.0 if ppl <= full else (zero - ppl) / (zero - full)

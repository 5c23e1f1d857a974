"""Visible checks: run a student's component on small inputs and explain in words what is wrong.

Every check has three layers:

1. a *probe* runs the component on small, seeded inputs and collects tensors;
2. pure ``diagnose_*`` functions take those tensors (or arrays) and return a list of human messages,
   empty when everything holds (the autograder reuses them on its own data);
3. :func:`report` prints a ✓ line or the messages and raises a one-line :class:`CheckFailed`, so nbval and
   nbgrader see a failure while the student sees sentences instead of a traceback.

The checks test *properties* of the contract in ``docs/components.md`` (a mask shared across time, a rate near
``p``, identity in eval mode, one ``W_hh`` mask per pass, ...). Nothing here implements a component.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hw4lib.components import ComponentLoadError, load_components
from hw4lib.errors import HW4Error

NOT_IMPLEMENTED = (
    "not implemented yet: write your code in the cell marked `# YOUR CODE HERE` (delete the "
    "`raise NotImplementedError()` line), run that cell, then run this one again."
)


class CheckFailed(AssertionError):
    """A visible check found problems; its message is one line, the details were printed above it."""


# ----------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------


def _where(err: BaseException) -> str:
    """'line 7 of your cell: `mask = ...`' for the innermost frame that is student code, else ''."""
    frames = traceback.extract_tb(err.__traceback__)
    for frame in reversed(frames):
        name = frame.filename
        if "site-packages" in name or name.endswith(("hw4lib/checks.py", "hw4lib/components.py")):
            continue
        if name.startswith(("<ipython-input", "<0")) or "ipykernel" in name or name.endswith(".ipynb>"):
            code = (frame.line or "").strip()
            cell = "your cell"
            if name.startswith("<0") and ".ipynb cell" in name:  # loaded from a saved notebook by the loader
                cell = f"your graded cell in {name[1:].split(' cell')[0]}"
            where = f" (in `{frame.name}`, line {frame.lineno} of {cell}"
            return where + (f": `{code}`)" if code else ")")
    return ""


def collect(probe: Callable[[], Iterable[str]]) -> list[str]:
    """Runs a probe and turns whatever goes wrong into messages: never raises for student errors."""
    try:
        return list(probe())
    except NotImplementedError:
        return [NOT_IMPLEMENTED]
    except CheckFailed as err:
        return [str(err)]
    except Exception as err:  # the student's code may raise anything
        return [f"your code raised {type(err).__name__}: {err}{_where(err)}"]


_earlier_failures: list[str] = []


def report(title: str, messages: Sequence[str]) -> None:
    """Prints ✓ or the problems as a list, then raises a one-line CheckFailed if there were any."""
    if not messages:
        print(f"✓ {title}: all checks pass")
        return
    print(f"✗ {title}: {len(messages)} problem{'s' if len(messages) > 1 else ''}")
    for message in messages:
        print(f"  • {message}")
    if _earlier_failures and messages != [NOT_IMPLEMENTED]:
        print(
            "  (this stage builds on earlier ones that fail their checks: "
            + "; ".join(_earlier_failures)
            + ". Fix those first.)"
        )
    raise CheckFailed(f"{title}: see the problems listed above")


def _short_traceback(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
    """IPython handler: one line for a failed check or a stub, instead of a screen of traceback.

    The line is still sent as the cell's error output, so nbval and nbgrader see the cell fail.
    """
    if isinstance(value, NotImplementedError):
        line = f"NotImplementedError: a part used here is {NOT_IMPLEMENTED}{_where(value)}"
    else:
        line = f"{etype.__name__}: {value}"
    shell._showtraceback(etype, value, [line])
    return [line]


def install_short_errors() -> None:
    """In a notebook, show CheckFailed, NotImplementedError and HW4Error (whose messages say what to do) as one
    line; the cells still count as failed."""
    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return
    shell.set_custom_exc((CheckFailed, NotImplementedError, HW4Error), _short_traceback)


install_short_errors()


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=tol, rtol=tol)


def _shape(t: Any) -> str:
    return f"{tuple(t.shape)}" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"


# ----------------------------------------------------------------------------------------------------
# Stage 1: the data loader
# ----------------------------------------------------------------------------------------------------


def toy_articles(lengths: Sequence[int] = (37, 120, 8, 251, 64, 90), start: int = 1) -> list[np.ndarray]:
    """Articles whose tokens are all distinct (1, 2, 3, ...), so every token tells where it came from."""
    out, next_id = [], start
    for n in lengths:
        out.append(np.arange(next_id, next_id + n, dtype=np.int64))
        next_id += n
    return out


def diagnose_loader_epoch(
    batches: Sequence[tuple[Any, Any, Any]], articles: Sequence[np.ndarray], batch_size: int
) -> list[str]:
    """Shapes, shift by one, coverage (every position but a column's last is an input exactly once), order.

    ``articles`` must hold distinct token ids (see :func:`toy_articles`).
    """
    messages: list[str] = []
    if not batches:
        return ["the loader yielded no batches in one epoch"]
    following = {}
    for article in articles:
        for a, b in zip(article[:-1].tolist(), article[1:].tolist(), strict=True):
            following[a] = b
    total = sum(len(a) for a in articles)
    rows = total // batch_size
    columns: list[list[int]] = [[] for _ in range(batch_size)]
    for k, item in enumerate(batches):
        if not (isinstance(item, tuple | list) and len(item) == 3):
            return [f"batch {k} is {type(item).__name__}; each batch must be a tuple (inputs, targets, seq_len)"]
        inputs, targets, seq_len = item
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            return [f"batch {k}: inputs and targets must be torch tensors, got {type(inputs).__name__}"]
        if inputs.dtype != torch.long or targets.dtype != torch.long:
            messages.append(f"batch {k}: inputs/targets have dtype {inputs.dtype}/{targets.dtype}; use int64")
        if inputs.dim() != 2 or inputs.shape[1] != batch_size:
            return messages + [
                f"batch {k}: inputs have shape {tuple(inputs.shape)}; expected (seq_len, batch_size) = "
                f"({seq_len}, {batch_size}) (time-major: rows are timesteps, columns are batch elements)"
            ]
        if int(seq_len) != inputs.shape[0] or targets.shape != inputs.shape:
            return messages + [
                f"batch {k}: seq_len = {seq_len} but inputs are {tuple(inputs.shape)} and targets "
                f"{tuple(targets.shape)}; all three must agree"
            ]
        for t in range(inputs.shape[0]):
            for b in range(batch_size):
                token, target = int(inputs[t, b]), int(targets[t, b])
                if token in following and following[token] != target:
                    return messages + [
                        f"batch {k}, timestep {t}, batch element {b}: input {token} is followed by "
                        f"{following[token]} in the text but the target is {target}; targets are the inputs "
                        "shifted by one token"
                    ]
        for b in range(batch_size):
            column = inputs[:, b].tolist()
            if columns[b] and k > 0:
                previous_last_target = int(batches[k - 1][1][-1, b])
                if column[0] != previous_last_target:
                    return messages + [
                        f"batch {k}, batch element {b} starts with token {column[0]} but batch {k - 1} ended "
                        f"with target {previous_last_target}: each column must continue where it stopped "
                        "(consecutive batches read consecutive text)"
                    ]
            columns[b].extend(column)
    seen = [tok for col in columns for tok in col]
    if len(seen) != len(set(seen)):
        repeated = next(tok for tok in seen if seen.count(tok) > 1)
        messages.append(
            f"token {repeated} is an input more than once in one epoch; each position must be an "
            "input exactly once per epoch"
        )
    expected = batch_size * (rows - 1)
    if len(seen) != expected:
        messages.append(
            f"one epoch fed {len(seen)} input tokens; with {total} tokens and batch_size {batch_size} "
            f"there are "
            f"{rows} rows, so every column should give {rows - 1} inputs ({expected} in all): "
            + ("some text was skipped" if len(seen) < expected else "some text was read twice or padded")
        )
    return messages


def diagnose_lengths(
    lengths: Sequence[int],
    bptt: int,
    p_full: float = 0.95,
    std: float = 5.0,
    min_len: int = 5,
    max_len: int | None = None,
    last_cut: Sequence[bool] | None = None,
) -> list[str]:
    """The distribution of drawn window lengths: within bounds, centred on bptt, about 1-p_full short ones.

    ``last_cut`` marks lengths cut to what was left at the end of an epoch (excluded from the stats).
    """
    max_len = max_len if max_len is not None else int(bptt + 3 * std)
    lens = np.asarray([n for i, n in enumerate(lengths) if not (last_cut is not None and last_cut[i])], dtype=float)
    messages: list[str] = []
    if len(lens) < 20:
        return [f"only {len(lens)} windows to look at; expected many more"]
    if lens.min() < min_len or lens.max() > max_len:
        messages.append(
            f"window lengths range over [{lens.min():.0f}, {lens.max():.0f}] but must stay within "
            f"[min_len, max_len] = [{min_len}, {max_len}]"
        )
    if np.unique(lens).size <= 2:
        messages.append(
            f"every window has length {sorted(set(lens.tolist()))}: the length must be drawn at "
            f"random, round(Normal(base, {std})) for each batch"
        )
    long = lens[lens > 0.75 * bptt]
    short_share = 1 - len(long) / len(lens)
    if len(long) and abs(long.mean() - bptt) > 2.0:
        messages.append(f"full-length windows average {long.mean():.1f}; they should average about bptt = {bptt}")
    if abs(short_share - (1 - p_full)) > max(0.06, 3 * math.sqrt(p_full * (1 - p_full) / len(lens))):
        messages.append(
            f"{short_share:.0%} of the windows are short (around bptt/2 = {bptt / 2:g}); expected "
            f"about {1 - p_full:.0%} (base = bptt with probability p_full = {p_full})"
        )
    return messages


def _loader_probe(Loader: type) -> Iterable[str]:
    articles = toy_articles()
    loader = Loader(articles, batch_size=3, bptt=10, shuffle=False, seed=0, std=2.0, min_len=2)
    first = list(loader)
    messages = diagnose_loader_epoch(first, articles, 3)
    if messages:
        return messages
    if getattr(loader, "epoch", None) != 1:
        messages.append(f"after one full pass `loader.epoch` is {getattr(loader, 'epoch', None)!r}; expected 1")
    try:
        estimate = len(loader)
    except TypeError:
        estimate = None
    if not isinstance(estimate, int) or not 0.5 * len(first) <= estimate <= 2 * len(first) + 1:
        messages.append(
            f"len(loader) is {estimate!r} but an epoch has {len(first)} batches; len should estimate that number"
        )
    second = list(loader)
    messages += [f"epoch 2: {m}" for m in diagnose_loader_epoch(second, articles, 3)]
    if [b[2] for b in first] == [b[2] for b in second]:
        messages.append(
            "epochs 1 and 2 drew exactly the same window lengths; each epoch must use its own "
            "generator, torch.Generator().manual_seed(seed + epoch)"
        )
    again = list(Loader(articles, batch_size=3, bptt=10, shuffle=False, seed=0, std=2.0, min_len=2))
    if [b[2] for b in again] != [b[2] for b in first]:
        messages.append(
            "two loaders with the same seed drew different window lengths; use "
            "torch.Generator().manual_seed(seed + epoch) for every random draw, not the global RNG"
        )
    shuffled = Loader(articles, batch_size=2, bptt=10, shuffle=True, seed=1)
    orders = []
    for _ in range(4):
        epoch = list(shuffled)
        messages += [f"with shuffle=True: {m}" for m in diagnose_loader_epoch(epoch, articles, 2)[:1]]
        orders.append(tuple(epoch[0][0][0].tolist()))
    if len(set(orders)) == 1:
        messages.append(
            "with shuffle=True, four epochs started with the same text; shuffle the articles with the epoch's generator"
        )
    big = toy_articles([3000] * 20)
    lengths, cut = [], []
    long_loader = Loader(big, batch_size=4, bptt=70, shuffle=False, seed=3)
    for _ in range(4):
        epoch = [int(b[2]) for b in long_loader]
        lengths += epoch
        cut += [False] * (len(epoch) - 1) + [True]
    messages += diagnose_lengths(lengths, bptt=70, last_cut=cut)
    return messages


def check_data_loader(Loader: type) -> None:
    """Stage 1: shapes, shift, coverage, continuity, seeding, shuffling and the length distribution."""
    report("LanguageModelDataLoader", collect(lambda: _loader_probe(Loader)))


# ----------------------------------------------------------------------------------------------------
# Stage 2: locked dropout and embedding dropout
# ----------------------------------------------------------------------------------------------------


def diagnose_locked_mask(x: torch.Tensor, y: torch.Tensor, p: float) -> list[str]:
    """``y = LockedDropout(p)(x)`` in training mode, for ``x > 0`` of shape (T, B, H)."""
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return [f"the output is {_shape(y)}; it must have the input's shape {tuple(x.shape)} (T, B, H)"]
    mask = (y / x).detach()
    scale = 1 / (1 - p)
    kept = torch.isclose(mask, torch.full_like(mask, scale), rtol=1e-4)
    dropped = mask.abs() < 1e-6
    messages = []
    if not bool((kept | dropped).all()):
        values = sorted({round(v, 3) for v in mask[~(kept | dropped)].flatten()[:5].tolist()})
        if torch.isclose(mask, torch.ones_like(mask)).logical_or(dropped).all():
            messages.append(f"kept values are not rescaled: multiply survivors by 1/(1-p) = {scale:.3f}")
        else:
            messages.append(
                f"output/input takes values like {values}; it must be 0 (dropped) or 1/(1-p) = {scale:.3f} (kept)"
            )
    different = ~torch.isclose(mask, mask[0:1].expand_as(mask), rtol=1e-5, atol=1e-6).all(
        dim=2
    )  # (T, B): timestep t of element b differs from timestep 0
    if bool(different.any()):
        t, b = (int(i) for i in different.nonzero()[0])
        messages.append(
            f"timestep {t} of batch element {b} has a different mask than timestep 0: a locked mask "
            "is drawn once per sequence, shape (1, B, H), and reused at every timestep"
        )
    elif x.shape[1] > 1 and bool(torch.isclose(mask[0, 0], mask[0, 1]).all()):
        messages.append(
            "batch elements 0 and 1 got the same mask: draw the mask with shape (1, B, H) so every "
            "sequence in the batch has its own"
        )
    rate = float(dropped.double().mean())
    n = mask[0].numel()
    if abs(rate - p) > max(0.03, 4 * math.sqrt(p * (1 - p) / n)):
        messages.append(f"{rate:.1%} of the units were dropped; expected about p = {p:.0%}")
    return messages


def diagnose_identity(x: torch.Tensor, y: Any, when: str) -> list[str]:
    """``y`` must equal ``x`` (eval mode, p = 0)."""
    if not isinstance(y, torch.Tensor) or not _close(x, y):
        return [f"{when} the output must equal the input (no dropout, no scaling)"]
    return []


def _locked_probe(LockedDropout: type) -> Iterable[str]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 40, 60, generator=gen) + 0.5
    messages = []
    for p in (0.5, 0.2):
        module = LockedDropout(p)
        module.train()
        torch.manual_seed(1)
        y = module(x)
        found = diagnose_locked_mask(x, y, p)
        messages += [f"p={p}: {m}" for m in found]
        if found:
            break
    if messages:
        return messages
    module = LockedDropout(0.5)
    y1, y2 = module(x), module(x)
    if _close(y1, y2):
        messages.append("two calls gave the same mask: draw a new mask at every call")
    module.eval()
    messages += diagnose_identity(x, module(x), "in eval mode (model.eval())")
    module.train()
    messages += diagnose_identity(x, LockedDropout(0.0)(x), "with p = 0")
    xg = x.clone().requires_grad_(True)
    LockedDropout(0.5)(xg).sum().backward()
    if xg.grad is None:
        messages.append("no gradient flows back to the input; build the output with tensor operations")
    return messages


def check_locked_dropout(LockedDropout: type) -> None:
    """Stage 2: one mask per sequence shared across time, rate p, scale 1/(1-p), identity in eval."""
    report("LockedDropout", collect(lambda: _locked_probe(LockedDropout)))


def diagnose_embedding_dropout(weight: torch.Tensor, words: torch.Tensor, out: Any, dropout: float) -> list[str]:
    """``out = embedded_dropout(embed, words, dropout)`` with ``embed.weight == weight`` (no zero rows)."""
    T, B = words.shape
    if not isinstance(out, torch.Tensor) or out.shape != (T, B, weight.shape[1]):
        return [f"the output is {_shape(out)}; expected (T, B, E) = ({T}, {B}, {weight.shape[1]})"]
    out = out.detach()
    looked_up = weight[words]
    scale = 1 / (1 - dropout)
    kept = torch.isclose(out, looked_up * scale, rtol=1e-4, atol=1e-6).all(dim=2)
    dropped = (out.abs() < 1e-7).all(dim=2)
    messages = []
    if not bool((kept | dropped).all()):
        t, b = (int(i) for i in (~(kept | dropped)).nonzero()[0])
        if torch.isclose(out[t, b], looked_up[t, b], rtol=1e-4).all():
            messages.append(f"kept rows are not rescaled: multiply surviving rows by 1/(1-p) = {scale:.3f}")
        else:
            messages.append(
                f"at timestep {t}, batch element {b} the vector is neither the word's embedding times "
                f"1/(1-p) nor all zeros; drop whole rows of embed.weight (one mask entry per word "
                "type), never single numbers"
            )
        return messages
    fate: dict[int, bool] = {}
    for t in range(T):
        for b in range(B):
            word = int(words[t, b])
            now = bool(dropped[t, b])
            if word in fate and fate[word] != now:
                return [
                    f"word id {word} is dropped at some positions and kept at others: embedding dropout "
                    "removes a word type everywhere it occurs in the batch (mask the rows of the embedding "
                    "matrix, shape (V, 1), not the looked-up vectors)"
                ]
            fate[word] = now
    rate = sum(fate.values()) / len(fate)
    if abs(rate - dropout) > max(0.04, 4 * math.sqrt(dropout * (1 - dropout) / len(fate))):
        messages.append(f"{rate:.1%} of the word types were dropped; expected about {dropout:.0%}")
    return messages


def _embedding_probe(embedded_dropout: Callable) -> Iterable[str]:
    gen = torch.Generator().manual_seed(0)
    vocab, dim = 1200, 6
    embed = nn.Embedding(vocab, dim)
    with torch.no_grad():
        embed.weight.copy_(torch.rand(vocab, dim, generator=gen) + 0.1)
    words = torch.cat([torch.randperm(vocab, generator=gen), torch.randint(0, 40, (600,), generator=gen)])
    words = words.view(-1, 4)
    torch.manual_seed(2)
    out = embedded_dropout(embed, words, dropout=0.3)
    messages = diagnose_embedding_dropout(embed.weight.detach(), words, out, 0.3)
    if messages:
        return messages
    plain = embedded_dropout(embed, words, dropout=0.0)
    if not isinstance(plain, torch.Tensor) or not _close(plain, embed.weight[words]):
        messages.append("with dropout = 0 the result must be the plain lookup embed(words)")
    # Gradients reach the weight, and padding_idx=None must stay None (-1 would freeze the last word's row).
    small = nn.Embedding(10, 3)
    last = torch.tensor([[9, 1], [9, 2]])
    embedded_dropout(small, last, dropout=0.0).sum().backward()
    if small.weight.grad is None:
        messages.append(
            "no gradient reaches embed.weight; build the dropped weight from embed.weight with "
            "tensor operations (no .data, no torch.no_grad)"
        )
    elif float(small.weight.grad[9].abs().sum()) == 0:
        messages.append(
            "the last word's row (id 9 of 10) gets no gradient: pass embed.padding_idx through as "
            "it is (None stays None; -1 would mean 'the last word is padding')"
        )
    padded = nn.Embedding(10, 3, padding_idx=2)
    embedded_dropout(padded, torch.tensor([[2, 1]]), dropout=0.0).sum().backward()
    if padded.weight.grad is not None and float(padded.weight.grad[2].abs().sum()) != 0:
        messages.append("embed.padding_idx = 2 was ignored: its row must get no gradient (pass padding_idx on)")
    return messages


def check_embedded_dropout(embedded_dropout: Callable) -> None:
    """Stage 2: whole word types dropped everywhere, rate p, scale, plain lookup at p = 0, gradients."""
    report("embedded_dropout", collect(lambda: _embedding_probe(embedded_dropout)))


# ----------------------------------------------------------------------------------------------------
# Stage 3: the weight-dropped LSTM
# ----------------------------------------------------------------------------------------------------


def lstm_with_weight(lstm: nn.LSTM, weight_hh: torch.Tensor) -> nn.LSTM:
    """A plain one-layer nn.LSTM with the wrapped module's weights and the given hidden-to-hidden weight."""
    plain = nn.LSTM(lstm.input_size, lstm.hidden_size)
    with torch.no_grad():
        plain.weight_ih_l0.copy_(lstm.weight_ih_l0)
        plain.bias_ih_l0.copy_(lstm.bias_ih_l0)
        plain.bias_hh_l0.copy_(lstm.bias_hh_l0)
        plain.weight_hh_l0.copy_(weight_hh)
    return plain


def diagnose_dropped_weight(raw: torch.Tensor, used: Any, dropout: float) -> list[str]:
    """``used`` (module.weight_hh_l0 after a training forward) against ``raw`` (module.weight_hh_l0_raw)."""
    if not isinstance(used, torch.Tensor) or used.shape != raw.shape:
        return [
            f"after a forward, module.weight_hh_l0 is {_shape(used)}; it must be the dropped weight "
            f"{tuple(raw.shape)} that forward used"
        ]
    ratio = used.detach() / raw.detach()
    scale = 1 / (1 - dropout)
    kept = torch.isclose(ratio, torch.full_like(ratio, scale), rtol=1e-4)
    dropped = used.detach().abs() < 1e-8
    if not bool((kept | dropped).all()):
        if bool(torch.isclose(ratio, torch.ones_like(ratio)).all()):
            return ["in training mode module.weight_hh_l0 equals the raw weight: nothing was dropped"]
        return [
            f"module.weight_hh_l0 / weight_hh_l0_raw must be 0 or 1/(1-p) = {scale:.3f} element by element "
            "(DropConnect: an element-wise mask on the weight, survivors rescaled)"
        ]
    rate = float(dropped.double().mean())
    if abs(rate - dropout) > max(0.04, 4 * math.sqrt(dropout * (1 - dropout) / raw.numel())):
        return [f"{rate:.1%} of the weights were dropped; expected about p = {dropout:.0%}"]
    return []


def diagnose_recomputed(output: torch.Tensor, recomputed: torch.Tensor) -> list[str]:
    """The wrapper's output against a plain LSTM run with the weight the wrapper says it used."""
    if not isinstance(output, torch.Tensor) or output.shape != recomputed.shape:
        return [
            f"the wrapped LSTM returned {_shape(output)}; expected the LSTM's output "
            f"{tuple(recomputed.shape)} (return what self.module(*args) returns)"
        ]
    if not _close(output, recomputed, 1e-4):
        step = int(((output - recomputed).abs().amax(dim=(1, 2)) > 1e-4).nonzero()[0])
        return [
            f"from timestep {step} on, the output differs from a plain nn.LSTM run with module.weight_hh_l0: "
            "every timestep of one forward must use the same dropped W_hh, and module.weight_hh_l0 must "
            "hold exactly that weight after the forward"
        ]
    return []


def _weight_drop_probe(WeightDrop: type) -> Iterable[str]:
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 16)
    n_params = sum(p.numel() for p in lstm.parameters())
    wrapped = WeightDrop(lstm, ["weight_hh_l0"], dropout=0.5)
    inner = wrapped.module
    names = dict(wrapped.named_parameters())
    raw = getattr(inner, "weight_hh_l0_raw", None)
    if not isinstance(raw, nn.Parameter):
        return ["the learnable weight must be the Parameter module.weight_hh_l0_raw (register it in __init__)"]
    messages = []
    if any(name.endswith("module.weight_hh_l0") for name in names):
        messages.append(
            "module.weight_hh_l0 is still a Parameter: remove it from module._parameters so only "
            "weight_hh_l0_raw is learned"
        )
    if sum(p.numel() for p in wrapped.parameters()) != n_params:
        messages.append(
            f"the wrapper has {sum(p.numel() for p in wrapped.parameters())} parameters; the LSTM "
            f"had {n_params}: the raw weight replaces weight_hh_l0, it does not add to it"
        )
    x = torch.randn(7, 3, 5)
    wrapped.train()
    out, _ = wrapped(x)
    used = inner.weight_hh_l0
    messages += diagnose_dropped_weight(raw, used, 0.5)
    if messages:
        return messages
    messages += diagnose_recomputed(out, lstm_with_weight(inner, used)(x)[0])
    first = used.detach().clone()
    out.sum().backward()
    if raw.grad is None or float(raw.grad.abs().sum()) == 0:
        messages.append(
            "no gradient reached module.weight_hh_l0_raw: build the dropped weight from the raw "
            "Parameter with differentiable operations (F.dropout(raw, ...)), not from .data"
        )
    wrapped(x)
    if _close(first, inner.weight_hh_l0.detach()):
        messages.append("the second forward pass used the same mask as the first: draw a new mask every pass")
    wrapped.eval()
    out_eval, _ = wrapped(x)
    messages += [f"in eval mode: {m}" for m in diagnose_recomputed(out_eval, lstm_with_weight(inner, raw)(x)[0])]
    for attempt in ("train/eval switches", "deepcopy", "state_dict"):
        try:
            if attempt == "train/eval switches":
                for _ in range(3):
                    wrapped.train()
                    wrapped(x)
                    wrapped.eval()
                    wrapped(x)
            elif attempt == "deepcopy":
                clone = copy.deepcopy(wrapped)
                clone.train()
                clone(x)
            else:
                fresh = WeightDrop(nn.LSTM(5, 16), ["weight_hh_l0"], dropout=0.5)
                fresh.load_state_dict(wrapped.state_dict())
                fresh.eval()
                if not _close(fresh(x)[0], out_eval, 1e-5):
                    messages.append("a state_dict round trip gave a different model in eval mode")
        except Exception as err:
            messages.append(f"{attempt} failed: {type(err).__name__}: {err}{_where(err)}")
    return messages


def check_weight_drop(WeightDrop: type) -> None:
    """Stage 3: one W_hh mask per pass for all timesteps, new each pass, gradients to the raw weight."""
    report("WeightDrop", collect(lambda: _weight_drop_probe(WeightDrop)))


# ----------------------------------------------------------------------------------------------------
# Stage 4: the model
# ----------------------------------------------------------------------------------------------------


def expected_parameter_count(vocab: int, embed: int, hidden: int, layers: int, tie: bool) -> int:
    """Parameters of the contract's model: embedding, LSTMs E -> H ... -> (E or H), decoder."""
    last = embed if tie else hidden
    sizes = [embed] + [hidden] * (layers - 1) + [last]
    lstm = sum(4 * o * (i + o) + 8 * o for i, o in zip(sizes[:-1], sizes[1:], strict=True))
    decoder = vocab + (0 if tie else vocab * last)
    return vocab * embed + lstm + decoder


def diagnose_model_structure(
    model: nn.Module, vocab: int, embed: int, hidden: int, layers: int, tie: bool
) -> list[str]:
    messages = []
    for name, kind in (
        ("encoder", nn.Embedding),
        ("rnns", nn.ModuleList),
        ("decoder", nn.Linear),
        ("idrop", nn.Module),
        ("hdrop", nn.Module),
        ("odrop", nn.Module),
    ):
        if not isinstance(getattr(model, name, None), kind):
            messages.append(f"model.{name} must be an {kind.__name__}")
    if messages:
        return messages
    last = embed if tie else hidden
    sizes = [embed] + [hidden] * (layers - 1) + [last]
    if len(model.rnns) != layers:
        return [f"model.rnns has {len(model.rnns)} layers; expected num_layers = {layers}"]
    for layer, rnn in enumerate(model.rnns):
        lstm = getattr(rnn, "module", None)
        if not isinstance(lstm, nn.LSTM):
            messages.append(
                f"model.rnns[{layer}] must be a WeightDrop wrapping an nn.LSTM (found {type(rnn).__name__})"
            )
        elif (lstm.input_size, lstm.hidden_size) != (sizes[layer], sizes[layer + 1]):
            messages.append(
                f"layer {layer} maps {lstm.input_size} -> {lstm.hidden_size}; expected "
                f"{sizes[layer]} -> {sizes[layer + 1]} (E -> H -> ... -> {'E' if tie else 'H'})"
            )
    if tie and model.decoder.weight is not model.encoder.weight:
        messages.append(
            "with tie_weights=True, model.decoder.weight must be the very same Parameter as "
            "model.encoder.weight (assign it: self.decoder.weight = self.encoder.weight)"
        )
    if not tie and model.decoder.weight is model.encoder.weight:
        messages.append("with tie_weights=False the decoder must have its own weight")
    count = sum(p.numel() for p in model.parameters())
    expected = expected_parameter_count(vocab, embed, hidden, layers, tie)
    if not messages and count != expected:
        messages.append(
            f"the model has {count:,} parameters; expected {expected:,} "
            f"({'tied' if tie else 'untied'}, V={vocab}, E={embed}, H={hidden}, {layers} layers)"
        )
    return messages


def diagnose_forward(result: Any, T: int, B: int, vocab: int, sizes: Sequence[int]) -> list[str]:
    """``model(inputs)`` gives (logits (T, B, V), hidden, raw_outputs, dropped_outputs), right shapes."""
    if not (isinstance(result, tuple | list) and len(result) == 4):
        return ["forward must return a tuple (logits, hidden, raw_outputs, dropped_outputs)"]
    logits, hidden, raw, dropped = result
    messages = []
    if not isinstance(logits, torch.Tensor) or logits.shape != (T, B, vocab):
        messages.append(f"logits are {_shape(logits)}; expected (T, B, V) = ({T}, {B}, {vocab})")
    if len(hidden) != len(sizes) - 1:
        messages.append(f"hidden has {len(hidden)} entries; expected one (h, c) per layer")
    else:
        for layer, (h, c) in enumerate(hidden):
            want = (1, B, sizes[layer + 1])
            if h.shape != want or c.shape != want:
                messages.append(f"hidden[{layer}] is ({_shape(h)}, {_shape(c)}); expected two {want} tensors")
    for name, outs in (("raw_outputs", raw), ("dropped_outputs", dropped)):
        shapes = [tuple(o.shape) for o in outs]
        want = [(T, B, s) for s in sizes[1:]]
        if shapes != want:
            messages.append(f"{name} have shapes {shapes}; expected {want} (one per layer)")
    return messages


def _model_probe(LanguageModel: type) -> Iterable[str]:
    torch.manual_seed(0)
    V, E, H, L = 50, 8, 12, 3
    messages = []
    for tie in (True, False):
        model = LanguageModel(V, embed_size=E, hidden_size=H, num_layers=L, tie_weights=tie)
        found = diagnose_model_structure(model, V, E, H, L, tie)
        messages += [f"tie_weights={tie}: {m}" for m in found]
    if messages:
        return messages
    model = LanguageModel(
        V,
        embed_size=E,
        hidden_size=H,
        num_layers=L,
        dropout=0.4,
        dropouth=0.3,
        dropouti=0.65,
        dropoute=0.1,
        wdrop=0.5,
    )
    for name, p in (("idrop", 0.65), ("hdrop", 0.3), ("odrop", 0.4)):
        if getattr(getattr(model, name), "p", None) != p:
            messages.append(f"model.{name}.p is {getattr(getattr(model, name), 'p', None)}; expected {p}")
    w = model.encoder.weight.detach()
    if w.abs().max() > 0.1 + 1e-6 or w.std() < 0.03:
        messages.append("initialize the embedding uniformly in [-0.1, 0.1]")
    if model.decoder.bias is None or float(model.decoder.bias.detach().abs().max()) != 0:
        messages.append("initialize the decoder bias to zeros")
    hidden = model.init_hidden(4)
    for layer, (h, c) in enumerate(hidden):
        if float(h.abs().sum()) != 0 or float(c.abs().sum()) != 0:
            messages.append(f"init_hidden: layer {layer} is not all zeros")
    sizes = [E, H, H, E]
    inputs = torch.randint(0, V, (9, 4), generator=torch.Generator().manual_seed(1))
    model.train()
    result = model(inputs)
    messages += diagnose_forward(result, 9, 4, V, sizes)
    if messages:
        return messages
    model.eval()
    a, b = model(inputs), model(inputs)
    if not _close(a[0], b[0]):
        messages.append("in eval mode two forwards of the same input differ: all dropout must be off in eval")
    for layer, (r, d) in enumerate(zip(a[2], a[3], strict=False)):
        if not _close(r, d):
            messages.append(f"in eval mode dropped_outputs[{layer}] differs from raw_outputs[{layer}]")
            break
    carried = model(inputs, a[1])
    if _close(carried[0], a[0]):
        messages.append("forward ignores the hidden state it is given: pass hidden[layer] to each LSTM")
    first_half = model(inputs[:5])
    second_half = model(inputs[5:], first_half[1])
    if not _close(torch.cat([first_half[0], second_half[0]]), a[0], 1e-4):
        messages.append(
            "running the sequence in two halves (carrying hidden) differs from one pass: return "
            "each layer's new (h, c) in order"
        )
    model.train()
    logits = model(inputs)[0]
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if missing:
        messages.append(f"no gradient reaches {', '.join(missing[:3])}: every parameter must be used in forward")
    return messages


def check_language_model(LanguageModel: type) -> None:
    """Stage 4: structure, sizes, tying, parameter count, forward shapes, eval determinism, hidden carried."""
    report("LanguageModel", collect(lambda: _model_probe(LanguageModel)))


def parameter_table(
    LanguageModel: type, vocab: int = 33278, embed: int = 400, hidden: int = 1150, layers: int = 3
) -> str:
    """A text table of the parameter counts of the tied and untied model (the student's class)."""
    lines = [f"{'part':<12}{'tied':>14}{'untied':>14}"]
    counts = {}
    for tie in (True, False):
        model = LanguageModel(vocab, embed_size=embed, hidden_size=hidden, num_layers=layers, tie_weights=tie)
        parts = {"embedding": model.encoder, "LSTMs": model.rnns}
        parts["decoder"] = model.decoder
        seen: set[int] = set()
        row = {}
        for name, module in parts.items():
            row[name] = sum(p.numel() for p in module.parameters() if id(p) not in seen)
            seen |= {id(p) for p in module.parameters()}
        row["total"] = sum(p.numel() for p in model.parameters())
        counts[tie] = row
    for name in ("embedding", "LSTMs", "decoder", "total"):
        lines.append(f"{name:<12}{counts[True][name]:>14,}{counts[False][name]:>14,}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Stage 5: AR, TAR and one training step
# ----------------------------------------------------------------------------------------------------


def diagnose_ar_tar(ar: Callable, tar: Callable) -> list[str]:
    """Properties of the two penalties on hand-made tensors whose answers are known."""
    messages = []
    threes = torch.full((5, 2, 3), 3.0)
    value = ar(threes, 2.0)
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        return [f"activation_regularization returned {_shape(value)}; it must return a scalar tensor"]
    if abs(float(value) - 18.0) > 1e-4:
        if abs(float(value) - 18.0 * threes.numel()) < 1e-2:
            messages.append(
                "AR of a (5, 2, 3) tensor of 3s with alpha=2 gave 540 (a sum); use the mean, expected 2 * 3² = 18"
            )
        else:
            messages.append(
                f"AR of a tensor of 3s with alpha=2 gave {float(value):g}; expected alpha * mean(x²) = 2 * 9 = 18"
            )
    mixed = torch.tensor([[[1.0, -2.0]], [[0.0, 3.0]]])
    if abs(float(ar(mixed, 1.0)) - 3.5) > 1e-4:
        messages.append(
            f"AR of values (1, -2, 0, 3) with alpha=1 gave {float(ar(mixed, 1.0)):g}; expected the "
            "mean of the squares, 14/4 = 3.5 (square, do not take absolute values)"
        )
    ramp = torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1).expand(3, 2, 2)
    value = tar(ramp, 1.0)
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        return messages + [f"temporal_activation_regularization returned {_shape(value)}; return a scalar tensor"]
    got = float(value)
    if abs(got - 2.5) > 1e-4:
        if abs(got - 5 / 3) < 1e-4:
            hint = "you divided by T; the mean is over the T-1 differences"
        elif abs(got - 1.0) < 1e-4 or abs(got - 1.5) < 1e-4:
            hint = "square the differences before averaging"
        elif abs(got - 14 / 3) < 1e-4 or abs(got - 10 / 3) < 1e-4:
            hint = "penalize h_{t+1} - h_t (differences along time, dim 0), not the activations themselves"
        else:
            hint = "TAR = beta * mean over t of (h_{t+1} - h_t)²"
        messages.append(
            f"TAR of outputs 0, 1, 3 over time with beta=1 gave {got:g}; expected (1² + 2²)/2 = 2.5: " + hint
        )
    if abs(float(tar(torch.full((4, 2, 3), 7.0), 5.0))) > 1e-6:
        messages.append("TAR of an output that is constant in time must be 0")
    if abs(float(tar(ramp, 3.0)) - 3 * got) > 1e-4:
        messages.append("TAR must scale linearly with beta")
    return messages


def check_ar_tar(activation_regularization: Callable, temporal_activation_regularization: Callable) -> None:
    """Stage 5: AR = alpha * mean(x²) of the dropped output, TAR = beta * mean((h_{t+1} - h_t)²)."""
    report(
        "AR and TAR",
        collect(lambda: diagnose_ar_tar(activation_regularization, temporal_activation_regularization)),
    )


class RecordingModel(nn.Module):
    """A tiny model that follows the LanguageModel contract and records what it was given."""

    def __init__(self, vocab: int = 11, hidden: int = 6, gain: float = 1.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.mix = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, vocab)
        self.gain = gain
        self.calls: list[dict[str, Any]] = []

    def forward(self, inputs: torch.Tensor, hidden: Any = None):
        state = torch.zeros(1, inputs.size(1), self.mix.out_features) if hidden is None else hidden[0][0]
        self.calls.append(
            {
                "hidden_has_graph": hidden is not None and hidden[0][0].grad_fn is not None,
                "training": self.training,
            }
        )
        raw = torch.tanh(self.mix(self.embed(inputs)) + state)
        dropped = raw * 1.0
        logits = self.gain * self.out(dropped)
        self.calls[-1]["logits"] = logits.detach()
        return logits, [(raw[-1:], raw[-1:])], [raw], [dropped]


class RecordingOptimizer:
    """Stands in for NTASGD: records the lr_scale and the gradient norm at each step, then steps plain SGD."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 0.1) -> None:
        self.params = list(params)
        self.lr = lr
        self.steps: list[dict[str, Any]] = []
        self.zeroed = 0

    def zero_grad(self) -> None:
        self.zeroed += 1
        for p in self.params:
            p.grad = None

    def step(self, lr_scale: float = 1.0) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = float(torch.norm(torch.stack([g.norm() for g in grads]))) if grads else 0.0
        self.steps.append({"lr_scale": lr_scale, "norm": norm, "grads": [g.clone() for g in grads]})
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p.sub_(self.lr * lr_scale * p.grad)


def _train_batch_probe(train_batch: Callable) -> Iterable[str]:
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 11, (7, 3), generator=gen)
    targets = torch.randint(0, 11, (7, 3), generator=gen)
    messages = []
    torch.manual_seed(0)
    model = RecordingModel(gain=50.0)
    opt = RecordingOptimizer(model.parameters())
    # A hidden state still attached to a previous graph: train_batch must detach it.
    prev = model(inputs)[1]
    model.calls.clear()
    result = train_batch(model, opt, inputs, targets, prev, seq_len=7, bptt=10, alpha=2.0, beta=1.0, clip=0.25)
    if not (isinstance(result, tuple | list) and len(result) == 2):
        return [f"train_batch returned {type(result).__name__}; it must return (loss as a float, hidden)"]
    loss, hidden = result
    if not model.calls:
        return ["train_batch never called the model"]
    if model.calls[0]["hidden_has_graph"]:
        messages.append(
            "the hidden state reached the model still attached to the previous batch's graph: "
            "detach it first (truncated BPTT)"
        )
    if not model.calls[0]["training"]:
        messages.append("the model ran in eval mode: call model.train() so dropout is on while training")
    if not isinstance(loss, float):
        messages.append(f"the loss is a {type(loss).__name__}; return loss.item(), a Python float")
    logits = model.calls[0]["logits"]
    ce = float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)))
    if isinstance(loss, float | torch.Tensor) and abs(float(loss) - ce) > 1e-4:
        messages.append(
            f"the returned loss is {float(loss):.4f} but the cross-entropy of this batch is {ce:.4f}: "
            "return the mean cross-entropy over all T*B targets, without AR and TAR"
        )
    if any(h.grad_fn is not None or h.requires_grad for pair in hidden for h in pair):
        messages.append("the returned hidden state is still attached to the graph: detach it before returning")
    if len(opt.steps) != 1:
        return messages + [f"optimizer.step was called {len(opt.steps)} times; call it once per batch"]
    if opt.zeroed == 0:
        messages.append("optimizer.zero_grad() was never called: gradients would pile up across batches")
    if abs(opt.steps[0]["lr_scale"] - 0.7) > 1e-9:
        messages.append(
            f"optimizer.step got lr_scale={opt.steps[0]['lr_scale']}; expected seq_len / bptt = 7 / 10 = 0.7"
        )
    if opt.steps[0]["norm"] > 0.25 + 1e-4:
        messages.append(
            f"the gradient norm at the step was {opt.steps[0]['norm']:.3f}; clip it to clip = 0.25 "
            "with torch.nn.utils.clip_grad_norm_ before stepping"
        )
    # AR and TAR must be part of the objective: the gradient changes with alpha and with beta.
    grads = {}
    for alpha, beta in ((0.0, 0.0), (5.0, 0.0), (0.0, 5.0)):
        torch.manual_seed(0)
        m = RecordingModel()
        o = RecordingOptimizer(m.parameters())
        train_batch(m, o, inputs, targets, None, seq_len=7, bptt=7, alpha=alpha, beta=beta, clip=1e9)
        grads[(alpha, beta)] = torch.cat([g.flatten() for g in o.steps[0]["grads"]])
    if _close(grads[(0.0, 0.0)], grads[(5.0, 0.0)]):
        messages.append(
            "changing alpha does not change the gradient: add activation_regularization("
            "dropped_outputs[-1], alpha) to the loss you back-propagate"
        )
    if _close(grads[(0.0, 0.0)], grads[(0.0, 5.0)]):
        messages.append(
            "changing beta does not change the gradient: add temporal_activation_regularization("
            "raw_outputs[-1], beta) to the loss you back-propagate"
        )
    return messages


def check_train_batch(train_batch: Callable) -> None:
    """Stage 5: detached hidden, CE returned, AR/TAR in the objective, clipping, lr scaled by seq_len/bptt."""
    report("train_batch", collect(lambda: _train_batch_probe(train_batch)))


# ----------------------------------------------------------------------------------------------------
# Stage 6: NT-ASGD
# ----------------------------------------------------------------------------------------------------

# (nonmono, validation losses, index of the call that must switch or None), worked out by hand (Algorithm 1).
TRIGGER_SCRIPTS: list[tuple[int, list[float], int | None]] = [
    (3, [10, 9, 8, 7, 6, 7, 8, 9, 10], 7),  # 8 > min(10, 9, 8) is false at call 6; 9 > 7 at call 7
    (2, [5, 4, 3, 2, 1, 0.5, 0.4], None),  # always improving: never switch
    (2, [1, 5, 6, 2, 0.5], 3),  # call 2 has t = 2, not > nonmono; call 3: 2 > min(1) switches
    (5, [3, 3, 3, 3, 3, 3, 3, 3], None),  # equal is not worse: the comparison is strict
]


def diagnose_trigger(
    nonmono: int,
    losses: Sequence[float],
    returned: Sequence[bool],
    expected: int | None,
    averaging: Sequence[bool],
) -> list[str]:
    """``returned[i]`` = record(losses[i]); ``averaging[i]`` = the flag after that call."""
    switched = [i for i, r in enumerate(returned) if r]
    if switched == ([] if expected is None else [expected]):
        if expected is not None and not all(averaging[expected:]):
            return [
                f"nonmono={nonmono}, losses {list(losses)}: record returned True at call {expected} but "
                "`averaging` did not stay True"
            ]
        return []
    story = f"nonmono={nonmono}, validation losses {list(losses)}"
    if expected is None:
        return [
            f"{story}: record switched at call {switched[0]} but must never switch (the loss never gets "
            "worse than the best one older than the last nonmono checks)"
        ]
    if not switched:
        return [
            f"{story}: record never returned True; it must switch at call {expected} (t = {expected} > "
            f"nonmono and {losses[expected]} > min(logs[:t - nonmono]) = "
            f"{min(losses[: expected - nonmono])})"
        ]
    if len(switched) > 1:
        return [f"{story}: record returned True at calls {switched}; only the call that switches returns True"]
    return [
        f"{story}: record switched at call {switched[0]}; expected call {expected}. Use t = len(logs) before "
        "appending, require t > nonmono, and compare val_loss > min(logs[:t - nonmono])"
    ]


def diagnose_average(iterates: Sequence[torch.Tensor], averaged: torch.Tensor) -> list[str]:
    """The averaged weight must be the mean of the iterates since the switch."""
    mean = torch.stack(list(iterates)).mean(dim=0)
    if not _close(mean, averaged, 1e-5):
        return [
            f"the averaged weights are {averaged.tolist()} but the mean of the {len(iterates)} iterates "
            "since "
            f"the switch is {mean.tolist()} (average the parameters after every step from the switch on)"
        ]
    return []


def _ntasgd_probe(NTASGD: type) -> Iterable[str]:
    messages: list[str] = []
    for nonmono, losses, expected in TRIGGER_SCRIPTS:
        w = nn.Parameter(torch.zeros(2))
        opt = NTASGD([w], lr=0.1, nonmono=nonmono)
        returned, flags = [], []
        for v in losses:
            returned.append(opt.record(v))
            flags.append(bool(opt.averaging))
        messages += diagnose_trigger(nonmono, losses, returned, expected, flags)
    if messages:
        return messages
    # Steps with a changing lr_scale, then a switch, then averaging.
    w = nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = NTASGD([w], lr=0.5, nonmono=1)
    grad = torch.tensor([1.0, 2.0])

    def step(scale: float) -> None:
        opt.zero_grad()
        w.grad = grad.clone()
        opt.step(lr_scale=scale)

    step(0.5)
    if not _close(w.detach(), torch.tensor([0.75, -1.5])):
        return [
            f"after one step with lr=0.5, lr_scale=0.5 and gradient (1, 2), w went from (1, -1) to "
            f"{w.detach().tolist()}; expected (0.75, -1.5): step uses lr * lr_scale for exactly that step"
        ]
    step(1.0)
    if not _close(w.detach(), torch.tensor([0.25, -2.5])):
        return [
            f"the second step (lr_scale=1) gave {w.detach().tolist()}; expected (0.25, -2.5): the previous "
            "step's lr_scale must not carry over"
        ]
    with opt.averaged():
        if not _close(w.detach(), torch.tensor([0.25, -2.5])):
            messages.append("before the switch, averaged() must leave the weights as they are")
    for v in (1.0, 2.0, 3.0):
        opt.record(v)
    if not opt.averaging:
        return messages + ["record(1), record(2), record(3) with nonmono=1 did not switch to averaging"]
    if opt.trigger_step != 2:
        messages.append(f"trigger_step is {opt.trigger_step}; two steps had been taken when it switched")
    iterates = []
    for scale in (1.0, 0.5, 1.0):
        step(scale)
        iterates.append(w.detach().clone())
    live = w.detach().clone()
    with opt.averaged():
        inside = w.detach().clone()
    messages += diagnose_average(iterates, inside)
    if not _close(w.detach(), live):
        messages.append("after leaving averaged(), the live weights must be restored")
    state = opt.state_dict()
    bad = _non_plain(state)
    if bad:
        messages.append(f"state_dict holds {bad}; use only tensors, lists, dicts, numbers, bools, strings, None")
    w2 = nn.Parameter(w.detach().clone())
    clone = NTASGD([w2], lr=0.5, nonmono=1)
    clone.load_state_dict(copy.deepcopy(state))
    for o, p in ((opt, w), (clone, w2)):
        o.zero_grad()
        p.grad = grad.clone()
        o.step(lr_scale=1.0)
    with opt.averaged(), clone.averaged():
        same = _close(w.detach(), w2.detach())
    if not same or not _close(w.detach(), w2.detach()):
        messages.append(
            "an optimizer restored with load_state_dict(state_dict()) does not continue like the "
            "original (keep logs, the averaging flag, the running average and its count)"
        )
    return messages


def _non_plain(value: Any) -> str | None:
    if isinstance(value, dict):
        for v in value.values():
            found = _non_plain(v)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for v in value:
            found = _non_plain(v)
            if found:
                return found
        return None
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return None
    return f"a {type(value).__name__}"


def check_nt_asgd(NTASGD: type) -> None:
    """Stage 6: the trigger on scripted sequences, lr_scale per step, average = mean of iterates, resume."""
    report("NTASGD", collect(lambda: _ntasgd_probe(NTASGD)))


# ----------------------------------------------------------------------------------------------------
# Stage 7: prediction and generation
# ----------------------------------------------------------------------------------------------------


class CountingModel(nn.Module):
    """A small recurrent model that follows the contract; noisy in training mode so eval mode matters."""

    def __init__(self, vocab: int = 13, hidden: int = 8) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.embed = nn.Parameter(torch.randn(vocab, hidden, generator=gen))
        self.out = nn.Parameter(torch.randn(hidden, vocab, generator=gen))

    def forward(self, inputs: torch.Tensor, hidden: Any = None):
        state = torch.zeros(inputs.size(1), self.embed.size(1)) if hidden is None else hidden[0][0][0]
        outputs = []
        for t in range(inputs.size(0)):
            state = state + self.embed[inputs[t]]  # remembers every word it has read
            outputs.append(torch.sin(state))
        raw = torch.stack(outputs)
        logits = raw @ self.out
        if self.training:
            logits = logits + 10 * torch.randn_like(logits)
        h = state.unsqueeze(0)
        return logits, [(h, h)], [raw], [raw]


def diagnose_greedy(model: nn.Module, prefix: torch.Tensor, generated: Any, n_words: int) -> list[str]:
    """Greedy words must be the arg-max of the model (eval mode) run on the prefix plus the words so far."""
    B = prefix.size(1)
    if not isinstance(generated, torch.Tensor) or generated.shape != (B, n_words):
        return [f"generation returned {_shape(generated)}; expected (B, n_words) = ({B}, {n_words})"]
    if generated.dtype != torch.long:
        return [f"generation returned dtype {generated.dtype}; return word ids as a LongTensor"]
    model.eval()
    with torch.no_grad():
        for k in range(n_words):
            context = torch.cat([prefix, generated[:, :k].t()], dim=0)
            best = model(context)[0][-1].argmax(dim=-1)
            if not torch.equal(best, generated[:, k]):
                b = int((best != generated[:, k]).nonzero()[0])
                return [
                    f"word {k} of sequence {b} is {int(generated[b, k])} but the model's most likely next "
                    f"word after the prefix and the words so far is {int(best[b])}: feed each generated word "
                    "back in, carrying the hidden state, and take the arg-max of the last timestep"
                ]
    return []


def _prediction_probe(prediction: Callable, generation: Callable) -> Iterable[str]:
    model = CountingModel()
    prefix = torch.randint(0, 13, (6, 3), generator=torch.Generator().manual_seed(0))
    messages = []
    model.train()
    logits = prediction(model, prefix)
    model.eval()
    with torch.no_grad():
        want = model(prefix)[0][-1]
    if not isinstance(logits, torch.Tensor) or logits.shape != (3, 13):
        return [f"prediction returned {_shape(logits)}; expected (B, V) = (3, 13): the logits of the last timestep"]
    if not _close(logits, want, 1e-4):
        messages.append(
            "prediction differs from the eval-mode logits of the last timestep: call model.eval() and take logits[-1]"
        )
    if logits.requires_grad:
        messages.append("prediction tracked gradients: wrap it in torch.no_grad()")
    model.train()
    prediction(model, prefix)
    if not model.training:
        messages.append("prediction left the model in eval mode: restore the training mode it had")
    model.train()
    words = generation(model, prefix, 5)
    if not model.training:
        messages.append("generation left the model in eval mode: restore the training mode it had")
    messages += diagnose_greedy(model, prefix, words, 5)
    if messages:
        return messages
    model.train()
    one = generation(model, prefix, 1)
    if not torch.equal(one[:, 0], want.argmax(dim=-1)):
        messages.append("the first generated word must be the arg-max of prediction(model, prefix)")
    draws = [
        generation(model, prefix, 6, greedy=False, temperature=1.0, generator=torch.Generator().manual_seed(s))
        for s in (0, 0, 1)
    ]
    if not torch.equal(draws[0], draws[1]):
        messages.append(
            "sampling with the same seeded generator gave different words: pass generator= to torch.multinomial"
        )
    top1 = generation(model, prefix, 6, greedy=False, top_k=1, generator=torch.Generator().manual_seed(3))
    if not torch.equal(top1, generation(model, prefix, 6)):
        messages.append("sampling with top_k=1 must give the greedy words (only the largest logit is allowed)")
    cold = generation(model, prefix, 6, greedy=False, temperature=1e-4, generator=torch.Generator().manual_seed(4))
    if not torch.equal(cold, generation(model, prefix, 6)):
        messages.append("sampling at temperature 1e-4 must match greedy: divide the logits by the temperature")
    top3 = generation(
        model, prefix, 1, greedy=False, top_k=3, temperature=100.0, generator=torch.Generator().manual_seed(5)
    )
    allowed = torch.topk(want, 3, dim=-1).indices
    if not bool((allowed == top3[:, :1]).any(dim=1).all()):
        messages.append("with top_k=3 a word outside the 3 most likely ones was sampled")
    return messages


def check_prediction_generation(prediction: Callable, generation: Callable) -> None:
    """Stage 7: shapes, eval mode, no gradients, greedy consistency, seeded sampling, temperature, top-k."""
    report("prediction and generation", collect(lambda: _prediction_probe(prediction, generation)))


def _model_file_probe(path: str | Path, components: Any, max_tokens: int) -> Iterable[str]:
    from hw4lib import data
    from hw4lib.checkpoint import build_model, load_checkpoint
    from hw4lib.perplexity import perplexity

    path = Path(path)
    if not path.exists():
        return [f"there is no {path} beside the notebook yet: run the training cell and the cell that copies it"]
    ckpt = load_checkpoint(path)
    model = build_model(components, ckpt)
    valid = data.load_split(ckpt.get("meta", {}).get("dataset", "wikitext2"), "valid")
    ppl = perplexity(model, valid, max_tokens=max_tokens)
    if not math.isfinite(ppl):
        return [f"{path} gives a perplexity of {ppl}: its weights hold NaN or inf; train again with a lower lr"]
    print(
        f"  {path} loads into your LanguageModel; perplexity on the first {max_tokens:,} validation tokens: {ppl:.1f}"
    )
    return []


def check_model_file(path: str | Path, components: Any, max_tokens: int = 5_000) -> None:
    """Stage 7: ``model.pt`` exists, loads into the student's LanguageModel and scores a finite perplexity."""
    report(f"{Path(path).name}", collect(lambda: _model_file_probe(path, components, max_tokens)))


# ----------------------------------------------------------------------------------------------------
# Later stages: the student's own earlier components
# ----------------------------------------------------------------------------------------------------

# name in the component module -> (notebook, names the check needs, check probe)
EARLIER: list[tuple[str, tuple[str, ...], Callable[..., Iterable[str]]]] = [
    ("01_data_loader.ipynb", ("LanguageModelDataLoader",), _loader_probe),
    ("02_dropout.ipynb", ("LockedDropout",), _locked_probe),
    ("02_dropout.ipynb", ("embedded_dropout",), _embedding_probe),
    ("03_weight_drop.ipynb", ("WeightDrop",), _weight_drop_probe),
    ("04_model.ipynb", ("LanguageModel",), _model_probe),
    (
        "05_regularization_trainer.ipynb",
        ("activation_regularization", "temporal_activation_regularization"),
        diagnose_ar_tar,
    ),
    ("05_regularization_trainer.ipynb", ("train_batch",), _train_batch_probe),
    ("06_nt_asgd.ipynb", ("NTASGD",), _ntasgd_probe),
]


def load_earlier(before: str, folder: str | Path = ".", verbose: bool = True) -> Any:
    """Loads (and checks) your components from the notebooks before ``before``, in ``folder``.

    Prints one line per component; when one fails it names the notebook to fix. Returns the module.
    """
    _earlier_failures.clear()
    try:
        module = load_components(folder, before=before)
    except ComponentLoadError as err:
        print(f"✗ could not load your earlier notebooks: {err}")
        _earlier_failures.append(str(err))
        return None
    for notebook, names, probe in EARLIER:
        if notebook >= before:
            continue
        missing = [n for n in names if not hasattr(module, n)]
        if missing:
            problems = [f"{', '.join(missing)} is not defined (was its graded cell deleted?)"]
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                problems = collect(lambda probe=probe, names=names: probe(*(getattr(module, n) for n in names)))
        label = " and ".join(names)
        if problems == [NOT_IMPLEMENTED]:
            _earlier_failures.append(f"{label} in {notebook}")
            print(f"✗ {label}: not written yet in {notebook}. Complete that stage first (its check must pass),")
            print("  save that notebook (File → Save), then re-run this cell.")
        elif problems:
            _earlier_failures.append(f"{label} in {notebook}")
            print(f"✗ {label} (from {notebook}): {problems[0]}")
            print(f"  → open {notebook}, fix it and save the notebook (File → Save), then re-run this cell.")
        elif verbose:
            print(f"✓ {label} (from {notebook})")
    return module

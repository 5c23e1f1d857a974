"""Stage 1, ``LanguageModelDataLoader``: what one epoch must yield (docs/components.md, stage 1).

The articles' tokens are all distinct and equal to their position in the corpus (article 0 holds 0, 1, 2, ...),
so every token tells where it came from: a shift, a skipped token, an interleaved column or a broken article is
visible in the batches themselves.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from hw4lib.properties.core import Part, attempt, failed, generator, knock_on

B, BPTT, STD = 4, 20, 3.0  # the main run: three epochs, every batch recorded
LONG = dict(batch_size=4, bptt=30, std=2.0)  # many windows for the length law (30 vs 15 never overlap at std 2)
CLAMP = dict(batch_size=2, bptt=10, std=8.0, min_len=4, max_len=14)  # a wide law that the bounds must cut
# max_len left at its default, bptt + 3 * std = 20 (a whole number, so no rounding question): a full window's draw
# rounds above it with probability P(Z > 3.125) = 0.09%, so over about 15,000 windows a loader without the bound
# shows a longer one (some 13 expected), and a correct one reaches 20 (about 30 expected).
DEFAULT_MAX = dict(batch_size=1, bptt=8, std=4.0)


def articles(gen: torch.Generator, n: int, low: int, high: int) -> list[np.ndarray]:
    """``n`` articles of random lengths in [low, high) whose token ids are their positions in the corpus."""
    lengths = torch.randint(low, high, (n,), generator=gen).tolist()
    out, start = [], 0
    for length in lengths:
        out.append(np.arange(start, start + length, dtype=np.int64))
        start += length
    return out


def inputs(seed: int) -> dict:
    return {
        "seed": seed % 10_000,
        "main": articles(generator(seed, 1), 40, 30, 400),
        "long": articles(generator(seed, 2), 60, 1500, 2500),
        "clamp": articles(generator(seed, 3), 20, 100, 300),
        "default_max": articles(generator(seed, 4), 60, 1500, 2500),
    }


def _epoch(loader: Any, limit: int = 20_000) -> list[list]:
    batches = []
    for n, item in enumerate(loader):
        if n >= limit:
            raise RuntimeError(f"one epoch yielded more than {limit} batches (does the loop ever end?)")
        if isinstance(item, (tuple, list)) and len(item) == 3:
            x, y, seq_len = item
            item = [torch.as_tensor(x) if isinstance(x, (torch.Tensor, np.ndarray)) else x,
                    torch.as_tensor(y) if isinstance(y, (torch.Tensor, np.ndarray)) else y,
                    int(seq_len) if isinstance(seq_len, (int, np.integer, torch.Tensor)) else seq_len]
        batches.append(item)
    return batches


def _lengths(loader: Any) -> list:
    return [int(b[2]) for b in _epoch(loader)]


def _summary(loader: Any) -> dict:
    """A whole epoch's window lengths and first batches: enough to tell two epochs apart."""
    batches = _epoch(loader)
    return {"lengths": [b[2] for b in batches], "head": batches[:3]}


def observe(c: Any, inp: dict) -> dict:
    """Three shuffled epochs, an unshuffled one, the length law, clamping, and reproducibility."""
    Loader, seed = c.LanguageModelDataLoader, inp["seed"]
    main = Loader(inp["main"], batch_size=B, bptt=BPTT, shuffle=True, seed=seed, std=STD)
    epochs, counters = [], []
    for _ in range(3):
        epochs.append(_epoch(main))
        counters.append(getattr(main, "epoch", None))
    obs: dict = {"epochs": epochs, "counters": counters, "len": attempt(lambda: int(len(main)))}
    obs["unshuffled"] = attempt(lambda: _epoch(Loader(inp["main"], batch_size=B, bptt=BPTT, shuffle=False,
                                                      seed=seed, std=STD))[:2])

    def resumed() -> list:
        fresh = Loader(inp["main"], batch_size=B, bptt=BPTT, shuffle=True, seed=seed, std=STD)
        fresh.epoch = 2  # what the trainer does when it resumes a run in its third epoch
        return _summary(fresh)

    obs["resumed_epoch2"] = attempt(resumed)

    def under_global_seed(global_seed: int) -> list:
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        return _summary(Loader(inp["main"], batch_size=B, bptt=BPTT, shuffle=True, seed=seed, std=STD))

    obs["global_a"], obs["global_b"] = attempt(lambda: under_global_seed(1)), attempt(lambda: under_global_seed(2))
    obs["other_seed"] = attempt(lambda: _summary(Loader(inp["main"], batch_size=B, bptt=BPTT, shuffle=True,
                                                        seed=seed + 1, std=STD)))
    long = Loader(inp["long"], shuffle=False, seed=seed, **LONG)
    obs["long"] = attempt(lambda: [_lengths(long), _lengths(long)])
    obs["clamp"] = attempt(lambda: _lengths(Loader(inp["clamp"], shuffle=False, seed=seed, **CLAMP)))
    obs["default_max"] = attempt(lambda: _lengths(Loader(inp["default_max"], shuffle=False, seed=seed,
                                                         **DEFAULT_MAX)))

    def tiny() -> list[int]:  # a corpus shorter than one window still yields a batch
        short = [np.arange(B * (BPTT // 2), dtype=np.int64)]  # BPTT // 2 rows: fewer than one mean window
        loader = Loader(short, batch_size=B, bptt=BPTT, shuffle=False, seed=seed, std=STD)
        return [int(len(loader)), len(_epoch(loader))]

    obs["tiny"] = attempt(tiny)
    return obs


PART = Part("data_loader", ("LanguageModelDataLoader",), inputs, observe)


# --- the properties ----------------------------------------------------------------------------------------


def _first_batches(obs: dict) -> list:
    return [b for epoch in obs["epochs"] for b in epoch]


@PART.prop("every batch is (inputs, targets, seq_len): LongTensors of shape (seq_len, B)")
def shapes(inp: dict, obs: dict) -> list[str]:
    for e, epoch in enumerate(obs["epochs"]):
        if not epoch:
            return [f"epoch {e + 1} yielded no batches"]
        for k, item in enumerate(epoch):
            if not (isinstance(item, list) and len(item) == 3):
                return [f"batch {k} is {type(item).__name__}; each batch must be a tuple (inputs, targets, seq_len)"]
            x, y, seq_len = item
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                return [f"batch {k}: inputs and targets must be torch tensors, got {type(x).__name__}"]
            if x.dtype != torch.int64 or y.dtype != torch.int64:
                return [f"batch {k}: inputs/targets have dtype {x.dtype}/{y.dtype}; use torch.long (int64)"]
            if x.dim() != 2 or x.shape[1] != B:
                return [f"batch {k}: inputs have shape {tuple(x.shape)}; expected (seq_len, batch_size) = "
                        f"({seq_len}, {B}) (time-major: rows are timesteps, columns are batch elements)"]
            if not isinstance(seq_len, int) or seq_len != x.shape[0] or y.shape != x.shape:
                cause = ""
                if k == len(epoch) - 1 and y.dim() == 2 and (y.shape[0] < x.shape[0] or
                                                              (isinstance(seq_len, int) and seq_len > x.shape[0])):
                    # the symptom of a last window that ran past the end of the columns: say the cause
                    cause = (". This is the epoch's last window: it ran past the end of the columns. Cut it to the "
                             "tokens left, seq_len = min(seq_len, rows - 1 - i), so that every input has its target")
                return [f"batch {k}: seq_len = {seq_len} but inputs are {tuple(x.shape)} and targets "
                        f"{tuple(y.shape)}; all three must agree{cause}"]
    return []


def _well_formed(obs: dict) -> bool:
    return not shapes({}, obs)


@PART.prop("targets are the inputs shifted by one token, also from one batch to the next")
def shifted_by_one(inp: dict, obs: dict) -> list[str]:
    if not _well_formed(obs):
        return [knock_on("cannot be checked until the batches have the right form (see above)")]
    for e, epoch in enumerate(obs["epochs"]):
        for k, (x, y, _) in enumerate(epoch):
            if not torch.equal(y[:-1], x[1:]):
                t, b = (int(i) for i in (y[:-1] != x[1:]).nonzero()[0])
                if torch.equal(y, x):
                    return [f"epoch {e + 1}, batch {k}: the targets equal the inputs; the target at each position "
                            "is the NEXT token (data[i + 1 : i + 1 + seq_len])"]
                return [f"epoch {e + 1}, batch {k}, timestep {t}, element {b}: the target is {int(y[t, b])} but the "
                        f"next input in that column is {int(x[t + 1, b])}; targets are the inputs shifted by one"]
            if k + 1 < len(epoch) and not torch.equal(y[-1], epoch[k + 1][0][0]):
                return [f"epoch {e + 1}: batch {k + 1} does not start where batch {k} ended (its first inputs "
                        f"{epoch[k + 1][0][0].tolist()} should be the last targets {y[-1].tolist()}): consecutive "
                        "batches read consecutive text, with no gap or overlap"]
    return []


def _columns(epoch: list) -> list[list[int]]:
    """Each column's inputs, in order."""
    cols = [[] for _ in range(B)]
    for x, _, _ in epoch:
        for b in range(B):
            cols[b] += x[:, b].tolist()
    return cols


@PART.prop("column b is the b-th contiguous slice of the concatenated articles; every position but a column's "
           "last is an input exactly once per epoch; the last N mod B tokens are dropped")
def contiguous_columns(inp: dict, obs: dict) -> list[str]:
    if not _well_formed(obs):
        return [knock_on("cannot be checked until the batches have the right form (see above)")]
    articles = {int(a[0]): (int(a[0]), int(a[-1])) for a in inp["main"]}
    ends = {last for _, last in articles.values()}
    total = sum(len(a) for a in inp["main"])
    rows = total // B
    for e, epoch in enumerate(obs["epochs"]):
        cols = _columns(epoch)
        seen: set[int] = set()
        for b, col in enumerate(cols):
            steps = np.diff(np.asarray(col))
            if len(steps) > 4 and float(np.mean(steps == B)) > 0.5:
                return [f"column {b} holds every {B}-th token of the text ({col[:4]} ...): the columns are "
                        f"interleaved. Reshaping the stream with view(N // B, B) does that; column b must be the "
                        f"b-th contiguous slice: stream[:N // B * B].view(B, N // B).t()"]
            if len(col) != rows - 1:
                many = "fewer" if len(col) < rows - 1 else "more"
                return [f"epoch {e + 1}: column {b} has {len(col)} inputs, {many} than the {rows - 1} it should "
                        f"have ({total} tokens in {B} columns of {rows} rows; every position of a column but its "
                        "last is an input exactly once per epoch" + (", so text was skipped)" if many == "fewer"
                                                                      else ", so text was read twice or padded)")]
            for i, (a, b_) in enumerate(zip(col[:-1], col[1:], strict=True)):
                if b_ != a + 1 and not (a in ends and b_ in articles):
                    return [f"epoch {e + 1}, column {b}: token {b_} follows token {a} (position {i + 1} of the "
                            "column); a column reads running text: whole articles, one after the other"]
            if seen & set(col):
                return [f"epoch {e + 1}: token {next(iter(seen & set(col)))} is an input in two columns; each position "
                        "is an input once per epoch"]
            seen |= set(col)
    return []


@PART.prop("epoch e shuffles the articles with its own generator (seed + e) when shuffle=True; shuffle=False "
           "keeps their order; loader.epoch counts finished passes")
def shuffled_per_epoch(inp: dict, obs: dict) -> list[str]:
    if not _well_formed(obs):
        return [knock_on("cannot be checked until the batches have the right form (see above)")]
    problems = []
    if obs["counters"] != [1, 2, 3]:
        problems.append(f"after each full pass `loader.epoch` was {obs['counters']}; expected [1, 2, 3] "
                        "(start at 0, add 1 at the end of every epoch)")
    firsts = [tuple(epoch[0][0][:, 0].tolist()) for epoch in obs["epochs"]]
    orders = [[int(col[0]) for col in _columns(epoch)] for epoch in obs["epochs"]]
    if len(set(firsts)) < 3 or len({tuple(o) for o in orders}) < 3:
        problems.append("with shuffle=True, the three epochs did not all read the articles in a new order; "
                        "shuffle with torch.Generator().manual_seed(seed + epoch) at the start of each epoch")
    unshuffled = obs["unshuffled"]
    if failed(unshuffled):
        return problems + [f"with shuffle=False the loader failed: {failed(unshuffled)}"]
    stream = torch.as_tensor(np.concatenate(inp["main"]))
    rows = len(stream) // B
    data = stream[: rows * B].view(B, rows).t()
    x = unshuffled[0][0] if unshuffled and isinstance(unshuffled[0], list) else None
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != B or not torch.equal(x, data[: x.shape[0]]):
        problems.append("with shuffle=False the first batch must be the first rows of the articles in their given "
                        "order, column b being the b-th contiguous slice")
    return problems


@PART.prop("all randomness comes from the epoch's generator: the same seed gives the same epochs whatever torch's "
           "global generator holds; setting loader.epoch = e replays epoch e (the trainer resumes this way)")
def reproducible(inp: dict, obs: dict) -> list[str]:
    if not _well_formed(obs):
        return [knock_on("cannot be checked until the batches have the right form (see above)")]
    for key in ("global_a", "global_b", "resumed_epoch2", "other_seed"):
        if failed(obs[key]):
            return [f"running a second loader failed: {failed(obs[key])}"]

    def same(a: dict, b: dict) -> bool:
        return a["lengths"] == b["lengths"] and all(
            torch.equal(p[0], q[0]) for p, q in zip(a["head"], b["head"], strict=False))

    def epoch(e: int) -> dict:
        return {"lengths": [b[2] for b in obs["epochs"][e]], "head": obs["epochs"][e][:3]}

    problems = []
    if not same(obs["global_a"], obs["global_b"]):
        problems.append("two loaders with the same seed gave different epochs after torch.manual_seed changed: "
                        "draw every random number (shuffle, window lengths) from torch.Generator().manual_seed("
                        "seed + epoch), never from torch.rand/torch.normal/random/np.random without it")
    elif not same(obs["global_a"], epoch(0)):
        problems.append("a fresh loader with the same seed does not replay the first epoch")
    if not same(obs["resumed_epoch2"], epoch(2)):
        problems.append("a fresh loader with loader.epoch set to 2 does not give the third epoch's batches: seed "
                        "each epoch's generator with seed + self.epoch when the epoch starts")
    if same(obs["other_seed"], epoch(0)):
        problems.append("seed and seed + 1 gave the same epoch: the generator must be seeded with seed + epoch")
    return problems


@PART.prop("len(loader) estimates the number of batches in an epoch, at least 1 when there is one")
def length_estimate(inp: dict, obs: dict) -> list[str]:
    n, est = len(obs["epochs"][0]), obs["len"]
    if failed(est):
        return [f"len(loader) failed: {failed(est)}; define __len__ (an estimate of the batches per epoch)"]
    if not 0.8 * n <= est <= 1.25 * n:
        return [f"len(loader) is {est} but an epoch has {n} batches; estimate it as (rows - 1) / expected window "
                "length"]
    tiny = obs["tiny"]
    if failed(tiny):
        return [f"a loader over one short article failed: {failed(tiny)}"]
    if tiny[1] >= 1 and tiny[0] < 1:
        return [f"len(loader) is {tiny[0]} for a corpus shorter than one window, which still yields {tiny[1]} "
                "batch(es): the estimate is at least 1 (round up, or max(1, ...))"]
    return []


@PART.prop("window length: base = bptt with probability p_full, else bptt / 2; round(Normal(base, std)), std "
           "being the standard deviation")
def length_law(inp: dict, obs: dict) -> list[str]:
    long = obs["long"]
    if failed(long):
        return [f"the loader failed on a longer corpus: {failed(long)}"]
    bptt, std = LONG["bptt"], LONG["std"]
    lens = np.asarray([n for epoch in long for n in epoch[:-1]], dtype=float)  # the last one is cut to what is left
    if len(lens) < 1000 or not np.isfinite(lens).all():
        return [f"only {len(lens)} windows over two epochs of a long corpus; expected about {2 * 60 * 2000 // 4 // 30}"]
    problems = []
    if np.unique(lens).size <= 2:
        return [f"every window has length {sorted(set(lens.tolist()))}: draw each length at random, "
                "round(Normal(base, std))"]
    if np.any(lens != np.round(lens)):
        return ["window lengths must be whole numbers: round(Normal(base, std))"]
    full = lens[lens > 0.75 * bptt]
    short = lens[lens <= 0.75 * bptt]
    if len(full) > 100:
        sd = math.sqrt(std**2 + 1 / 12)  # rounding adds the variance of a uniform over one unit
        spread = full.std(ddof=1)
        if abs(spread - sd) > 6 * sd / math.sqrt(2 * len(full)) + 0.05:
            return [f"full windows have a standard deviation of {spread:.2f}; with std = {std:g} it should be "
                    f"{std:g} (use the std argument as the standard deviation of the normal)"]
        if abs(full.mean() - bptt) > 6 * sd / math.sqrt(len(full)):
            hint = (" (int() truncates; use round())" if -0.8 < full.mean() - bptt < -0.2 else "")
            problems.append(f"full windows average {full.mean():.2f}; with bptt = {bptt} they should average "
                            f"{bptt}{hint}")
    share = len(short) / len(lens)
    p_short = 0.05
    if abs(share - p_short) > 6 * math.sqrt(p_short * (1 - p_short) / len(lens)):
        problems.append(f"{share:.1%} of the windows are short (around bptt/2 = {bptt // 2}); expected about 5% "
                        "(base = bptt with probability p_full = 0.95, else bptt / 2)")
    if len(short) > 20 and abs(short.mean() - bptt / 2) > 1.0:
        problems.append(f"short windows average {short.mean():.1f}; expected bptt / 2 = {bptt / 2:g}")
    return problems


@PART.prop("window lengths are clamped to [min_len, max_len] (and the last one cut to what is left)")
def clamped(inp: dict, obs: dict) -> list[str]:
    lens = obs["clamp"]
    if failed(lens):
        return [f"the loader failed with min_len/max_len given: {failed(lens)}"]
    inner = lens[:-1]
    lo, hi = CLAMP["min_len"], CLAMP["max_len"]
    if not inner or min(inner) < lo or max(lens) > hi:
        return [f"with bptt={CLAMP['bptt']}, std={CLAMP['std']:g}, min_len={lo}, max_len={hi} the windows ranged "
                f"over [{min(lens) if lens else '-'}, {max(lens) if lens else '-'}]; clamp every drawn length to "
                "[min_len, max_len]"]
    if lens.count(hi) < 3 or inner.count(lo) < 3:
        return [f"with a wide length law the bounds should often bind (lengths equal to {lo} and {hi}); they "
                f"appeared {inner.count(lo)} and {lens.count(hi)} times"]
    return []


@PART.prop("max_len defaults to bptt + 3 * std: with max_len=None no window is longer, and the bound is reached")
def default_max_len(inp: dict, obs: dict) -> list[str]:
    lens = obs["default_max"]
    if failed(lens):
        return [f"the loader failed with max_len left at its default: {failed(lens)}"]
    bptt, std = DEFAULT_MAX["bptt"], DEFAULT_MAX["std"]
    bound = bptt + 3 * std
    setting = f"with bptt={bptt}, std={std:g} and max_len left at None"
    if not lens:
        return [f"{setting} the loader yielded no batch"]
    if max(lens) > bound:
        return [f"{setting} a window of {max(lens)} tokens came out: max_len defaults to bptt + 3 * std = "
                f"{bound:g}, and every drawn length is clamped to it"]
    if max(lens) < bound:
        return [f"{setting} the longest of {len(lens)} windows had {max(lens)} tokens; the default bound is bptt + "
                f"3 * std = {bound:g}, which about 1 window in 500 reaches (is the default max_len smaller?)"]
    return []

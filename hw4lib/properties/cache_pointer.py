"""Stage 8, ``cache_probs`` and ``cache_mixture``: the continuous cache pointer (docs/components.md, stage 8).

Each property perturbs what position ``t`` must not see (itself, the future, the positions before the window) and
asks that nothing at ``t`` changes, or uses a case whose answer needs no softmax (a one-position window, θ = 0),
so none of them carries the cache's implementation. The comparison with the reference on random keys is the
judge's hidden check.
"""

from __future__ import annotations

from typing import Any

import torch

from hw4lib.properties.core import Part, attempt, close, failed, generator, knock_on, shape_of

N, B, H, V = 48, 3, 6, 5
WINDOW, THETA, LAMBDA = 7, 0.8, 0.3
CUT = 20  # positions before CUT are redrawn: outputs from CUT + WINDOW on must not change
NOW = 25  # positions after NOW are redrawn: outputs up to NOW must not change


def inputs(seed: int) -> dict:
    gen = generator(seed, 81)
    keys = torch.randn(N, B, H, generator=gen)
    words = torch.randint(V, (N, B), generator=gen)
    far_keys, far_words = keys.clone(), words.clone()
    far_keys[:CUT] = torch.randn(CUT, B, H, generator=gen)
    far_words[:CUT] = torch.randint(V, (CUT, B), generator=gen)
    future_keys, future_words = keys.clone(), words.clone()
    future_keys[NOW + 1:] = torch.randn(N - NOW - 1, B, H, generator=gen)
    future_words[NOW + 1:] = torch.randint(V, (N - NOW - 1, B), generator=gen)
    p_cache = torch.softmax(torch.randn(6, V, generator=gen, dtype=torch.float64), -1)
    p_cache[2] = float("nan")  # a position whose cache is empty
    p_vocab = torch.softmax(torch.randn(6, V, generator=gen, dtype=torch.float64), -1)
    return {"keys": keys, "words": words, "far_keys": far_keys, "far_words": far_words,
            "future_keys": future_keys, "future_words": future_words,
            "distinct": torch.arange(N * B).view(N, B), "p_cache": p_cache, "p_vocab": p_vocab}


def observe(c: Any, inp: dict) -> dict:
    cache_probs, cache_mixture = c.cache_probs, c.cache_mixture

    def run(keys: torch.Tensor, words: torch.Tensor, window: int = WINDOW, theta: float = THETA,
            **kw: Any) -> Any:
        out = cache_probs(keys.clone(), words.clone(), window, theta, **kw)
        return out.detach() if isinstance(out, torch.Tensor) else out

    keys, words = inp["keys"], inp["words"]
    return {
        "main": attempt(lambda: run(keys, words)),
        "blocked": attempt(lambda: run(keys, words, block=5)),
        "far": attempt(lambda: run(inp["far_keys"], inp["far_words"], block=5)),
        "future": attempt(lambda: run(inp["future_keys"], inp["future_words"])),
        "distinct": attempt(lambda: run(keys, inp["distinct"])),
        "one": attempt(lambda: run(keys, words, window=1)),
        "flat": attempt(lambda: run(keys, words, theta=0.0)),
        "mix": attempt(lambda: cache_mixture(inp["p_cache"].clone(), inp["p_vocab"].clone(), LAMBDA)),
        "mix0": attempt(lambda: cache_mixture(inp["p_cache"].clone(), inp["p_vocab"].clone(), 0.0)),
    }


PART = Part("cache_pointer", ("cache_probs", "cache_mixture"), inputs, observe)


def _usable(obs: dict, key: str) -> tuple[torch.Tensor | None, list[str]]:
    """The output ``key`` if it is an (N, B) tensor, else the problem (for properties that need it)."""
    value = obs[key]
    if failed(value):
        return None, [f"cache_probs raised {failed(value)}"]
    if not isinstance(value, torch.Tensor) or value.shape != (N, B):
        return None, [knock_on(f"cannot be checked until cache_probs returns (N, B) = ({N}, {B}) (see above)")]
    return value.double(), []


def _first_difference(a: torch.Tensor, b: torch.Tensor, rows: slice) -> tuple[int, int] | None:
    differ = ~torch.isclose(a[rows].nan_to_num(-1.0), b[rows].nan_to_num(-1.0), atol=1e-6, rtol=1e-5)
    if not bool(differ.any()):
        return None
    t, col = (int(i) for i in differ.nonzero()[0])
    return t + (rows.start or 0), col


@PART.prop("cache_probs(keys (N, B, H), words (N, B), window, theta) returns (N, B) floating probabilities in "
           "[0, 1] (NaN allowed where the cache is empty)")
def output_contract(inp: dict, obs: dict) -> list[str]:
    main = obs["main"]
    if failed(main):
        return [f"cache_probs raised {failed(main)}"]
    if not isinstance(main, torch.Tensor) or main.shape != (N, B):
        return [f"cache_probs returned {shape_of(main)}; expected (N, B) = ({N}, {B}): one probability per position "
                "and column (transpose back if you worked on (B, N))"]
    if not main.is_floating_point():
        return [f"cache_probs returned dtype {main.dtype}; return probabilities (float64 is safest for the logs)"]
    values = main[~torch.isnan(main)]
    if values.numel() and (float(values.min()) < -1e-9 or float(values.max()) > 1 + 1e-9):
        return [f"cache_probs returned values from {float(values.min()):.3g} to {float(values.max()):.3g}; they are "
                "probabilities: the softmax weights of the keys whose next word is the target, summed"]
    return []


@PART.prop("the first position of every column has an empty cache (NaN), and every later one has a value")
def empty_cache_is_nan(inp: dict, obs: dict) -> list[str]:
    main, problems = _usable(obs, "main")
    if main is None:
        return problems
    if not bool(torch.isnan(main[0]).all()):
        return ["position 0 has no past positions, so its cache is empty: return NaN there (a softmax over keys "
                "that are all masked with -inf gives NaN by itself); the driver then uses the model alone"]
    if bool(torch.isnan(main[1:]).any()):
        t, col = (int(i) for i in torch.isnan(main[1:]).nonzero()[0])
        return [f"position {t + 1} of column {col} has past positions but its cache probability is NaN: only an "
                "empty cache gives NaN (check the mask and that columns are not mixed)"]
    return []


@PART.prop("position t never sees itself: a word that never occurred before gets cache probability 0")
def not_itself(inp: dict, obs: dict) -> list[str]:
    distinct, problems = _usable(obs, "distinct")
    if distinct is None:
        return problems
    seen = distinct[1:].nan_to_num(0.0)
    if bool((seen.abs() > 1e-9).any()):
        t, col = (int(i) for i in (seen.abs() > 1e-9).nonzero()[0])
        return [f"every word here occurs once, yet position {t + 1} of column {col} gets cache probability "
                f"{float(seen[t, col]):.3g}: position t may attend only to i < t (the word after position t is the "
                "one being predicted, so h_t's own entry must be masked)"]
    return []


@PART.prop("no future positions are visible: changing the keys and words after position t leaves p_cache at t "
           "unchanged")
def no_future(inp: dict, obs: dict) -> list[str]:
    main, problems = _usable(obs, "main")
    future, more = _usable(obs, "future")
    if main is None or future is None:
        return problems or more
    found = _first_difference(main, future, slice(0, NOW + 1))
    if found:
        t, col = found
        return [f"redrawing the keys and words after position {NOW} changed p_cache at position {t} of column "
                f"{col}: mask every key i >= t (a (rows, keys) boolean mask, filled with -inf before the softmax)"]
    return []


@PART.prop("the window holds exactly the last `window` positions: keys before t - window change nothing, and a "
           "one-position cache is certain")
def window_respected(inp: dict, obs: dict) -> list[str]:
    main, problems = _usable(obs, "main")
    far, more = _usable(obs, "far")
    one, most = _usable(obs, "one")
    if main is None or far is None or one is None:
        return problems or more or most
    found = _first_difference(main, far, slice(CUT + WINDOW, N))
    if found:
        t, col = found
        return [f"with window={WINDOW}, redrawing positions before {CUT} changed p_cache at position {t} of column "
                f"{col}: position t sees i with t - window <= i < t, {WINDOW} positions (an off-by-one?)"]
    words = inp["words"]
    want = (words[:-1] == words[1:]).double()
    if not close(one[1:], want, 1e-9, 0):
        return ["with window=1 only the previous position is cached, so p_cache is 1 where the previous word "
                "equals the target and 0 elsewhere; yours differs (is the window the last `window` positions?)"]
    return []


@PART.prop("theta scales the scores: with theta = 0 every cached position weighs the same")
def uniform_at_theta_zero(inp: dict, obs: dict) -> list[str]:
    flat, problems = _usable(obs, "flat")
    if flat is None:
        return problems
    words = inp["words"]
    want = torch.full((N, B), float("nan"), dtype=torch.float64)
    for t in range(1, N):  # the share of the last `window` words equal to the target: no scores needed
        past = words[max(0, t - WINDOW):t]
        want[t] = (past == words[t]).double().mean(0)
    if not close(flat[1:], want[1:], 1e-9, 0):
        return ["with theta = 0 the weights are uniform over the cached positions, so p_cache is the share of them "
                "whose next word is the target; yours differs: the cached positions are t - window <= i < t, and "
                "theta multiplies the scores h_i·h_t (it does not divide them)"]
    return []


@PART.prop("the result does not depend on the block size (blocks that cut the window give the same values)")
def blocks_agree(inp: dict, obs: dict) -> list[str]:
    main, problems = _usable(obs, "main")
    blocked, more = _usable(obs, "blocked")
    if main is None or blocked is None:
        return problems or more
    found = _first_difference(main, blocked, slice(0, N))
    if found:
        t, col = found
        return [f"with block=5 position {t} of column {col} differs from the default block: each block of rows "
                "needs the keys from (its first row - window) up to its last row, and the mask in those "
                "absolute positions"]
    return []


@PART.prop("cache_mixture(p_cache, p_vocab, lambdah) = lambdah * p_cache + (1 - lambdah) * p_vocab, normalized "
           "over the vocabulary, and p_vocab alone where p_cache is NaN")
def mixture_formula(inp: dict, obs: dict) -> list[str]:
    mix = obs["mix"]
    if failed(mix):
        return [f"cache_mixture raised {failed(mix)}"]
    pc, pv = inp["p_cache"], inp["p_vocab"]
    if not isinstance(mix, torch.Tensor) or mix.shape != pv.shape:
        return [f"cache_mixture returned {shape_of(mix)}; it works elementwise: expected {tuple(pv.shape)}"]
    empty = torch.isnan(pc[:, 0])
    if bool(torch.isnan(mix).any()) or not close(mix[empty], pv[empty], 1e-9, 0):
        return ["where p_cache is NaN (an empty cache) the mixture must be p_vocab: use torch.where(torch.isnan("
                "p_cache), p_vocab, ...)"]
    if not close(mix[~empty], LAMBDA * pc[~empty] + (1 - LAMBDA) * pv[~empty], 1e-9, 1e-7):
        sums = mix[~empty].double().sum(-1)
        return [f"cache_mixture differs from lambdah * p_cache + (1 - lambdah) * p_vocab (rows of two distributions "
                f"mixed this way sum to 1; yours sum to {float(sums.min()):.3g}..{float(sums.max()):.3g})"]
    return []


@PART.prop("with lambdah = 0 the mixture is the model alone")
def lambda_zero_is_model(inp: dict, obs: dict) -> list[str]:
    mix0 = obs["mix0"]
    if failed(mix0):
        return [f"cache_mixture raised {failed(mix0)}"]
    if not close(mix0, inp["p_vocab"], 1e-12, 0):
        return ["with lambdah = 0 cache_mixture must return p_vocab exactly (the cache gets no share)"]
    return []

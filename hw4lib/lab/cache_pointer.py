"""The continuous cache pointer (Grave et al. 2017) on a trained language model, at evaluation time.

A model that has just read "... the Ottoman Empire ... the Ottoman" should find "Empire" likely again. The cache
keeps the last layer's raw outputs ``h_i`` of the last ``window`` positions with the word that followed each, and
at position ``t`` mixes a distribution over those words into the model's own:

    p(w) = λ · p_cache(w) + (1 − λ) · p_vocab(w),    p_cache(w) ∝ Σ_{i in window, x_{i+1} = w} exp(θ · h_i·h_t)

Nothing is learned: ``θ`` and ``λ`` are chosen on validation (:func:`grid_search`). The model runs once
(:func:`collect`); the cache is then a matrix product per block of positions, vectorized over the window and the
columns (no Python loop per token), so a grid of settings costs one product per ``(window, θ)``, not a model run.

The cache itself (``cache_probs``) and the mixture (``cache_mixture``) are stage 8's graded component, written
in ``08_cache_pointer.ipynb`` and loaded like every other component (``--impl``); this module is the driver
around them: the model pass, the perplexities, the grid, the speed and the CLI.

The text is read as :func:`hw4lib.perplexity.evaluate_nll` reads it (``batch_size`` contiguous columns, hidden
state carried across windows); each column has its own cache, empty at the column's start. Where a position has
no cached word yet (the first of each column) the model's own probability is used.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from hw4lib.errors import HW4Error
from hw4lib.perplexity import Data, as_stream, batchify, target_log_softmax, windows


@dataclass(frozen=True)
class CacheSettings:
    window: int  # how many past positions the cache holds
    theta: float  # the inverse temperature of the cache's scores
    lambdah: float  # the cache's share of the mixture


# The settings of the authors' pointer commands (salesforce/awd-lstm-lm's README). PTB's window is 500 there, which
# the README says was chosen instead of the paper's 2000.
REFERENCE: dict[str, CacheSettings] = {
    "ptb": CacheSettings(window=500, theta=1.0, lambdah=0.1),
    "wikitext2": CacheSettings(window=3785, theta=0.662, lambdah=0.1279),
}


@dataclass
class Collected:
    """One pass of the model over a text: what the cache needs, column by column."""

    keys: torch.Tensor  # (N, B, H) the last layer's raw outputs h_t, float32
    targets: torch.Tensor  # (N, B) the word that followed each position
    log_p_vocab: torch.Tensor  # (N, B) the model's log-probability of that word, float64
    seconds: float  # time of the model pass

    @property
    def tokens(self) -> int:
        return self.targets.numel()

    def nll(self) -> float:
        """The model's own mean negative log-likelihood (what evaluate_nll returns on the same text)."""
        return float(-self.log_p_vocab.mean())


@torch.no_grad()
def collect(
    model: torch.nn.Module, data: Data, *, batch_size: int = 10, bptt: int = 70, max_tokens: int | None = None,
    progress: bool = False,
) -> Collected:
    """Runs ``model`` (eval mode) once over ``data``. The model must return ``(logits, hidden, raw_outputs, ...)``
    with ``raw_outputs[-1]`` of shape (T, B, H): the course's ``LanguageModel`` does."""
    device = next(model.parameters()).device
    columns = batchify(as_stream(data, max_tokens), batch_size).to(device)
    was_training = model.training
    model.eval()
    keys, targets, log_p, hidden = [], [], [], None
    start = time.perf_counter()
    try:
        steps = windows(columns, bptt)
        if progress:
            steps = tqdm(steps, total=math.ceil((columns.size(0) - 1) / bptt), desc="model pass", leave=False)
        for inputs, target in steps:
            out = model(inputs, hidden)
            if not isinstance(out, tuple) or len(out) < 3:
                raise HW4Error("the cache pointer needs the model's raw outputs: model(inputs, hidden) must return "
                               "(logits, hidden, raw_outputs, ...) as the course's LanguageModel does")
            logits, hidden, raw = out[0], out[1], out[2]
            keys.append(raw[-1].float())
            targets.append(target)
            log_p.append(target_log_softmax(logits, target))
    finally:
        model.train(was_training)
    return Collected(torch.cat(keys), torch.cat(targets), torch.cat(log_p), time.perf_counter() - start)


def block_size(batch: int, window: int) -> int:
    """Positions per block so that the (B, rows, window + rows) scores stay near 16 M floats."""
    return max(16, (1 << 24) // max(1, batch * (window + 256)))


def cache_probs(components: Any, collected: Collected, window: int, theta: float) -> torch.Tensor:
    """p_cache(x_{t+1}) at every position, (N, B) float64, NaN where the cache is still empty: the component
    ``cache_probs`` (stage 8) on the collected keys, in blocks sized for memory."""
    if window < 1:
        raise HW4Error(f"the cache window must hold at least one position, not {window}")
    block = block_size(collected.targets.size(1), window)
    try:
        p_cache = components.cache_probs(collected.keys, collected.targets, window, theta, block=block)
    except NotImplementedError as err:
        raise HW4Error("cache_probs is not implemented yet: write it in 08_cache_pointer.ipynb (its check must "
                       "pass), save the notebook, and run this again") from err
    if not isinstance(p_cache, torch.Tensor) or p_cache.shape != collected.targets.shape:
        got = tuple(p_cache.shape) if isinstance(p_cache, torch.Tensor) else type(p_cache).__name__
        raise HW4Error(f"cache_probs returned {got}; it must return (N, B) = {tuple(collected.targets.shape)}, "
                       "one probability per position (run the visible check of 08_cache_pointer.ipynb)")
    return p_cache


def mixed_nll(components: Any, collected: Collected, p_cache: torch.Tensor, lambdah: float) -> float:
    """Mean negative log-likelihood of the component ``cache_mixture``: ``λ·p_cache + (1−λ)·p_vocab``, the model
    alone where the cache is empty."""
    try:
        mixed = components.cache_mixture(p_cache, collected.log_p_vocab.exp(), lambdah)
    except NotImplementedError as err:
        raise HW4Error("cache_mixture is not implemented yet: write it in 08_cache_pointer.ipynb (its check "
                       "must pass), save the notebook, and run this again") from err
    if not isinstance(mixed, torch.Tensor) or mixed.shape != p_cache.shape:
        raise HW4Error("cache_mixture must return a tensor of p_cache's shape (it mixes elementwise)")
    return float(-mixed.double().log().mean())


def evaluate(components: Any, collected: Collected, settings: CacheSettings) -> dict[str, Any]:
    """The model's perplexity with and without the cache on the collected text, and the cache's speed."""
    start = time.perf_counter()
    p_cache = cache_probs(components, collected, settings.window, settings.theta)
    nll = mixed_nll(components, collected, p_cache, settings.lambdah)
    cache_s = time.perf_counter() - start
    return {
        "settings": asdict(settings),
        "tokens": collected.tokens,
        "ppl_model": math.exp(collected.nll()),
        "ppl_cache": math.exp(nll),
        "model_pass_s": round(collected.seconds, 2),
        "cache_s": round(cache_s, 2),
        "cache_tokens_per_s": round(collected.tokens / cache_s) if cache_s else None,
    }


def grid_search(
    components: Any, collected: Collected, windows_: list[int], thetas: list[float], lambdas: list[float]
) -> list[dict[str, Any]]:
    """Every combination, best first: one cache product per (window, θ), the λ's are a cheap mix on top."""
    rows = []
    for window in windows_:
        for theta in thetas:
            p_cache = cache_probs(components, collected, window, theta)
            for lam in lambdas:
                rows.append({"window": window, "theta": theta, "lambdah": lam,
                             "ppl": math.exp(mixed_nll(components, collected, p_cache, lam))})
    return sorted(rows, key=lambda r: r["ppl"])


def load_cache_components(impl: str | Path = "solutions") -> Any:
    """``cache_probs`` and ``cache_mixture`` from stage 8 of ``impl`` (``solutions``, ``notebooks``, a folder or
    a notebook), through the one notebook loader."""
    from hw4lib.components import load_components

    source = Path(impl)
    stages = None if source.suffix == ".ipynb" else ("08",)
    module = load_components(impl, stages=stages)
    missing = [n for n in ("cache_probs", "cache_mixture") if not hasattr(module, n)]
    if missing:
        raise HW4Error(f"{', '.join(missing)} not found in {impl}: the cache pointer is written in "
                       "08_cache_pointer.ipynb (its graded cell); pass --impl with that notebook or its folder")
    return module


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _cmd_cache(args: argparse.Namespace) -> int:
    from hw4lib import data as corpora
    from hw4lib.cpu_runtime import tune_malloc
    from hw4lib.lab.runs import dataset_of, load_model

    tune_malloc()
    cache = load_cache_components(args.cache_impl or args.impl)
    _, model, ckpt = load_model(args)
    dataset = dataset_of(args, ckpt)
    reference = REFERENCE[dataset]
    settings = CacheSettings(args.window or reference.window, args.theta if args.theta is not None else
                             reference.theta, args.lambdah if args.lambdah is not None else reference.lambdah)
    result: dict[str, Any] = {"dataset": dataset, "split": args.split, "batch_size": args.batch_size}
    if args.grid:
        valid = collect(model, corpora.load_split(dataset, "valid"), batch_size=args.batch_size,
                        max_tokens=args.max_tokens, progress=True)
        grid = grid_search(cache, valid, [settings.window], _floats(args.thetas), _floats(args.lambdas))
        best = grid[0]
        settings = CacheSettings(best["window"], best["theta"], best["lambdah"])
        result["grid"] = grid
        result["chosen_on_validation"] = asdict(settings)
    if not (args.grid and args.split == "valid"):  # the grid's pass over validation serves as well
        valid = collect(model, corpora.load_split(dataset, args.split), batch_size=args.batch_size,
                        max_tokens=args.max_tokens, progress=True)
    text = valid
    result.update(evaluate(cache, text, settings))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="perplexity of a model.pt with the continuous cache pointer (Grave et al. 2017)")
    p.add_argument("--checkpoint", required=True, help="a model.pt of the course's LanguageModel")
    p.add_argument("--impl", default="solutions", help="whose components build the model and the cache "
                   "(solutions, notebooks or a folder, as for train and evaluate)")
    p.add_argument("--cache-impl", help="whose cache_probs and cache_mixture (default: --impl); e.g. your "
                   "08_cache_pointer.ipynb when the model is built from another folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--dataset", choices=sorted(REFERENCE), help="default: the one the model was trained on")
    p.add_argument("--split", choices=["valid", "test"], default="valid")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--window", type=int, help="default: the authors' README command's (PTB 500, WikiText-2 3785)")
    p.add_argument("--theta", type=float, help="default: the paper's (PTB 1.0, WikiText-2 0.662)")
    p.add_argument("--lambdah", type=float, help="default: the paper's (PTB 0.1, WikiText-2 0.1279)")
    p.add_argument("--grid", action="store_true", help="choose theta and lambda on the validation split first")
    p.add_argument("--thetas", default="0.3,0.5,0.662,0.8,1.0")
    p.add_argument("--lambdas", default="0.05,0.1,0.1279,0.15,0.2")
    p.add_argument("--json", help="also write the result here")
    p.set_defaults(func=_cmd_cache)

"""Stage 2, ``LockedDropout`` and ``embedded_dropout`` (docs/components.md, stage 2).

Inputs are strictly positive (locked dropout) or embedding rows without zeros (embedding dropout), so
output / input reveals the mask exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from hw4lib.properties.core import (
    Part,
    as_mask_problems,
    attempt,
    batch_distinct_problems,
    close,
    failed,
    generator,
    knock_on,
    rate_ok,
    shape_of,
    time_shared_problems,
)

LOCKED_P = (0.3, 0.6)


def locked_inputs(seed: int) -> dict:
    return {"x": torch.rand(10, 64, 48, generator=generator(seed, 11)) + 0.5}


def _copy(y: Any) -> Any:
    return y.detach().clone() if isinstance(y, torch.Tensor) else y


def observe_locked(c: Any, inp: dict) -> dict:
    x = inp["x"]
    obs: dict = {}
    # Every call gets a copy of x and every output is copied at once: an in-place edit of the input is judged by
    # input_unchanged alone, and does not spoil the other observations.
    for p in LOCKED_P:
        m = c.LockedDropout(p)
        m.train()
        given = x.clone()
        obs[f"y{p}"] = attempt(lambda m=m, given=given: _copy(m(given)))
        obs[f"input_kept{p}"] = torch.equal(given, x)
    m = c.LockedDropout(0.5)
    m.train()
    obs["again"] = attempt(lambda: [_copy(m(x.clone())), _copy(m(x.clone()))])
    m.eval()
    obs["eval"] = attempt(lambda: _copy(m(x.clone())))
    obs["zero"] = attempt(lambda: _copy(c.LockedDropout(0.0).train()(x.clone())))

    def grad() -> Any:
        xg = x.clone().requires_grad_(True)
        c.LockedDropout(0.5).train()(xg * 1).sum().backward()  # a non-leaf input, as a layer's output is
        return xg.grad

    obs["grad"] = attempt(grad)
    return obs


LOCKED = Part("locked_dropout", ("LockedDropout",), locked_inputs, observe_locked)


def _outputs(obs: dict) -> tuple[list[str], dict]:
    errors = [f"p={p}: your LockedDropout raised {failed(obs[f'y{p}'])}" for p in LOCKED_P if failed(obs[f"y{p}"])]
    return errors, {p: obs[f"y{p}"] for p in LOCKED_P}


@LOCKED.prop("the output has the input's shape (T, B, H)")
def output_shape(inp: dict, obs: dict) -> list[str]:
    errors, ys = _outputs(obs)
    if errors:
        return errors
    for y in ys.values():
        if not isinstance(y, torch.Tensor) or y.shape != inp["x"].shape:
            return [f"the output is {shape_of(y)}; it must have the input's shape {tuple(inp['x'].shape)} (T, B, H)"]
    return []


@LOCKED.prop("forward leaves its input unchanged and returns a new tensor (in the model, raw_outputs must keep the "
             "values before dropout)")
def input_unchanged(inp: dict, obs: dict) -> list[str]:
    errors, _ = _outputs(obs)
    if errors:
        return [knock_on(errors[0])]
    if not all(obs[f"input_kept{p}"] for p in LOCKED_P):
        return ["forward changed its input in place (x.mul_(mask) or x *= mask): return a new tensor, x * mask. In "
                "the model the input of a locked dropout is a layer's raw output, and raw_outputs must keep the "
                "values before dropout: TAR is computed on them (and backward through the LSTM needs them)"]
    return []


@LOCKED.prop("survivors are scaled by 1/(1-p), the others are 0")
def rescaled(inp: dict, obs: dict) -> list[str]:
    errors, ys = _outputs(obs)
    if errors or output_shape(inp, obs):
        return errors or [knock_on("cannot be checked until the output has the right shape")]
    return [m for p, y in ys.items() for m in as_mask_problems(y.double() / inp["x"].double(), p, f"p={p}")][:1]


@LOCKED.prop("one mask per sequence, shared by every timestep")
def shared_over_time(inp: dict, obs: dict) -> list[str]:
    errors, ys = _outputs(obs)
    if errors or output_shape(inp, obs):
        return errors or [knock_on("cannot be checked until the output has the right shape")]
    return [m for p, y in ys.items() for m in time_shared_problems(y.double() / inp["x"].double(), f"p={p}")][:1]


@LOCKED.prop("batch elements and features get masks of their own; about a share p is dropped")
def distinct_and_rate(inp: dict, obs: dict) -> list[str]:
    errors, ys = _outputs(obs)
    if errors or output_shape(inp, obs):
        return errors or [knock_on("cannot be checked until the output has the right shape")]
    for p, y in ys.items():
        mask = y.double() / inp["x"].double()
        found = batch_distinct_problems(mask, f"p={p}")
        rate = float((mask[0].abs() <= 1e-6).double().mean())
        if not found and not rate_ok(rate, p, mask[0].numel()):
            found = [f"p={p}: {rate:.1%} of the units were dropped; expected about p = {p:.0%} (keep each unit with "
                     "probability 1 - p)"]
        if found:
            return found
    return []


@LOCKED.prop("a new mask at every call")
def new_mask_per_call(inp: dict, obs: dict) -> list[str]:
    again = obs["again"]
    if failed(again):
        return [f"your LockedDropout raised {failed(again)}"]
    if close(again[0], again[1], 0, 0):
        return ["two calls gave the same mask: draw a new mask at every call (in forward, not in __init__)"]
    return []


@LOCKED.prop("identity in eval mode and for p = 0")
def identity_when_off(inp: dict, obs: dict) -> list[str]:
    problems = []
    for key, when in (("eval", "in eval mode (model.eval())"), ("zero", "with p = 0")):
        if failed(obs[key]):
            problems.append(f"{when} your LockedDropout raised {failed(obs[key])}")
        elif not close(obs[key], inp["x"], 1e-6, 1e-6):
            problems.append(f"{when} the output must equal the input (no mask, no scaling)")
    return problems


@LOCKED.prop("gradients flow back to the input")
def gradient_flows(inp: dict, obs: dict) -> list[str]:
    grad = obs["grad"]
    if failed(grad):
        return [f"backward through LockedDropout failed: {failed(grad)}"]
    if not isinstance(grad, torch.Tensor):
        return ["no gradient reached the input; build the output with tensor operations (no .data, no .detach())"]
    return []


# --- embedding dropout -------------------------------------------------------------------------------------

EMBED_P = 0.4


def embed_inputs(seed: int) -> dict:
    gen = generator(seed, 12)
    vocab, dim = 1500, 6
    weight = torch.rand(vocab, dim, generator=gen) + 0.1  # no zeros: output / lookup reveals the mask
    # Every word type once, then frequent words repeated, so a word's fate can be seen at several positions.
    words = torch.cat([torch.randperm(vocab, generator=gen), torch.randint(0, 60, (500,), generator=gen)])
    words = words[torch.randperm(len(words), generator=gen)][:2000].view(-1, 20)
    words[0, 0] = vocab - 1  # the last word type: a padding_idx=-1 bug freezes its gradient
    return {"weight": weight, "words": words}


def _embedding(weight: torch.Tensor, padding_idx: int | None = None) -> nn.Embedding:
    embed = nn.Embedding(weight.shape[0], weight.shape[1], padding_idx=padding_idx)
    with torch.no_grad():
        embed.weight.copy_(weight)
    return embed


def observe_embed(c: Any, inp: dict) -> dict:
    weight, words = inp["weight"], inp["words"]
    obs: dict = {}
    embed = _embedding(weight)

    # The lookup and the backward are observed apart, so that a graph cut (embed.weight.data) is judged by the
    # gradient's property alone while the values are still judged by theirs.
    fresh = _embedding(weight)
    padded = _embedding(weight, padding_idx=3)
    padded_words = words[:4].clone()
    padded_words[0, :3] = 3  # word 3 is the padding index here
    for key, module, kw in (("dropped", embed, {"words": words, "dropout": EMBED_P}),
                            ("zero", fresh, {"words": words, "dropout": 0.0}),
                            ("padding", padded, {"words": padded_words, "dropout": 0.0})):
        held: dict = {}

        def lookup(module: nn.Embedding = module, kw: dict = kw, held: dict = held) -> Any:
            held["out"] = c.embedded_dropout(module, kw["words"], dropout=kw["dropout"])
            return held["out"].detach().clone() if isinstance(held["out"], torch.Tensor) else held["out"]

        def backward(module: nn.Embedding = module, held: dict = held) -> Any:
            out = held.get("out")
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                return None
            out.sum().backward()
            return module.weight.grad

        obs[key] = attempt(lookup)
        obs[f"{key}_grad"] = attempt(backward)
        if key == "dropped":
            obs["weight_kept"] = close(embed.weight.detach(), weight, 0, 0)
    return obs


EMBED = Part("embedded_dropout", ("embedded_dropout",), embed_inputs, observe_embed)


def _fates(inp: dict, obs: dict) -> tuple[list[str], dict | None, torch.Tensor | None]:
    """The problems that stop the analysis, {word: its factor}, and the per-position factors."""
    out = obs["dropped"]
    if failed(out):
        return [f"embedded_dropout raised {failed(out)}"], None, None
    words, weight = inp["words"], inp["weight"]
    if not isinstance(out, torch.Tensor) or out.shape != (*words.shape, weight.shape[1]):
        return [f"the output is {shape_of(out)}; expected (T, B, E) = ({words.shape[0]}, {words.shape[1]}, "
                f"{weight.shape[1]})"], None, None
    ratio = out.detach().double() / weight.double()[words]
    per_position = ratio.mean(-1)
    if bool((ratio - per_position.unsqueeze(-1)).abs().max() > 1e-4):
        t, b = (int(i) for i in ((ratio - per_position.unsqueeze(-1)).abs().amax(-1) > 1e-4).nonzero()[0])
        return [f"at timestep {t}, batch element {b} some numbers of the word's vector were dropped and others "
                "kept; drop whole rows of embed.weight (one mask entry per word type), never single numbers"], None, \
            None
    factor: dict[int, float] = {}
    for word in words.unique().tolist():
        values = per_position[words == word]
        if float((values - values[0]).abs().max()) > 1e-4:
            return [f"word id {word} is dropped (or scaled) at some positions and kept at others: embedding dropout "
                    "removes a word type everywhere in the batch; mask the rows of the embedding matrix, shape "
                    "(V, 1), not the looked-up vectors"], None, None
        factor[word] = float(values[0])
    return [], factor, per_position


@EMBED.prop("the output is (T, B, E); whole word types are dropped, the same at every position")
def word_types_dropped(inp: dict, obs: dict) -> list[str]:
    return _fates(inp, obs)[0]


@EMBED.prop("survivors are scaled by 1/(1-p); about a share p of the word types is dropped")
def rate_and_scale(inp: dict, obs: dict) -> list[str]:
    problems, factor, _ = _fates(inp, obs)
    if problems:
        return [knock_on("cannot be checked until whole word types are dropped (see above)")]
    values = torch.tensor(list(factor.values()), dtype=torch.float64)
    found = as_mask_problems(values, EMBED_P, "word types")
    if found:
        return found
    rate = float((values.abs() < 1e-6).double().mean())
    if not rate_ok(rate, EMBED_P, len(values)):
        return [f"{rate:.1%} of the word types were dropped; expected about dropout = {EMBED_P:.0%}"]
    return []


@EMBED.prop("gradients reach embed.weight: each word's row gets (occurrences x its mask), the last word included; "
            "embed.weight itself is not modified")
def gradient_to_weight(inp: dict, obs: dict) -> list[str]:
    problems, factor, _ = _fates(inp, obs)
    if problems:
        return [knock_on("cannot be checked until whole word types are dropped (see above)")]
    if not obs["weight_kept"]:
        return ["embed.weight was modified in place; build a dropped copy (weight * mask) and look the words up in "
                "it, leaving the Parameter as it is"]
    grad, words, weight = obs["dropped_grad"], inp["words"], inp["weight"]
    if failed(grad):
        return [f"backward through embedded_dropout failed: {failed(grad)}"]
    if not isinstance(grad, torch.Tensor):
        return ["no gradient reaches embed.weight: the output is cut from the graph. Build the dropped weight from "
                "embed.weight itself with tensor operations: use embed.weight, not .data (nor .detach() or "
                "torch.no_grad())"]
    expected = torch.zeros_like(weight, dtype=torch.float64)
    for word, f in factor.items():
        expected[word] = float((words == word).sum()) * f
    counts = torch.bincount(words.flatten(), minlength=weight.shape[0]).double().unsqueeze(1).expand_as(expected)
    plain_grad = obs["zero_grad"] if not failed(obs["zero_grad"]) else None
    if close(grad, expected, 1e-4) and close(plain_grad, counts, 1e-4):
        return []
    last = weight.shape[0] - 1
    if isinstance(plain_grad, torch.Tensor) and float(plain_grad[last].abs().sum()) == 0:
        return [f"the last word's row (id {last}) gets no gradient: pass embed.padding_idx through as it is (None "
                "stays None; -1 would mean 'the last word is padding')"]
    return ["embed.weight.grad is not (number of occurrences x mask) for every word: look the words up in the "
            "dropped weight with F.embedding(words, weight, embed.padding_idx, ...)"]


@EMBED.prop("dropout = 0 is a plain lookup")
def plain_lookup_at_zero(inp: dict, obs: dict) -> list[str]:
    zero = obs["zero"]
    if failed(zero):
        return [f"with dropout = 0 embedded_dropout raised {failed(zero)}"]
    if not close(zero, inp["weight"][inp["words"]], 1e-6):
        return ["with dropout = 0 the result must be the plain lookup embed(words)"]
    return []


@EMBED.prop("embed.padding_idx is passed on: a padding word's row gets no gradient")
def padding_idx_passed_on(inp: dict, obs: dict) -> list[str]:
    out, grad = obs["padding"], obs["padding_grad"]
    if failed(out) or failed(grad):
        return [f"with a padding_idx, embedded_dropout raised {failed(out) or failed(grad)}"]
    if not isinstance(grad, torch.Tensor):
        return [knock_on("cannot be checked until gradients reach embed.weight (see above)")]
    if float(grad[3].abs().sum()) != 0:
        return ["embed.padding_idx = 3 was ignored: pass embed.padding_idx on to F.embedding, so the padding row "
                "gets no gradient"]
    return []

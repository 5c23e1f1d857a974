"""Stage 7, ``prediction`` and ``generation`` (docs/components.md, stage 7).

Sampling is graded by what the contract promises (which words can come out, with which probabilities, and that
the given generator makes it reproducible), never by one implementation's random stream: masking with -inf,
renormalising the top k, or another sampler that draws from the given generator all pass.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from hw4lib.properties.core import Part, attempt, close, failed, generator, knock_on, shape_of

V, HID, B = 13, 8, 3
N_SAMPLES = 3000


class HistoryModel(nn.Module):
    """A recurrent stand-in whose state is the sum of every word read so far, so only a generator that carries the
    hidden state (or rereads everything) predicts what it predicts. In training mode a fixed perturbation changes
    its arg-max, so forgetting model.eval() shows. Records the mode and whether gradients were on at every call."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        gen = generator(seed, 71)
        self.embed = nn.Parameter(torch.randn(V, HID, generator=gen))
        self.out = nn.Parameter(torch.randn(HID, V, generator=gen))
        self.register_buffer("noise", torch.randn(V, generator=gen) * 10)
        self.calls: list[dict] = []

    def init_hidden(self, batch_size: int) -> list:
        h = self.embed.new_zeros(1, batch_size, HID)
        return [(h, h.clone())]

    def forward(self, inputs: torch.Tensor, hidden: Any = None):
        self.calls.append({"training": self.training, "grad": torch.is_grad_enabled()})
        state = self.embed.new_zeros(inputs.size(1), HID) if hidden is None else hidden[0][0][0]
        outputs = []
        for t in range(inputs.size(0)):
            state = state + self.embed[inputs[t]]
            outputs.append(torch.sin(state))
        raw = torch.stack(outputs)
        logits = raw @ self.out + (self.noise if self.training else 0)
        h = state.unsqueeze(0)
        return logits, [(h, h)], [raw], [raw]


class FixedModel(nn.Module):
    """Gives the same next-word logits whatever it reads: sampled frequencies can be compared with them."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.bias = nn.Parameter(logits.clone())

    def init_hidden(self, batch_size: int) -> list:
        h = self.bias.new_zeros(1, batch_size, 1)
        return [(h, h.clone())]

    def forward(self, inputs: torch.Tensor, hidden: Any = None):
        T, Bn = inputs.shape
        logits = self.bias.expand(T, Bn, V)
        h = self.bias.new_zeros(1, Bn, 1)
        return logits, [(h, h)], [logits], [logits]


SAMPLING = {"t1": {"temperature": 1.0}, "t05": {"temperature": 0.5},
            "k3": {"temperature": 1.0, "top_k": 3}, "k4t2": {"temperature": 2.0, "top_k": 4}}


def inputs(seed: int) -> dict:
    gen = generator(seed, 72)
    return {"seed": seed, "prefix": torch.randint(0, V, (6, B), generator=gen),
            "logits": torch.linspace(-2.0, 2.0, V)[torch.randperm(V, generator=gen)],
            "gen_seed": int(torch.randint(0, 2**31 - 1, (1,), generator=gen))}


def observe(c: Any, inp: dict) -> dict:
    prediction, generation, prefix, s = c.prediction, c.generation, inp["prefix"], inp["gen_seed"]
    obs: dict = {}

    def predict(training: bool) -> dict:
        model = HistoryModel(inp["seed"]).train(training)
        out = prediction(model, prefix)
        return {"out": out.detach() if isinstance(out, torch.Tensor) else out,
                "requires_grad": bool(getattr(out, "requires_grad", False)), "training_after": model.training,
                "calls": model.calls}

    obs["predict_train"] = attempt(lambda: predict(True))
    obs["predict_eval"] = attempt(lambda: predict(False))

    def generate(training: bool = True, n: int = 5, **kw: Any) -> dict:
        model = HistoryModel(inp["seed"]).train(training)
        words = generation(model, prefix, n, **kw)
        return {"words": words, "training_after": model.training, "calls": model.calls}

    obs["greedy"] = attempt(lambda: generate())
    obs["greedy_eval"] = attempt(lambda: generate(training=False, n=2))
    obs["greedy_one"] = attempt(lambda: generate(n=1))
    obs["cold"] = attempt(lambda: generate(n=5, greedy=False, temperature=1e-6,
                                           generator=torch.Generator().manual_seed(s)))
    obs["top1"] = attempt(lambda: generate(n=5, greedy=False, top_k=1, generator=torch.Generator().manual_seed(s)))

    def under_global(global_seed: int, gen_seed: int) -> Any:
        torch.manual_seed(global_seed)
        return generate(n=8, greedy=False, temperature=1.5, generator=torch.Generator().manual_seed(gen_seed))["words"]

    obs["same_a"] = attempt(lambda: under_global(1, s))
    obs["same_b"] = attempt(lambda: under_global(2, s))
    obs["other"] = attempt(lambda: under_global(1, s + 1))
    many = torch.zeros(1, N_SAMPLES, dtype=torch.long)
    for key, kw in SAMPLING.items():
        obs[key] = attempt(lambda kw=kw, key=key: generation(
            FixedModel(inp["logits"]), many, 1, greedy=False, generator=torch.Generator().manual_seed(s + len(key)),
            **kw))
    return obs


PART = Part("prediction_generation", ("prediction", "generation"), inputs, observe)


@PART.prop("prediction(model, inputs) returns the eval-mode logits (B, V) of the word after the last input, "
           "without gradients, and restores the model's mode")
def predicts_next_word(inp: dict, obs: dict) -> list[str]:
    p = obs["predict_train"]
    if failed(p):
        return [f"prediction raised {failed(p)}"]
    out = p["out"]
    if not isinstance(out, torch.Tensor) or out.shape != (B, V):
        return [f"prediction returned {shape_of(out)}; expected (B, V) = ({B}, {V}): the logits of the last timestep"]
    model = HistoryModel(inp["seed"]).eval()
    with torch.no_grad():
        want = model(inp["prefix"])[0][-1]
    problems = []
    if not close(out, want, 1e-5):
        problems.append("prediction differs from the eval-mode logits of the last timestep: call model.eval() "
                        "and take logits[-1]")
    if p["requires_grad"] or any(call["grad"] for call in p["calls"]):
        problems.append("prediction tracked gradients: run the model under torch.no_grad()")
    e = obs["predict_eval"]
    if not p["training_after"] or failed(e) or e["training_after"]:
        problems.append("prediction must leave the model in the mode it found it (train stays train, eval stays "
                        "eval): remember model.training and restore it")
    return problems


@PART.prop("generation returns a LongTensor (B, n_words) in eval mode without gradients, and restores the mode")
def generation_contract(inp: dict, obs: dict) -> list[str]:
    problems = []
    for key, n in (("greedy", 5), ("greedy_one", 1)):
        g = obs[key]
        if failed(g):
            return [f"generation raised {failed(g)}"]
        words = g["words"]
        if not isinstance(words, torch.Tensor) or words.shape != (B, n):
            return [f"generation(model, inputs, {n}) returned {shape_of(words)}; expected (B, n_words) = ({B}, {n})"]
        if words.dtype != torch.long:
            return [f"generation returned dtype {words.dtype}; return word ids as a LongTensor"]
        if any(call["training"] for call in g["calls"]):
            problems.append("generation ran the model in training mode: call model.eval() first")
        if any(call["grad"] for call in g["calls"]):
            problems.append("generation tracked gradients: run it under torch.no_grad()")
        if not g["training_after"]:
            problems.append("generation left the model in eval mode: restore the mode it had")
        if problems:
            return problems
    e = obs["greedy_eval"]
    if failed(e) or e["training_after"]:
        problems.append("generation switched a model that was in eval mode to training mode: restore the mode it had")
    return problems


def _greedy_chain(inp: dict, words: torch.Tensor) -> list[str]:
    """Each word is the arg-max of the eval-mode model after the prefix and the words before it."""
    model = HistoryModel(inp["seed"]).eval()
    with torch.no_grad():
        for k in range(words.shape[1]):
            context = torch.cat([inp["prefix"], words[:, :k].t()], dim=0)
            best = model(context)[0][-1].argmax(dim=-1)
            if not torch.equal(best, words[:, k]):
                b = int((best != words[:, k]).nonzero()[0])
                return [f"word {k} of sequence {b} is {int(words[b, k])} but the model's most likely next word after "
                        f"the prefix and the words so far is {int(best[b])}"]
    return []


@PART.prop("greedy generation feeds each word back in, carrying the hidden state, and takes the arg-max")
def greedy(inp: dict, obs: dict) -> list[str]:
    g = obs["greedy"]
    if failed(g):
        return [f"generation raised {failed(g)}"]
    if not isinstance(g["words"], torch.Tensor) or g["words"].shape != (B, 5):
        return [knock_on("cannot be checked until generation returns (B, n_words) (see above)")]
    found = _greedy_chain(inp, g["words"])
    if found:
        return [found[0] + ": feed each generated word back in with the hidden state and take the arg-max of the "
                "last timestep's logits"]
    return []


def _frequency_problems(inp: dict, words: Any, temperature: float, top_k: int | None, what: str) -> list[str]:
    if not isinstance(words, torch.Tensor) or words.shape != (N_SAMPLES, 1):
        return [f"{what}: generation returned {shape_of(words)}; expected ({N_SAMPLES}, 1)"]
    logits = inp["logits"].double() / temperature
    allowed = torch.ones(V, dtype=torch.bool)
    if top_k is not None:
        allowed[:] = False
        allowed[torch.topk(logits, top_k).indices] = True
    probs = torch.softmax(logits.masked_fill(~allowed, -math.inf), 0)
    counts = torch.bincount(words.flatten().clamp(0, V - 1), minlength=V).double()
    if bool((counts[~allowed] > 0).any()):
        return [f"{what}: words outside the {top_k} most likely ones were sampled; keep only the top_k largest "
                "logits (the others get probability 0)"]
    freq = counts / N_SAMPLES
    sd = torch.sqrt(probs * (1 - probs) / N_SAMPLES).clamp_min(1e-12)
    z = ((freq - probs).abs() / sd)[allowed]
    if float(z.max()) > 6:
        worst = int(torch.nonzero(allowed)[int(z.argmax())])
        return [f"{what}: word {worst} came out {freq[worst]:.1%} of the time over {N_SAMPLES} draws; "
                f"softmax(logits / temperature) gives it {probs[worst]:.1%}" + (
                    " among the top k" if top_k else "") + ": sample from softmax(logits / temperature)"]
    return []


@PART.prop("sampling draws from softmax(logits / temperature) with the given generator: reproducible with the same "
           "generator whatever torch's global generator holds")
def samples_from_softmax(inp: dict, obs: dict) -> list[str]:
    for key in ("same_a", "same_b", "other", "cold", "t1", "t05"):
        if failed(obs[key]):
            return [f"sampling raised {failed(obs[key])}"]
    problems = []
    a, b, other = obs["same_a"], obs["same_b"], obs["other"]
    if not close(a, b, 0, 0):
        problems.append("sampling twice with equally seeded generators gave different words after torch.manual_seed "
                        "changed: draw with the generator you are given, torch.multinomial(probs, 1, "
                        "generator=generator)")
    elif close(a, other, 0, 0):
        problems.append("generators with different seeds gave the same words: the samples must come from the "
                        "given generator")
    found = _greedy_chain(inp, obs["cold"]["words"]) if isinstance(obs["cold"]["words"], torch.Tensor) else [
        "sampling returned no tensor"]
    if found:
        problems.append(f"at temperature 1e-6 sampling must give the greedy words ({found[0]}): divide the logits by "
                        "the temperature, and carry the hidden state while sampling too")
    problems += _frequency_problems(inp, obs["t1"], 1.0, None, "temperature 1")
    problems += _frequency_problems(inp, obs["t05"], 0.5, None, "temperature 0.5")
    return problems[:2]


@PART.prop("with top_k, only the k largest logits can be drawn, in proportion to their softmax(logits / temperature)")
def samples_top_k(inp: dict, obs: dict) -> list[str]:
    for key in ("top1", "k3", "k4t2"):
        if failed(obs[key]):
            return [f"top-k sampling raised {failed(obs[key])}"]
    problems = _frequency_problems(inp, obs["k3"], 1.0, 3, "top_k=3")
    problems += _frequency_problems(inp, obs["k4t2"], 2.0, 4, "top_k=4, temperature 2")
    top1 = obs["top1"]["words"]
    if not isinstance(top1, torch.Tensor) or _greedy_chain(inp, top1):
        problems.append("sampling with top_k=1 must give the greedy words (only the largest logit is allowed)")
    return problems[:2]

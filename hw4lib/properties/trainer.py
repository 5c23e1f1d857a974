"""Stage 5, AR/TAR and ``train_batch`` (docs/components.md, stage 5).

``train_batch`` is observed on a stand-in model that follows the ``LanguageModel`` contract and records how it is
called. Its dropped output is its raw output times a fixed mask that silences some units completely, so the
gradient shows which output a penalty was computed on: AR on the dropped output cannot reach a silenced unit,
TAR on the raw output must.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from hw4lib.properties.core import Part, attempt, close, failed, generator, init_uniform_, knock_on, shape_of

# --- AR and TAR --------------------------------------------------------------------------------------------


def penalty_inputs(seed: int) -> dict:
    gen = generator(seed, 41)
    return {"x": torch.randn(9, 4, 6, generator=gen), "threes": torch.full((5, 2, 3), 3.0),
            "mixed": torch.tensor([[[1.0, -2.0]], [[0.0, 3.0]]]),
            "ramp": torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1).expand(3, 2, 2).contiguous(),
            "constant": torch.full((4, 2, 3), 7.0)}


def observe_penalties(c: Any, inp: dict) -> dict:
    ar, tar = c.activation_regularization, c.temporal_activation_regularization

    def grad(fn: Any, weight: float) -> Any:
        x = inp["x"].clone().requires_grad_(True)
        fn(x, weight).backward()
        return x.grad

    return {
        "ar": attempt(lambda: {"threes": ar(inp["threes"], 2.0), "mixed": ar(inp["mixed"], 1.0),
                               "x2": ar(inp["x"], 2.0), "x05": ar(inp["x"], 0.5), "grad": grad(ar, 2.0)}),
        "tar": attempt(lambda: {"ramp": tar(inp["ramp"], 1.0), "ramp3": tar(inp["ramp"], 3.0),
                                "constant": tar(inp["constant"], 5.0), "x1": tar(inp["x"], 1.0),
                                "x3": tar(inp["x"], 3.0), "grad": grad(tar, 1.0)}),
    }


PENALTIES = Part("ar_tar", ("activation_regularization", "temporal_activation_regularization"), penalty_inputs,
                 observe_penalties)


def _scalar_problems(values: dict, name: str) -> list[str]:
    for key, v in values.items():
        if key == "grad":
            continue
        if not isinstance(v, torch.Tensor) or v.dim() != 0:
            return [f"{name} returned {shape_of(v)}; it must return a scalar tensor (shape ()), e.g. .mean() of "
                    "the whole tensor"]
    if not isinstance(values["grad"], torch.Tensor):
        return [f"no gradient flows through {name}: compute it with tensor operations on its input"]
    return []


@PENALTIES.prop("activation_regularization(dropped_last, alpha) = alpha * mean(dropped_last²), a scalar tensor "
                "that gradients flow through")
def ar_formula(inp: dict, obs: dict) -> list[str]:
    ar = obs["ar"]
    if failed(ar):
        return [f"activation_regularization raised {failed(ar)}"]
    problems = _scalar_problems(ar, "activation_regularization")
    if problems:
        return problems
    got = float(ar["threes"])
    if abs(got - 18.0) > 1e-4:
        if abs(got - 18.0 * inp["threes"].numel()) < 1e-2:
            return ["AR of a (5, 2, 3) tensor of 3s with alpha=2 gave 540 (a sum); use the mean: 2 * 3² = 18"]
        return [f"AR of a tensor of 3s with alpha=2 gave {got:g}; expected alpha * mean(x²) = 2 * 9 = 18"]
    if abs(float(ar["mixed"]) - 3.5) > 1e-4:
        return [f"AR of values (1, -2, 0, 3) with alpha=1 gave {float(ar['mixed']):g}; expected the mean of the "
                "squares, 14/4 = 3.5 (square, do not take absolute values)"]
    if abs(float(ar["x2"]) - 4 * float(ar["x05"])) > 1e-4 * abs(float(ar["x2"])):
        return ["AR must scale linearly with alpha"]
    return []


@PENALTIES.prop("temporal_activation_regularization(raw_last, beta) = beta * mean((raw_last[t+1] - raw_last[t])²), "
                "a scalar tensor that gradients flow through")
def tar_formula(inp: dict, obs: dict) -> list[str]:
    tar = obs["tar"]
    if failed(tar):
        return [f"temporal_activation_regularization raised {failed(tar)}"]
    problems = _scalar_problems(tar, "temporal_activation_regularization")
    if problems:
        return problems
    got = float(tar["ramp"])
    if abs(got - 2.5) > 1e-4:
        if abs(got - 5 / 3) < 1e-4:
            hint = "you divided by T; the mean is over the T-1 differences"
        elif abs(got - 1.0) < 1e-4 or abs(got - 1.5) < 1e-4:
            hint = "square the differences before averaging"
        elif abs(got - 14 / 3) < 1e-4 or abs(got - 10 / 3) < 1e-4:
            hint = "penalize h[t+1] - h[t] (differences along time, dim 0), not the activations themselves"
        else:
            hint = "TAR = beta * mean over t of (h[t+1] - h[t])²"
        return [f"TAR of outputs 0, 1, 3 over time with beta=1 gave {got:g}; expected (1² + 2²)/2 = 2.5: {hint}"]
    if abs(float(tar["constant"])) > 1e-6:
        return ["TAR of an output that is constant in time must be 0"]
    if abs(float(tar["ramp3"]) - 3 * got) > 1e-4:
        return ["TAR must scale linearly with beta"]
    return []


# --- train_batch -------------------------------------------------------------------------------------------

V, H = 11, 6


class StandInModel(nn.Module):
    """A tiny recurrent model with the LanguageModel interface that records how it is called.

    ``dropped = raw * mask`` in training (the mask silences units 0 and 1 and scales the others), ``raw`` in eval,
    so the penalties' gradients tell which output they were computed on. Its weights come from a generator.
    """

    def __init__(self, seed: int, gain: float = 1.0) -> None:
        super().__init__()
        gen = generator(seed, 42)
        self.embed = nn.Embedding(V, H)
        self.mix = nn.Linear(H, H)
        self.out = nn.Linear(H, V)
        init_uniform_(self, gen, 0.8)
        mask = torch.full((1, 1, H), 1 / 0.6)
        mask[..., :2] = 0.0
        self.register_buffer("mask", mask)
        self.gain = gain
        self.calls: list[dict] = []
        self.events: list[str] = []

    def init_hidden(self, batch_size: int) -> list:
        h = self.mix.weight.new_zeros(1, batch_size, H)
        return [(h, h.clone())]

    def forward(self, inputs: torch.Tensor, hidden: Any = None):
        self.events.append("forward")
        if hidden is None:
            hidden = self.init_hidden(inputs.size(1))
        state = hidden[0][0]
        self.calls.append({"training": self.training, "hidden_has_graph": state.grad_fn is not None,
                           "grad_enabled": torch.is_grad_enabled()})
        outputs = []
        for t in range(inputs.size(0)):
            state = torch.tanh(self.mix(self.embed(inputs[t]).unsqueeze(0)) + 0.5 * state)
            outputs.append(state)
        raw = torch.cat(outputs)
        dropped = raw * self.mask if self.training else raw
        logits = self.gain * self.out(dropped)
        self.calls[-1]["logits"] = logits.detach().clone()
        new_hidden = [(state, state * 0.5)]
        self.calls[-1]["hidden"] = [t.detach().clone() for t in new_hidden[0]]
        return logits, new_hidden, [raw], [dropped]


PARAMETER_NAMES = ["embed.weight", "mix.weight", "mix.bias", "out.weight", "out.bias"]


class RecordingOptimizer:
    """Stands in for NTASGD: records zero_grad calls, and at each step the lr_scale and the gradients it saw."""

    def __init__(self, model: StandInModel, lr: float = 0.1) -> None:
        self.model, self.params, self.lr = model, list(model.parameters()), lr
        self.steps: list[dict] = []

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.model.events.append("zero_grad")
        for p in self.params:
            p.grad = None

    def step(self, lr_scale: float = 1.0) -> None:
        self.model.events.append("step")
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in self.params]
        self.steps.append({"lr_scale": float(lr_scale) if isinstance(lr_scale, (int, float)) else str(lr_scale),
                           "grads": grads})
        with torch.no_grad():
            for p, g in zip(self.params, grads, strict=True):
                p.sub_(self.lr * float(lr_scale) * g)


def step_inputs(seed: int) -> dict:
    gen = generator(seed, 43)
    return {"seed": seed, "inputs": torch.randint(0, V, (9, 4), generator=gen),
            "targets": torch.randint(0, V, (9, 4), generator=gen), "seq_len": 9, "bptt": 12}


def _pairs(hidden: Any) -> list | None:
    """The hidden state as [[h, c], ...] (detached copies), from any sequence of per-layer sequences of tensors
    (lists, tuples, the tuples of the authors' repackage_hidden); ``None`` for anything else."""
    if not isinstance(hidden, (list, tuple)):
        return None
    pairs = []
    for layer in hidden:
        if not isinstance(layer, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in layer):
            return None
        pairs.append(list(layer))
    return pairs


def observe_step(c: Any, inp: dict) -> dict:
    x, y = inp["inputs"], inp["targets"]

    def main() -> dict:
        model = StandInModel(inp["seed"], gain=30.0)
        opt = RecordingOptimizer(model)
        previous = model(x)[1]  # still attached to a graph: train_batch must detach it
        model.eval()  # train_batch must switch to training mode itself
        for p in model.parameters():  # left over from "the previous batch": zero_grad must clear it
            p.grad = torch.full_like(p, 100.0)
        model.calls.clear()
        model.events.clear()
        result = c.train_batch(model, opt, x, y, previous, inp["seq_len"], inp["bptt"], alpha=2.0, beta=1.0,
                               clip=0.25)
        loss, hidden = result if isinstance(result, (tuple, list)) and len(result) == 2 else (result, None)
        scalar = isinstance(loss, (int, float)) or (isinstance(loss, torch.Tensor) and loss.numel() == 1)
        pairs = _pairs(hidden)
        return {"loss": float(loss) if scalar else None, "loss_type": type(loss).__name__,
                "loss_is_float": isinstance(loss, float), "result_type": type(result).__name__,
                "hidden": None if pairs is None else [[t.detach().clone() for t in h] for h in pairs],
                "hidden_attached": pairs is not None and any(t.requires_grad for h in pairs for t in h),
                "calls": model.calls, "events": model.events, "steps": opt.steps}

    def penalties(alpha: float, beta: float) -> Any:
        model = StandInModel(inp["seed"])
        opt = RecordingOptimizer(model)
        c.train_batch(model, opt, x, y, None, inp["seq_len"], inp["seq_len"], alpha=alpha, beta=beta, clip=1e9)
        return opt.steps[0]["grads"] if len(opt.steps) == 1 else {"error": f"{len(opt.steps)} optimizer steps"}

    return {"main": attempt(main), "plain": attempt(lambda: penalties(0.0, 0.0)),
            "ar": attempt(lambda: penalties(4.0, 0.0)), "tar": attempt(lambda: penalties(0.0, 4.0))}


STEP = Part("train_batch", ("train_batch",), step_inputs, observe_step)


def _main(obs: dict) -> tuple[str | None, dict]:
    m = obs["main"]
    if failed(m):
        return f"train_batch raised {failed(m)}", {}
    if not m["calls"]:
        return "train_batch never called the model", {}
    return None, m


@STEP.prop("returns (loss, hidden): the batch's mean cross-entropy over all T*B targets, without AR/TAR, as a "
           "Python float")
def returns_cross_entropy(inp: dict, obs: dict) -> list[str]:
    error, m = _main(obs)
    if error:
        return [error]
    if m["hidden"] is None:
        return [f"train_batch returned {m['result_type']}; it must return (loss as a float, hidden), hidden being "
                "one (h, c) per layer"]
    logits = m["calls"][0]["logits"]
    ce = float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), inp["targets"].reshape(-1)))
    problems = []
    if not m["loss_is_float"]:
        problems.append(f"the loss is a {m['loss_type']}; return loss.item(), a Python float")
    if m["loss"] is None or abs(m["loss"] - ce) > 1e-4 * max(1.0, ce):
        problems.append(f"the returned loss is {m['loss']} but the cross-entropy of this batch is {ce:.4f}: return "
                        "the mean cross-entropy over all T*B targets, without AR and TAR")
    return problems


@STEP.prop("runs the model in training mode on the hidden state detached from the previous batch's graph, and "
           "returns the new hidden state, detached")
def hidden_detached(inp: dict, obs: dict) -> list[str]:
    error, m = _main(obs)
    if error:
        return [error]
    problems = []
    first = m["calls"][0]
    if first["hidden_has_graph"]:
        problems.append("the hidden state reached the model still attached to the previous batch's graph: detach it "
                        "first (truncated BPTT)")
    if not first["training"]:
        problems.append("the model ran in eval mode: call model.train() so dropout is on while training")
    if m["hidden"] is None or m["hidden_attached"]:
        problems.append("the returned hidden state must be the model's new hidden state, detached from the graph")
    elif len(m["hidden"]) != 1 or not all(close(a, b, 0, 0) for a, b in zip(m["hidden"][0], first["hidden"],
                                                                           strict=False)):
        problems.append("the returned hidden state is not the one the model returned")
    return problems


@STEP.prop("one optimizer step per batch, with lr_scale = seq_len / bptt")
def one_step(inp: dict, obs: dict) -> list[str]:
    error, m = _main(obs)
    if error:
        return [error]
    steps = m["steps"]
    if len(steps) != 1:
        return [f"optimizer.step was called {len(steps)} times; call it once per batch"]
    problems = []
    want = inp["seq_len"] / inp["bptt"]
    if not isinstance(steps[0]["lr_scale"], float) or abs(steps[0]["lr_scale"] - want) > 1e-9:
        problems.append(f"optimizer.step got lr_scale={steps[0]['lr_scale']}; expected seq_len / bptt = "
                        f"{inp['seq_len']} / {inp['bptt']} = {want:.4g}")
    return problems


@STEP.prop("the step sees this batch's gradient only (what was left from before is cleared), its global norm "
           "clipped to clip (rescaled, not cut off)")
def clipped(inp: dict, obs: dict) -> list[str]:
    error, m = _main(obs)
    if error or len(m["steps"]) != 1:
        return [error or knock_on("cannot be checked without exactly one optimizer step")]
    grads = m["steps"][0]["grads"]
    norm = float(torch.norm(torch.stack([g.double().norm() for g in grads])))
    if norm == 0:
        return ["the gradient at the step is zero: call optimizer.zero_grad() before backward (not between "
                "backward and the step)"]
    if norm > 0.25 * (1 + 1e-4):
        return [f"the gradient norm at the step was {norm:.3f}; clip it to clip = 0.25 with "
                "torch.nn.utils.clip_grad_norm_(model.parameters(), clip) after backward and before the step"]
    if norm < 0.25 * (1 - 1e-3):
        return [f"the gradient norm at the step was {norm:.4f}, below clip = 0.25 although this batch's gradient is "
                "far larger: clip_grad_norm_ rescales the whole gradient to norm clip"]
    ones = torch.cat([g.flatten() for g in grads]).double()
    if float(ones.mean() / ones.norm() * ones.numel() ** 0.5) > 0.9:
        return ["the gradient at the step points along the gradient left over from before the call: gradients "
                "pile up across batches; clear them (optimizer.zero_grad()) before backward"]
    return []


def _mix_rows(grads: list, silenced: bool) -> torch.Tensor:
    """The gradient of ``mix.weight`` on the rows of the units the mask silences (or of the others)."""
    g = grads[PARAMETER_NAMES.index("mix.weight")]
    return g[:2] if silenced else g[2:]


@STEP.prop("AR is computed on dropped_outputs[-1] and TAR on raw_outputs[-1], both added to the loss that is "
           "back-propagated")
def penalties_on_right_outputs(inp: dict, obs: dict) -> list[str]:
    for key in ("plain", "ar", "tar"):
        if failed(obs[key]):
            return [f"train_batch raised {failed(obs[key])}"]
    plain, ar, tar = obs["plain"], obs["ar"], obs["tar"]
    problems = []
    ar_silenced = (_mix_rows(ar, True) - _mix_rows(plain, True)).abs().max()
    ar_live = (_mix_rows(ar, False) - _mix_rows(plain, False)).abs().max()
    tar_silenced = (_mix_rows(tar, True) - _mix_rows(plain, True)).abs().max()
    if float(ar_live) < 1e-7 and float(ar_silenced) < 1e-7:
        problems.append("changing alpha does not change the gradient: add activation_regularization("
                        "dropped_outputs[-1], alpha) to the loss you back-propagate")
    elif float(ar_silenced) > 1e-6:
        problems.append("AR reaches units that dropout silenced: compute it on dropped_outputs[-1] (the output after "
                        "locked dropout), not on raw_outputs[-1]")
    if float(tar_silenced) < 1e-7:
        tar_any = max(float((a - b).abs().max()) for a, b in zip(tar, plain, strict=True))
        if tar_any < 1e-7:
            problems.append("changing beta does not change the gradient: add temporal_activation_regularization("
                            "raw_outputs[-1], beta) to the loss you back-propagate")
        else:
            problems.append("TAR does not reach units that dropout silenced: compute it on raw_outputs[-1] (before "
                            "dropout), not on dropped_outputs[-1]")
    return problems

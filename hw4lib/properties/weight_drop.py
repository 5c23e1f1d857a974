"""Stage 3, ``WeightDrop``: DropConnect on ``W_hh`` with one mask per forward pass (docs/components.md, stage 3).

The check of "one mask for every timestep" is a recomputation: a plain ``nn.LSTM`` run over the whole sequence
with the weight the wrapper says it used (``module.weight_hh_l0`` after the forward) must give the wrapper's
output at every timestep. A mask drawn per timestep, or a weight that differs from the one reported, cannot.
How the wrapped module is called (``self.module(*args)`` or, as the authors' code does,
``self.module.forward(*args)``) is not judged: only the weight used and the outputs are.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from hw4lib.properties.core import (
    Part,
    as_mask_problems,
    attempt,
    close,
    failed,
    generator,
    init_uniform_,
    knock_on,
    rate_ok,
)

IN, HID, P = 8, 24, 0.3  # p != 1 - p: a rate passed as a keep probability shows


def inputs(seed: int) -> dict:
    gen = generator(seed, 21)
    lstm = init_uniform_(nn.LSTM(IN, HID), gen)
    return {"state": {k: v.detach().clone() for k, v in lstm.state_dict().items()},
            "other": {k: v.detach().clone() for k, v in init_uniform_(nn.LSTM(IN, HID), gen).state_dict().items()},
            "x": torch.randn(15, 3, IN, generator=gen), "h0": torch.randn(1, 3, HID, generator=gen),
            "c0": torch.randn(1, 3, HID, generator=gen)}


def lstm_from(state: dict, weight_hh: torch.Tensor | None = None, requires_grad: bool = False) -> nn.LSTM:
    """A plain one-layer LSTM with the given weights (and ``weight_hh_l0`` replaced when given)."""
    lstm = nn.LSTM(IN, HID)
    state = dict(state)
    if weight_hh is not None:
        state["weight_hh_l0"] = weight_hh.detach().clone().float()
    lstm.load_state_dict(state)
    lstm.weight_hh_l0.requires_grad_(requires_grad)
    return lstm


def observe(c: Any, inp: dict) -> dict:
    x, state = inp["x"], (inp["h0"], inp["c0"])
    lstm = lstm_from(inp["state"])
    n_params = sum(p.numel() for p in lstm.parameters())
    wd = c.WeightDrop(lstm, ["weight_hh_l0"], dropout=P)
    inner = getattr(wd, "module", lstm)
    raw = getattr(inner, "weight_hh_l0_raw", None)
    obs: dict = {"raw_is_parameter": isinstance(raw, nn.Parameter),
                 "raw": raw.detach().clone() if isinstance(raw, torch.Tensor) else None,
                 "parameters": [name for name, _ in wd.named_parameters()],
                 "n_params": sum(p.numel() for p in wd.parameters()), "lstm_params": n_params}
    wd.train()

    def first() -> dict:
        out, (h, c_) = wd(x, state)
        used = inner.weight_hh_l0
        record = {"out": out, "h": h, "c": c_, "w": used,
                  "w_attached": bool(getattr(used, "requires_grad", False) or getattr(used, "grad_fn", None))}
        out.sum().backward()
        record["grad"] = None if raw is None or raw.grad is None else raw.grad
        return record

    obs["first"] = attempt(first)
    obs["second"] = attempt(lambda: {"out": wd(x, state)[0], "w": inner.weight_hh_l0})
    wd.eval()
    obs["eval"] = attempt(lambda: {"out": wd(x, state)[0], "w": inner.weight_hh_l0})

    def switches() -> Any:
        for _ in range(10):
            wd.train()
            wd(x, state)
            wd.eval()
            wd(x, state)
        return wd(x, state)[0]

    obs["switched"] = attempt(switches)

    def without_dropout() -> Any:
        plain = c.WeightDrop(lstm_from(inp["state"]), ["weight_hh_l0"], dropout=0.0)
        plain.train()
        plain(x, state)
        return plain(x, state)[0]

    obs["zero"] = attempt(without_dropout)

    def deep_copy() -> Any:
        clone = copy.deepcopy(wd)
        clone.train()
        clone(x, state)
        clone.eval()
        return clone(x, state)[0]

    obs["deepcopy"] = attempt(deep_copy)

    def round_trip() -> Any:
        fresh = c.WeightDrop(lstm_from(inp["other"]), ["weight_hh_l0"], dropout=P)
        fresh.load_state_dict(wd.state_dict())
        fresh.eval()
        return fresh(x, state)[0]

    obs["state_dict"] = attempt(round_trip)

    def moved() -> Any:
        # .to(device) cannot be tried without a GPU; a dtype change goes through the same Module._apply.
        wd.double()
        wd.train()
        wd(x.double(), tuple(s.double() for s in state))
        wd.eval()
        return wd(x.double(), tuple(s.double() for s in state))[0]

    obs["moved"] = attempt(moved)
    return obs


PART = Part("weight_drop", ("WeightDrop",), inputs, observe)


def _first(obs: dict) -> tuple[str | None, dict]:
    f = obs["first"]
    return (f"a training forward raised {failed(f)}{reassigned_parameter(failed(f), obs)}" if failed(f) else None), f


@PART.prop("the learnable weight is the Parameter module.weight_hh_l0_raw; weight_hh_l0 is no longer a Parameter")
def raw_parameter(inp: dict, obs: dict) -> list[str]:
    if not obs["raw_is_parameter"]:
        return ["the learnable weight must be the Parameter module.weight_hh_l0_raw (register it in __init__)"]
    problems = []
    if obs is not None and any(name.endswith("module.weight_hh_l0") for name in obs["parameters"]):
        problems.append("module.weight_hh_l0 is still a Parameter: delete it from module._parameters so only "
                        "weight_hh_l0_raw is learned")
    if obs["n_params"] != obs["lstm_params"]:
        problems.append(f"the wrapper has {obs['n_params']} parameters; the LSTM had {obs['lstm_params']}: the raw "
                        "weight replaces weight_hh_l0, it does not add to it")
    if obs["raw"] is not None and not close(obs["raw"], inp["state"]["weight_hh_l0"], 0, 0):
        problems.append("weight_hh_l0_raw must start as the LSTM's own weight_hh_l0")
    return problems


@PART.prop("in training, module.weight_hh_l0 after a forward is the raw weight with elements dropped at rate p and "
           "the survivors scaled by 1/(1-p)")
def dropconnect_values(inp: dict, obs: dict) -> list[str]:
    error, f = _first(obs)
    if error:
        return [error]
    raw, used = inp["state"]["weight_hh_l0"], f["w"]
    if not isinstance(used, torch.Tensor) or used.shape != raw.shape:
        return [f"after a forward, module.weight_hh_l0 is {type(used).__name__}; it must hold the dropped weight "
                f"{tuple(raw.shape)} that forward used"]
    ratio = used.detach().double() / raw.double()
    if close(used, raw, 1e-7, 1e-6):
        return ["in training mode module.weight_hh_l0 equals the raw weight: nothing was dropped"]
    problems = as_mask_problems(ratio, P, "module.weight_hh_l0 / weight_hh_l0_raw")
    if problems:
        return [problems[0] + " element by element (DropConnect: an element-wise mask on the weight)"]
    dropped = used.detach() == 0
    for axis, what in ((1, "rows"), (0, "columns")):
        whole = dropped.all(dim=axis) | (~dropped).all(dim=axis)
        if bool(whole.all()):
            return [f"whole {what} of W_hh are dropped or kept together; DropConnect drops single weights: one "
                    "Bernoulli draw per element of the weight (a mask of the weight's own shape)"]
    rate = float(dropped.double().mean())
    if not rate_ok(rate, P, raw.numel()):
        return [f"{rate:.1%} of the weights were dropped; expected about p = {P:.0%}"]
    return []


@PART.prop("one W_hh mask for every timestep of a forward pass: the wrapped LSTM runs once over the whole "
           "sequence with the dropped weight")
def one_mask_per_pass(inp: dict, obs: dict) -> list[str]:
    error, f = _first(obs)
    if error:
        return [error]
    if not isinstance(f["w"], torch.Tensor) or f["w"].shape != inp["state"]["weight_hh_l0"].shape:
        return [knock_on("cannot be checked: module.weight_hh_l0 does not hold the weight used (see above)")]
    problems = []
    with torch.no_grad():
        out, (h, c_) = lstm_from(inp["state"], f["w"])(inp["x"], (inp["h0"], inp["c0"]))
    if not isinstance(f["out"], torch.Tensor) or f["out"].shape != out.shape:
        return problems + [f"the wrapper returned {type(f['out']).__name__}; return what self.module(*args) returns"]
    if not (close(f["out"], out) and close(f["h"], h) and close(f["c"], c_)):
        diff = (f["out"].double() - out.double()).abs().amax(dim=(1, 2)) > 1e-4
        step = int(diff.nonzero()[0]) if bool(diff.any()) else f["out"].shape[0] - 1
        problems.append(f"from timestep {step} on, the output differs from a plain nn.LSTM run over the whole "
                        "sequence with module.weight_hh_l0: every timestep must use the same dropped W_hh (draw "
                        "the mask once, then run the wrapped LSTM once over the whole sequence), and "
                        "module.weight_hh_l0 must hold exactly that weight after the forward")
    return problems


@PART.prop("a fresh mask at every forward pass")
def fresh_mask_per_pass(inp: dict, obs: dict) -> list[str]:
    error, f = _first(obs)
    second = obs["second"]
    if error or failed(second):
        cause = reassigned_parameter(failed(second), obs)
        return [error or f"a second training forward raised {failed(second)}{cause}"]
    if not isinstance(second["w"], torch.Tensor) or close(f["w"], second["w"], 0, 0):
        return ["the second forward pass used the same mask as the first: draw a new mask in every forward"]
    with torch.no_grad():
        out = lstm_from(inp["state"], second["w"])(inp["x"], (inp["h0"], inp["c0"]))[0]
    if not close(second["out"], out):
        return ["the second forward's output does not match the weight it reports in module.weight_hh_l0"]
    return []


@PART.prop("gradients reach weight_hh_l0_raw through the mask; the weight kept in module.weight_hh_l0 is detached")
def gradient_to_raw(inp: dict, obs: dict) -> list[str]:
    error, f = _first(obs)
    if error:
        return [error]
    used = f["w"]
    if not isinstance(used, torch.Tensor) or used.shape != inp["state"]["weight_hh_l0"].shape:
        return [knock_on("cannot be checked: module.weight_hh_l0 does not hold the weight used (see above)")]
    lstm = lstm_from(inp["state"], used, requires_grad=True)
    lstm(inp["x"], (inp["h0"], inp["c0"]))[0].sum().backward()
    expected = lstm.weight_hh_l0.grad * (used != 0).float() / (1 - P)
    problems = []
    if f["grad"] is None:
        problems.append("no gradient reached module.weight_hh_l0_raw: build the dropped weight from the raw "
                        "Parameter with differentiable operations (F.dropout(raw, ...)), not from .data")
    elif not close(f["grad"], expected, 1e-5, 1e-3):
        problems.append("weight_hh_l0_raw.grad is not the LSTM's gradient times the mask / (1-p)")
    if f["w_attached"]:
        problems.append("after the forward, module.weight_hh_l0 is still attached to the graph: store it "
                        ".detach()ed (a graph kept on the module breaks deepcopy and holds memory)")
    return problems


def reassigned_parameter(error: str | None, obs: dict | None = None) -> str:
    """The cause of torch's "cannot assign ... as parameter" crash, when the error is that crash: the LSTM's own
    Parameter was never deleted, or (in eval mode) the Parameter weight_hh_l0_raw itself was assigned."""
    if not error or "cannot assign" not in error or "as parameter" not in error:
        return ""
    if obs is not None and any(name.endswith("module.weight_hh_l0") for name in obs["parameters"]):
        return (": the LSTM still has its own Parameter weight_hh_l0, and nn.Module refuses a plain tensor assigned "
                "over a registered Parameter. In __init__, after registering weight_hh_l0_raw, delete the original: "
                "del module._parameters['weight_hh_l0']")
    return (": in eval mode the Parameter weight_hh_l0_raw itself was assigned to module.weight_hh_l0, which "
            "registers it as a Parameter again, so the next plain tensor assigned there is refused. Assign a "
            "plain tensor (raw * 1 or raw.clone()), never the Parameter")


@PART.prop("eval mode, and dropout = 0, use the full weight")
def full_weight_in_eval(inp: dict, obs: dict) -> list[str]:
    e, zero = obs["eval"], obs["zero"]
    if failed(e):
        return [f"an eval-mode forward raised {failed(e)}{reassigned_parameter(failed(e), obs)}"]
    with torch.no_grad():
        out = lstm_from(inp["state"])(inp["x"], (inp["h0"], inp["c0"]))[0]
    if not close(e["out"], out):
        return ["in eval mode the output differs from the LSTM with its full (undropped) weight_hh_l0"]
    if failed(zero):
        return [f"with dropout = 0, two training forwards failed: {failed(zero)} (F.dropout(raw, p=0) returns the "
                "Parameter itself: assign a plain tensor such as raw * 1)"]
    if not close(zero, out):
        return ["with dropout = 0 the output differs from the LSTM with its full weight"]
    return []


@PART.prop("survives many train/eval switches, copy.deepcopy, a state_dict round trip and .to()")
def survives_copies(inp: dict, obs: dict) -> list[str]:
    e = obs["eval"]
    if failed(e):
        return [knock_on("cannot be checked until an eval-mode forward runs (see above)")]
    reference = e["out"]
    problems = []
    for key, what in (("switched", "10 train/eval switches"), ("deepcopy", "copy.deepcopy"),
                      ("state_dict", "a state_dict round trip"), ("moved", ".double() (as .to() would)")):
        value = obs[key]
        if failed(value):
            problems.append(f"{what} failed: {failed(value)}")
        elif not close(value, reference, 1e-5, 1e-4):
            problems.append(f"{what} changed the model's eval-mode output")
    return problems

"""Stage 6, ``NTASGD``: Algorithm 1's trigger, the scaled step, the average of the iterates and resuming
(docs/components.md, stage 6)."""

from __future__ import annotations

import copy
import io
from typing import Any

import torch
import torch.nn as nn

from hw4lib.properties.core import Part, attempt, close, failed, generator, knock_on

# (nonmono, validation losses, index of the call that must switch or None), traced by hand with Algorithm 1:
# with t = len(logs) before the call, switch when t > nonmono and v > min(logs[:t - nonmono]).
TRIGGER_SCRIPTS: list[tuple[int, list[float], int | None]] = [
    (3, [10, 9, 8, 7, 6, 7, 8, 9, 10], 7),  # 8 > min(10, 9, 8) is false at call 6; 9 > 7 at call 7
    (2, [5, 4, 3, 2, 1, 0.5, 0.4], None),  # always improving: never switch
    (2, [1, 5, 6, 2, 0.5], 3),  # call 2 has t = 2, not > nonmono; call 3: 2 > min(1) switches
    (5, [3, 3, 3, 3, 3, 3, 3, 3], None),  # equal is not worse: the comparison is strict
    (2, [3.0, 1.0, 2.0, 2.0, 2.5], 4),  # worse than the BEST older value (1), not than every older one (3)
]
MISSING = "<missing>"
NEEDS_ATTRIBUTES = knock_on("cannot be checked until NTASGD keeps the attribute `averaging` (see above)")


def random_scripts(seed: int) -> list[tuple[int, list[float]]]:
    gen = generator(seed, 61)
    return [(int(torch.randint(1, 6, (1,), generator=gen)), (torch.rand(14, generator=gen) * 3 + 1).tolist())
            for _ in range(6)]


def inputs(seed: int) -> dict:
    gen = generator(seed, 62)
    return {"scripts": [(n, losses) for n, losses, _ in TRIGGER_SCRIPTS] + random_scripts(seed),
            "grads": torch.randn(200, 5, generator=gen)}


def _run_script(NTASGD: type, nonmono: int, losses: list[float], grads: torch.Tensor) -> dict:
    """Two scaled steps per check, then a check; what record() returns and what the optimizer says after it."""
    p = nn.Parameter(torch.zeros(5))
    opt = NTASGD([p], lr=0.1, nonmono=nonmono)
    returned, flags, k = [], [], 0
    for step, loss in enumerate(losses):
        for _ in range(2):
            opt.zero_grad()
            p.grad = grads[k % len(grads)].clone()
            k += 1
            opt.step(lr_scale=0.5 if step % 2 else 1.0)
        r = opt.record(loss)
        returned.append(r if isinstance(r, bool) else repr(r))
        flags.append(getattr(opt, "averaging", MISSING))
    def inside() -> torch.Tensor:
        with opt.averaged():
            return p.detach().clone()

    averaged = attempt(inside)
    return {"returned": returned, "averaging": flags, "trigger_step": getattr(opt, "trigger_step", MISSING),
            "averaged": averaged, "live": p.detach().clone()}


def observe(c: Any, inp: dict) -> dict:
    NTASGD = c.NTASGD
    obs: dict = {"scripts": [attempt(lambda n=n, losses=losses: _run_script(NTASGD, n, losses, inp["grads"]))
                             for n, losses in inp["scripts"]]}

    def stepping() -> dict:
        w = nn.Parameter(torch.tensor([1.0, -1.0]))
        opt = NTASGD([w], lr=0.5, nonmono=1)
        grad, seen = torch.tensor([1.0, 2.0]), []
        for scale, lr in ((0.5, None), (1.0, None), (1.0, 0.1)):
            if lr is not None:
                opt.lr = lr  # the trainer's schedule changes the rate between steps
            opt.zero_grad()
            w.grad = grad.clone()
            opt.step(lr_scale=scale)
            seen.append(w.detach().clone())
        w.grad = grad.clone()
        opt.zero_grad()
        cleared = w.grad is None or float(w.grad.abs().sum()) == 0
        decayed = []
        for scale in (1.0, 0.5):  # the whole update, decay included, uses lr * lr_scale
            v = nn.Parameter(torch.tensor([2.0, -4.0]))
            wd = NTASGD([v], lr=0.5, nonmono=1, weight_decay=0.1)
            wd.zero_grad()
            v.grad = torch.tensor([1.0, 0.0])
            wd.step(lr_scale=scale)
            decayed.append(v.detach().clone())
        return {"after": seen, "cleared": cleared, "decayed": decayed}

    obs["stepping"] = attempt(stepping)

    def averaging() -> dict:
        w = nn.Parameter(torch.tensor([1.0, -1.0]))
        opt = NTASGD([w], lr=0.5, nonmono=1)
        grads = inp["grads"][:6, :2]

        def step(i: int, scale: float) -> None:
            opt.zero_grad()
            w.grad = grads[i].clone()
            opt.step(lr_scale=scale)

        step(0, 0.5)
        step(1, 1.0)
        with opt.averaged():
            before_switch = w.detach().clone()
        live_before = w.detach().clone()
        switched = [opt.record(v) for v in (1.0, 2.0, 3.0)]
        iterates = []
        for i, scale in ((2, 1.0), (3, 0.5), (4, 1.0)):
            step(i, scale)
            iterates.append(w.detach().clone())
        live = w.detach().clone()
        with opt.averaged():
            inside = w.detach().clone()
        restored = w.detach().clone()
        state = opt.state_dict()
        buffer = io.BytesIO()
        try:
            torch.save(state, buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
            plain = "ok"
        except Exception as err:  # noqa: BLE001 - reported to the student as the reason
            plain = f"{type(err).__name__}: {str(err)[:200]}"
        w2 = nn.Parameter(w.detach().clone())
        clone = NTASGD([w2], lr=0.5, nonmono=1)
        clone.load_state_dict(copy.deepcopy(state))
        for o, p in ((opt, w), (clone, w2)):
            o.zero_grad()
            p.grad = grads[5].clone()
            o.step(lr_scale=1.0)
        with opt.averaged():
            avg_a = w.detach().clone()
        with clone.averaged():
            avg_b = w2.detach().clone()
        return {"before_switch": before_switch, "live_before": live_before, "switched": switched,
                "averaging": getattr(opt, "averaging", MISSING), "trigger_step": getattr(opt, "trigger_step", MISSING),
                "iterates": iterates, "live": live, "inside": inside, "restored": restored, "plain": plain,
                "resumed": [avg_a, avg_b, w.detach().clone(), w2.detach().clone()]}

    obs["averaging"] = attempt(averaging)

    def resume_logs() -> list:
        a = NTASGD([nn.Parameter(torch.zeros(2))], lr=0.1, nonmono=2)
        for v in (5.0, 4.0, 3.0):
            a.record(v)
        b = NTASGD([nn.Parameter(torch.zeros(2))], lr=0.1, nonmono=2)
        b.load_state_dict(copy.deepcopy(a.state_dict()))
        return [a.record(6.0), b.record(6.0)]

    obs["resume_logs"] = attempt(resume_logs)
    return obs


PART = Part("nt_asgd", ("NTASGD",), inputs, observe)


def _script(obs: dict, i: int) -> tuple[str | None, dict]:
    s = obs["scripts"][i]
    return (f"NTASGD raised {failed(s)}" if failed(s) else None), s


@PART.prop("record() keeps the attribute averaging (bool) and trigger_step (the number of optimizer steps taken when "
           "it switched, else None)")
def attributes(inp: dict, obs: dict) -> list[str]:
    error, s = _script(obs, 0)
    if error:
        return [error]
    problems = []
    if MISSING in s["averaging"] or any(not isinstance(f, bool) for f in s["averaging"]):
        problems.append("NTASGD must keep a bool attribute `averaging` (False until record() switches, True after), "
                        "as docs/components.md (stage 6) says")
    if s["trigger_step"] == MISSING:
        problems.append("NTASGD must keep an attribute `trigger_step`: the number of steps taken when it switched "
                        "(None before)")
        return problems
    # Each script takes two steps before every record(): judged on the call where this NTASGD switched (right or
    # wrong, the trigger has its own property), trigger_step must be the steps taken, not the checks made.
    for (nonmono, losses), run in zip(inp["scripts"], obs["scripts"], strict=True):
        if failed(run) or any(not isinstance(r, bool) for r in run["returned"]):
            continue
        switched = [k for k, r in enumerate(run["returned"]) if r]
        want = 2 * (switched[0] + 1) if switched else None
        if run["trigger_step"] != want:
            when = (f"record() switched at call {switched[0]}, after {want} optimizer steps (two before every check)"
                    if switched else "record() never switched")
            problems.append(f"{_story(nonmono, losses)}: {when}, but trigger_step is {run['trigger_step']}: "
                            "trigger_step is the number of optimizer steps taken when it switched (None before): "
                            "count optimizer steps (calls of step()), not checks (calls of record())")
            break
    return problems


def _story(nonmono: int, losses: list[float]) -> str:
    return f"nonmono={nonmono}, validation losses {[round(v, 3) for v in losses]}"


@PART.prop("record(val_loss) switches on exactly the call Algorithm 1 says (t = len(logs) > nonmono and val_loss > "
           "min(logs[:t - nonmono])), returns True on that call only, and averaging stays on")
def trigger(inp: dict, obs: dict) -> list[str]:
    for i, (nonmono, losses, expected) in enumerate(TRIGGER_SCRIPTS):
        error, s = _script(obs, i)
        if error:
            return [error]
        returned = s["returned"]
        if any(not isinstance(r, bool) for r in returned):
            return [f"record() returned {next(r for r in returned if not isinstance(r, bool))}; it must return a "
                    "bool (True only on the call that switches)"]
        switched = [k for k, r in enumerate(returned) if r]
        story = _story(nonmono, losses)
        if MISSING in s["averaging"]:
            return [NEEDS_ATTRIBUTES]
        if switched == ([] if expected is None else [expected]):
            flags = s["averaging"]
            if expected is not None and not all(f is True for f in flags[expected:]):
                return [f"{story}: record returned True at call {expected} but `averaging` did not stay True"]
            if any(f is True for f in flags[: expected if expected is not None else len(flags)]):
                return [f"{story}: `averaging` was True before the switch"]
            continue
        if expected is None:
            return [f"{story}: record switched at call {switched[0]} but must never switch (the loss is never worse "
                    "than the best one older than the last nonmono checks)"]
        if not switched:
            older = min(losses[: expected - nonmono])
            return [f"{story}: record never returned True; it must switch at call {expected} (t = {expected} > "
                    f"nonmono and {losses[expected]} > min(logs[:t - nonmono]) = {older}, the best older value)"]
        if len(switched) > 1:
            return [f"{story}: record returned True at calls {switched}; only the call that switches returns True"]
        return [f"{story}: record switched at call {switched[0]}; expected call {expected}. Use t = len(logs) before "
                "appending, require t > nonmono, and compare val_loss > min(logs[:t - nonmono]) (the best older "
                "value, strictly worse)"]
    return []


@PART.prop("step(lr_scale) moves by lr * lr_scale * gradient for exactly that step, with the current value of "
           "the attribute lr; zero_grad() clears the gradients")
def scaled_step(inp: dict, obs: dict) -> list[str]:
    s = obs["stepping"]
    if failed(s):
        return [f"stepping raised {failed(s)}"]
    a, b, c = s["after"]
    problems = []
    if not close(a, torch.tensor([0.75, -1.5])):
        return [f"after one step with lr=0.5, lr_scale=0.5 and gradient (1, 2), w went from (1, -1) to {a.tolist()}; "
                "expected (0.75, -1.5): step uses lr * lr_scale for exactly that step"]
    if not close(b, torch.tensor([0.25, -2.5])):
        return [f"the second step (lr_scale=1) gave {b.tolist()}; expected (0.25, -2.5): the previous step's lr_scale "
                "must not carry over"]
    if not close(c, torch.tensor([0.15, -2.7])):
        problems.append(f"after setting optimizer.lr = 0.1, a step (lr_scale=1) gave {c.tolist()}; expected "
                        "(0.15, -2.7): read self.lr at every step (the trainer's schedule changes it)")
    if not s["cleared"]:
        problems.append("zero_grad() left the gradients in place: set them to None (or zero)")
    return problems


@PART.prop("weight_decay adds weight_decay * w to the gradient, and the whole update, decay included, uses the "
           "step's rate lr * lr_scale")
def weight_decay_scaled(inp: dict, obs: dict) -> list[str]:
    s = obs["stepping"]
    if failed(s):
        return [knock_on(f"stepping raised {failed(s)}")]
    full, half = s["decayed"]
    if not close(full, torch.tensor([2.0 - 0.5 * (1 + 0.2), -4.0 - 0.5 * (-0.4)])):
        return [f"with weight_decay=0.1, lr=0.5, gradient (1, 0) and w = (2, -4), a step gave {full.tolist()}; "
                "expected w - lr * (gradient + weight_decay * w) = (1.4, -3.8)"]
    if not close(half, torch.tensor([2.0 - 0.25 * (1 + 0.2), -4.0 - 0.25 * (-0.4)])):
        return [f"with weight_decay=0.1, lr=0.5 and lr_scale=0.5, gradient (1, 0) and w = (2, -4), a step gave "
                f"{half.tolist()}; expected w - lr * lr_scale * (gradient + weight_decay * w) = (1.7, -3.9): the "
                "whole update, decay included, uses the rate lr * lr_scale (scaling the gradient instead leaves "
                "the decay unscaled)"]
    return []


@PART.prop("from the switch on, averaged() swaps in the mean of the iterates since the switch and restores the live "
           "weights on exit; before the switch it changes nothing")
def average_of_iterates(inp: dict, obs: dict) -> list[str]:
    a = obs["averaging"]
    if failed(a):
        return [f"NTASGD raised {failed(a)}"]
    problems = []
    if not close(a["before_switch"], a["live_before"], 0, 0):
        problems.append("before the switch, averaged() must leave the weights as they are")
    if a["averaging"] == MISSING:
        return problems + [NEEDS_ATTRIBUTES]
    if a["switched"] != [False, False, True] or a["averaging"] is not True:
        return problems + [f"record(1), record(2), record(3) with nonmono=1 returned {a['switched']} and left "
                           f"averaging = {a['averaging']}; expected [False, False, True] and averaging = True"]
    if a["trigger_step"] != 2:
        problems.append(f"trigger_step is {a['trigger_step']}; two steps had been taken when it switched")
    mean = torch.stack(a["iterates"]).mean(0)
    if not close(a["inside"], mean, 1e-6):
        problems.append(f"inside averaged() the weights are {a['inside'].tolist()} but the mean of the "
                        f"{len(a['iterates'])} iterates since the switch is {mean.tolist()}: average the parameters "
                        "after every step from the switch on (not from the start)")
    if not close(a["restored"], a["live"], 0, 0):
        problems.append("after leaving averaged(), the live weights must be restored")
    return problems


@PART.prop("state_dict() holds plain data (tensors, lists, numbers); load_state_dict() continues exactly where the "
           "original was (logs, averaging flag, the running average and its count)")
def resumes(inp: dict, obs: dict) -> list[str]:
    a = obs["averaging"]
    if failed(a):
        return [f"NTASGD raised {failed(a)}"]
    problems = []
    if a["plain"] != "ok":
        problems.append(f"state_dict() does not load with torch.load(weights_only=True): {a['plain']}; use only "
                        "tensors, lists, dicts, numbers, bools, strings and None")
    avg_a, avg_b, live_a, live_b = a["resumed"]
    if not (close(avg_a, avg_b, 1e-6) and close(live_a, live_b, 1e-6)):
        problems.append("an optimizer restored with load_state_dict(state_dict()) after the switch does not continue "
                        "like the original (keep the averaging flag, the running average and its count)")
    logs = obs["resume_logs"]
    if failed(logs):
        problems.append(f"restoring before the switch failed: {failed(logs)}")
    elif logs != [True, True]:
        problems.append(f"after load_state_dict, record() decided {logs[1]} where the original decided {logs[0]}: "
                        "state_dict must carry the logged validation losses")
    return problems

"""What a property is, and the few helpers every stage's properties share.

A *part* is one graded component (or a pair, like AR and TAR). For each part a stage module gives:

* ``inputs(seed) -> dict``: the inputs, built from ``torch.Generator``s seeded from ``seed`` only, so the
  sandboxed probe and the judge (or a student's visible check) rebuild exactly the same ones;
* ``observe(components, inputs) -> dict``: runs the student's component on those inputs and returns plain data
  (tensors, numbers, strings, lists, dicts). It is the only function that runs student code: in the grader it
  runs inside the sandbox, in a notebook inside the student's kernel;
* properties ``(inputs, observation) -> list[str]``: pure functions that return the problems they found, each a
  sentence a student can act on (empty when the promise holds). They draw no random numbers. A property that
  cannot judge its promise because another one failed (a forward that raised, outputs of the wrong shape)
  returns a :func:`knock_on` problem: the judge counts the promise as not shown, the visible check does not print
  it, so the student reads each cause once, from the property that owns it.

The visible check runs all three with a public seed; the judge runs ``observe`` in the sandbox, then the same
properties on the grading seed's inputs, and adds only what must stay hidden (the comparison with the reference
where the contract fixes the answer, and the perplexity).
"""

from __future__ import annotations

import errno
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

Check = Callable[[dict, dict], list[str]]


@dataclass(frozen=True)
class Property:
    """One promise of the contract: a stable name (used for points in ``autograder/config.toml``), the promise
    in words, and the test."""

    name: str
    promise: str
    test: Check


@dataclass
class Part:
    """The properties of one graded part, in the order a student should fix them."""

    name: str
    names: tuple[str, ...]  # the component names observe() needs from the student's module
    inputs: Callable[[int], dict]
    observe: Callable[..., dict]
    properties: list[Property] = field(default_factory=list)

    def prop(self, promise: str) -> Callable[[Check], Check]:
        """Decorator: registers ``test`` as the property named after the function."""

        def register(test: Check) -> Check:
            self.properties.append(Property(test.__name__, promise, test))
            return test

        return register

    def run(self, inputs: dict, obs: dict) -> dict[str, list[str]]:
        """{property name: problems} for every property (an exception in a property is a problem of its own,
        since an observation of the wrong type or structure comes from the student's code)."""
        found = {}
        for p in self.properties:
            try:
                found[p.name] = list(p.test(inputs, obs))
            except Exception as err:  # noqa: BLE001 - malformed observations must not crash the grader
                found[p.name] = [f"your outputs had an unexpected type or structure ({type(err).__name__}: {err})"]
        return found


class KnockOn(str):
    """A problem that only says a promise could not be judged because of a failure another property names."""


def knock_on(message: str) -> KnockOn:
    """Marks ``message`` as a knock-on of another property's failure (see the module's docstring)."""
    return KnockOn(message)


def causes(problems: list[str]) -> list[str]:
    """The problems that are not knock-ons."""
    return [p for p in problems if not isinstance(p, KnockOn)]


def generator(seed: int, salt: int) -> torch.Generator:
    """A generator for one purpose (``salt``) of one seed: inputs never touch torch's global generator."""
    return torch.Generator().manual_seed((seed * 1_000_003 + salt) % (2**63))


def init_uniform_(module: torch.nn.Module, gen: torch.Generator, bound: float = 0.3) -> torch.nn.Module:
    """Overwrites every parameter of ``module`` with U(-bound, bound) from ``gen``.

    Modules made by the judge must not take their values from the global generator, which other grading threads
    share; building a module draws from it, so every value is overwritten here.
    """
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * (2 * bound) - bound)
    return module


def attempt(fn: Callable[[], Any]) -> Any:
    """Runs one step of an observation; an exception becomes ``{"error": message}`` so that only the properties
    that need this step fail, each saying what went wrong."""
    try:
        return fn()
    except (NotImplementedError, MemoryError):  # MemoryError: the grader's memory limit fails the whole part
        raise
    except OSError as err:
        if err.errno == errno.EFBIG:  # the grader's output limit: the whole part fails, not one property
            raise
        return {"error": f"{type(err).__name__}: {err}{where(err)}"}
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        return {"error": f"{type(err).__name__}: {err}{where(err)}"}


def failed(value: Any) -> str | None:
    """The error message of a failed :func:`attempt`, else ``None``."""
    if isinstance(value, dict) and set(value) == {"error"}:
        return str(value["error"])
    return None


def where(err: BaseException) -> str:
    """' (in `f`, line 7 of your graded cell in 02_dropout.ipynb: `mask = ...`)' for the innermost frame of
    student code, else ''."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        name = frame.filename
        if "site-packages" in name or "/hw4lib/" in name or "/autograder/" in name:
            continue
        if name.startswith(("<ipython-input", "<0")) or "ipykernel" in name or name.endswith(".ipynb>"):
            code = (frame.line or "").strip()
            cell = "your cell"
            if name.startswith("<0") and ".ipynb cell" in name:  # loaded from a saved notebook by the loader
                cell = f"your graded cell in {name[1:].split(' cell')[0]}"
            return f" (in `{frame.name}`, line {frame.lineno} of {cell}" + (f": `{code}`)" if code else ")")
    return ""


def shape_of(t: Any) -> str:
    return f"{tuple(t.shape)}" if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"


def close(a: Any, b: Any, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape and values (in float64); ``False`` for anything that is not a pair of tensors."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
        return False
    return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def rate_ok(observed: float, p: float, n: int, sigmas: float = 6.0, floor: float = 0.0) -> bool:
    """``observed`` is a Bernoulli(p) rate over ``n`` draws within ``sigmas`` standard deviations.

    Six standard deviations: a correct component fails with probability below 1e-8 under any grading seed,
    while the plausible mistakes (another p, keep and drop swapped) sit many deviations away at these sizes.
    """
    return abs(observed - p) <= max(floor, sigmas * math.sqrt(p * (1 - p) / max(n, 1)))


def mask_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y / x`` for ``x`` without zeros: the mask a dropout applied (0 or 1/(1-p) where correct)."""
    return (y.detach().double() / x.detach().double())


def as_mask_problems(mask: torch.Tensor, p: float, what: str) -> list[str]:
    """Every entry of ``mask`` is 0 (dropped) or 1/(1-p) (kept, rescaled)."""
    scale = 1 / (1 - p)
    kept = (mask - scale).abs() <= 1e-4 * scale
    dropped = mask.abs() <= 1e-6
    if bool((kept | dropped).all()):
        return []
    if bool(mask.isnan().any()):  # 0/0: the "input" already holds the zeros of the dropout
        return [f"{what}: the input already holds zeros where the output was dropped (0/0): it must be taken "
                "before this dropout is applied (a layer's raw output, not its dropped one)"]
    unchanged = (mask - 1).abs() <= 1e-4
    if bool(unchanged.all()) and p > 0:
        return [f"{what}: nothing was dropped (every value passed through unchanged): this dropout (p = {p:g}) is "
                "not applied here"]
    if bool(unchanged.logical_or(dropped).all()):
        return [f"{what}: kept values are not rescaled; multiply the survivors by 1/(1-p) = {scale:.4g}"]
    kept_values = mask[~dropped]
    if kept_values.numel() and bool(((kept_values - kept_values[0]).abs() <= 1e-4 * kept_values[0].abs()).all()) \
            and float(kept_values[0]) > 1:
        c = float(kept_values[0])
        return [f"{what}: the survivors are scaled by {c:.4g} = 1/(1-{1 - 1 / c:.3g}); with p = {p:g} they must be "
                f"scaled by 1/(1-p) = {scale:.4g} (is the right rate passed to this dropout?)"]
    values = sorted({round(v, 3) for v in mask[~(kept | dropped)].flatten()[:5].tolist()})
    return [f"{what}: output/input takes values like {values}; it must be 0 (dropped) or 1/(1-p) = {scale:.4g} "
            "(kept)"]


def time_shared_problems(mask: torch.Tensor, what: str) -> list[str]:
    """A (T, B, H) mask is the same at every timestep (a locked mask)."""
    different = (mask - mask[0:1]).abs().amax(dim=2) > 1e-6  # (T, B)
    if not bool(different.any()):
        return []
    t, b = (int(i) for i in different.nonzero()[0])
    return [f"{what}: timestep {t} of batch element {b} has another mask than timestep 0; a locked mask is drawn "
            "once per sequence, shape (1, B, H), and reused at every timestep (nn.Dropout draws a new one at each)"]


def batch_distinct_problems(mask: torch.Tensor, what: str) -> list[str]:
    """Batch elements (and features) get masks of their own."""
    first = mask[0]  # (B, H)
    if first.shape[0] > 1 and bool((first - first[0:1]).abs().amax() <= 1e-6):
        return [f"{what}: every batch element got the same mask; draw it with shape (1, B, H) so each sequence "
                "has its own"]
    if first.shape[1] > 1 and bool((first - first[:, 0:1]).abs().amax() <= 1e-6):
        return [f"{what}: every feature of a sequence got the same mask entry; the mask has one entry per "
                "feature, shape (1, B, H)"]
    return []


def locked_mask_problems(x: torch.Tensor, y: Any, p: float, what: str) -> list[str]:
    """``y`` = a locked dropout of ``x`` (``x`` without zeros, (T, B, H)): values, sharing, distinctness, rate."""
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return [f"{what}: the output is {shape_of(y)}; it must have the input's shape {tuple(x.shape)} (T, B, H)"]
    mask = mask_of(x, y)
    problems = as_mask_problems(mask, p, what) or time_shared_problems(mask, what)
    if problems:
        return problems
    problems = batch_distinct_problems(mask, what)
    rate = float((mask[0].abs() <= 1e-6).double().mean())
    if not rate_ok(rate, p, mask[0].numel()):
        problems.append(f"{what}: {rate:.1%} of the units were dropped; expected about p = {p:.0%}")
    return problems

"""The judge: turns the probe's observations into a score and a message per part.

It never imports student code. For each part it rebuilds the inputs from the grading seed, runs the part's
properties from ``hw4lib.properties`` (the same ones the student's visible check runs) on the observation the
sandboxed probe recorded, and adds only what must stay hidden: the comparison with the reference from
``solutions/`` where the contract fixes the answer exactly, and the perplexity of the submitted model, computed
here by the reference ``LanguageModel`` on the student's weights. Every value it compares is built from explicit
``torch.Generator``s, so grading is a pure function of (submission, seed) however many students run at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import torch

from autograder import model_file
from autograder.config import Config, Part
from hw4lib import perplexity
from hw4lib.components import REPO_ROOT, load_components
from hw4lib.errors import HW4Error
from hw4lib.properties import PARTS
from hw4lib.properties import cache_pointer as cache_props
from hw4lib.properties import model as model_props
from hw4lib.properties.core import close, failed

SOLUTIONS = REPO_ROOT / "solutions"
#: Notebooks (by prefix) each part needs; loading only those keeps a broken notebook from sinking other parts.
STAGES = {
    "data_loader": ("01",),
    "locked_dropout": ("02",),
    "embedded_dropout": ("02",),
    "weight_drop": ("03",),
    "language_model": ("02", "03", "04"),
    "ar_tar": ("05",),
    "train_batch": ("05",),
    "nt_asgd": ("06",),
    "prediction_generation": ("07",),
    "val_perplexity": ("02", "03", "04"),
    "cache_pointer": ("08",),
}


def context(part: str) -> tuple[str, ...]:
    """The graded stages before a part's own: the loader takes only their definitions, leniently, so the part's
    code may use a name an earlier stage defines, as ``checks.load_earlier`` gave it in the student's kernel."""
    first = min(STAGES[part])
    return tuple(sorted({s for stages in STAGES.values() for s in stages if s < first}))


@dataclass
class Check:
    name: str
    promise: str
    weight: float
    problems: list[str]
    share: float | None = None  # a check scored on a scale (the perplexity): the share of its weight it earned

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def label(self) -> str:
        if self.ok:
            return "PASS"
        return "PARTIAL" if self.share is not None and self.share > 0 else "FAIL"


@dataclass
class Verdict:
    part: str
    notebook: str
    points: float
    score: float
    message: str
    checks: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@cache
def reference(part: str):
    """The reference components a part needs, loaded from solutions/ (trusted code)."""
    return load_components(SOLUTIONS, stages=STAGES[part])


def verdict(part: Part, checks: list[Check], error: str | None = None) -> Verdict:
    """Score = the weights of the passed checks (they add up to the part's points); a message naming every check."""
    if error is not None:
        return Verdict(part.name, part.notebook, part.points, 0.0, error)
    total = sum(c.weight for c in checks)
    passed = sum(c.weight for c in checks if c.ok)
    score = round(part.points * passed / total, 2) if total else 0.0
    lines = []
    for c in checks:
        lines.append(f"{c.label}  {c.promise}")
        lines += [f"      {p}" for p in c.problems[:2]]
    return Verdict(part.name, part.notebook, part.points, score, "\n".join(lines),
                   [{"name": c.name, "ok": c.ok, "weight": c.weight, "problems": c.problems} for c in checks])


# --- hidden checks: the reference, where the contract fixes the answer ----------------------------------------

Hidden = Callable[[dict, dict, int], list[str]]  # (inputs, observation, grading seed) -> problems
HIDDEN: dict[str, dict[str, tuple[str, Hidden]]] = {}


def hidden(part: str, promise: str) -> Callable[[Hidden], Hidden]:
    def register(fn: Hidden) -> Hidden:
        HIDDEN.setdefault(part, {})[fn.__name__] = (promise, fn)
        return fn

    return register


@cache
def reference_observation(part: str, seed: int) -> dict:
    """What the reference components do on a part's inputs for ``seed``: the same for every submission graded with
    that seed, so it is computed once per grading run instead of once per student (NT-ASGD's runs take seconds).
    Read only: the hidden checks compare with it and never change it."""
    props = PARTS[part]
    return props.observe(reference(part), props.inputs(seed))


@hidden("language_model", "eval-mode forward equals the AWD-LSTM forward on your own weights, with and without a "
                          "given hidden state, new hidden state included")
def reference_forward(inp: dict, obs: dict, seed: int) -> list[str]:
    e = obs["eval"]
    if failed(e):
        return [f"an eval-mode forward raised {failed(e)}"]
    state = obs["state"]
    # Built on the meta device: a random init here would draw from torch's global generator, which the grading
    # threads share. assign=True gives every parameter the student's tensor, so the decoder has a weight of its own
    # and the forward is judged apart from the tying (its own check).
    with torch.device("meta"):
        ref = reference("language_model").LanguageModel(**model_props.SMALL)
    try:
        ref.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, KeyError) as err:
        return [f"the state_dict does not follow the contract's attribute names: {str(err)[:300]}"]
    ref.eval()
    with torch.no_grad():
        logits, hidden_ = ref(inp["words"])[:2]
        given_logits, given_hidden = ref(inp["words"], [tuple(t.clone() for t in h) for h in inp["hidden"]])[:2]
    problems = []
    if not close(e["logits"], logits):
        problems.append("eval-mode logits differ from the contract's forward pass on your own weights")
    elif not close(e["given_logits"], given_logits):
        problems.append("with a given hidden state, the logits differ from the contract's forward pass")

    def same_hidden(a: list, b: list) -> bool:
        return len(a) == len(b) and all(len(x) == 2 and close(x[0], y[0]) and close(x[1], y[1])
                                        for x, y in zip(a, b, strict=True))

    if not (same_hidden(e["hidden"], hidden_) and same_hidden(e["given_hidden"], given_hidden)):
        problems.append("the new hidden state differs from the contract's: each layer's (h, c) after the sequence")
    return problems


@hidden("ar_tar", "AR and TAR give the contract's values on random activations")
def reference_values(inp: dict, obs: dict, seed: int) -> list[str]:
    ref = reference_observation("ar_tar", seed)
    problems = []
    for fn, keys in (("ar", ("x2", "x05")), ("tar", ("x1", "x3"))):
        got = obs[fn]
        if failed(got):
            problems.append(f"{fn} raised {failed(got)}")
            continue
        for k in keys:
            value = got[k]
            if not isinstance(value, torch.Tensor) or value.numel() != 1 or not math.isclose(
                    float(value), float(ref[fn][k]), rel_tol=1e-5, abs_tol=1e-7):
                name = "activation_regularization" if fn == "ar" else "temporal_activation_regularization"
                problems.append(f"{name} on a random (9, 4, 6) tensor gave {value}, not the contract's value")
                break
    return problems


@hidden("train_batch", "the step's gradient is that of CE + AR(dropped_outputs[-1]) + TAR(raw_outputs[-1]), its "
                       "global norm clipped; the loss and hidden state returned are the contract's")
def reference_gradient(inp: dict, obs: dict, seed: int) -> list[str]:
    m = obs["main"]
    if failed(m):
        return [f"train_batch raised {failed(m)}"]
    ref = reference_observation("train_batch", seed)["main"]
    if len(m["steps"]) != 1:
        return [f"{len(m['steps'])} optimizer steps instead of one"]
    got, want = m["steps"][0]["grads"], ref["steps"][0]["grads"]
    problems = []
    if len(got) != len(want) or not all(close(a, b, 1e-6, 1e-4) for a, b in zip(got, want, strict=False)):
        problems.append("the gradient at the step differs from CE + AR on dropped_outputs[-1] + TAR on "
                        "raw_outputs[-1] (alpha, beta as given), back-propagated and clipped to a global norm of clip")
    if m["loss"] is None or not math.isclose(m["loss"], ref["loss"], rel_tol=1e-5):
        problems.append(f"returned loss {m['loss']}, expected {ref['loss']:.6f}")
    return problems


@hidden("nt_asgd", "on scripted and random validation sequences, the trigger, trigger_step, the live weights and "
                   "their average follow Algorithm 1 exactly")
def reference_runs(inp: dict, obs: dict, seed: int) -> list[str]:
    ref = reference_observation("nt_asgd", seed)["scripts"]
    for (nonmono, losses), got, want in zip(inp["scripts"], obs["scripts"], ref, strict=True):
        story = f"nonmono={nonmono}, losses {[round(v, 3) for v in losses]}"
        if failed(got):
            return [f"{story}: NTASGD raised {failed(got)}"]
        if got["returned"] != want["returned"] or got["averaging"] != want["averaging"]:
            return [f"{story}: record() returned {got['returned']}; Algorithm 1 gives {want['returned']}"]
        if got["trigger_step"] != want["trigger_step"]:
            return [f"{story}: trigger_step {got['trigger_step']}, expected {want['trigger_step']}"]
        if not (close(got["live"], want["live"], 1e-6) and close(got["averaged"], want["averaged"], 1e-6)):
            return [f"{story}: after two scaled steps per check, the weights or their average differ from the "
                    "contract's"]
    return []


@hidden("cache_pointer", "cache_probs gives the definition's values on random keys and words")
def reference_cache(inp: dict, obs: dict, seed: int) -> list[str]:
    main = obs["main"]
    if failed(main):
        return [f"cache_probs raised {failed(main)}"]
    want = reference("cache_pointer").cache_probs(inp["keys"], inp["words"], cache_props.WINDOW, cache_props.THETA)
    if not isinstance(main, torch.Tensor) or main.shape != want.shape or not close(
            main.double().nan_to_num(-1.0), want.nan_to_num(-1.0), 1e-6, 1e-5):
        return ["on random keys, p_cache differs from softmax over the window of theta * h_i·h_t, summed over the "
                "positions i whose next word is the target"]
    return []


# --- the parts -------------------------------------------------------------------------------------------------


def judge_part(part: Part, obs: dict | None, seed: int, failure: str | None = None) -> Verdict:
    """One part's verdict from its observation (``None`` with ``failure`` when the probe died)."""
    if obs is None:
        return verdict(part, [], failure or "no result")
    if "error" in obs and set(obs) <= {"error", "traceback"}:
        trace = obs.get("traceback", "")
        return verdict(part, [], f"your code raised an error: {obs['error']}\n{trace}".strip())
    props = PARTS[part.name]
    inp = props.inputs(seed)
    found = props.run(inp, obs)
    promises = {p.name: p.promise for p in props.properties}
    for name, (promise, fn) in HIDDEN.get(part.name, {}).items():
        promises[name] = promise
        try:
            found[name] = list(fn(inp, obs, seed))
        except Exception as err:  # noqa: BLE001 - malformed observations from the sandbox
            found[name] = [f"your outputs had an unexpected type or structure ({type(err).__name__}: {err})"]
    checks = [Check(name, promises[name], float(part.weights[name]), found[name]) for name in part.weights]
    return verdict(part, checks)


# --- validation perplexity ---------------------------------------------------------------------------------------


def slice_tokens(split: str, config: Config) -> torch.Tensor:
    """The fixed slice of a split that perplexity is measured on: its first ``tokens`` tokens."""
    from hw4lib import data as hw4data

    cfg = config.perplexity
    stream = hw4data.stream(hw4data.load_split(cfg["dataset"], split))
    return torch.as_tensor(stream[: int(cfg["tokens"])], dtype=torch.int64)


def consistency_windows(tokens: torch.Tensor, config: Config) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The first windows of the slice (columns and bounds) that the student's own model must reproduce."""
    cfg = config.perplexity
    data = perplexity.batchify(tokens, int(cfg["batch_size"]))
    bounds = perplexity.window_bounds(data.size(0), int(cfg["bptt"]))[: int(cfg["consistency_windows"])]
    rows = bounds[-1][0] + bounds[-1][1] + 1
    return data[:rows].clone(), bounds


@dataclass
class Perplexity:
    """What the judge measured on the submitted weights with the reference model (or why it could not)."""

    valid: float = math.nan
    test: float = math.nan
    reference_log_probs: torch.Tensor | None = None
    error: str | None = None


@cache
def vocabulary_size(dataset: str) -> int:
    from hw4lib import data as hw4data

    return len(hw4data.load_vocab(dataset))


def measure_perplexity(ckpt: dict | None, unusable: str | None, valid: torch.Tensor, test: torch.Tensor,
                       config: Config) -> Perplexity:
    """The reference LanguageModel on the student's weights: perplexity of both slices, and the log-probabilities
    the student's own model must reproduce on the first windows. ``unusable`` says why there is no checkpoint.
    Nothing is built before ``model_file`` has bounded the checkpoint's settings and checked its shapes."""
    if ckpt is None:
        return Perplexity(error=unusable or "model.pt cannot be read")
    cfg = config.perplexity
    settings, refused = model_file.checked_config(ckpt, vocabulary_size(cfg["dataset"]), int(cfg["max_parameters"]))
    if refused:
        return Perplexity(error=f"model.pt cannot be scored: {refused}")
    try:
        model = model_file.build(reference("val_perplexity"), ckpt, settings)
    except HW4Error as err:
        return Perplexity(error=str(err)[:600])
    model.eval()
    kw = {"batch_size": int(cfg["batch_size"]), "bptt": int(cfg["bptt"])}
    windows: list[torch.Tensor] = []  # the consistency windows are the slice's first: read off the same pass
    valid_ppl = perplexity.perplexity(model, valid, window_log_probs=windows, **kw)
    _, bounds = consistency_windows(valid, config)
    return Perplexity(valid=valid_ppl, test=perplexity.perplexity(model, test, **kw),
                      reference_log_probs=torch.cat(windows[: len(bounds)]))


def judge_val_perplexity(part: Part, obs: dict | None, failure: str | None, measured: Perplexity,
                         config: Config) -> Verdict:
    if measured.error:
        return verdict(part, [], measured.error)
    if obs is None:
        return verdict(part, [], failure or "no result")
    if "error" in obs:
        return verdict(part, [], f"{obs['error']}\n{obs.get('traceback', '')}".strip())
    if not math.isfinite(measured.valid):
        return verdict(part, [], "the model's validation logits are not finite (NaN or infinite weights?): "
                                 "perplexity undefined")
    got, want = obs.get("log_probs"), measured.reference_log_probs
    atol = float(config.perplexity["consistency_atol"])
    if not close(got, want, atol, 0):
        diff = float((got.double() - want).abs().max()) if isinstance(got, torch.Tensor) and \
            got.shape == want.shape else math.inf
        return verdict(part, [], f"your LanguageModel, run on the weights in model.pt, does not give the contract's "
                                 f"AWD-LSTM predictions on the first validation windows (log-probabilities differ by "
                                 f"{diff:.3g}): the perplexity of these weights cannot be yours (score 0)")
    ratio = measured.valid / measured.test if math.isfinite(measured.test) else math.inf
    floor = float(config.perplexity["min_valid_over_test"])
    if ratio < floor:
        return verdict(part, [], f"validation perplexity {measured.valid:.1f} is far below the perplexity on the "
                                 f"held-out test slice ({measured.test:.1f}; ratio {ratio:.2f} < {floor}): a model "
                                 "trained on the validation split earns nothing here; train on the training split")
    full, zero = config.thresholds
    ppl = measured.valid
    share = perplexity.earned_share(ppl, full, zero)
    tokens = config.perplexity["tokens"]
    check = Check("perplexity", f"validation perplexity {ppl:.2f} on the first {tokens} tokens of "
                                f"{config.perplexity['dataset']} valid (full credit <= {full:g}, zero >= {zero:g}; "
                                f"test slice {measured.test:.2f})",
                  1.0, [] if share == 1.0 else [f"{share:.1%} of the points: {part.points * share:.2f} of "
                                                f"{part.points:g} (the number nbgrader shows under the cell)"],
                  share)
    v = verdict(part, [check])
    v.score = round(part.points * share, 2)
    return v


def properties_table(config: Config) -> str:
    """The markdown table of every graded promise and its points (``python -m autograder properties``): what
    docs/grading.md shows, generated from the property library, the hidden checks and the config weights."""
    lines = ["| part | points | property | promise |", "|---|---|---|---|"]
    for part in config.parts:
        if part.name == "val_perplexity":
            lines.append(f"| {part.name} | {part.points:g} | (judged) | the judge's perplexity of the submitted "
                         "weights in the reference LanguageModel; see below |")
            continue
        promises = {p.name: p.promise for p in PARTS[part.name].properties}
        promises.update({name: f"(hidden) {promise}" for name, (promise, _) in HIDDEN.get(part.name, {}).items()})
        for name, weight in part.weights.items():
            lines.append(f"| {part.name} | {weight:g} | `{name}` | {promises[name].replace('|', '/')} |")
    return "\n".join(lines)

"""Visible checks: run a student's component on small public inputs and say, in words, what is wrong.

Each ``check_*`` runs one graded part's properties from :mod:`hw4lib.properties` (the very ones the autograder's
judge runs, on its own secret inputs), prints ✓ or the problems, and raises a one-line :class:`CheckFailed`, so
nbval and nbgrader see a failure while the student reads sentences instead of a traceback. Nothing here
implements a component.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import tomllib
import torch

from hw4lib.components import REPO_ROOT, ComponentLoadError, load_components
from hw4lib.errors import HW4Error
from hw4lib.properties import PARTS
from hw4lib.properties.core import causes, where
from hw4lib.properties.nt_asgd import TRIGGER_SCRIPTS  # noqa: F401 - stage 6 traces the first script by hand

if TYPE_CHECKING:  # IPython is imported only when a notebook shows the contract
    from IPython.display import Markdown

VISIBLE_SEED = 0
NOT_IMPLEMENTED = (
    "not implemented yet: write your code in the cell marked `# YOUR CODE HERE` (delete the "
    "`raise NotImplementedError()` line), run that cell, then run this one again."
)


class CheckFailed(AssertionError):
    """A visible check found problems; its message is one line, the details were printed above it."""


# ----------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------


def collect(probe: Callable[[], Iterable[str]]) -> list[str]:
    """Runs a probe and turns whatever goes wrong into messages: never raises for student errors."""
    try:
        return list(probe())
    except NotImplementedError:
        return [NOT_IMPLEMENTED]
    except CheckFailed as err:
        return [str(err)]
    except Exception as err:  # the student's code may raise anything
        return [f"your code raised {type(err).__name__}: {err}{where(err)}"]


_earlier_failures: list[str] = []


def report(title: str, messages: Sequence[str]) -> None:
    """Prints ✓ or the problems as a list, then raises a one-line CheckFailed if there were any."""
    if not messages:
        print(f"✓ {title}: all checks pass")
        return
    print(f"✗ {title}: {len(messages)} problem{'s' if len(messages) > 1 else ''}")
    for message in messages:
        print(f"  • {message}")
    if _earlier_failures and messages != [NOT_IMPLEMENTED]:
        print("  (this stage builds on earlier ones that fail their checks: " + "; ".join(_earlier_failures)
              + ". Fix those first.)")
    raise CheckFailed(f"{title}: see the problems listed above")


def _short_traceback(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
    """IPython handler: one line for a failed check or a stub, instead of a screen of traceback.

    The line is still sent as the cell's error output, so nbval and nbgrader see the cell fail.
    """
    if isinstance(value, NotImplementedError):
        line = f"NotImplementedError: a part used here is {NOT_IMPLEMENTED}{where(value)}"
    else:
        line = f"{etype.__name__}: {value}"
    shell._showtraceback(etype, value, [line])
    return [line]


def install_short_errors() -> None:
    """In a notebook, show CheckFailed, NotImplementedError and HW4Error (whose messages say what to do) as one
    line; the cells still count as failed."""
    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return
    shell.set_custom_exc((CheckFailed, NotImplementedError, HW4Error), _short_traceback)


install_short_errors()


# ----------------------------------------------------------------------------------------------------
# The checks of the graded parts: the properties, on public inputs
# ----------------------------------------------------------------------------------------------------


def problems(part: str, components: Any, seed: int = VISIBLE_SEED) -> list[str]:
    """The problems the part's properties find in ``components`` (anything with the part's names as attributes);
    the first problem of each failing property, in the order a student should fix them."""
    props = PARTS[part]
    missing = [n for n in props.names if not hasattr(components, n)]
    if missing:
        return [f"{', '.join(missing)} is not defined (was its graded cell deleted or renamed?)"]
    inputs = props.inputs(seed)
    torch.manual_seed(seed)  # student components may draw from the global generator; same messages every run
    found = props.run(inputs, props.observe(components, inputs))
    # Each cause once: a property that could not judge its promise because of a failure another property names
    # (a knock-on) is left out, and two properties that trip over the same error print it once.
    shown = [own[0] for own in (causes(p) for p in found.values()) if own]
    if not shown:
        shown = [p[0] for p in found.values() if p]
    return list(dict.fromkeys(shown))


def _check(title: str, part: str, **named: Any) -> None:
    report(title, collect(lambda: problems(part, SimpleNamespace(**named))))


def check_data_loader(LanguageModelDataLoader: type) -> None:
    """Stage 1: shapes, shift, contiguous columns, shuffling per epoch, reproducibility, the length law."""
    _check("LanguageModelDataLoader", "data_loader", LanguageModelDataLoader=LanguageModelDataLoader)


def check_locked_dropout(LockedDropout: type) -> None:
    """Stage 2: one mask per sequence shared across time, rate p, scale 1/(1-p), identity in eval."""
    _check("LockedDropout", "locked_dropout", LockedDropout=LockedDropout)


def check_embedded_dropout(embedded_dropout: Callable) -> None:
    """Stage 2: whole word types dropped everywhere, rate p, scale, plain lookup at p = 0, gradients, padding_idx."""
    _check("embedded_dropout", "embedded_dropout", embedded_dropout=embedded_dropout)


def check_weight_drop(WeightDrop: type) -> None:
    """Stage 3: one W_hh mask per pass for all timesteps, new each pass, gradients to the raw weight, copies."""
    _check("WeightDrop", "weight_drop", WeightDrop=WeightDrop)


def check_language_model(LanguageModel: type) -> None:
    """Stage 4: structure, tying, init, shapes, hidden state, and every dropout locked where the model uses it."""
    _check("LanguageModel", "language_model", LanguageModel=LanguageModel)


def check_ar_tar(activation_regularization: Callable, temporal_activation_regularization: Callable) -> None:
    """Stage 5: AR = alpha * mean(x²) of the dropped output, TAR = beta * mean((h[t+1] - h[t])²)."""
    _check("AR and TAR", "ar_tar", activation_regularization=activation_regularization,
           temporal_activation_regularization=temporal_activation_regularization)


def check_train_batch(train_batch: Callable) -> None:
    """Stage 5: detached hidden, CE returned, AR/TAR on the right outputs, clipping, one step with lr_scale."""
    _check("train_batch", "train_batch", train_batch=train_batch)


def check_nt_asgd(NTASGD: type) -> None:
    """Stage 6: the trigger on hand-traced sequences, the scaled step, the average of the iterates, resuming."""
    _check("NTASGD", "nt_asgd", NTASGD=NTASGD)


def check_prediction_generation(prediction: Callable, generation: Callable) -> None:
    """Stage 7: eval mode, no gradients, greedy consistency, sampling distribution, top-k, the given generator."""
    _check("prediction and generation", "prediction_generation", prediction=prediction, generation=generation)


def check_cache_pointer(cache_probs: Callable, cache_mixture: Callable) -> None:
    """Stage 8: shape, empty cache, never itself nor the future, the window, theta, blocks, the mixture."""
    _check("cache_probs and cache_mixture", "cache_pointer", cache_probs=cache_probs, cache_mixture=cache_mixture)


# ----------------------------------------------------------------------------------------------------
# Helpers the notebooks show
# ----------------------------------------------------------------------------------------------------


def toy_articles(lengths: Sequence[int] = (37, 120, 8, 251, 64, 90), start: int = 1) -> list[np.ndarray]:
    """Articles whose tokens are all distinct (1, 2, 3, ...), so every token tells where it came from."""
    out, next_id = [], start
    for n in lengths:
        out.append(np.arange(next_id, next_id + n, dtype=np.int64))
        next_id += n
    return out


def parameter_table(
    LanguageModel: type, vocab: int = 33278, embed: int = 400, hidden: int = 1150, layers: int = 3
) -> str:
    """A text table of the parameter counts of the tied and untied model (the student's class)."""
    lines = [f"{'part':<12}{'tied':>14}{'untied':>14}"]
    counts = {}
    for tie in (True, False):
        model = LanguageModel(vocab, embed_size=embed, hidden_size=hidden, num_layers=layers, tie_weights=tie)
        parts = {"embedding": model.encoder, "LSTMs": model.rnns, "decoder": model.decoder}
        seen: set[int] = set()
        row = {}
        for name, module in parts.items():
            row[name] = sum(p.numel() for p in module.parameters() if id(p) not in seen)
            seen |= {id(p) for p in module.parameters()}
        row["total"] = sum(p.numel() for p in model.parameters())
        counts[tie] = row
    for name in ("embedding", "LSTMs", "decoder", "total"):
        lines.append(f"{name:<12}{counts[True][name]:>14,}{counts[False][name]:>14,}")
    return "\n".join(lines)


# The contract of docs/components.md, where the notebook runs. A student's server on the hub (and a release)
# holds hw4lib but not docs/, so the file ships inside the library; tests/test_repository.py keeps the copy equal
# to docs/components.md (the one source) and `python -m autograder release` rewrites it.
SHIPPED_CONTRACT = Path(__file__).resolve().parent / "contract.md"
_TABLE_HEADER = "| stage | name | signature | contract |"


def _stage_of(label: str) -> int | None:
    """The stage number a table row's first cell or a section heading starts with (``8 (optional)`` -> 8)."""
    digits = label.strip().split(" ", 1)[0].rstrip(":")
    return int(digits) if digits.isdigit() else None


def contract_text(stage: int, text: str | None = None) -> str:
    """Stage ``stage``'s part of the contract, as markdown: its rows of the table and its section of "the
    requirements that are easy to miss" (stage 7 has rows only). ``text`` defaults to the shipped copy."""
    lines = (SHIPPED_CONTRACT.read_text() if text is None else text).splitlines()
    start = lines.index(_TABLE_HEADER)
    table = lines[start:start + 2]
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        if _stage_of(line.strip("|").split("|", 1)[0]) == stage:
            table.append(line)
    section: list[str] = []
    for line in lines:
        if line.startswith("#"):
            if section:
                break  # the next heading ends the stage's section
            if line.startswith("### Stage ") and _stage_of(line[len("### Stage "):]) == stage:
                section.append(line)
        elif section:
            section.append(line)
    if len(table) == 2 and not section:
        known = sorted({s for s in (_stage_of(row.strip("|").split("|", 1)[0]) for row in lines[start + 2:]
                                    if row.startswith("|")) if s is not None})
        raise ValueError(f"the contract has no stage {stage}: stages {known}")
    source = "docs/components.md" + (f", {section[0].lstrip('# ')}" if section else "")
    return "\n".join([f"**The contract, stage {stage}** ({source}):", "", *table, "", *section]).rstrip() + "\n"


def contract(stage: int) -> Markdown:
    """Shows stage ``stage``'s part of the contract (docs/components.md) in the notebook: a cell ending in
    ``checks.contract(1)`` renders it as markdown, the same text the notebook's link opens in a clone."""
    from IPython.display import Markdown

    return Markdown(contract_text(stage))


# ----------------------------------------------------------------------------------------------------
# Stage 7: the trained model, scored as the grader scores it
# ----------------------------------------------------------------------------------------------------


SHIPPED_BAR = Path(__file__).resolve().parent / "grading_bar.json"


def grading_bar(config: str | Path | None = None) -> dict | None:
    """The autograder's perplexity slice and thresholds: ``[perplexity]`` of ``autograder/config.toml`` where this
    copy of the course has it (the instructor's), else the copy ``python -m autograder release`` ships with the
    student's library (``hw4lib/grading_bar.json``); ``None`` when neither is there."""
    path = Path(config) if config else REPO_ROOT / "autograder" / "config.toml"
    if not path.is_file():
        return json.loads(SHIPPED_BAR.read_text()) if config is None and SHIPPED_BAR.is_file() else None
    section = tomllib.loads(path.read_text())["perplexity"]
    full, zero = (float(section["tracks"][section["track"]][k]) for k in ("full", "zero"))
    return {"dataset": section["dataset"], "tokens": int(section["tokens"]), "batch_size": int(section["batch_size"]),
            "bptt": int(section["bptt"]), "full": full, "zero": zero, "track": section["track"]}


def _model_file_probe(path: str | Path, components: Any, max_tokens: int | None) -> Iterable[str]:
    from hw4lib import data
    from hw4lib.checkpoint import build_model, load_checkpoint
    from hw4lib.perplexity import earned_share, perplexity

    path = Path(path)
    if not path.exists():
        return [f"there is no {path} beside the notebook yet: run the training cell and the cell that copies it"]
    ckpt = load_checkpoint(path)
    model = build_model(components, ckpt)
    bar = grading_bar()
    dataset = bar["dataset"] if bar else ckpt.get("meta", {}).get("dataset", "wikitext2")
    tokens = max_tokens or (bar["tokens"] if bar else 10_000)
    kw = {"batch_size": bar["batch_size"], "bptt": bar["bptt"]} if bar else {}
    ppl = perplexity(model, data.load_split(dataset, "valid"), max_tokens=tokens, **kw)
    if not math.isfinite(ppl):
        return [f"{path} gives a perplexity of {ppl}: its weights hold NaN or inf; train again with a lower lr"]
    graded = bar["tokens"] if bar else tokens
    where = "the grader's slice" if tokens == graded else f"quick mode; the grader reads the first {graded:,}"
    print(f"  {path} loads into your LanguageModel; validation perplexity on the first {tokens:,} tokens "
          f"({where}): {ppl:.1f} (NLL {math.log(ppl):.3f})")
    print(f"  HW4P1's bar was NLL 5.4, perplexity {math.exp(5.4):.0f}.")
    if bar:
        share = earned_share(ppl, bar["full"], bar["zero"])
        print(f"  The grader ({bar['track']} track, autograder/config.toml): full credit at perplexity <= "
              f"{bar['full']:g}, none at >= {bar['zero']:g}. At this perplexity a model earns {share:.1%} of the "
              "perplexity points (if your LanguageModel passes its checks, as the grader also verifies).")
    return []


def check_model_file(path: str | Path, components: Any, max_tokens: int | None = None) -> None:
    """Stage 7: ``model.pt`` exists, loads into the student's LanguageModel, and what it would earn: perplexity on
    the grader's validation slice (``max_tokens`` shortens it, for quick mode)."""
    # The title says what passed: a model that loads may still earn none of the perplexity points (printed above)
    report(f"{Path(path).name} loads, runs and is scored (its share of the points is printed above)",
           collect(lambda: _model_file_probe(path, components, max_tokens)))


# ----------------------------------------------------------------------------------------------------
# Later stages: the student's own earlier components
# ----------------------------------------------------------------------------------------------------

# notebook -> the graded parts it holds, in order
EARLIER: list[tuple[str, str]] = [
    ("01_data_loader.ipynb", "data_loader"),
    ("02_dropout.ipynb", "locked_dropout"),
    ("02_dropout.ipynb", "embedded_dropout"),
    ("03_weight_drop.ipynb", "weight_drop"),
    ("04_model.ipynb", "language_model"),
    ("05_regularization_trainer.ipynb", "ar_tar"),
    ("05_regularization_trainer.ipynb", "train_batch"),
    ("06_nt_asgd.ipynb", "nt_asgd"),
]


def load_earlier(before: str, folder: str | Path = ".", verbose: bool = True) -> Any:
    """Loads (and checks) your components from the notebooks before ``before``, in ``folder``.

    Prints one line per component; when one fails it names the notebook to fix. Returns the module.
    """
    _earlier_failures.clear()
    try:
        module = load_components(folder, before=before)
    except ComponentLoadError as err:
        print(f"✗ could not load your earlier notebooks: {err}")
        _earlier_failures.append(str(err))
        return None
    for notebook, part in EARLIER:
        if notebook >= before:
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            found = collect(lambda part=part: problems(part, module))
        label = " and ".join(PARTS[part].names)
        if found == [NOT_IMPLEMENTED]:
            _earlier_failures.append(f"{label} in {notebook}")
            print(f"✗ {label}: not written yet in {notebook}. Complete that stage first (its check must pass),")
            print("  save that notebook (File → Save), then re-run this cell.")
        elif found:
            _earlier_failures.append(f"{label} in {notebook}")
            print(f"✗ {label} (from {notebook}): {found[0]}")
            print(f"  → open {notebook}, fix it and save the notebook (File → Save), then re-run this cell.")
        elif verbose:
            print(f"✓ {label} (from {notebook})")
    return module

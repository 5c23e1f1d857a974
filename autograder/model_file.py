"""A submitted ``model.pt``, checked before the judge builds anything from it.

``model_config`` is the student's data: passed straight into a constructor, 1,000 layers or a hidden size of 10^6
would make the grader build (and then evaluate) whatever the file asks for. So the judge reads the file without
following links and with ``weights_only=True`` (``open_regular``, ``hw4lib.checkpoint``), accepts only the
contract's constructor arguments with types and bounds, requires the dataset's vocabulary and at most
``max_parameters`` parameters (the judge's work per submission is then bounded: the perplexity of a model of that
size on the graded slices), builds the reference ``LanguageModel`` on the ``meta`` device (no memory, no draw from
torch's global generator, which the grading threads share) and assigns dense float32 copies of the student's
tensors after checking every name and shape.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from types import ModuleType

import torch

from autograder import submission
from autograder.untrusted_files import Refused, open_regular
from hw4lib import checkpoint
from hw4lib.errors import HW4Error
from hw4lib.properties.model import parameter_count

#: The contract's constructor arguments (docs/components.md, stage 4) and their types.
ARGS = {"vocab_size": int, "embed_size": int, "hidden_size": int, "num_layers": int, "dropout": float,
        "dropouth": float, "dropouti": float, "dropoute": float, "wdrop": float, "tie_weights": bool}
DEFAULTS = {"embed_size": 400, "hidden_size": 1150, "num_layers": 3, "dropout": 0.4, "dropouth": 0.3,
            "dropouti": 0.65, "dropoute": 0.1, "wdrop": 0.5, "tie_weights": True}
MAX_LAYERS = 8
MAX_WIDTH = 4096


def read(path: Path) -> tuple[dict | None, str | None]:
    """(checkpoint, None), or (None, why it cannot be used) in words for the student."""
    try:
        with open_regular(path, submission.cap_bytes("model.pt")) as f:
            data = f.read()
    except Refused as err:
        if not Path(path).exists() and not Path(path).is_symlink():
            return None, "there is no model.pt in the submission (save it with hw4lib.checkpoint.save_model)"
        return None, f"model.pt cannot be used: {err}"
    try:
        ckpt = checkpoint.model_file(checkpoint.load_bytes(io.BytesIO(data), "model.pt"), "model.pt")
    except HW4Error as err:
        return None, f"model.pt: {err}"
    if not isinstance(ckpt.get("model_config"), dict):
        return None, "model.pt holds no model_config (save it with hw4lib.checkpoint.save_model)"
    return ckpt, None


def checked_config(ckpt: dict, vocab_size: int, max_parameters: int) -> tuple[dict | None, str | None]:
    """The constructor arguments with defaults filled in, or why they are refused (nothing is built before)."""
    given = ckpt["model_config"]
    unknown = [str(k)[:40] for k in given if k not in ARGS]
    if unknown:
        return None, f"model_config has arguments the contract's LanguageModel does not take: {unknown[:5]}"
    cfg = {**DEFAULTS, **given}
    for name, kind in ARGS.items():
        value = cfg.get(name)
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or
                                                                                 isinstance(value, int)))
        if not ok:
            return None, f"model_config's {name} is {str(value)[:40]!r}, not a {kind.__name__}"
    if cfg["vocab_size"] != vocab_size:
        return None, (f"model_config's vocab_size is {cfg['vocab_size']}; the graded dataset's vocabulary has "
                      f"{vocab_size} words")
    if not 1 <= cfg["num_layers"] <= MAX_LAYERS:
        return None, f"model_config's num_layers is {cfg['num_layers']}: the grader takes 1 to {MAX_LAYERS}"
    for name in ("embed_size", "hidden_size"):
        if not 1 <= cfg[name] <= MAX_WIDTH:
            return None, f"model_config's {name} is {cfg[name]}: the grader takes 1 to {MAX_WIDTH}"
    for name in ("dropout", "dropouth", "dropouti", "dropoute", "wdrop"):
        if not (math.isfinite(cfg[name]) and 0 <= cfg[name] < 1):
            return None, f"model_config's {name} is {cfg[name]}: a dropout rate is in [0, 1)"
    count = parameter_count(cfg)
    if count > max_parameters:
        return None, (f"the model in model.pt has {count:,} parameters; the grader scores models of at most "
                      f"{max_parameters:,} (the paper's WikiText-2 model has about 33 million)")
    return cfg, None


def build(components: ModuleType, ckpt: dict, cfg: dict) -> torch.nn.Module:
    """``components.LanguageModel(**cfg)`` holding the checkpoint's weights; raises ``HW4Error`` when a name or a
    shape differs from the model the config describes."""
    with torch.device("meta"):
        model = components.LanguageModel(**cfg)
    own = model.state_dict()
    given = ckpt.get("state_dict")
    if not isinstance(given, dict):
        raise HW4Error("model.pt holds no state_dict")
    problems = checkpoint.state_dict_problems(given, own)
    if problems:
        raise HW4Error("the weights in model.pt do not fit the model its own model_config describes (parameter "
                       "names and shapes): " + "; ".join(problems))
    model.load_state_dict({k: given[k].to(torch.float32).contiguous().clone() for k in own}, assign=True)
    return model

"""Model files: written atomically, read with ``weights_only=True`` (a pickle payload cannot run).

``model.pt`` holds what is needed to rebuild and grade a model: the ``LanguageModel`` constructor arguments and
the state dict (the weights a check scored: NT-ASGD's average once its trigger has fired, else the live ones).
``checkpoint.pt`` of a run (see :mod:`hw4lib.lab.training`) holds everything needed to resume training.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import torch

from hw4lib.errors import HW4Error
from hw4lib.files import atomic_write

MODEL_FORMAT = "hw4-model-v1"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file: a kill mid-write keeps the previous file intact."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), lambda fh: torch.save(obj, fh))


def safe_load(path: str | Path, what: str = "checkpoint") -> dict:
    """``torch.load(weights_only=True)`` with errors that say what is wrong and what to do."""
    path = Path(path)
    if not path.is_file():
        raise HW4Error(
            f"no {what} at {path}. Train one with `python -m hw4lib train --preset cpu --out RUN_DIR` "
            "(it writes RUN_DIR/model.pt), or pass the right path."
        )
    return load_bytes(path, str(path), what)


def load_bytes(source: str | Path | BinaryIO, name: str, what: str = "model file") -> dict:
    """:func:`safe_load` of a path or an open binary file (the grader reads a student's file from a descriptor
    it opened without following links); ``name`` is what the messages call it."""
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as err:
        raise HW4Error(
            f"{name} is not a plain weights file that can be loaded safely (weights_only=True refused it: "
            f"{str(err).splitlines()[0][:200] if str(err) else type(err).__name__}). Save it with "
            "hw4lib.checkpoint.save_model."
        ) from err
    if not isinstance(obj, dict):
        raise HW4Error(f"{name} holds a {type(obj).__name__}, not a {what} dictionary")
    return obj


def model_file(obj: dict, name: str) -> dict:
    """``obj`` if it is what :func:`save_model` writes, else an ``HW4Error``."""
    if obj.get("format") != MODEL_FORMAT or not isinstance(obj.get("state_dict"), dict):
        raise HW4Error(f"{name} is not a {MODEL_FORMAT} model file (format={str(obj.get('format'))[:40]!r})")
    return obj


def save_model(path: str | Path, model: torch.nn.Module, model_config: dict, **meta: Any) -> None:
    """Writes ``model.pt``: the constructor arguments, the state dict and free-form metadata."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": MODEL_FORMAT, "model_config": dict(model_config), "state_dict": state,
                       "meta": meta}, Path(path))


def load_checkpoint(path: str | Path) -> dict:
    """Reads a ``model.pt`` written by :func:`save_model`, refusing anything else."""
    return model_file(safe_load(path, "model file"), str(path))


def state_dict_problems(given: dict, own: dict) -> list[str]:
    """What keeps ``given`` from loading strictly into a model whose state dict is ``own``: missing and unexpected
    names, and entries that are not plain dense tensors of the model's shapes (floating point where the model's are)."""
    missing = [k for k in own if k not in given]
    unexpected = [str(k)[:60] for k in given if k not in own]
    wrong = [f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__} vs {tuple(own[k].shape)}"
             for k, v in given.items() if k in own and not (
                 type(v) is torch.Tensor and v.layout == torch.strided and tuple(v.shape) == tuple(own[k].shape)
                 and (v.is_floating_point() or not own[k].is_floating_point()))]
    return [f"{label} {names[:5]}" for label, names in
            (("missing", missing), ("unexpected", unexpected), ("shapes differ:", wrong)) if names]


def build_model(components: ModuleType, ckpt: dict, device: str | torch.device = "cpu") -> torch.nn.Module:
    """``components.LanguageModel(**model_config)`` with the checkpoint's weights, loaded strictly."""
    try:
        model = components.LanguageModel(**ckpt["model_config"])
    except TypeError as err:
        raise HW4Error(f"the checkpoint's model settings do not fit this LanguageModel: {err}") from err
    problems = state_dict_problems(ckpt["state_dict"], model.state_dict())
    if problems:
        raise HW4Error("this checkpoint is from another model: " + "; ".join(problems))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device)

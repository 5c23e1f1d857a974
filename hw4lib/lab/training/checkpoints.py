"""The validation checks and what a run keeps on disk: ``model.pt``, ``checkpoint.pt``, ``metrics.json`` and
``train.log``, and resuming from ``checkpoint.pt``.

``checkpoint.pt`` holds everything needed to resume (live weights, optimizer, random states, position in the epoch,
hidden state) and is written at every check, so a run killed at any moment resumes from the last one and ends exactly
where an uninterrupted run ends. ``model.pt`` holds the weights the best check scored.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hw4lib.checkpoint import atomic_torch_save, safe_load, save_model
from hw4lib.cpu_runtime import precision_context, resolve_precision
from hw4lib.errors import HW4Error
from hw4lib.files import atomic_write_json
from hw4lib.lab.training.presets import RESUMABLE_CHANGES, TrainConfig, config_from_saved
from hw4lib.perplexity import evaluate_nll


@dataclass
class RunState:
    """Where a run is; saved in every checkpoint."""

    epoch: int = 0
    batch: int = 0  # batches done in the current epoch
    step: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0  # time spent in training steps
    wall_s: float = 0.0  # wall-clock time of the run: steps, checks, checkpoints (summed over resumes)
    best_val_loss: float = math.inf
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _detached(hidden: Any) -> Any:
    if hidden is None:
        return None
    return [tuple(t.detach().cpu() for t in h) for h in hidden]


def _to_device(hidden: Any, device: torch.device) -> Any:
    if hidden is None:
        return None
    return [tuple(t.to(device) for t in h) for h in hidden]


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])




class Checkpoints:
    """The checks-and-resume part of :class:`~hw4lib.lab.training.loop.Trainer` (mixed into it).

    It scores the weights NT-ASGD returns, feeds its trigger, and saves and restores everything the loop needs to go
    on where it stopped.
    """

    config: TrainConfig
    state: RunState
    out: Path
    model: torch.nn.Module
    model_config: dict[str, Any]
    optimizer: Any  # the components' NTASGD (or the baseline's optimizer)
    loader: Any  # the components' LanguageModelDataLoader
    hidden: Any
    device: torch.device
    precision: str
    threads: int
    malloc_tuned: bool
    valid_check: np.ndarray
    _log_file: Path
    _echo: Callable[[str], None]
    _window_loss: float
    _window_batches: int
    _tick: Callable[[], float]  # from WallClock

    def log(self, message: str) -> None:
        with open(self._log_file, "a") as fh:
            fh.write(message + "\n")
        self._echo(message)

    def _resume(self) -> None:
        ckpt = safe_load(self.out / "checkpoint.pt", "training checkpoint")
        saved = config_from_saved(ckpt.get("config", {}))
        changed = {
            k for k, v in asdict(self.config).items() if k not in RESUMABLE_CHANGES and saved.get(k) != v
        }
        if "precision" in changed and self._resolves_to(saved["precision"]) == self.precision:
            changed.discard("precision")  # "auto" and what it resolves to on this machine compute the same
        if changed:
            raise HW4Error(
                f"{self.out / 'checkpoint.pt'} belongs to a run with other settings ({', '.join(sorted(changed))}"
                " differ). Use a new --out folder, or --no-resume to start this folder over."
            )
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as err:
            raise HW4Error(f"the checkpoint does not fit this model: {str(err).splitlines()[0]}") from err
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state = RunState(**ckpt["state"])
        self.hidden = _to_device(ckpt["hidden"], self.device)
        _set_rng_state(ckpt["rng"])
        self.log(
            f"resumed from {self.out / 'checkpoint.pt'}: epoch {self.state.epoch + 1}, "
            f"batch {self.state.batch}, step {self.state.step}"
        )

    def _resolves_to(self, precision: str) -> str | None:
        try:
            return resolve_precision(precision, self.device)
        except HW4Error:
            return None

    def _save_checkpoint(self) -> None:
        self._tick()
        atomic_torch_save(
            {
                "config": asdict(self.config),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "state": asdict(self.state),
                "hidden": _detached(self.hidden),
                "rng": _rng_state(),
            },
            self.out / "checkpoint.pt",
        )

    def validate(self) -> dict[str, Any]:
        """Scores the weights NT-ASGD returns (``averaged()``: the average once its trigger has fired, else the live
        weights), keeps the best of them as ``model.pt``, feeds the trigger, checkpoints."""
        cfg = self.config
        check_start = time.perf_counter()
        with self.optimizer.averaged():
            # Checks run in the run's precision (evaluate_nll scores in float64 whatever the logits' type); the
            # final score in finish() is always fp32.
            with precision_context(self.precision, self.device):
                val_loss = evaluate_nll(self.model, self.valid_check, batch_size=cfg.eval_batch_size, bptt=cfg.bptt)
            eval_s = time.perf_counter() - check_start
            if not math.isfinite(val_loss):
                raise HW4Error(
                    f"validation loss is {val_loss} at step {self.state.step}: the weights hold NaN or inf. "
                    "The last good checkpoint.pt is kept; lower --lr or check train_batch and NTASGD."
                )
            improved = val_loss < self.state.best_val_loss
            if improved:
                self.state.best_val_loss = val_loss
                save_model(
                    self.out / "model.pt", self.model, self.model_config, dataset=cfg.dataset,
                    step=self.state.step, val_ppl=math.exp(val_loss), config=asdict(cfg),
                )
        switched = self.optimizer.record(val_loss)
        entry = {
            "step": self.state.step,
            "epoch": self.state.epoch + self.state.batch / max(1, len(self.loader)),
            "tokens": self.state.tokens,
            "elapsed_s": round(self.state.elapsed_s, 2),
            "wall_s": round(self._tick(), 2),
            "eval_s": round(eval_s, 3),  # the evaluation alone
            "check_s": round(time.perf_counter() - check_start, 3),  # with model.pt (checkpoint.pt not counted)
            "lr": getattr(self.optimizer, "lr", None),
            "train_loss": self._window_loss / max(1, self._window_batches),
            "val_loss": val_loss,
            "val_ppl": math.exp(val_loss),
            "averaging": bool(self.optimizer.averaging),
            "switched_to_asgd": bool(switched),
        }
        self._window_loss, self._window_batches = 0.0, 0
        self.state.history.append(entry)
        self.log(
            f"check {len(self.state.history):3d} | epoch {entry['epoch']:6.2f} | step {entry['step']:6d} | "
            f"train ppl {math.exp(min(entry['train_loss'], 50)):8.2f} | val ppl {entry['val_ppl']:8.2f}"
            + (" | best" if improved else "")
            + (" | switched to averaging (NT-ASGD)" if switched else "")
        )
        self._save_checkpoint()
        self._write_metrics(final=False)
        return entry

    def _write_metrics(self, final: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        best = self.state.best_val_loss
        metrics = {
            "preset_config": asdict(self.config),
            "val_ppl": math.exp(best) if math.isfinite(best) else None,
            "val_ppl_scope": "periodic checks" if self.config.eval_tokens else "validation split",
            "steps": self.state.step,
            "epochs": self.state.epoch + self.state.batch / max(1, len(self.loader)),
            "tokens": self.state.tokens,
            "elapsed_s": round(self.state.elapsed_s, 2),
            "tokens_per_s": self.state.tokens / self.state.elapsed_s if self.state.elapsed_s else None,
            "wall_s": round(self.state.wall_s, 2),
            "precision": self.precision,
            "threads": self.threads,
            "malloc_tuned": self.malloc_tuned,
            "asgd_trigger_step": self.optimizer.trigger_step,
            "finished": final,
            "history": self.state.history,
            **(extra or {}),
        }
        atomic_write_json(self.out / "metrics.json", metrics)
        return metrics

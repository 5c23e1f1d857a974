"""Fine-tuning as the paper does it (Merity et al. 2017, section 3 and the authors' finetune step).

After the main run, training restarts from the best model with averaging from the very first step, and stops on
the same non-monotone condition NT-ASGD uses as its trigger: when the latest check is worse than the best of the
checks before the last ``nonmono`` ones. The paper reports 1 to 2 points of perplexity from it (Table 4:
"- fine-tuning" costs 1.2 to 2.6 points).

Nothing here re-implements a component. The student's ``NTASGD`` starts averaging only through ``record()``
(Algorithm 1), so fine-tuning builds it with ``nonmono=0`` and, right after the check of the starting model,
records one loss worse than that check: with ``nonmono = 0`` Algorithm 1 switches at once, before the first step,
which is exactly "averaging from the start". The stopping rule uses the run's own ``nonmono`` (5 in the paper).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from hw4lib.checkpoint import load_checkpoint
from hw4lib.errors import HW4Error
from hw4lib.files import atomic_write_json
from hw4lib.lab.training import RunData, TrainConfig, Trainer, config_from_saved


def non_monotone(losses: list[float], nonmono: int) -> bool:
    """The paper's stopping rule on the checks so far (the latest last): with ``logs`` the checks before the
    latest and ``t = len(logs)``, stop when ``t > nonmono`` and the latest is worse than ``min(logs[:t - nonmono])``
    (Algorithm 1's trigger condition, applied as a stop)."""
    if not losses:
        return False
    logs, latest = losses[:-1], losses[-1]
    t = len(logs)
    return t > nonmono and latest > min(logs[: t - nonmono])


def finetune_config(start: dict, *, minutes: float, lr: float | None = None, lr_decay_frac: float | None = 0.0,
                    seed: int | None = None, **overrides: Any) -> TrainConfig:
    """The settings of the run that made ``start`` (a ``model.pt``), turned into a fine-tuning run: the optimizer
    switches to averaging at once (``nonmono = 0``, see the module docstring), a wall budget of ``minutes``, the
    paper's constant rate unless ``lr_decay_frac`` is given, and a new seed so the batches come in a new order."""
    saved = start.get("meta", {}).get("config")
    if not isinstance(saved, dict):
        raise HW4Error("this model.pt does not record the settings of its run (meta.config): fine-tune a model "
                       "written by `python -m hw4lib train`")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in config_from_saved(saved).items() if k in known}
    if values["architecture"] != "awd":
        raise HW4Error("fine-tuning is NT-ASGD's last phase: it applies to the AWD-LSTM, not to the plain baseline")
    values.update(nonmono=0, wall_budget_min=minutes, time_budget_min=None, lr_decay_frac=lr_decay_frac or 0.0,
                  seed=(values["seed"] + 1) if seed is None else seed, preset="finetune")
    if lr is not None:
        values["lr"] = lr
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


class FineTuner(Trainer):
    """A :class:`Trainer` that starts from a trained ``model.pt``, averages from the first step and stops on the
    non-monotone condition (or the wall budget). Check 0 scores the starting model on the run's checking slice,
    so ``model.pt`` only changes when fine-tuning beats it."""

    def __init__(self, config: TrainConfig, components: ModuleType | None, out_dir: str | Path,
                 start_model: str | Path, *, patience: int = 5, start: dict | None = None, **kwargs: Any) -> None:
        if config.nonmono != 0:
            raise HW4Error("a fine-tuning config averages from the start (nonmono=0): build it with finetune_config")
        super().__init__(config, components, out_dir, **kwargs)
        self.patience = patience
        self.start_model = Path(start_model)
        # ``start``: the checkpoint already loaded from ``start_model`` (finetune() reads it once for the config).
        self.start = start if start is not None else load_checkpoint(self.start_model)
        if self.start["model_config"] != self.model_config:
            raise HW4Error(f"{self.start_model} holds another model ({self.start['model_config']}) than this run "
                           f"builds ({self.model_config})")
        if not self.state.history:  # a fresh folder; a resumed one already has its check 0
            self.model.load_state_dict(self.start["state_dict"])
            self.validate()
        if not self.optimizer.averaging:  # also after a kill between check 0 and this line
            self.optimizer.record(math.inf)  # worse than check 0 with nonmono = 0: Algorithm 1 switches now
            if not self.optimizer.averaging:
                raise HW4Error("NTASGD did not switch to averaging on record() with nonmono=0: check Algorithm 1")
            self._save_checkpoint()

    def stopped_early(self) -> bool:
        return non_monotone([h["val_loss"] for h in self.state.history], self.patience)

    def _out_of_time(self) -> bool:
        return self.stopped_early() or super()._out_of_time()

    def finish(self) -> dict[str, Any]:
        metrics = super().finish()
        start_ppl = self.start.get("meta", {}).get("val_ppl")
        metrics["finetune"] = {
            "start_model": str(self.start_model),
            "start_val_ppl": start_ppl,  # the start run's score on the whole validation split
            "val_ppl": metrics["val_ppl"],
            "gain": (start_ppl - metrics["val_ppl"]) if start_ppl else None,
            "stopped": "non-monotone" if self.stopped_early() else "budget",
            "patience": self.patience,
        }
        atomic_write_json(self.out / "metrics.json", metrics)
        self.log(f"fine-tuning: {start_ppl:.2f} -> {metrics['val_ppl']:.2f} ({metrics['finetune']['stopped']})"
                 if start_ppl else f"fine-tuning: -> {metrics['val_ppl']:.2f}")
        return metrics


def finetune(start_model: str | Path, out_dir: str | Path, components: ModuleType | None, *, minutes: float,
             patience: int | None = None, run_data: RunData | None = None, resume: bool = True,
             progress: bool = True, log: Callable[[str], None] | None = None, **config_overrides: Any,
             ) -> dict[str, Any]:
    """Fine-tunes ``start_model`` into ``out_dir`` (resuming it when it has a checkpoint); returns ``metrics.json``.
    ``patience`` defaults to the start run's ``nonmono``."""
    start = load_checkpoint(start_model)
    config = finetune_config(start, minutes=minutes, **config_overrides)
    if patience is None:
        patience = int(config_from_saved(start["meta"]["config"])["nonmono"])
    tuner = FineTuner(config, components, out_dir, start_model, patience=patience, start=start, run_data=run_data,
                      resume=resume, progress=progress, log=log)
    return tuner.run()


"""The wall clock of a run: how long it has run, when the next check is due, when it must stop, and the learning
rate's budget-aware decay.

A budget (``wall_budget_min``) counts everything on the wall clock: steps, checks, checkpoints and the final
evaluation, summed over resumes (the minutes between a kill and the resume do not count). So the run stops early
enough to leave room for its closing check and the final evaluation, which it estimates from the last check.
"""

from __future__ import annotations

import time

import numpy as np

from hw4lib.lab.training.checkpoints import RunState
from hw4lib.lab.training.presets import RunData, TrainConfig

#: An evaluated token (forward only, batch 10, fp32) costs about half a training token's seconds (forward, backward
#: and the update, batch 20, in the run's precision): the `cpu` preset's measured runs give 0.3 to 0.6. Used only until
#: the first check measures the evaluation itself.
EVAL_PER_TRAIN_TOKEN = 0.5
PACE_AFTER_STEPS = 50


class WallClock:
    """The budget and schedule part of :class:`~hw4lib.lab.training.loop.Trainer` (mixed into it).

    It reads the trainer's settings, its position and the validation data; it changes only ``state.wall_s``.
    """

    config: TrainConfig
    state: RunState
    valid_check: np.ndarray
    data: RunData  # data.valid is what the final evaluation reads
    _wall_mark: float | None  # perf_counter when state.wall_s was last brought up to date; None outside run()

    def _tick(self) -> float:
        """Brings ``state.wall_s`` up to now and returns it. The clock runs only inside :meth:`run`."""
        now = time.perf_counter()
        if self._wall_mark is not None:
            self.state.wall_s += now - self._wall_mark
        self._wall_mark = now
        return self.state.wall_s

    def _final_eval_estimate_s(self) -> float:
        """Seconds the closing check and the final evaluation will take: the last check's duration, plus its
        evaluation time scaled to the tokens the final evaluation reads. Before the first check, the training steps'
        own pace stands in (``EVAL_PER_TRAIN_TOKEN`` of a training token's seconds per evaluated token): on a slow or
        busy machine the first check can come after the budget's end, which the run would otherwise overrun by the
        whole final evaluation."""
        final_tokens = sum(len(a) for a in self.data.valid)
        if not self.state.history:
            if self.state.step < PACE_AFTER_STEPS:  # the first steps' warm-up would inflate the pace
                return 0.0
            return EVAL_PER_TRAIN_TOKEN * self.state.elapsed_s / self.state.tokens * final_tokens
        last = self.state.history[-1]
        check_s = float(last.get("check_s", 0.0))
        eval_s = float(last.get("eval_s", check_s))
        return check_s + eval_s * final_tokens / max(1, len(self.valid_check))

    def lr_scale(self) -> float:
        """The budget-aware decay: 1 until the last ``lr_decay_frac`` of the training time the wall budget leaves
        (after the reserve for the final evaluation), then falling linearly to 0 at its end."""
        cfg = self.config
        if not cfg.lr_decay_frac or cfg.wall_budget_min is None:
            return 1.0
        end = cfg.wall_budget_min * 60 - self._final_eval_estimate_s()
        left = end - self._tick()
        return min(1.0, max(0.0, left / (cfg.lr_decay_frac * end)))

    def _out_of_time(self) -> bool:
        cfg = self.config
        if cfg.time_budget_min is not None and self.state.elapsed_s >= cfg.time_budget_min * 60:
            return True
        if cfg.wall_budget_min is not None:
            return self._tick() + self._final_eval_estimate_s() >= cfg.wall_budget_min * 60
        return False

    def _check_due(self) -> bool:
        cfg = self.config
        if cfg.eval_interval and self.state.step % cfg.eval_interval == 0:
            return True
        if cfg.eval_every_min:
            last = self.state.history[-1].get("wall_s", 0.0) if self.state.history else 0.0
            return self._tick() - last >= cfg.eval_every_min * 60
        return False

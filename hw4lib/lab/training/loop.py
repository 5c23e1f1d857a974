"""The training loop: one run of the components in one folder, from its first batch (or its checkpoint) to the
final score.

It drives the student's (or the reference's) components and never re-implements them: it calls the
``LanguageModelDataLoader``, ``train_batch`` and ``NTASGD`` of a module built by
:func:`hw4lib.components.load_components`. The wall-clock budget and the learning rate's schedule are in
:mod:`~hw4lib.lab.training.clock`, the checks, checkpoints and resuming in :mod:`~hw4lib.lab.training.checkpoints`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from tqdm.auto import tqdm

from hw4lib import data as corpora
from hw4lib.checkpoint import atomic_torch_save, build_model, load_checkpoint
from hw4lib.cpu_runtime import precision_context, resolve_precision, set_threads, tune_malloc
from hw4lib.errors import HW4Error
from hw4lib.lab.training.checkpoints import Checkpoints, RunState
from hw4lib.lab.training.clock import WallClock
from hw4lib.lab.training.presets import ARCHITECTURES, RunData, TrainConfig, resolve_device
from hw4lib.perplexity import evaluate_nll


def components_for(config: TrainConfig, components: ModuleType | None) -> ModuleType:
    """What the trainer drives: the given components for the AWD-LSTM, :mod:`hw4lib.lab.baseline` for ``plain``."""
    if config.architecture not in ARCHITECTURES:
        raise HW4Error(f"unknown architecture {config.architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if config.architecture == "plain":
        from hw4lib.lab import baseline

        return baseline.components()  # type: ignore[return-value]
    if components is None:
        raise HW4Error("the awd architecture trains the course's components: pass them (load_components(...))")
    return components


class Trainer(WallClock, Checkpoints):
    """One run in one folder. ``run()`` trains until the epochs or a time budget are used up.

    The loop is here; when to check and stop is :class:`WallClock`'s, what a check does and saves is
    :class:`Checkpoints`'.
    """

    def __init__(
        self,
        config: TrainConfig,
        components: ModuleType | None,
        out_dir: str | Path,
        *,
        run_data: RunData | None = None,
        resume: bool = True,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.components = components = components_for(config, components)
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self._log_file = self.out / "train.log"
        self._echo = log or tqdm.write
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        if self.precision == "fp16":
            raise HW4Error("fp16 training needs loss scaling (a GradScaler) inside train_batch, which the course's "
                           "train_batch does not have: use bf16 on a GPU that supports it, or fp32")
        self.malloc_tuned = tune_malloc() if self.device.type == "cpu" else False
        self.threads = set_threads(config.threads)
        self.data = run_data or RunData.from_dataset(config)
        self.model_config = config.model_config(self.data.vocab_size)

        torch.manual_seed(config.seed)
        self.model = components.LanguageModel(**self.model_config).to(self.device)
        self.optimizer = components.NTASGD(
            self.model.parameters(), lr=config.lr, nonmono=config.nonmono, weight_decay=config.weight_decay
        )
        # The window-length settings go to the loader only when they differ from the contract's defaults, so a
        # loader that predates them (or the plain baseline's fixed windows) is called as before.
        windows = {} if (config.bptt_p_full, config.bptt_std) == (0.95, 5.0) else {
            "p_full": config.bptt_p_full, "std": config.bptt_std}
        self.loader = components.LanguageModelDataLoader(
            self.data.train, config.batch_size, config.bptt, shuffle=True, seed=config.seed, **windows
        )
        valid_eval = corpora.stream(self.data.valid)
        self.valid_check = valid_eval[: config.eval_tokens] if config.eval_tokens else valid_eval
        self.state = RunState()
        self.hidden: Any = None
        self._window_loss, self._window_batches = 0.0, 0
        self._wall_mark: float | None = None  # perf_counter when wall_s was last brought up to date
        if resume and (self.out / "checkpoint.pt").exists():
            self._resume()

    def run(self) -> dict[str, Any]:
        """Trains to the end, then scores the best model on the whole validation slice."""
        cfg, comps = self.config, self.components
        self._wall_mark = time.perf_counter()
        while self.state.epoch < cfg.epochs and not self._out_of_time():
            self.loader.epoch = self.state.epoch
            batches = iter(self.loader)
            for _ in range(self.state.batch):  # resuming mid-epoch: the same draws, skipped
                next(batches)
            if self.state.batch == 0:
                self.hidden = None
            bar = tqdm(
                batches, total=len(self.loader), initial=self.state.batch, disable=not self.progress,
                desc=f"epoch {self.state.epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
            )
            finished_epoch = True
            for inputs, targets, seq_len in bar:
                if cfg.lr_decay_frac:
                    self.optimizer.lr = cfg.lr * self.lr_scale()
                start = time.perf_counter()
                with precision_context(self.precision, self.device):
                    loss, self.hidden = comps.train_batch(
                        self.model, self.optimizer, inputs.to(self.device), targets.to(self.device), self.hidden,
                        seq_len, cfg.bptt, alpha=cfg.alpha, beta=cfg.beta, clip=cfg.clip,
                    )
                if not math.isfinite(loss):
                    raise HW4Error(
                        f"the training loss became {loss} at step {self.state.step + 1}. The last good "
                        f"checkpoint is kept in {self.out / 'checkpoint.pt'}; lower the learning rate "
                        "(--lr) or check train_batch (clipping, AR/TAR)."
                    )
                self.state.elapsed_s += time.perf_counter() - start
                self.state.batch += 1
                self.state.step += 1
                self.state.tokens += inputs.numel()
                self._window_loss += loss
                self._window_batches += 1
                bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{math.exp(min(loss, 50)):.0f}", refresh=False)
                if self._check_due():
                    self.validate()
                if self._out_of_time():
                    finished_epoch = False
                    break
            bar.close()
            checked_now = bool(self.state.history) and self.state.history[-1]["step"] == self.state.step
            if finished_epoch:
                self.state.epoch += 1
                self.state.batch = 0
                if checked_now:  # a check fell on the epoch's last batch: record the new position only
                    self._save_checkpoint()
                    self._write_metrics(final=False)
                else:
                    self.validate()
            elif not checked_now:
                self.validate()
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Scores ``model.pt`` (the weights of the best check) on the whole validation slice, in fp32."""
        if self._wall_mark is None:
            self._wall_mark = time.perf_counter()
        if not self.state.history:
            self.validate()
        ckpt = load_checkpoint(self.out / "model.pt")
        best = build_model(self.components, ckpt, self.device)
        val_loss = evaluate_nll(best, self.data.valid, batch_size=self.config.eval_batch_size, bptt=self.config.bptt)
        self._tick()
        metrics = self._write_metrics(
            final=True,
            extra={"val_ppl": math.exp(val_loss), "val_loss": val_loss, "val_ppl_scope": "validation split"},
        )
        ckpt["meta"].update(val_ppl=math.exp(val_loss), val_loss=val_loss, final=True)
        atomic_torch_save(ckpt, self.out / "model.pt")
        self.log(f"done: validation perplexity {metrics['val_ppl']:.2f} ({self.state.tokens:,} training tokens)")
        return metrics


def train(
    config: TrainConfig,
    components: ModuleType | None,
    out_dir: str | Path,
    *,
    run_data: RunData | None = None,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Trains a run folder to its end (resuming it when it has a checkpoint); returns ``metrics.json``."""
    return Trainer(config, components, out_dir, run_data=run_data, resume=resume, progress=progress, log=log).run()

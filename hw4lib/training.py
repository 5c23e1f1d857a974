"""The training loop: presets, progress, validation, NT-ASGD, checkpoints and resume.

It drives the student's (or the reference's) components and never re-implements them: it calls the
``LanguageModelDataLoader``, ``train_batch`` and ``NTASGD`` of a module built by
:func:`hw4lib.components.load_components`.

A run folder holds ``checkpoint.pt`` (everything needed to resume: live weights, optimizer, random states,
position in the epoch, hidden state), ``model.pt`` (the best model so far: the weights the best check scored, which
are NT-ASGD's average of the iterates once its trigger has fired and the live weights before; what evaluation,
generation and the autograder use), ``metrics.json`` and ``train.log``. Checkpoints are written
at every validation check; a run killed at any moment resumes from the last one and ends exactly where an
uninterrupted run ends.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hw4lib import data as corpora
from hw4lib.checkpoint import atomic_torch_save, build_model, load_checkpoint, safe_load, save_model
from hw4lib.cpu_runtime import precision_context, resolve_precision, set_threads, tune_malloc
from hw4lib.errors import HW4Error
from hw4lib.files import atomic_write_json
from hw4lib.perplexity import evaluate_nll

# Settings that may change between a run and its resumption without changing what the run computes.
RESUMABLE_CHANGES = {"epochs", "time_budget_min", "wall_budget_min", "device", "progress_every", "preset", "threads"}
ARCHITECTURES = ("awd", "plain")


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the paper's WikiText-2 settings (Merity et al. 2017)."""

    dataset: str = "wikitext2"
    # model
    embed_size: int = 400
    hidden_size: int = 1150
    num_layers: int = 3
    dropout: float = 0.4
    dropouth: float = 0.2
    dropouti: float = 0.65
    dropoute: float = 0.1
    wdrop: float = 0.5
    tie_weights: bool = True
    # optimization
    lr: float = 30.0
    batch_size: int = 80
    bptt: int = 70
    # The loader's variable window length (stage 1): a full-length window with probability bptt_p_full, else half;
    # then N(that, bptt_std). bptt_p_full=1 with bptt_std=0 gives fixed windows (the ablation's "- variable BPTT").
    bptt_p_full: float = 0.95
    bptt_std: float = 5.0
    epochs: int = 750
    clip: float = 0.25
    alpha: float = 2.0
    beta: float = 1.0
    weight_decay: float = 1.2e-6
    nonmono: int = 5
    seed: int = 1882
    # schedule and size
    eval_interval: int | None = None  # training batches between validation checks; None: once per epoch
    eval_tokens: int | None = None  # validation tokens used by the periodic checks; None: all of them
    eval_batch_size: int = 10
    max_train_tokens: int | None = None  # a slice of the training split (quick runs, tests)
    max_valid_tokens: int | None = None  # a slice of the validation split for the final score
    time_budget_min: float | None = None  # stop after this much time spent in training steps (summed over resumes)
    # Stop in time for everything to end within this many minutes on the wall clock: training, the periodic checks
    # and the final evaluation (summed over resumes; the minutes between a kill and the resume do not count).
    wall_budget_min: float | None = None
    eval_every_min: float | None = None  # a validation check every this many wall-clock minutes (with eval_interval)
    # The last this fraction of the wall-clock training time lowers the learning rate linearly to 0 (needs
    # wall_budget_min). A budget that ends before NT-ASGD's trigger fires never averages; the decay buys the drop
    # that averaging would have bought. 0: the paper's constant rate.
    lr_decay_frac: float = 0.0
    device: str = "auto"
    # "fp32", "bf16" (autocast; CPU only with native bf16, see hw4lib.cpu_runtime) or "auto" (bf16 where native)
    precision: str = "fp32"
    threads: int | None = None  # torch intra-op threads; None: torch's default (one per core)
    architecture: str = "awd"  # "awd": the course's components; "plain": hw4lib.baseline (no components needed)
    preset: str | None = None  # the preset's name (a label: get_preset sets it)
    progress_every: int = 50  # batches between log lines

    def model_config(self, vocab_size: int) -> dict[str, Any]:
        """The ``LanguageModel`` constructor arguments (of ``PlainLSTM`` for the ``plain`` architecture)."""
        if self.architecture == "plain":
            return {"vocab_size": vocab_size, "embed_size": self.embed_size, "hidden_size": self.hidden_size,
                    "num_layers": self.num_layers, "dropout": self.dropout, "tie_weights": self.tie_weights}
        return {
            "vocab_size": vocab_size,
            "embed_size": self.embed_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "dropouth": self.dropouth,
            "dropouti": self.dropouti,
            "dropoute": self.dropoute,
            "wdrop": self.wdrop,
            "tie_weights": self.tie_weights,
        }


#: An evaluated token (forward only, batch 10, fp32) costs about half a training token's seconds (forward, backward
#: and the update, batch 20, in the run's precision): the `cpu` preset's measured runs give 0.3 to 0.6. Used only until
#: the first check measures the evaluation itself.
EVAL_PER_TRAIN_TOKEN = 0.5
PACE_AFTER_STEPS = 50

PRESETS: dict[str, dict[str, Any]] = {
    # CI and first contact: a small model on a WikiText-2 slice, under a minute on 2 CPU cores.
    "quick": dict(
        embed_size=64, hidden_size=128, num_layers=3, batch_size=16, bptt=35, epochs=2, lr=30.0,
        dropout=0.1, dropouth=0.1, dropouti=0.1, dropoute=0.0, wdrop=0.1, alpha=2.0, beta=1.0,
        max_train_tokens=40_000, max_valid_tokens=10_000, eval_batch_size=10, progress_every=20,
    ),
    # A student laptop (2 cores, no GPU): 60 minutes on the wall clock, checks and the final evaluation included.
    # Tuned for perplexity per CPU minute (docs/training.md, "Tuning the cpu preset"): two layers, short windows
    # (more updates per minute), light dropouts, a higher rate, and the rate decayed to 0 over the last 30% of the
    # budget, where the paper's averaging would come but NT-ASGD's trigger has not fired yet.
    # bf16 autocast where the CPU runs it natively (else fp32).
    "cpu": dict(
        embed_size=200, hidden_size=400, num_layers=2, batch_size=20, bptt=35, epochs=100, lr=45.0,
        dropout=0.1, dropouth=0.05, dropouti=0.1, dropoute=0.02, wdrop=0.1, nonmono=5,
        eval_interval=600, eval_tokens=40_000, wall_budget_min=60.0, lr_decay_frac=0.3, precision="auto",
    ),
    # The baseline: a plain 2 x 200 LSTM shaped like PyTorch's word-language-model example (hw4lib.baseline),
    # on the same wall-clock budget and checking slice as `cpu`, checks every 5 minutes.
    "plain": dict(
        architecture="plain", embed_size=200, hidden_size=200, num_layers=2, tie_weights=False, dropout=0.2,
        dropouth=0.0, dropouti=0.0, dropoute=0.0, wdrop=0.0, alpha=0.0, beta=0.0, weight_decay=0.0,
        lr=20.0, clip=0.25, batch_size=20, bptt=35, epochs=100, eval_tokens=40_000, eval_every_min=5.0,
        wall_budget_min=60.0, precision="fp32",
    ),
    # Zaremba et al. (2014), "Recurrent neural network regularization", medium model: dropout 0.5 on the
    # non-recurrent connections only, 2 x 650, untied; the plain baseline's trainer and schedule (SGD lr 20 on the
    # mean loss, divided by 4 when a check does not improve, clip 0.25: PyTorch's example's form of their setting).
    "zaremba": dict(
        architecture="plain", embed_size=650, hidden_size=650, num_layers=2, tie_weights=False, dropout=0.5,
        dropouth=0.0, dropouti=0.0, dropoute=0.0, wdrop=0.0, alpha=0.0, beta=0.0, weight_decay=0.0,
        lr=20.0, clip=0.25, batch_size=20, bptt=35, epochs=100, eval_tokens=40_000, eval_every_min=5.0,
        wall_budget_min=60.0, precision="fp32",
    ),
    # The paper, for one GPU (WikiText-2 values; PTB overrides below).
    "paper": dict(),
}
DATASET_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("paper", "ptb"): dict(batch_size=40, dropouti=0.4, dropouth=0.25, epochs=500, seed=141),
}


def get_preset(name: str, dataset: str = "wikitext2", **overrides: Any) -> TrainConfig:
    """The named preset for a dataset, with optional overrides (``None`` values are ignored)."""
    if name not in PRESETS:
        raise HW4Error(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    values = {**PRESETS[name], **DATASET_OVERRIDES.get((name, dataset), {}), "dataset": dataset, "preset": name}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def take_tokens(articles: Sequence[np.ndarray], max_tokens: int | None) -> list[np.ndarray]:
    """The first ``max_tokens`` tokens of a split, keeping article boundaries (the last one cut)."""
    if max_tokens is None:
        return list(articles)
    taken, left = [], max_tokens
    for article in articles:
        if left <= 0:
            break
        taken.append(article[:left])
        left -= len(taken[-1])
    return taken


@dataclass
class RunData:
    """What a run trains and validates on."""

    train: list[np.ndarray]
    valid: list[np.ndarray]
    vocab_size: int

    @classmethod
    def from_dataset(cls, config: TrainConfig) -> RunData:
        vocab = corpora.load_vocab(config.dataset)
        return cls(
            train=take_tokens(corpora.load_split(config.dataset, "train"), config.max_train_tokens),
            valid=take_tokens(corpora.load_split(config.dataset, "valid"), config.max_valid_tokens),
            vocab_size=len(vocab),
        )


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


def components_for(config: TrainConfig, components: ModuleType | None) -> ModuleType:
    """What the trainer drives: the given components for the AWD-LSTM, :mod:`hw4lib.baseline` for ``plain``."""
    if config.architecture not in ARCHITECTURES:
        raise HW4Error(f"unknown architecture {config.architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if config.architecture == "plain":
        from hw4lib import baseline

        return baseline.components()  # type: ignore[return-value]
    if components is None:
        raise HW4Error("the awd architecture trains the course's components: pass them (load_components(...))")
    return components


def _config_from_saved(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with the settings it predates filled in with their defaults."""
    defaults = asdict(TrainConfig())
    return {**defaults, **saved}


class Trainer:
    """One run in one folder. ``run()`` trains until the epochs or a time budget are used up."""

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

    # ----------------------------------------------------------------------------------------------- logging
    def log(self, message: str) -> None:
        with open(self._log_file, "a") as fh:
            fh.write(message + "\n")
        self._echo(message)

    # ------------------------------------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        ckpt = safe_load(self.out / "checkpoint.pt", "training checkpoint")
        saved = _config_from_saved(ckpt.get("config", {}))
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

    # ------------------------------------------------------------------------------------------- wall clock
    def _tick(self) -> float:
        """Brings ``state.wall_s`` up to now and returns it. The clock runs only inside :meth:`run`."""
        now = time.perf_counter()
        if self._wall_mark is not None:
            self.state.wall_s += now - self._wall_mark
        self._wall_mark = now
        return self.state.wall_s

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

    # ----------------------------------------------------------------------------------------- validation
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

    # ------------------------------------------------------------------------------------------- training
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

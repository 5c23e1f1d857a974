"""What a run is before it starts: every setting (``TrainConfig``), the named presets, and the data and device they
resolve to. The presets are the lab's choices (docs/training.md says why each value); the trainer only reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from hw4lib import data as corpora
from hw4lib.errors import HW4Error

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
    architecture: str = "awd"  # "awd": the course's components; "plain": hw4lib.lab.baseline (no components needed)
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
    # The baseline: a plain 2 x 200 LSTM shaped like PyTorch's word-language-model example (hw4lib.lab.baseline),
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


def config_from_saved(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with the settings it predates filled in with their defaults."""
    defaults = asdict(TrainConfig())
    return {**defaults, **saved}


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



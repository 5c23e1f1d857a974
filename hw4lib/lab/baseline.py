"""The baseline a student would otherwise pick: a plain LSTM language model, trained by plain SGD.

Its shape follows the small configuration of PyTorch's word-language-model example (written here from the
description, not copied): an embedding of 200, two ``nn.LSTM`` layers of 200 in one module, an untied linear
decoder, dropout 0.2 on the non-recurrent connections only (after the embedding, between the layers, before the
decoder), weights drawn from U(-0.1, 0.1); SGD at learning rate 20 divided by 4 whenever a validation check does
not improve on the best one, gradient norm clipped at 0.25, batches of 20 columns read in order in fixed windows
of 35 tokens with the hidden state carried over. No weight dropout, no embedding dropout, no AR/TAR, no
averaging, no weight decay.

It needs none of the course's components: this module provides the four names the trainer drives
(``LanguageModel``, ``NTASGD``, ``LanguageModelDataLoader``, ``train_batch``) with the same calling conventions,
so ``python -m hw4lib train --preset plain`` runs through the same trainer, checkpoints, wall-clock budget and
metrics as the AWD-LSTM, which is what makes the two runs' curves comparable.

The one departure from the example: it anneals after each epoch; here the trainer's checks (on a wall-clock
cadence, see the ``plain`` preset) decide, so the annealing follows the same checks the curve is drawn from.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class PlainLSTM(nn.Module):
    """Embedding -> dropout -> multi-layer ``nn.LSTM`` (dropout between layers) -> dropout -> linear decoder.

    ``forward(inputs (T, B), hidden)`` returns ``(logits (T, B, V), hidden)``, the convention
    :func:`hw4lib.perplexity.evaluate_nll` reads. Keyword arguments of the AWD-LSTM that do not apply
    (``dropouth``, ``dropouti``, ``dropoute``, ``wdrop``) are accepted and must be zero or absent.
    """

    def __init__(self, vocab_size: int, embed_size: int = 200, hidden_size: int = 200, num_layers: int = 2,
                 dropout: float = 0.2, tie_weights: bool = False) -> None:
        super().__init__()
        if tie_weights and embed_size != hidden_size:
            raise ValueError("tied weights need embed_size == hidden_size")
        self.vocab_size, self.embed_size, self.hidden_size, self.num_layers = (
            vocab_size, embed_size, hidden_size, num_layers)
        self.dropout, self.tie_weights = dropout, tie_weights
        self.encoder = nn.Embedding(vocab_size, embed_size)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.LSTM(embed_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        else:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_hidden(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        w = self.encoder.weight
        shape = (self.num_layers, batch_size, self.hidden_size)
        return [(w.new_zeros(shape), w.new_zeros(shape))]

    def forward(self, inputs: torch.Tensor, hidden: Any = None) -> tuple[torch.Tensor, Any]:
        """The hidden state is a list holding one ``(h, c)`` pair of shape (layers, B, H): the same list-of-pairs
        form as the AWD-LSTM's, so the trainer detaches, saves and restores both alike."""
        if hidden is None:
            hidden = self.init_hidden(inputs.size(1))
        out, state = self.rnn(self.drop(self.encoder(inputs)), tuple(hidden[0]))
        return self.decoder(self.drop(out)), [state]


class PlateauSGD:
    """Plain SGD whose rate is divided by ``factor`` whenever a check does not beat the best so far.

    It speaks the trainer's optimizer protocol (the one ``NTASGD`` follows): ``zero_grad``, ``step(lr_scale)``,
    ``record(val_loss) -> bool`` (always ``False``: it never switches to averaging), ``averaged()`` (a null
    context), ``state_dict``/``load_state_dict``, ``averaging`` and ``trigger_step``.
    """

    def __init__(self, params, lr: float, nonmono: int = 0, weight_decay: float = 0.0, factor: float = 4.0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.factor, self.weight_decay = lr, factor, weight_decay
        self.nonmono = nonmono  # unused; kept so the trainer can build either optimizer the same way
        self.best = math.inf
        self.anneals: list[int] = []  # the steps at which the rate was divided
        self.steps = 0
        self.averaging = False
        self.trigger_step = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr_scale: float = 1.0) -> None:
        rate = self.lr * lr_scale
        for p in self.params:
            if p.grad is None:
                continue
            grad = p.grad if not self.weight_decay else p.grad.add(p, alpha=self.weight_decay)
            p.add_(grad, alpha=-rate)
        self.steps += 1

    def record(self, val_loss: float) -> bool:
        if val_loss < self.best:
            self.best = float(val_loss)
        else:
            self.lr /= self.factor
            self.anneals.append(self.steps)
        return False

    @contextlib.contextmanager
    def averaged(self):
        yield

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "best": self.best, "anneals": list(self.anneals), "steps": self.steps,
                "factor": self.factor, "weight_decay": self.weight_decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr, self.best, self.anneals = state["lr"], state["best"], list(state["anneals"])
        self.steps, self.factor, self.weight_decay = state["steps"], state["factor"], state["weight_decay"]


class ContiguousLoader:
    """The split as one running text in its given order, cut into ``batch_size`` columns, read in fixed windows
    of ``bptt`` rows (the last one shorter): yields ``(inputs, targets, seq_len)`` like the course's loader.
    ``shuffle`` and ``seed`` are accepted for the trainer's sake; the text is never shuffled (as in the example)."""

    def __init__(self, dataset: Sequence[np.ndarray], batch_size: int, bptt: int = 35, shuffle: bool = False,
                 seed: int = 0) -> None:
        stream = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.int64) for a in dataset]))
        rows = len(stream) // batch_size
        self.columns = stream[: rows * batch_size].view(batch_size, rows).t().contiguous()
        self.batch_size, self.bptt, self.epoch = batch_size, bptt, 0

    def __len__(self) -> int:
        return max(1, math.ceil((self.columns.size(0) - 1) / self.bptt))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        rows = self.columns.size(0)
        for i in range(0, rows - 1, self.bptt):
            seq_len = min(self.bptt, rows - 1 - i)
            yield self.columns[i : i + seq_len], self.columns[i + 1 : i + 1 + seq_len], seq_len
        self.epoch += 1


def plain_train_batch(model: nn.Module, optimizer: PlateauSGD, inputs: torch.Tensor, targets: torch.Tensor, hidden: Any,
                seq_len: int, bptt: int, alpha: float = 0.0, beta: float = 0.0, clip: float = 0.25
                ) -> tuple[float, Any]:
    """One step of truncated BPTT: cross-entropy, backward, clipping, SGD. ``alpha``/``beta`` (AR/TAR) must be 0:
    the baseline has no activation regularization. Returns (the loss as a float, the detached hidden state)."""
    if alpha or beta:
        raise ValueError("the plain LSTM baseline has no AR/TAR: alpha and beta must be 0")
    model.train()
    if hidden is not None:
        hidden = [tuple(t.detach() for t in pair) for pair in hidden]
    optimizer.zero_grad()
    logits, hidden = model(inputs, hidden)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(optimizer.params, clip)
    optimizer.step()  # fixed windows: no rate scaling by length (the example does none)
    return loss.item(), [tuple(t.detach() for t in pair) for pair in hidden]


def components() -> SimpleNamespace:
    """The baseline under the names the trainer drives (in place of the course's components)."""
    return SimpleNamespace(
        __name__="hw4lib.lab.baseline", LanguageModel=PlainLSTM, NTASGD=PlateauSGD,
        LanguageModelDataLoader=ContiguousLoader, train_batch=plain_train_batch,
    )

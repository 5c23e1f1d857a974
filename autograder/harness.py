"""Deterministic test inputs and stand-in objects shared by the probe (in the sandbox) and the judge.

Both sides rebuild the same inputs from the per-grading seed, so the probe never has to send inputs back and
the judge never trusts an input the sandbox reports. The stand-ins (a tiny language model, a recording
optimizer) let ``train_batch`` and ``prediction``/``generation`` be graded on their own, independent of the
student's model and optimizer, against the reference run on the very same stand-in.
This module is copied into the sandbox: it must hold no checks and no reference code.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def generator(seed: int, salt: int) -> torch.Generator:
    """A generator for one purpose (salt) of one grading run (seed)."""
    return torch.Generator().manual_seed(seed * 1000 + salt)


def articles(seed: int, n: int, low: int, high: int) -> list:
    """n articles of random lengths whose tokens are all distinct (token id = position in the corpus)."""
    g = generator(seed, 1)
    lengths = torch.randint(low, high, (n,), generator=g).tolist()
    out, start = [], 0
    for length in lengths:
        out.append(torch.arange(start, start + length, dtype=torch.int64).numpy())
        start += length
    return out


def dropout_input(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Strictly positive values, so output / input reveals the mask exactly."""
    return torch.rand(shape, generator=generator(seed, 2)) + 0.5


class TinyLM(nn.Module):
    """A stand-in with the LanguageModel interface: forward -> (logits, hidden, raw_outputs, dropped_outputs).

    In training mode its 'dropout' is a fixed mask, so the output is deterministic but differs from eval mode,
    which shows whether a function switched the model to eval.
    """

    def __init__(self, vocab_size: int = 23, embed_size: int = 6, hidden_size: int = 8, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.encoder = nn.Embedding(vocab_size, embed_size)
            self.rnn = nn.LSTM(embed_size, hidden_size)
            self.decoder = nn.Linear(hidden_size, vocab_size)
            mask = (torch.rand(1, 1, hidden_size) > 0.3).float() / 0.7
        self.register_buffer("mask", mask)
        self.vocab_size = vocab_size

    def init_hidden(self, batch_size: int) -> list:
        h = self.decoder.weight.new_zeros(1, batch_size, self.rnn.hidden_size)
        return [(h, h.clone())]

    def forward(self, inputs, hidden=None):
        if hidden is None:
            hidden = self.init_hidden(inputs.size(1))
        raw, h = self.rnn(self.encoder(inputs), hidden[0])
        dropped = raw * self.mask if self.training else raw
        return self.decoder(dropped), [h], [raw], [dropped]


class RecordingOptimizer:
    """Plain SGD that records, at each step, the gradients it saw and the lr_scale it was given."""

    def __init__(self, params, lr: float = 0.5):
        self.params = list(params)
        self.lr = lr
        self.steps: list[dict] = []

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, lr_scale: float = 1.0) -> None:
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in self.params]
        self.steps.append({"lr_scale": float(lr_scale), "grads": grads})
        with torch.no_grad():
            for p, g in zip(self.params, grads, strict=False):
                p.sub_(self.lr * float(lr_scale) * g)


def train_batch_inputs(seed: int) -> dict:
    """Inputs, targets and an incoming hidden state (attached to a graph) for one train_batch call."""
    g = generator(seed, 3)
    T, B, V = 9, 4, 23
    inputs = torch.randint(0, V, (T, B), generator=g)
    targets = torch.randint(0, V, (T, B), generator=g)
    return {"inputs": inputs, "targets": targets, "seq_len": T, "bptt": 12, "model_seed": seed % 9973}


def lm_config() -> dict:
    """A small LanguageModel configuration (3 layers, tied weights) for the language_model part."""
    return {"vocab_size": 37, "embed_size": 10, "hidden_size": 14, "num_layers": 3, "dropout": 0.4,
            "dropouth": 0.3, "dropouti": 0.5, "dropoute": 0.1, "wdrop": 0.5, "tie_weights": True}


def nt_asgd_sequences(seed: int) -> list[tuple[int, list[float]]]:
    """Scripted validation-loss sequences (nonmono, losses): edge cases at the trigger boundary, then random."""
    fixed = [
        (3, [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]),
        (3, [5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.45, 0.3, 0.35, 0.36, 0.37, 0.6]),
        (5, [4.0, 3.0, 3.5, 2.0, 2.5, 2.6, 2.7, 3.1, 3.0, 3.2]),
        (2, [3.0, 3.0, 3.0, 3.0, 3.0]),
    ]
    g = generator(seed, 4)
    rand = [(int(torch.randint(1, 6, (1,), generator=g)), (torch.rand(14, generator=g) * 3 + 1).tolist())
            for _ in range(4)]
    return fixed + rand




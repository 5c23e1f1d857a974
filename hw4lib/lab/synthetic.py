"""A corpus whose true perplexity is known: proof that the whole training pipeline learns.

Sentences are ``open_k w w ... w close_k <eos>``: an opener ``open_k`` (``k`` uniform over ``n_pairs``), then
at each step either the matching closer ``close_k`` (probability ``close_prob``) or a filler word drawn from a
Zipf distribution, and ``<eos>`` after the closer. Predicting the closer needs the opener, a dependency across
``1 / close_prob`` tokens on average, so a model that forgets gets a measurably worse perplexity.

Entropy rate (renewal-reward: expected surprisal per sentence over expected tokens per sentence), for a model
that knows the grammar and remembers the opener:

* after ``<eos>``: the opener, ``log K``;
* each middle step: ``H_step = h(q) + (1 - q) H(p)`` (``h`` the binary entropy, ``p`` the filler distribution);
  the number of middle steps is geometric with mean ``1 / q``;
* ``<eos>`` after the closer: 0.

so ``rate = (log K + H_step / q) / (2 + 1 / q)`` nats per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BracketGrammar:
    n_pairs: int = 8
    n_fillers: int = 32
    close_prob: float = 0.2
    zipf: float = 1.0

    @property
    def vocab(self) -> list[str]:
        return (
            ["<eos>"]
            + [f"open{k}" for k in range(self.n_pairs)]
            + [f"close{k}" for k in range(self.n_pairs)]
            + [f"w{j}" for j in range(self.n_fillers)]
        )

    @property
    def filler_probs(self) -> np.ndarray:
        weights = 1.0 / np.arange(1, self.n_fillers + 1) ** self.zipf
        return weights / weights.sum()

    def entropy_rate(self) -> float:
        """The true entropy rate in nats per token (see the module docstring)."""
        q, p = self.close_prob, self.filler_probs
        binary = -q * math.log(q) - (1 - q) * math.log(1 - q)
        h_step = binary + (1 - q) * float(-(p * np.log(p)).sum())
        return (math.log(self.n_pairs) + h_step / q) / (2 + 1 / q)

    def perplexity(self) -> float:
        """The best perplexity any model can reach on long samples."""
        return math.exp(self.entropy_rate())

    def sample(self, n_tokens: int, seed: int = 0) -> np.ndarray:
        """About ``n_tokens`` token ids (whole sentences), reproducible from ``seed``."""
        rng = np.random.default_rng(seed)
        eos, first_open, first_close, first_filler = 0, 1, 1 + self.n_pairs, 1 + 2 * self.n_pairs
        cdf = np.cumsum(self.filler_probs)
        out: list[int] = []
        while len(out) < n_tokens:
            k = int(rng.integers(self.n_pairs))
            out.append(first_open + k)
            while rng.random() >= self.close_prob:
                out.append(first_filler + int(np.searchsorted(cdf, rng.random(), side="right").clip(max=len(cdf) - 1)))
            out.extend((first_close + k, eos))
        return np.asarray(out, dtype=np.int64)

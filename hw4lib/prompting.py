"""Typed prompt in, continuation out: the one path from words to a student's ``generation`` and back.

The ``generate`` CLI and the notebook's generation widget (:func:`hw4lib.viz.generator_widget`) both call
:func:`continue_prompt`, so a prompt maps to the same ids, and a seed to the same text, in both places.
Nothing here generates: the student's ``generation`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from hw4lib.errors import HW4Error

UNK = "<unk>"


@dataclass(frozen=True)
class Prompt:
    """A prompt split into words, their ids, and the words the vocabulary does not know (each once, in order)."""

    words: tuple[str, ...]
    ids: tuple[int, ...]
    unknown: tuple[str, ...]


@dataclass(frozen=True)
class Continuation:
    prompt: Prompt
    ids: tuple[int, ...]
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def unknown_note(self) -> str | None:
        """One sentence naming the prompt's unknown words, or None when the vocabulary knew them all."""
        if not self.prompt.unknown:
            return None
        listed = ", ".join(f"'{w}'" for w in self.prompt.unknown)
        return f"not in the vocabulary, read as {UNK}: {listed}"


def encode_prompt(prompt: str | Sequence[str], vocab: Sequence[str] | np.ndarray) -> Prompt:
    """Splits ``prompt`` on whitespace (or takes its words as given) and maps each word to its id in ``vocab``;
    words outside the vocabulary map to ``<unk>``. Matching is exact: WikiText-2 keeps case (``The`` and ``the``
    are different words)."""
    words = prompt.split() if isinstance(prompt, str) else [str(w) for w in prompt]
    if not words:
        raise HW4Error("the prompt is empty: type some words")
    index = {str(word): i for i, word in enumerate(vocab.tolist() if isinstance(vocab, np.ndarray) else vocab)}
    unknown = list(dict.fromkeys(w for w in words if w not in index))
    if unknown and UNK not in index:
        raise HW4Error(f"{', '.join(unknown)}: not in the vocabulary, which has no {UNK} to stand for them")
    ids = tuple(index[w] if w in index else index[UNK] for w in words)
    return Prompt(tuple(words), ids, tuple(unknown))


def continue_prompt(
    model: nn.Module,
    vocab: Sequence[str] | np.ndarray,
    generation: Callable[..., torch.Tensor],
    prompt: str | Sequence[str],
    n_words: int,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
) -> Continuation:
    """Continues ``prompt`` by ``n_words`` words with ``generation(model, inputs (T, 1), n_words, ...)``.

    Sampling draws from a ``torch.Generator`` seeded with ``seed`` on every call, so the same settings give the
    same words (and no other code's draws from torch's global generator change them).
    """
    if n_words < 1:
        raise HW4Error(f"n_words is {n_words}: ask for at least one word")
    if not greedy and not temperature > 0:
        raise HW4Error(f"temperature is {temperature}: it divides the logits, so it must be > 0")
    if top_k is not None and not 1 <= top_k <= len(vocab):
        raise HW4Error(f"top_k is {top_k}: use None (all words) or a number from 1 to {len(vocab)}")
    encoded = encode_prompt(prompt, vocab)
    device = next(model.parameters()).device
    inputs = torch.tensor(encoded.ids, dtype=torch.long, device=device).view(-1, 1)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = generation(model, inputs, n_words, greedy=greedy, temperature=temperature, top_k=top_k,
                     generator=generator)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, n_words):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise HW4Error(f"generation returned {shape} for one prompt and {n_words} words; expected (1, {n_words})")
    ids = tuple(int(i) for i in out[0].tolist())
    if any(not 0 <= i < len(vocab) for i in ids):
        raise HW4Error(f"generation returned ids outside the vocabulary (0 to {len(vocab) - 1})")
    return Continuation(encoded, ids, tuple(str(vocab[i]) for i in ids))

"""The properties of every graded part, in one place, used by both the visible checks and the autograder's judge.

One module per stage (``loader``, ``dropout``, ``weight_drop``, ``model``, ``trainer``, ``nt_asgd``,
``generation``, ``cache_pointer``), each listing its parts' promises from docs/components.md as small pure
functions; see ``core`` for what a property is. ``PARTS`` maps every graded part (the optional ones included) to
its :class:`~hw4lib.properties.core.Part`.
"""

from __future__ import annotations

from hw4lib.properties import cache_pointer, dropout, generation, loader, model, nt_asgd, trainer, weight_drop
from hw4lib.properties.core import Part, Property

PARTS: dict[str, Part] = {
    part.name: part
    for part in (loader.PART, dropout.LOCKED, dropout.EMBED, weight_drop.PART, model.PART, trainer.PENALTIES,
                 trainer.STEP, nt_asgd.PART, generation.PART, cache_pointer.PART)
}

__all__ = ["PARTS", "Part", "Property"]

"""Training a language model: ``train(get_preset("cpu"), components, "runs/me")`` trains a run folder to its end.

Stage 7 and the ``python -m hw4lib train`` command use it; so do the ablation, the fine-tuning and the benchmarks.
It is four pieces, each one sitting's read:

=============== ===================================================================================================
``presets``     every setting of a run (``TrainConfig``), the named presets, the data and device they resolve to
``loop``        ``Trainer``: the loop over batches, from the first one (or the checkpoint) to the final score
``clock``       the wall-clock budget, when checks are due, the learning rate's budget-aware decay
``checkpoints`` a check (score, keep the best as ``model.pt``, feed NT-ASGD's trigger), ``checkpoint.pt``, resume
=============== ===================================================================================================

A run folder holds ``checkpoint.pt`` (everything needed to resume: live weights, optimizer, random states,
position in the epoch, hidden state), ``model.pt`` (the best model so far: the weights the best check scored, which
are NT-ASGD's average of the iterates once its trigger has fired and the live weights before; what evaluation,
generation and the autograder use), ``metrics.json`` and ``train.log``. Checkpoints are written
at every validation check; a run killed at any moment resumes from the last one and ends exactly where an
uninterrupted run ends.
"""

from hw4lib.lab.training.loop import Trainer, components_for, train
from hw4lib.lab.training.presets import (
    ARCHITECTURES,
    DATASET_OVERRIDES,
    PRESETS,
    RunData,
    TrainConfig,
    config_from_saved,
    get_preset,
    resolve_device,
    take_tokens,
)

__all__ = [
    "ARCHITECTURES", "DATASET_OVERRIDES", "PRESETS", "RunData", "TrainConfig", "Trainer", "components_for",
    "config_from_saved", "get_preset", "resolve_device", "take_tokens", "train",
]

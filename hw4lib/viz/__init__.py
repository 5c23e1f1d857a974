"""Pictures and widgets for the teaching notebooks: ``from hw4lib import viz``, then ``viz.dropout_widget(...)``.

Every function that runs a student's component catches ``NotImplementedError`` and says the picture appears
once the component is written, so a fresh release runs top to bottom. Randomness is seeded. Nothing here
implements a component: the pictures either draw the idea with numpy or run the student's own code.

The static pictures live with their stages; the interactive ones apart, because they alone need a live kernel:

================ ==================================================================================================
``corpus``       stages 0 and 1: Zipf, article lengths, overfitting without regularization, windows and batches
``dropout``      stages 2 to 4: locked, embedding and weight dropout masks, ``weight_hh_l0``, the fused LSTM's speed
``optimization`` stages 5 to 7: AR/TAR, clipping, NT-ASGD's trigger, the measured curves, the learning-rate schedule
``sampling``     stages 7 and 8: temperature and top-k, the continuous cache pointer
``widgets``      ipywidgets: stage 2's mask sliders, stage 7's generator
================ ==================================================================================================

Part of the student's library: it imports ``hw4lib``'s own modules only, never ``hw4lib.lab``.
"""

from hw4lib.viz.corpus import (
    batch_layout_plot,
    length_histogram,
    overfit_plot,
    positions_in_window,
    token_frequency_plot,
    window_length_density,
    window_positions_plot,
)
from hw4lib.viz.dropout import (
    embedding_dropout_demo,
    gate_blocks_plot,
    idea_masks,
    idea_weight_drop,
    lstm_with_weight,
    mask_figure,
    sentence_ids,
    student_mask,
    time_lstm,
    timing_plot,
    weight_drop_heatmaps,
)
from hw4lib.viz.optimization import (
    activation_plot,
    clipping_demo,
    lr_schedule_plot,
    measured_curves_plot,
    ntasgd_demo,
    trigger_picture,
    trigger_table,
)
from hw4lib.viz.sampling import (
    cache_grid_plot,
    cache_scores_picture,
    find_repeat,
    sampling_distribution_plot,
)
from hw4lib.viz.widgets import (
    continuation_html,
    dropout_widget,
    generator_widget,
)

__all__ = [
    "activation_plot",
    "batch_layout_plot",
    "cache_grid_plot",
    "cache_scores_picture",
    "clipping_demo",
    "continuation_html",
    "dropout_widget",
    "embedding_dropout_demo",
    "find_repeat",
    "gate_blocks_plot",
    "generator_widget",
    "idea_masks",
    "idea_weight_drop",
    "length_histogram",
    "lr_schedule_plot",
    "lstm_with_weight",
    "mask_figure",
    "measured_curves_plot",
    "ntasgd_demo",
    "overfit_plot",
    "positions_in_window",
    "sampling_distribution_plot",
    "sentence_ids",
    "student_mask",
    "time_lstm",
    "timing_plot",
    "token_frequency_plot",
    "trigger_picture",
    "trigger_table",
    "weight_drop_heatmaps",
    "window_length_density",
    "window_positions_plot",
]

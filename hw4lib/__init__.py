"""hw4lib: the infrastructure of the AWD-LSTM course (data, component loader, perplexity, training, CLI).

It holds no solution code: the graded components live in the notebooks and are loaded with
:func:`hw4lib.components.load_components`.
"""

__version__ = "0.1.0"

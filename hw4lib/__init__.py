"""hw4lib: the student's library. What a stage notebook imports to load, check, picture and score its components.

Students (their notebooks), the grader (``autograder/``, and its sandbox, which holds this folder only) and the
lab's tools (``hw4lib.lab``) import it. A student's server on the hub sees this folder and nothing else of the
clone, so a release ships it whole.

=================== ================================================================================================
``data``            the corpora: download with checksums, the course's token streams, ``python -m hw4lib data``
``components``      loads the graded cells of a set of notebooks as one module (the only loader of notebook code)
``checks``          the visible checks each stage runs, with the same ``properties`` the grader judges
``properties/``     the promises of docs/components.md, one module per stage, as small functions of an observation
``viz/``            the stages' pictures and the two widgets
``perplexity``      the one perplexity function of notebooks, CLI, benchmarks and grader
``prompting``       a prompt's words to ids and a continuation back to words (the generator widget and the CLI)
``checkpoint``      ``model.pt``: saving it, and loading it without unpickling code
``cpu_runtime``     threads, malloc, bf16: what both the trainer and the grader set before heavy work
``files``, ``config``, ``errors``  atomic writes and the measured numbers; quick mode; the one error type
=================== ================================================================================================

It holds no solution code: the graded components live in the notebooks and are loaded with
:func:`hw4lib.components.load_components`. It must never import ``hw4lib.lab``, ``autograder``, ``deploy`` or
``solutions/`` (``tests/test_layout.py`` checks the imports): a change to the lab cannot break what students run.
The one exception is ``__main__``, the ``python -m hw4lib`` command, which hands over to ``hw4lib.lab.cli``.
"""

__version__ = "0.1.0"

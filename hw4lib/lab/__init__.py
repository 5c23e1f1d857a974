"""The lab's tools: training and measuring, for the command line, stages 7 to 9, the docs' numbers and the
instructor.

Students meet them as commands (``python -m hw4lib train``, ``bench``, ``curves``, ``cache``, ``finetune``) and in
stage 7 (``training``, ``plots``), stage 8 (``cache_pointer``) and stage 9 (``ablation``, ``curves``); nothing a
student writes calls them, and the grader never imports them.

=================== ================================================================================================
``training/``       the trainer: presets, the loop, the wall-clock budget and schedule, checks and resume
``cli``, ``runs``   ``python -m hw4lib``: its sub-commands ``train``, ``evaluate``, ``generate``, ``finetune``
``baseline``        the plain LSTM (``--preset plain``) the AWD-LSTM is compared with, on the same trainer
``bench``           side-by-side speed ratios against a plain ``nn.LSTM`` stack (BENCHMARKS.md)
``curves``, ``plots``  perplexity against wall-clock minutes of several runs; one run's training curves
``ablation``        the paper's ablation table, re-run at a budget (stage 9)
``finetune``        the paper's fine-tuning phase after a run
``cache_pointer``   the continuous cache pointer's evaluation and grid search around the stage-8 component
``synthetic``       a bracket grammar: a corpus small enough for tests to train on in seconds
=================== ================================================================================================

It imports the student's library (``hw4lib``) and never ``autograder`` or ``deploy``.
"""

"""The instructor's side: the nbgrader course, the release, and grading. Never released to students.

The instructor (``python -m autograder``), the hub's course service and ``deploy/`` use it. It imports the
student's library (``hw4lib``: the component loader, the properties, perplexity, ``model.pt``), so a grade and a
visible check judge by the same code; it must never import ``hw4lib.lab`` (a change to the lab's tools cannot move a
grade) or ``deploy`` (``tests/test_layout.py`` checks the imports).
"""

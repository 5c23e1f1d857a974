"""Running the course for a class: the one-machine JupyterHub (``hub/``), the nbgrader exchange with Unix users and
the runtimes (``course_setup.py``), the roster, and the plans for Kubernetes (``k8s/``) and Slurm (``slurm/``).

The administrator and the instructor use it, as root or as the course's account. It imports ``autograder`` (the
course, its control groups, its nbgrader plugins) and ``hw4lib.data``; it must never import ``hw4lib.lab``
(``tests/test_layout.py`` checks the imports).
"""

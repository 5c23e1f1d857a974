"""One-machine deployment of the course: Unix users, nbgrader exchange, runtimes (course_setup.py)."""

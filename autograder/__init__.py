"""The instructor's side: the nbgrader course, the release, and grading. Never released to students."""

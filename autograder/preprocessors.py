"""nbgrader preprocessor that records judged verdicts instead of executing the student's notebook.

Plain ``nbgrader autograde`` runs student code in a kernel with the grader's rights (it can read the hidden
tests, write the gradebook, patch the checks). The course config replaces nbgrader's ``Execute`` with this
preprocessor: no student code runs in nbgrader's process or any kernel. For each hidden-test cell
(``grade_id = test_<part>``) it writes the judge's message as the cell's output, and the score in the form
nbgrader's ``SaveAutoGrades`` reads: no error = full points, an ``execute_result`` number = partial credit,
an error = zero. When ``python -m autograder grade`` did not leave verdicts for a student (an instructor
running ``nbgrader autograde`` by hand), the probe and the judge run here for that student.
"""

from __future__ import annotations

import json
from pathlib import Path

from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells
from traitlets import Unicode

from autograder import submission


def outputs_for(verdict: dict | None) -> list:
    """The cell outputs that make nbgrader record exactly the judged score, and show the judge's message."""
    if verdict is None:
        return [new_output("error", ename="NotGraded", evalue="no verdict for this test cell",
                           traceback=["No verdict for this test cell: it does not belong to a graded part."])]
    score, points, message = float(verdict["score"]), float(verdict["points"]), verdict["message"]
    header = f"{verdict['part']}: {score:g} / {points:g} points"
    if score <= 0:
        return [new_output("error", ename="HiddenTestsFailed", evalue=header,
                           traceback=[header, *message.splitlines()])]
    outputs = [new_output("stream", name="stdout", text=f"{header}\n{message}\n")]
    if score < points:
        outputs.append(new_output("execute_result", data={"text/plain": repr(score)}, execution_count=None))
    return outputs


#: (student, assignment, the stat of the verdict file and the collected files) -> the verified verdicts. Module-level:
#: nbgrader may make a new preprocessor for every notebook.
_CHECKED: dict[tuple, dict] = {}


class StaleVerdict(RuntimeError):
    """A verdict file that does not belong to the submission being autograded."""


class InjectVerdicts(NbGraderPreprocessor):
    """Fills every hidden-test cell with the judged verdict of its part."""

    verdicts_dir = Unicode("", help="Folder of <student>.json verdict files written by the grader").tag(config=True)
    config_path = Unicode("", help="Grading config for verdicts computed here (default autograder/config.toml)").tag(
        config=True
    )
    submitted_dir = Unicode("", help="Folder of <student>/ submissions the verdicts were judged on (default: the "
                                     "course's submitted/)").tag(config=True)

    def _submitted(self, student: str, assignment: str) -> Path:
        if self.submitted_dir:
            return submission.folder(Path(self.submitted_dir), student)
        return Path.cwd() / "submitted" / student / assignment

    def _verdicts(self, student: str, assignment: str) -> dict:
        # nbgrader calls preprocess once per notebook: hash a student's files once, not once per notebook (a
        # change to the verdict file or to any collected file's size or time checks them again)
        path, submitted = Path(self.verdicts_dir) / f"{student}.json", self._submitted(student, assignment)
        stats = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                      for p in sorted([path, *submitted.glob("*")]) if p.is_file())
        key = (student, assignment, stats)
        if key not in _CHECKED:
            _CHECKED[key] = self._checked_verdicts(student, path, submitted)
        return _CHECKED[key]

    def _checked_verdicts(self, student: str, path: Path, submitted: Path) -> dict:
        from autograder import grade

        if not path.is_file():
            work = Path(self.verdicts_dir).parent / "work" / student
            grade.grade_one(submitted, work, path, self.config_path or None)
        record = json.loads(path.read_text())
        judged = record.get("submission") or {}
        if submission.digest(submitted, list(judged.get("files", []))) != judged.get("sha256"):
            raise StaleVerdict(
                f"{student}: the verdicts in {path} were judged on other files than the submission collected in "
                f"{submitted} (resubmitted and collected again since grading?). Grade again with "
                "`python -m autograder grade`, or delete that file to have this command grade the student.")
        return record["parts"]

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        verdicts = self._verdicts(info["student"], info["assignment"])
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            gid = meta.get("grade_id", "")
            part = gid[len("test_"):] if gid.startswith("test_") else None
            cell.outputs = outputs_for(verdicts.get(part) if part else None)
            cell.execution_count = None
        return nb, resources


class RestoreGradeCells(OverwriteCells):
    """nbgrader's ``OverwriteCells``, able to restore a deleted test cell whatever precedes it in the source.

    nbgrader 0.9 puts a missing grade cell after the source cell just before it, and assumes that cell is a grade
    or solution cell: here it is the locked visible-check cell, so a deleted test cell crashed the whole
    notebook's autograde (``KeyError``) and the student lost every part of it. This version inserts the cell
    after the nearest earlier source cell that the submission still has (or first, when there is none).
    """

    def add_missing_grade_cells(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_ids = [cell.name for cell in source_nb.source_cells]
        source_by_id = {cell.name: cell for cell in source_nb.source_cells}
        solution_ids = {cell.name for cell in source_nb.solution_cells}

        def submitted_ids() -> list[str | None]:
            return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]

        for grade_cell in source_nb.grade_cells:
            present = submitted_ids()
            if grade_cell.name in present:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook", grade_cell.name)
            cell = self.missing_cell_transform(source_by_id[grade_cell.name], grade_cell.max_score,
                                               is_solution=grade_cell.name in solution_ids)
            earlier = source_ids[: source_ids.index(grade_cell.name)]
            anchors = [present.index(name) for name in reversed(earlier) if name in present]
            nb.cells.insert(anchors[0] + 1 if anchors else 0, cell)
        return nb, resources

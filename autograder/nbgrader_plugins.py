"""The course's nbgrader plugins, named in the course config (``autograder/course.py``):

* ``PercentPerHour``: the late policy, a ``LateSubmissionPlugin`` for nbgrader's own ``AssignLatePenalties``;
* ``TrustedCollect``: nbgrader's filesystem ``collect``, with the time of a submission taken from the kernel
  (the last status change of anything in it) instead of from what the student wrote, and submissions under
  another student's name refused;
* ``LmsExport``: an ``ExportPlugin`` for ``nbgrader export``: one row per student with the autograded and the
  manual points, the late penalty and the total, a CSV an LMS's gradebook imports.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
import pwd
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.plugins import ExportPlugin, LateSubmissionPlugin
from traitlets import Bool, Float

# nbgrader's own timestamp format (timestamp.txt, parsed back by nbgrader.utils.parse_utc)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"


class PercentPerHour(LateSubmissionPlugin):
    """Takes ``percent_per_hour`` of each notebook's score for every started hour after the due date, up to
    ``max_percent``. A percentage rather than nbgrader's documented ``SubMarks`` (a mark per hour per notebook):
    the notebooks carry from 0.5 to 40 points, so a fixed mark would punish the same lateness unequally."""

    percent_per_hour = Float(10.0, help="percent of the score taken per started hour late").tag(config=True)
    max_percent = Float(100.0, help="the most a late submission loses, in percent").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        if total_seconds_late <= 0 or not score:
            return None
        hours = math.ceil(total_seconds_late / 3600)
        percent = min(self.max_percent, self.percent_per_hour * hours)
        self.log.info("%s: %d started hours late, %g%% of %g", student_id, hours, percent, score)
        return score * percent / 100


def last_change(folder: Path) -> datetime.datetime:
    """The latest status-change time (ctime) of ``folder`` and of everything in it, as naive UTC (the gradebook's
    convention). The kernel sets a ctime on every write, rename, link or chmod; ``touch -d`` and ``os.utime``
    change only mtime and atime, and move the ctime to *now*: a student can make their work look later, never
    earlier. Links are not followed."""
    latest = os.lstat(folder).st_ctime
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in (*dirnames, *filenames):
            latest = max(latest, os.lstat(os.path.join(dirpath, name)).st_ctime)
    return datetime.datetime.fromtimestamp(latest, datetime.timezone.utc).replace(tzinfo=None)


def owner_of(path: Path) -> str:
    uid = os.lstat(path).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


class TrustedCollect(ExchangeCollect):
    """nbgrader's filesystem ``collect``, trusting only what the kernel says about a submission.

    With the filesystem exchange, the student writes everything nbgrader reads back: the folder name's time stamp
    (``<student>+hw4+<time>+<random>``), ``timestamp.txt`` inside it, and the student id in the name
    (``nbgrader submit --student SOMEONE`` is accepted; ``inbound/`` is writable). Here:

    * the time of a submission is ``last_change`` of its folder (which submission is the latest, which is on time
      for ``--before-duedate``, and the ``timestamp.txt`` written into ``submitted/``, which ``nbgrader autograde``
      reads for ``AssignLatePenalties``);
    * a folder not owned by the user it names (``require_owner``) is refused, with an error naming both; nbgrader
      itself only warns (``CollectApp.check_owner``).

    ngshare needs neither: its server records the time and the hub-authenticated user of each submission.
    """

    require_owner = Bool(True, help="refuse submissions whose folder is not owned by the user they name "
                                    "(the course's student ids are Unix user names)").tag(config=True)

    def _path_to_record(self, path: str) -> dict:
        record = super()._path_to_record(path)
        record["timestamp"] = last_change(Path(path))
        record["owner"] = owner_of(Path(path))
        if self.require_owner and record["owner"] != record["username"]:
            # said for every such folder, whether or not it would have been the one collected
            self.log.error("refused %s: it names %s but belongs to %s (submitted under another name?)",
                           record["filename"], record["username"], record["owner"])
        return record

    def _sort_by_timestamp(self, records: list[dict]) -> list[dict]:
        # a genuine submission always wins over a forged one in the same name, however recent the forgery
        return sorted(records, key=lambda r: (r["owner"] == r["username"], r["timestamp"]), reverse=True)

    def copy_files(self) -> None:
        if self.require_owner:  # a name with only forged folders: nothing is collected for it
            self.src_records = [rec for rec in self.src_records if rec["owner"] == rec["username"]]
        super().copy_files()

    def do_copy(self, src: str, dest: str, log=None) -> None:
        stamp = last_change(Path(src))  # before copying: the copy is the instructor's, made now
        super().do_copy(src, dest, log)
        Path(dest, "timestamp.txt").write_text(stamp.strftime(TIMESTAMP_FORMAT))


def set_due_dates(root: Path, due: dict[str, str]) -> None:
    """Writes each assignment's due date (ISO 8601, e.g. ``2026-12-20T23:59:00Z``; no zone means UTC) into the
    course's gradebook with nbgrader's own command, ``nbgrader db assignment add NAME --duedate=...`` (which
    updates an existing assignment, and makes the gradebook when there is none)."""
    from autograder import course

    for name, when in due.items():
        result = course.nbgrader(Path(root), "db", "assignment", "add", name, f"--duedate={when}", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader db assignment add {name} --duedate={when} failed:\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


LMS_COLUMNS = ["student_id", "last_name", "first_name", "email", "assignment", "autograded", "manual",
               "extra_credit", "late_penalty", "score", "max_score", "needs_manual_grade", "seconds_late",
               "submitted"]


class LmsExport(ExportPlugin):
    """``nbgrader export --exporter=autograder.nbgrader_plugins.LmsExport [--to FILE]``: one row per student and
    assignment (every student of the gradebook, a zero row for one who did not submit), with

    * ``autograded``: the points of the test cells (autograded), as they stand (a grader's change in the
      formgrader included);
    * ``manual``: the points of the answer cells a person grades (the written answers), so far (an answer left
      as released gets nbgrader's automatic 0);
    * ``extra_credit``, ``late_penalty`` (``PercentPerHour``), ``score`` = autograded + manual + extra credit -
      penalty (at least 0: nbgrader's own rule), ``max_score``;
    * ``needs_manual_grade``: how many cells still wait for a grader (the row is not final while it is not 0);

    UTF-8 with a header, the student id (the user name, which LMSs call login or SIS login id) first: Canvas,
    Moodle and Blackboard map such columns onto their gradebook's on import.
    """

    def export(self, gradebook: Gradebook) -> None:
        dest = self.to or "lms_grades.csv"
        students = {str(s) for s in self.student}
        assignments = {str(a) for a in self.assignment}
        with open(dest, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=LMS_COLUMNS)
            writer.writeheader()
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                for student in gradebook.students:
                    if students and student.id not in students:
                        continue
                    writer.writerow(self.row(gradebook, assignment, student))
        self.log.info("wrote %s", dest)

    @staticmethod
    def row(gradebook: Gradebook, assignment, student) -> dict:
        row = {"student_id": student.id, "last_name": student.last_name or "", "first_name": student.first_name or "",
               "email": student.email or "", "assignment": assignment.name, "max_score": assignment.max_score,
               "autograded": 0.0, "manual": 0.0, "extra_credit": 0.0, "late_penalty": 0.0, "score": 0.0,
               "needs_manual_grade": 0, "seconds_late": 0.0, "submitted": ""}
        try:
            submission = gradebook.find_submission(assignment.name, student.id)
        except MissingEntry:
            return row
        for notebook in submission.notebooks:
            # nbgrader's two kinds of graded cell: a grade cell that is also a solution cell is an answer a person
            # grades ("manually graded answer"); one that is not is a test the autograder scores
            answers = {cell.name for cell in notebook.notebook.solution_cells}
            for grade in notebook.grades:
                extra = grade.extra_credit or 0.0  # nbgrader's grade.score includes it: a column of its own here
                row["manual" if grade.name in answers else "autograded"] += (grade.score or 0.0) - extra
                row["extra_credit"] += extra
                row["needs_manual_grade"] += int(bool(grade.needs_manual_grade))
        penalty = submission.late_submission_penalty or 0.0
        row.update(late_penalty=penalty, seconds_late=submission.total_seconds_late,
                   score=max(0.0, row["autograded"] + row["manual"] + row["extra_credit"] - penalty),
                   submitted=submission.timestamp.isoformat() + "Z" if submission.timestamp else "")
        return row

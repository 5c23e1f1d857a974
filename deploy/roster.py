"""The course's one roster: who teaches, who grades, who studies, and where the course's shared folders live.

Read by both ways of running the course on one machine, so that they cannot disagree about who is in it:
``deploy/course_setup.py`` (nbgrader's exchange with Unix users) and ``deploy/hub/`` (JupyterHub).

``deploy/roster.toml`` names the course, its people by role and its paths. A class list exported from an LMS
can be added as a CSV (``--members FILE``, or ``members_csv = "FILE"`` in the TOML, relative to it) with a
``username`` column and an optional ``role`` column (``instructor``, ``grader`` or ``student``, the default;
the usual LMS spellings such as ``Teacher``, ``TA`` or Canvas's ``StudentEnrollment`` are understood).
Extra columns (names, e-mail) are ignored.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import tomllib

ROSTER = Path(__file__).resolve().parent / "roster.toml"
ROLES = ("instructor", "grader", "student")
# LMS exports spell roles their own way (Canvas: "TaEnrollment"; others "Teacher", "Teaching Assistant").
ROLE_ALIASES = {"instructor": "instructor", "teacher": "instructor",
                "grader": "grader", "ta": "grader", "teachingassistant": "grader",
                "student": "student", "learner": "student"}
# What useradd accepts on Debian by default (NAME_REGEX), so that a bad name fails here, naming the row.
USERNAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


@dataclass(frozen=True)
class Roster:
    course_id: str
    instructors: tuple[str, ...]
    graders: tuple[str, ...]
    students: tuple[str, ...]
    exchange: Path
    course: Path
    runtime: Path
    code: Path
    staff_group: str  # the Unix group that may read the course's closed folders (solutions/, autograder/)
    # assignment -> due date (ISO 8601, "2026-12-20T23:59:00Z"), written into the gradebook for the late policy
    due: dict[str, str] = field(default_factory=dict)

    @property
    def instructor(self) -> str:
        """The instructor who owns the course root and the gradebook: the first one listed."""
        return self.instructors[0]

    @property
    def users(self) -> tuple[str, ...]:
        return (*self.instructors, *self.graders, *self.students)

    def role_of(self, user: str) -> str:
        for role in ROLES:
            if user in getattr(self, f"{role}s"):
                return role
        raise KeyError(f"{user} is not on the roster of {self.course_id}")


def role_name(raw: str) -> str:
    """A role as an LMS may spell it, as one of ``ROLES``."""
    key = re.sub(r"[\s_-]", "", raw.strip().lower()).removesuffix("enrollment")
    if key not in ROLE_ALIASES:
        raise ValueError(f"unknown role {raw!r}: expected one of {', '.join(ROLES)}")
    return ROLE_ALIASES[key]


def read_members_csv(path: Path) -> dict[str, list[str]]:
    """The people of a CSV class list, by role (``{"student": [...], ...}``)."""
    members: dict[str, list[str]] = {role: [] for role in ROLES}
    with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheets write a BOM
        rows = csv.DictReader(f)
        columns = {name.strip().lower(): name for name in rows.fieldnames or ()}
        if "username" not in columns:
            raise ValueError(f"{path}: no 'username' column (columns: {', '.join(columns) or 'none'})")
        for line, row in enumerate(rows, start=2):
            user = (row[columns["username"]] or "").strip()
            if not user:
                continue
            raw_role = (row.get(columns.get("role", ""), "") or "student").strip() or "student"
            try:
                members[role_name(raw_role)].append(user)
            except ValueError as err:
                raise ValueError(f"{path}, line {line}: {err}") from None
    return members


def load(path: Path = ROSTER, members_csv: Path | None = None, **paths: Path | None) -> Roster:
    """The roster in ``path``, plus the people of ``members_csv`` (or of the TOML's own ``members_csv``), with
    any of its paths (``exchange``, ``course``, ``runtime``, ``code``) replaced by the ones given."""
    path = Path(path)
    raw = tomllib.loads(path.read_text())
    people = {role: list(raw.get(f"{role}s", [])) for role in ROLES}
    if members_csv is None and raw.get("members_csv"):
        members_csv = path.parent / raw["members_csv"]
    if members_csv is not None:
        for role, users in read_members_csv(Path(members_csv)).items():
            people[role] += users
    seen: dict[str, str] = {}
    for role in ROLES:
        for user in people[role]:
            if not USERNAME.fullmatch(user):
                raise ValueError(f"{user!r} ({role}) is not a valid Unix user name")
            if seen.setdefault(user, role) != role:
                raise ValueError(f"{user} is both {seen[user]} and {role}: give each person one role")
        people[role] = list(dict.fromkeys(people[role]))  # listed twice in the same role: once
    if not people["instructor"]:
        raise ValueError(f"{path}: the roster names no instructor (instructors = [...])")
    due = {str(name): str(when) for name, when in raw.get("due", {}).items()}
    for name, when in due.items():
        try:  # fail here, naming the line, not at the first collect
            datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{path}: due date of {name} is {when!r}, not ISO 8601 "
                             "(e.g. \"2026-12-20T23:59:00Z\")") from None
    roster = Roster(raw["course_id"], *(tuple(people[r]) for r in ROLES),
                    *(Path(raw["paths"][k]) for k in ("exchange", "course", "runtime", "code")),
                    staff_group=raw.get("staff_group", f"{raw['course_id']}-staff"), due=due)
    return replace(roster, **{k: Path(v) for k, v in paths.items() if v is not None})

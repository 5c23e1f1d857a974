"""nbgrader's exchange cycle end to end, with real Unix users and nbgrader's own commands in real processes.

Twice: through nbgrader's filesystem exchange (a shared directory), and through the ngshare exchange service
(``deploy/hub/ngshare.py``: ngshare as a service of the one-machine hub, nbgrader with ngshare-exchange, each
user's nbgrader with that user's hub API token, as on Kubernetes where no disk is shared).

deploy/course_setup.py makes the users, the exchange, the shared runtime and the instructor's course; then:
the instructor releases hw4; each student fetches it as themself, fills it (alice: the reference answers,
bob: one part wrong, carol: nothing) and submits; the instructor collects and grades with the sandboxed grader
(``python -m autograder grade`` on the collected ``submitted/``), records the verdicts with ``nbgrader
autograde``, generates and releases feedback; each student fetches their feedback. Along the way, a student's
process tries to read what it must not and is refused by the kernel; with ngshare, a student's token asks
ngshare for another student's submission and feedback and is refused.

Runs as root only (users, runuser, chown). Per-run paths live in pytest's tmp dir; the users stay.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import os
import pwd
import re
import shutil
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests  # a dependency of jupyterhub

from autograder import course
from autograder.config import load as load_config
from autograder.grade import gradebook_rows
from tests.fixtures.hub import (
    COURSE_ACCOUNT,
    Hub,
    api_token,
    environ_of,
    grade_collected,
    run_in_service,
    running_hub,
    server_env,
    service_pid,
    service_processes,
)
from tests.fixtures.mistakes import MISTAKES
from tests.notebook_tools import fill_with_reference

if TYPE_CHECKING:
    from deploy.course_setup import Roster

REPO = Path(__file__).resolve().parent.parent
INSTRUCTOR, STUDENTS = "awd-instructor", ("awd-alice", "awd-bob", "awd-carol")
DUE = "2099-12-31T23:59:00Z"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates Unix users and runs nbgrader as each of them"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd is not installed"),
]

# A student process runs this and reports, for each path, what reading it gave.
PROBE = """
import json, os, sys
out = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        out[name] = "read"
    except OSError as err:
        out[name] = f"{type(err).__name__}:{err.errno}"
print(json.dumps(out))
"""


def _open_path_for_others(path: Path, stop: Path) -> list[tuple[Path, int]]:
    """Adds o+x to ``path`` and its parents below ``stop`` (pytest makes its tmp dirs 0700); returns old modes."""
    changed = []
    for p in [path, *path.parents]:
        if p == stop:
            break
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            changed.append((p, stat.S_IMODE(mode)))
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)
    return changed


def _one_part_mistake():
    """A mistake that costs its own part and no other."""
    return next(v for v in MISTAKES if set(v.fails) == {v.part})


@dataclass
class Deployment:
    """The course on this machine, and how each user's processes reach the exchange."""

    roster: Roster
    kind: str  # "directory" or "ngshare"
    hub: Hub | None = None  # the hub whose ngshare service is the exchange
    tokens: dict[str, str] = field(default_factory=dict)  # each user's hub API token

    def env(self, user: str) -> dict[str, str]:
        from deploy import course_setup

        extra = server_env(self.hub, user, self.tokens[user]) if self.hub else {}
        return {**course_setup.user_env(self.roster, user), **extra}


@pytest.fixture(params=["directory", "ngshare"])
def deployment(request, tmp_path, tmp_path_factory, data_env, prepared_data, trained_model, grading_config):
    """The course set up by deploy/course_setup.py on per-run paths; the repository closed to other users.
    For ``ngshare``: the hub (deploy/hub/start.sh --exchange ngshare) with its ngshare service, each user's API
    token, and the course made on ngshare by the instructor.

    Asks for the session fixtures first: pytest closes its tmp root again (0700) when they make their folders.
    """
    from contextlib import ExitStack

    from deploy import course_setup
    from deploy.hub import ngshare

    # Before opening pytest's folders: a new pytest folder (mktemp) closes its root again.
    hub_log = tmp_path_factory.mktemp("hub-ngshare") if request.param == "ngshare" else None
    # Only pytest's own folders are opened (others may enter them, not list them): /tmp/pytest-of-root/pytest-N.
    basetemp = tmp_path_factory.getbasetemp()
    top = basetemp.parent if basetemp.parent.name.startswith("pytest-of-") else basetemp
    restore = _open_path_for_others(tmp_path, top.parent)
    # The repository holds solutions/: students must not reach it (a CI clone under /root already is closed).
    repo_mode = stat.S_IMODE(REPO.stat().st_mode)
    os.chmod(REPO, repo_mode & ~0o007)
    roster = course_setup.load_roster(exchange=tmp_path / "exchange", course=tmp_path / "instructor" / "course",
                                      runtime=tmp_path / "runtime", code=tmp_path / "instructor" / "code")
    # course_setup writes the due date into the gradebook; the roster's own would make this run late once it has
    # passed, so a far one keeps the test independent of the day it runs (late work: tests/test_course_admin.py)
    roster = dataclasses.replace(roster, due={course.ASSIGNMENT: DUE})
    previous: dict[Path, bytes | None] = {}  # each user's nbgrader config before this run, put back after it
    try:
        with ExitStack() as stack:
            deployment = Deployment(roster, request.param)
            if request.param == "ngshare":
                deployment.hub = stack.enter_context(running_hub(hub_log, prepared_data, "--exchange", "ngshare"))
            for user in roster.users:
                course_setup.ensure_user(user)
            (tmp_path / "instructor").mkdir()
            shutil.chown(tmp_path / "instructor", INSTRUCTOR)
            os.chmod(tmp_path / "instructor", 0o700)
            home_files = [Path(pwd.getpwnam(u).pw_dir) / ".jupyter" / "nbgrader_config.py" for u in roster.users]
            previous = {p: p.read_bytes() if p.is_file() else None for p in home_files}
            url = ngshare.service_url(deployment.hub.base) if deployment.hub else None
            course_setup.setup(roster, data_env, log=lambda *_: None, ngshare_url=url)
            if deployment.hub:
                deployment.tokens = {user: api_token(deployment.hub, user) for user in roster.users}
                bindir = roster.runtime / "venv" / "bin"  # ngshare-exchange's console script is there
                ngshare.create_course(
                    roster.course_id, roster.instructor, roster.students,
                    lambda argv: course_setup.run_as(INSTRUCTOR, [str(bindir / argv[0]), *argv[1:]],
                                                     deployment.env(INSTRUCTOR), roster.course),
                    tmp_path, services=(roster.course_id,))  # the hub's course formgrader service
            yield deployment
    finally:
        os.chmod(REPO, repo_mode)
        for path, mode in restore:
            os.chmod(path, mode)
        for path, content in previous.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)


def test_exchange_cycle_with_real_users(deployment, tmp_path, trained_model, grading_config):
    from deploy import course_setup

    roster = deployment.roster
    python = str(roster.runtime / "venv" / "bin" / "python")
    started = _utc_now() - datetime.timedelta(seconds=1)  # before any submission (timestamps have microseconds)

    def run(user: str, *args: str, cwd: Path, check: bool = True):
        start = time.monotonic()
        result = course_setup.run_as(user, [python, *args], deployment.env(user), cwd, check=check)
        print(f"{time.monotonic() - start:6.1f} s  {user}: {' '.join(args)[:60]}")  # pytest -s shows the steps
        return result

    def nbgrader(user: str, *args: str, cwd: Path):
        return run(user, "-m", "nbgrader", *args, cwd=cwd)

    def each_student(*args: str) -> dict:
        """The same nbgrader command by every student at once, as in a class (and twice as fast on 2 cores).

        nbgrader's student cache (what submit keeps, what fetch_feedback matches feedback against) is per run
        instead of ~/.local/share/jupyter/nbgrader_cache: another run with the same users cannot disturb it.
        """
        def one(student: str):
            return nbgrader(student, *args, f"--Exchange.cache={work[student].parent / ('cache-' + student)}",
                            cwd=work[student])

        with ThreadPoolExecutor(max_workers=len(STUDENTS)) as pool:
            results = pool.map(one, STUDENTS)
            return dict(zip(STUDENTS, results, strict=True))

    work: dict[str, Path] = {}
    # The instructor: generate (solutions -> stubs, hidden tests out) and release to the exchange.
    nbgrader(INSTRUCTOR, "generate_assignment", course.ASSIGNMENT, "--force", cwd=roster.course)
    release = nbgrader(INSTRUCTOR, "release_assignment", course.ASSIGNMENT, "--force", cwd=roster.course)
    # ngshare-exchange reports a refused upload as a warning and exits 0: its success line is the evidence.
    assert deployment.kind == "directory" or "Successfully released" in release.stderr, release.stderr[-3000:]

    # Each student fetches into a folder only they can enter.
    for student in STUDENTS:
        work[student] = tmp_path / "students" / student
        work[student].mkdir(parents=True)
        for folder in (work[student], work[student].parent / f"cache-{student}"):
            folder.mkdir(exist_ok=True)
            shutil.chown(folder, student)
            os.chmod(folder, 0o700)
    fetched_hw = each_student("fetch_assignment", course.ASSIGNMENT)
    released = sorted(p.name for p in (roster.course / "release" / course.ASSIGNMENT).glob("*.ipynb"))
    for student in STUDENTS:
        assert sorted(p.name for p in (work[student] / course.ASSIGNMENT).glob("*.ipynb")) == released, (
            student, fetched_hw[student].stderr[-3000:])

    # Their work (written here as root, then handed back to them): alice right, bob one part wrong, carol nothing.
    mistake = _one_part_mistake()
    for student in ("awd-alice", "awd-bob"):
        hw4 = work[student] / course.ASSIGNMENT
        for notebook in sorted(hw4.glob("*.ipynb")):
            fill_with_reference(notebook)
        shutil.copy2(trained_model, hw4 / "model.pt")
    mistake.make(work["awd-bob"] / course.ASSIGNMENT)
    for student in STUDENTS:
        course_setup.chown_tree(work[student], student)
    each_student("submit", course.ASSIGNMENT)
    if deployment.kind == "directory":
        _carol_tries_to_take_over(run, roster, work["awd-carol"])

    # The instructor collects; the sandboxed grader grades what was collected, as the instructor when bubblewrap
    # works for a non-root user here (unprivileged user namespaces), else as root (docs/deploy.md).
    collected = nbgrader(INSTRUCTOR, "collect", course.ASSIGNMENT, cwd=roster.course)
    if deployment.kind == "directory":  # carol's submission in alice's name: refused (alice's scores are below)
        assert "names awd-alice but belongs to awd-carol" in collected.stderr, collected.stderr[-3000:]
    submitted = roster.course / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == sorted(STUDENTS)
    grade_collected(roster.course, grading_config["path"], python, deployment.env(INSTRUCTOR),
                    lambda argv: run(INSTRUCTOR, *argv[1:], cwd=roster.course))
    if deployment.kind == "ngshare":
        _the_course_service_collects_through_ngshare(deployment.hub, roster.course_id)
        _ngshare_runs_unprivileged_on_loopback(deployment.hub)

    # nbgrader records the verdicts in the instructor's gradebook, then makes and releases feedback.
    nbgrader(INSTRUCTOR, "autograde", course.ASSIGNMENT, "--create", "--force", cwd=roster.course)
    _submitted_on_time(roster.course, started)
    nbgrader(INSTRUCTOR, "generate_feedback", course.ASSIGNMENT, "--force", cwd=roster.course)
    nbgrader(INSTRUCTOR, "release_feedback", course.ASSIGNMENT, cwd=roster.course)

    # What a student's process must not read, and (controls) what it must.
    inbound = roster.exchange / roster.course_id / "inbound"
    if deployment.kind == "directory":
        exchange_forbidden = {"exchange inbound (other students' submissions)": inbound,
                              "exchange feedback listing": roster.exchange / roster.course_id / "feedback"}
        exchange_allowed = {"released assignment": roster.exchange / roster.course_id / "outbound" / course.ASSIGNMENT}
    else:  # ngshare keeps everything in its own account's folder (0700); students reach it over HTTP only
        exchange_forbidden = {"ngshare's database and files": deployment.hub.shared / "ngshare"}
        exchange_allowed = {}
    forbidden = {
        **exchange_forbidden,
        "instructor source/": roster.course / "source" / course.ASSIGNMENT / released[1],
        "instructor gradebook.db": roster.course / "gradebook.db",
        "repository solutions/": REPO / "solutions" / released[1],
        "instructor's copy of solutions/": roster.code / "solutions" / released[1],
        "another student's work folder": work["awd-alice"] / course.ASSIGNMENT / released[1],
        "another student's home": Path(pwd.getpwnam("awd-alice").pw_dir),
    }
    allowed = {"own work": work["awd-bob"] / course.ASSIGNMENT / released[1], **exchange_allowed}
    assert (roster.course / "gradebook.db").is_file()
    probe = {**{k: str(v) for k, v in forbidden.items()}, **{k: str(v) for k, v in allowed.items()}}
    seen = json.loads(run("awd-bob", "-c", PROBE, json.dumps(probe), cwd=work["awd-bob"]).stdout)
    assert {k: seen[k] for k in forbidden} == {k: "PermissionError:13" for k in forbidden}
    assert {k: seen[k] for k in allowed} == {k: "read" for k in allowed}
    if deployment.kind == "directory":
        # nbgrader hides a submission by its name (student+assignment+timestamp+random) in an unlistable inbound.
        names = sorted(p.name for p in inbound.iterdir())
        # the three students' submissions and carol's one in alice's name
        assert len(names) == 4 and all(len(n.split("+")[-1]) >= 10 for n in names), names
    else:
        assert not inbound.exists()  # nothing went through the directory
        _ngshare_refuses_other_students(deployment)

    config = load_config(grading_config["path"])
    rows = gradebook_rows(roster.course, list(STUDENTS), config, {}, log=pytest.fail)
    got = {(r["student"], r["grade_id"][len("test_"):]): (r["score"], r["max_score"]) for r in rows}
    parts = {p.name: p.points for p in config.parts}
    assert {s for s, _ in got} == set(STUDENTS) and {p for _, p in got} == set(parts)
    assert all(got["awd-alice", p] == (pts, pts) for p, pts in parts.items()), got
    assert got["awd-bob", mistake.part][0] < parts[mistake.part], (mistake.name, got["awd-bob", mistake.part])
    assert all(got["awd-bob", p] == (pts, pts) for p, pts in parts.items() if p != mistake.part), got
    assert all(got["awd-carol", p][0] == 0 for p in parts), got

    # Each student fetches feedback: exactly the instructor's feedback for them, which differs from the others'.
    fetched = {}
    got_back = each_student("fetch_feedback", course.ASSIGNMENT)
    for student in STUDENTS:
        done = "Fetched feedback" if deployment.kind == "directory" else "Successfully decoded feedback"
        assert done in got_back[student].stderr, (student, got_back[student].stderr[-3000:])
        folders = list((work[student] / course.ASSIGNMENT / "feedback").iterdir())
        assert len(folders) == 1, folders  # one submission, one timestamped feedback folder
        fetched[student] = {p.name: p.read_bytes() for p in folders[0].glob("*.html")}
        own = roster.course / "feedback" / student / course.ASSIGNMENT
        assert fetched[student] == {p.name: p.read_bytes() for p in own.glob("*.html")}
        assert sorted(fetched[student]) == [n.replace(".ipynb", ".html") for n in released]
        assert all(pwd.getpwuid(p.stat().st_uid).pw_name == student for p in folders[0].iterdir())
    for a in STUDENTS:
        for b in STUDENTS:
            if a < b:
                assert fetched[a] != fetched[b]
    # ... and it tells each student the score of each part that the gradebook holds for them.
    for student in STUDENTS:
        for part in config.parts:
            html = fetched[student][part.notebook.replace(".ipynb", ".html")].decode()
            score = got[student, part.name][0]
            assert f"{part.name}: {score:g} / {part.points:g} points" in re.sub(r"<[^>]+>", "", html), (student, part)


# A student process tries to take the course's exchange folder over: rename it, or remove it to put its own there.
TAKEOVER = """
import json, os, sys
course, out = sys.argv[1], {}
inbound = os.path.join(course, "inbound")
for name, attempt in {"rename": lambda: os.rename(course, course + "-taken"), "remove": lambda: os.rmdir(course),
                      "replace inbound": lambda: os.rename(inbound, course + "-inbound")}.items():
    try:
        attempt()
        out[name] = "done"
    except OSError as err:
        out[name] = err.errno
print(json.dumps(out))
"""


def _carol_tries_to_take_over(run, roster, carol_work: Path) -> None:
    """carol, a real student process, on the filesystem exchange: she cannot move or remove the course's folder or
    its inbound/ (the sticky bit on the exchange root; nbgrader's modes), and her submission in alice's name, which
    nbgrader accepts, is submitted here to be refused by the instructor's collect (TrustedCollect)."""
    course_dir = roster.exchange / roster.course_id
    seen = json.loads(run("awd-carol", "-c", TAKEOVER, str(course_dir), cwd=carol_work).stdout)
    assert set(seen) == {"rename", "remove", "replace inbound"}, seen
    assert all(code in (errno.EPERM, errno.EACCES) for code in seen.values()), seen  # refused by the kernel
    assert course_dir.is_dir() and (course_dir / "inbound").is_dir()
    time.sleep(1.1)  # later than alice's own submission, as a forgery meant to replace it would be
    forged = run("awd-carol", "-m", "nbgrader", "submit", course.ASSIGNMENT, "--student", "awd-alice",
                 f"--Exchange.cache={carol_work.parent / 'cache-awd-carol'}", cwd=carol_work)
    assert "Submitted as: awd-course hw4" in forged.stderr, forged.stderr[-2000:]  # nbgrader lets it through


def _the_course_service_collects_through_ngshare(hub: Hub, course_id: str) -> None:
    """The hub's course formgrader service (deploy/hub/course_service.py), where instructors and graders collect,
    runs nbgrader with the service's own hub token. The hub names that token after the service, and ngshare knows it
    as the course's instructor because the course was made with it (``ngshare.create_course``'s ``services``): a
    collect in a terminal of the service, as the course account, gets every student's submission."""
    token = environ_of(service_pid(hub))["JUPYTERHUB_API_TOKEN"]
    who = requests.get(f"{hub.base}/hub/api/user", headers={"Authorization": f"token {token}"}, timeout=30).json()
    assert (who.get("kind"), who.get("name")) == ("service", course_id), who  # the name ngshare sees
    result = run_in_service(hub, [sys.executable, "-m", "nbgrader", "collect", course.ASSIGNMENT], hub.course_root,
                            hub_token=True)
    # ngshare-exchange reports a refusal as a warning and exits 0: the folders are the proof
    submitted = hub.course_root / "submitted"
    assert submitted.is_dir() and sorted(p.name for p in submitted.iterdir()) == sorted(STUDENTS), \
        f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    for student in STUDENTS:
        notebooks = list((submitted / student / course.ASSIGNMENT).glob("*.ipynb"))
        assert notebooks and all(p.stat().st_uid == pwd.getpwnam(COURSE_ACCOUNT).pw_uid for p in notebooks), student


def _ngshare_runs_unprivileged_on_loopback(hub: Hub) -> None:
    """ngshare (which would listen on every interface, as root) runs as its own account and listens on 127.0.0.1
    only: its database and files are that account's, and the hub's proxy is the only way in."""
    from deploy.hub import ngshare

    account = pwd.getpwnam(ngshare.ACCOUNT)
    pids = service_processes(lambda _pid, cmdline: b"from ngshare.ngshare import main" in b" ".join(cmdline))
    assert len(pids) == 1, f"ngshare processes: {pids}\n{hub.log_tail()}"
    status = Path(f"/proc/{pids[0]}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == [str(account.pw_uid)] * 4, uids
    port = int(environ_of(pids[0])["JUPYTERHUB_SERVICE_URL"].rsplit(":", 1)[1].strip("/"))
    listening = []  # (address, port) of every listening TCP socket of this machine, IPv4 and IPv6
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                listening.append(address)
    assert listening == ["0100007F"], f"ngshare's port {port} listens on {listening} (0100007F is 127.0.0.1)"
    state = hub.shared / "ngshare"
    assert state.stat().st_uid == account.pw_uid and stat.S_IMODE(state.stat().st_mode) == 0o700
    assert (state / "ngshare.db").stat().st_uid == account.pw_uid


def _submitted_on_time(root: Path, started: datetime.datetime) -> None:
    """The gradebook holds the roster's due date and, for each student, the time the exchange recorded (the kernel's
    with the directory, ngshare's server's with ngshare): during this run, before the due date, no penalty."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course.COURSE_ID) as gb:
        assert gb.find_assignment(course.ASSIGNMENT).duedate == datetime.datetime(2099, 12, 31, 23, 59)
        for student in STUDENTS:
            sub = gb.find_submission(course.ASSIGNMENT, student)
            assert sub.timestamp is not None and started <= sub.timestamp <= _utc_now(), (student, sub.timestamp)
            assert sub.total_seconds_late == 0 and not sub.late_submission_penalty, student


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _ngshare_refuses_other_students(deployment: Deployment) -> None:
    """bob's own token asks ngshare directly (not through nbgrader) for what is not his: refused, with ngshare's
    reason; with the same token his own submission list and feedback are served (the controls)."""
    from deploy.hub import ngshare

    url = ngshare.service_url(deployment.hub.base)
    cid, hw = deployment.roster.course_id, course.ASSIGNMENT

    def ask(user: str | None, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {deployment.tokens[user]}"} if user else {}
        return requests.request(method, f"{url}{path}", headers=headers, timeout=30, allow_redirects=False, **kwargs)

    own = ask("awd-bob", "GET", f"/submissions/{cid}/{hw}/awd-bob")
    assert own.status_code == 200 and own.json()["success"], own.text[:500]
    stamp = own.json()["submissions"][0]["timestamp"]
    feedback = ask("awd-bob", "GET", f"/feedback/{cid}/{hw}/awd-bob", params={"timestamp": stamp})
    assert feedback.status_code == 200 and feedback.json()["files"], feedback.text[:300]
    assert ask("awd-bob", "GET", f"/assignment/{cid}/{hw}").status_code == 200  # the release is for students
    alice = ask("awd-instructor", "GET", f"/submissions/{cid}/{hw}/awd-alice").json()["submissions"][0]["timestamp"]

    refused = {
        "all submissions of hw4": ("GET", f"/submissions/{cid}/{hw}", {}),
        "alice's submission list": ("GET", f"/submissions/{cid}/{hw}/awd-alice", {}),
        "alice's submitted files": ("GET", f"/submission/{cid}/{hw}/awd-alice", {}),
        "alice's feedback": ("GET", f"/feedback/{cid}/{hw}/awd-alice", {"params": {"timestamp": alice}}),
        "uploading feedback for alice": ("POST", f"/feedback/{cid}/{hw}/awd-alice",
                                         {"data": {"timestamp": alice, "files": "[]"}}),
        "releasing over the instructor's hw4": ("POST", f"/assignment/{cid}/{hw}", {"data": {"files": "[]"}}),
        "deleting the instructor's hw4": ("DELETE", f"/assignment/{cid}/{hw}", {}),
        "the course's student list": ("GET", f"/students/{cid}", {}),
        "adding himself as instructor": ("POST", f"/instructor/{cid}/awd-bob", {}),
    }
    for what, (method, path, kwargs) in refused.items():
        answer = ask("awd-bob", method, path, **kwargs)
        assert answer.status_code == 403 and answer.json()["success"] is False, (what, answer.status_code,
                                                                                  answer.text[:300])
    # Without a token ngshare sends the caller to the hub's login (OAuth), never to the data.
    anonymous = ask(None, "GET", f"/submission/{cid}/{hw}/awd-alice")
    assert anonymous.status_code >= 300 and "files" not in anonymous.text, anonymous.text[:300]
    # The instructor's view after those attempts: hw4 still has its released files, alice's feedback is intact.
    release = ask("awd-instructor", "GET", f"/assignment/{cid}/{hw}").json()
    assert release["success"] and release["files"], str(release)[:300]

"""The one-machine JupyterHub (deploy/hub/) for real: PAM users, LocalProcessSpawner, configurable-http-proxy.

Starts ``deploy/hub/start.sh`` as root on a free port with its run folder and shared folder (exchange, role
config) in temporary places, without ``--demo``; sets each account's password itself (``chpasswd``, as an
instructor would), logs in over HTTP through PAM, and checks what each role gets: the
server runs as the student's Unix user and sees only ``hw4lib/`` of the clone, nobody reaches another user's
server, students have no formgrader; the course's formgrader is a hub service run as the course account, open to
the instructor and the TA and refused to students; the instructor generates and releases hw4 through its API so
that a student fetches and submits it through the assignment list's API and the exchange.

In headless Chromium, the whole grading cycle on that one submission: the instructor collects it in the course's
formgrader (a tab of its own), the course's sandboxed grader grades it, the formgrader's autograde records the
verdicts, the instructor grades a written answer by hand and releases feedback, and the student fetches and
reads it in the assignment list. Screenshots of each step go to ``test-artifacts/hub/``. Last, one class's whole
cycle over HTTP: three students submit, the TA grades a written answer of each in the course's formgrader, and
each student's feedback, the gradebook and the LMS export hold the TA's scores.

The Unix users ``awd-*`` are the roster's accounts (created if missing, kept afterwards, their passwords put back
as they were); the test removes what it put in their homes. A student's process outside the hub (what a cron job
or an ssh session would be) is refused the clone's ``solutions/`` and ``autograder/`` and the course root.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests  # a dependency of jupyterhub

from autograder.config import load as load_config
from autograder.grade import gradebook_rows
from deploy import course_setup
from deploy.hub import course_service, runtime
from tests.fixtures.hub import (
    Hub,
    environ_of,
    grade_collected,
    login,
    run_in_service,
    running_hub,
    service_environment,
    service_pid,
    tagged_processes,
)
from tests.fixtures.mistakes import MISTAKES
from tests.notebook_tools import REPO, fill_with_reference
from tests.test_browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the hub needs root: PAM reads /etc/shadow, and servers run as the users")

COURSE_ID = "awd-course"
STUDENT, OTHER, THIRD, INSTRUCTOR, GRADER = "awd-alice", "awd-bob", "awd-carol", "awd-instructor", "awd-ta"
STUDENTS = (STUDENT, OTHER, THIRD)
COURSE_ACCOUNT = course_service.account_name(COURSE_ID)
SERVICE = f"/services/{COURSE_ID}"  # the course's shared formgrader (deploy/hub/course_service.py)
SHOTS = ARTIFACTS / "hub"
# The written answer graded by hand in the browser (tests/test_repository.py: 1 point, graded by hand).
WRITTEN_NOTEBOOK, WRITTEN_ANSWER = "01_data_loader", "q1_1"
MANUAL_SCORE = 0.5  # not the full point: the total must rise by what was typed, not by the cell's maximum
MANUAL_COMMENT = "Right: only the gradient is cut short. Say also why drawn lengths give every token a long reach."


def _cleanup_homes() -> None:
    for user in STUDENTS:
        shutil.rmtree(Path("/home") / user / "hw4", ignore_errors=True)
        shutil.rmtree(Path("/home") / user / ".local/share/jupyter/nbgrader_cache" / COURSE_ID, ignore_errors=True)
        Path("/home", user, "hub-test-probe.txt").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, prepared_data):
    _cleanup_homes()  # a previous run that was killed may have left a fetched hw4
    try:
        with running_hub(tmp_path_factory.mktemp("hub"), prepared_data) as started:
            yield started
    finally:
        _cleanup_homes()


def start_server(hub: Hub, session: requests.Session, user: str) -> None:
    """Follows the hub's spawn redirects until the user's own server answers its API (through OAuth)."""
    spawn = session.get(f"{hub.base}/hub/spawn/{user}", timeout=30)  # starts it; /user/... alone would not
    assert spawn.status_code == 200, (spawn.status_code, spawn.text[:500])
    deadline = time.monotonic() + 90
    while True:
        # A page, not the API: only pages redirect through the hub's OAuth, which gives the server's cookie.
        page = session.get(f"{hub.base}/user/{user}/lab", timeout=30)
        if page.status_code == 200 and page.url.split("?")[0].endswith(f"/user/{user}/lab"):
            break
        assert time.monotonic() < deadline, f"{user}'s server did not start:\n{hub.log_tail()}"
        time.sleep(0.5)
    status = session.get(f"{hub.base}/user/{user}/api/status", timeout=30)
    assert status.status_code == 200 and "started" in status.json(), status.text[:500]


def server_xsrf(session: requests.Session, user: str) -> dict[str, str]:
    """Jupyter Server's XSRF header for POSTs made with cookie authentication."""
    token = session.cookies.get("_xsrf", path=f"/user/{user}/")
    assert token, f"no _xsrf cookie for /user/{user}/"
    return {"X-XSRFToken": token}


def server_pid(hub: Hub, user: str) -> int:
    for pid in tagged_processes(str(hub.run)):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"jupyterhub.singleuser" in cmdline and environ_of(pid).get("JUPYTERHUB_USER") == user:
            return pid
    raise AssertionError(f"no single-user server process for {user}")


@pytest.fixture(scope="module")
def sessions(hub) -> dict[str, requests.Session]:
    """Logged-in sessions of the three students and the instructor, their servers started at once (the slow
    part)."""
    from concurrent.futures import ThreadPoolExecutor

    users = (*STUDENTS, INSTRUCTOR)
    logged_in = {user: login(hub, user) for user in users}
    with ThreadPoolExecutor(len(users)) as pool:
        for future in [pool.submit(start_server, hub, logged_in[user], user) for user in users]:
            future.result()
    return logged_in


@pytest.fixture(scope="module")
def alice(sessions):
    return sessions[STUDENT]


@pytest.fixture(scope="module")
def instructor(sessions):
    return sessions[INSTRUCTOR]


def test_student_server_runs_as_the_student_and_sees_only_hw4lib(hub, alice):
    import pwd

    uid = pwd.getpwnam(STUDENT).pw_uid
    put = alice.put(f"{hub.base}/user/{STUDENT}/api/contents/hub-test-probe.txt", timeout=30,
                    headers=server_xsrf(alice, STUDENT),
                    json={"type": "file", "format": "text", "content": "written through the hub"})
    assert put.status_code in (200, 201), put.text
    probe = Path("/home") / STUDENT / "hub-test-probe.txt"
    assert probe.read_text() == "written through the hub"
    assert probe.stat().st_uid == uid, "the server wrote as another user than the student"
    listing = alice.get(f"{hub.base}/user/{STUDENT}/api/contents/", timeout=30).json()
    assert "hub-test-probe.txt" in {item["name"] for item in listing["content"]}

    pid = server_pid(hub, STUDENT)
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", status, re.M), status
    # /proc/PID/root shows the filesystem as that process sees it (its own mount namespace).
    seen = Path(f"/proc/{pid}/root") / REPO.relative_to("/")
    assert (seen / "hw4lib" / "__init__.py").is_file()
    for secret in ("solutions", "autograder", "deploy"):
        assert not (seen / secret).exists(), f"a student's server can see {secret}/ of the clone"
    assert (REPO / "solutions").is_dir()  # the host's own view is untouched
    assert os.stat(Path("/home") / STUDENT).st_mode & 0o077 == 0, "a student's home is open to others"


def as_user(user: str, *argv: str) -> subprocess.CompletedProcess:
    """``argv`` run by ``user`` on the host, outside any server's mount namespace: what the user's crontab, an
    ``at`` job or ``ssh localhost`` would run."""
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, cwd="/")


def test_a_student_outside_the_hub_cannot_read_solutions_grader_or_course(hub, alice):
    notebook = next((REPO / "solutions").glob("*.ipynb"))
    course_config = hub.course_root / "nbgrader_config.py"  # beside source/ and (once made) gradebook.db
    assert course_config.is_file()
    for argv in (["cat", str(notebook)], ["ls", str(REPO / "solutions")], ["ls", str(REPO / "autograder")],
                 ["cat", str(REPO / "autograder" / "config.toml")], ["ls", str(hub.course_root / "source")],
                 ["cat", str(course_config)]):
        result = as_user(STUDENT, *argv)
        assert result.returncode != 0 and "Permission denied" in result.stderr, (argv, result)
    # The staff group (the roster's instructors) still reads the grader: the course config imports it.
    grader = as_user(INSTRUCTOR, "cat", str(REPO / "autograder" / "__init__.py"))
    assert grader.returncode == 0, grader.stderr
    assert as_user(STUDENT, "cat", str(REPO / "hw4lib" / "__init__.py")).returncode == 0  # the rest stays open
    # The course (source/, the gradebook) is the course account's alone: one writer for the SQLite gradebook; the
    # instructor reaches it through the course's formgrader service.
    mine = as_user(INSTRUCTOR, "ls", str(hub.course_root))
    assert mine.returncode != 0 and "Permission denied" in mine.stderr, mine


def test_roster_groups_and_a_graders_server(hub):
    """The roster's roles are the hub's groups; a grader signs in with the password set by the instructor and
    gets a student's server whose terminals have a shell even though the account has none (nologin)."""
    ta = login(hub, GRADER)
    me = ta.get(f"{hub.base}/hub/api/user", timeout=30)
    assert me.status_code == 200 and me.json()["groups"] == ["graders"], me.text[:500]
    start_server(hub, ta, GRADER)
    env = environ_of(server_pid(hub, GRADER))
    assert env["SHELL"] == "/bin/bash", env.get("SHELL")
    assert env["JUPYTER_CONFIG_PATH"].endswith("/student"), env["JUPYTER_CONFIG_PATH"]
    assert ta.get(f"{hub.base}/user/{GRADER}/formgrader", timeout=30).status_code == 404


def test_student_cannot_open_another_users_server(hub, alice, sessions):
    bob = sessions[OTHER]
    assert bob.get(f"{hub.base}/user/{OTHER}/api/contents/", timeout=30).status_code == 200
    # Bob's server sends alice to the hub's OAuth, which refuses her: she lacks access:servers!user=awd-bob.
    page = alice.get(f"{hub.base}/user/{OTHER}/lab", timeout=30)
    assert page.status_code == 403, (page.status_code, page.url, page.text[:300])
    assert "/hub/api/oauth2/authorize" in page.url
    api = alice.get(f"{hub.base}/user/{OTHER}/api/contents/", timeout=30)
    assert api.status_code == 403, (api.status_code, api.url, api.text[:300])


def test_student_has_assignment_list_but_no_formgrader(hub, alice):
    assert alice.get(f"{hub.base}/user/{STUDENT}/formgrader", timeout=30).status_code == 404
    assert alice.get(f"{hub.base}/user/{STUDENT}/formgrader/api/assignments", timeout=30).status_code == 404
    listed = alice.get(f"{hub.base}/user/{STUDENT}/assignments", params={"course_id": COURSE_ID}, timeout=60)
    assert listed.status_code == 200 and listed.json()["success"], listed.text
    response = alice.get(f"{hub.base}/user/{STUDENT}/lab", timeout=30)
    # Only the instructor's server may be framed (by its own lab, for the formgrader tab).
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    lab = response.text
    page_config = json.loads(re.search(r'id="jupyter-config-data" type="application/json">(.*?)</script>',
                                       lab, re.S).group(1))
    disabled = page_config.get("disabledExtensions", [])
    assert "@jupyter/nbgrader:formgrader" in disabled and "@jupyter/nbgrader:create-assignment" in disabled
    assert "@jupyter/nbgrader:assignment-list" not in disabled


def open_service(hub: Hub, session: requests.Session) -> requests.Response:
    """The course's formgrader page, through the hub's OAuth (which gives the service's cookie to those let in)."""
    return session.get(f"{hub.base}{SERVICE}/formgrader", timeout=60)


def service_xsrf(session: requests.Session) -> dict[str, str]:
    token = session.cookies.get("_xsrf", path=f"{SERVICE}/")
    assert token, f"no _xsrf cookie for {SERVICE}/"
    return {"X-XSRFToken": token}


def formgrader_api(session: requests.Session, hub: Hub, method: str, path: str, **kwargs: Any) -> Any:
    """A call to the service's formgrader API, as its pages make it; fails unless it answered with success."""
    headers = service_xsrf(session) if method != "GET" else {}
    response = session.request(method, f"{hub.base}{SERVICE}/formgrader/api/{path}", headers=headers,
                               timeout=180, **kwargs)
    assert response.status_code == 200, (method, path, response.status_code, response.text[:2000])
    body = response.json()
    if isinstance(body, dict) and "success" in body:
        assert body["success"], (method, path, body)
    return body


@pytest.fixture(scope="module")
def formgrader(hub, instructor) -> requests.Session:
    """The instructor's session, let into the course's formgrader service."""
    page = open_service(hub, instructor)
    assert page.status_code == 200 and "Manage Assignments" in page.text, (page.status_code, page.text[:500])
    return instructor


@pytest.fixture(scope="module")
def ta(hub) -> requests.Session:
    """The grader (TA) signed in and let into the course's formgrader service."""
    session = login(hub, GRADER)
    page = open_service(hub, session)
    assert page.status_code == 200 and "Manage Assignments" in page.text, (page.status_code, page.text[:500])
    return session


@pytest.fixture(scope="module")
def released(hub, formgrader) -> Path:
    """hw4 generated and released by the instructor through the course service's formgrader API (as its buttons
    do)."""
    for action in ("assign", "release"):  # nbgrader generate_assignment, then release_assignment
        formgrader_api(formgrader, hub, "POST", f"assignment/hw4/{action}")
    return hub.shared / "exchange" / COURSE_ID


def test_course_service_is_for_instructors_and_graders_and_runs_as_the_course_account(hub, formgrader, ta, alice,
                                                                                       released):
    import pwd

    for who, session in ((INSTRUCTOR, formgrader), (GRADER, ta)):
        page = open_service(hub, session)
        assert page.status_code == 200 and "Manage Assignments" in page.text, (who, page.text[:500])
        # As the instructor's server had it: the formgrader's lab tab frames the page from the same origin.
        assert page.headers["Content-Security-Policy"] == "frame-ancestors 'self'", who
        assignments = formgrader_api(session, hub, "GET", "assignments")
        assert "hw4" in {a["name"] for a in assignments}, (who, assignments)
    # alice has no access:services!service=awd-course: the hub's OAuth refuses her before the service answers.
    refused = open_service(hub, alice)
    assert refused.status_code == 403 and "/hub/api/oauth2/authorize" in refused.url, (refused.status_code,
                                                                                      refused.url)
    api = alice.get(f"{hub.base}{SERVICE}/formgrader/api/assignments", timeout=30)
    assert api.status_code == 403, (api.status_code, api.text[:300])

    owner = pwd.getpwnam(COURSE_ACCOUNT)
    pid = service_pid(hub)
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(rf"^Uid:\s+{owner.pw_uid}\s+{owner.pw_uid}\s+{owner.pw_uid}\s+{owner.pw_uid}$", status,
                     re.M), status
    assert Path(owner.pw_dir) == hub.course_root.parent and os.stat(owner.pw_dir).st_mode & 0o777 == 0o700
    assert owner.pw_shell == "/usr/sbin/nologin"
    # A server's control group of its own (the limits of start.sh's --mem-limit, --cpu-limit, --max-processes).
    groups = Path(f"/proc/{pid}/cgroup").read_text()
    assert f"/awd-hub-{COURSE_ACCOUNT}-" in groups, groups
    for path in (hub.course_root, hub.course_root / "gradebook.db", hub.course_root / "release" / "hw4"):
        assert path.stat().st_uid == owner.pw_uid, f"{path} is not the course account's"
    # In the instructor's view of the clone (the course config imports autograder/), like the instructor's server.
    assert (Path(f"/proc/{pid}/root") / REPO.relative_to("/") / "autograder" / "__init__.py").is_file()
    hidden = runtime.hidden_ancestor(Path(sys.base_prefix))
    if hidden is not None:
        # The interpreter lives where the course account cannot go (a pyenv Python under /root): outside the
        # service's view it cannot even start it, which is why the hub does not let JupyterHub setuid it directly.
        outside = as_user(COURSE_ACCOUNT, sys.executable, "-c", "pass")
        assert outside.returncode != 0 and "Permission denied" in outside.stderr, (hidden, outside)


def assignment_list(hub: Hub, session: requests.Session, user: str, action: str) -> None:
    """A button of the user's assignment list (fetch, submit, fetch_feedback), through its server's API."""
    result = session.post(f"{hub.base}/user/{user}/assignments/{action}", headers=server_xsrf(session, user),
                          timeout=120, data={"course_id": COURSE_ID, "assignment_id": "hw4"})
    assert result.status_code == 200 and result.json()["success"], (user, action, result.text[:2000])


def fetch_work_submit(hub: Hub, session: requests.Session, user: str, work: Any) -> Path:
    """``user`` fetches hw4 through the assignment list's API, ``work(folder)`` does the student's work (written
    here as root, then handed back to them), and they submit it. Returns the fetched folder."""
    listed = session.get(f"{hub.base}/user/{user}/assignments", params={"course_id": COURSE_ID}, timeout=60).json()
    assert {(a["assignment_id"], a["status"]) for a in listed["value"]} >= {("hw4", "released")}, listed
    assignment_list(hub, session, user, "fetch")
    fetched = Path("/home") / user / "hw4"
    work(fetched)
    course_setup.chown_tree(fetched, user)  # theirs again, as if they had done the work
    assignment_list(hub, session, user, "submit")
    return fetched


def reference_work(trained_model: Path) -> Any:
    """The reference answers and a trained ``model.pt``: a submission that earns every autograded point."""
    def work(folder: Path) -> None:
        for notebook in sorted(folder.glob("*.ipynb")):
            fill_with_reference(notebook, delimiters=False)
        shutil.copy2(trained_model, folder / "model.pt")

    return work


@pytest.fixture(scope="module")
def submitted(hub, alice, released, trained_model) -> Path:
    """alice fetches hw4, fills it with the reference answers and a trained ``model.pt``, and submits it.
    Returns her fetched folder."""
    return fetch_work_submit(hub, alice, STUDENT, reference_work(trained_model))


def test_release_fetch_submit_through_the_exchange(hub, released, submitted):
    import pwd

    uid = pwd.getpwnam(STUDENT).pw_uid
    assert sorted((released / "outbound" / "hw4").glob("*.ipynb")), "release put no notebook in the exchange"
    inbound = released / "inbound"
    assert os.stat(inbound).st_mode & 0o777 == 0o733, "inbound must be writable but not listable by students"
    fetched = submitted
    assert fetched.is_dir() and fetched.stat().st_uid == uid
    assert sorted(p.name for p in fetched.glob("*.ipynb")) == sorted(
        p.name for p in (released / "outbound" / "hw4").glob("*.ipynb"))
    submissions = [p for p in inbound.iterdir() if p.name.startswith(f"{STUDENT}+hw4+")]
    assert len(submissions) == 1 and submissions[0].stat().st_uid == uid
    assert {p.name for p in submissions[0].iterdir()} >= {"model.pt", f"{WRITTEN_NOTEBOOK}.ipynb"}


def grade_submitted(hub: Hub, config: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The course's sandboxed grader on what the formgrader collected, run as the course account in a terminal of
    the course service; its verdicts land where the course's nbgrader config reads them (deploy/hub/accounts.py).
    Returns each collected student's, by part."""
    root = hub.course_root
    grade_collected(root, config, sys.executable, service_environment(service_pid(hub)),
                    lambda argv: run_in_service(hub, argv, root), owner=COURSE_ACCOUNT)
    return {path.stem: json.loads(path.read_text())["parts"]
            for path in (root / course_setup.VERDICTS).glob("*.json")}


def confirm(frame: Any, message: str, timeout_ms: int = 180_000) -> None:
    """The formgrader's dialog after one of its buttons: fails with nbgrader's log when it reports an error,
    else checks its message and closes it."""
    from playwright.sync_api import expect

    dialog = frame.locator("#success-modal, #error-modal")
    expect(dialog).to_be_visible(timeout=timeout_ms)
    text = dialog.inner_text()
    assert dialog.get_attribute("id") == "success-modal" and message in text, text[-3000:]
    dialog.get_by_role("button", name="OK").click()
    expect(dialog).to_have_count(0)


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_formgrader_and_assignment_list(hub, formgrader, submitted, grading_config):
    """Item 3 in Chromium: the hub's login page; the instructor opens the course's formgrader service in a tab of
    its own, collects alice's hw4 there, the sandboxed grader grades it, the formgrader's autograde records it, the
    instructor grades a written answer by hand and releases feedback; alice fetches and reads it in her
    assignment list."""
    from playwright.sync_api import expect, sync_playwright

    api = f"{hub.base}{SERVICE}/formgrader/api"
    instructor = formgrader
    started = time.monotonic()

    def step(done: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {done}")  # pytest -s shows where the time goes

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):  # a size check below must not pass on a previous run's file
        old.unlink()

    def sign_in(page, user: str) -> None:
        page.goto(f"{hub.base}/hub/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", hub.passwords[user])
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=120_000)
        page.locator(".jp-LabShell").wait_for()

    def open_from_nbgrader_menu(page, item: str) -> None:
        page.get_by_role("menuitem", name="Nbgrader", exact=True).click()
        page.get_by_role("menuitem", name=item, exact=True).click()

    def new_page(browser):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        # The formgrader's and the feedback's pages load MathJax from a CDN: unreachable here, reachable in CI,
        # and once loaded it moves the focus to the first score input. Refused everywhere: the same pages here
        # and in CI, and no focus taken from an input being typed in.
        context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
        page = context.new_page()
        page.set_default_timeout(60_000)
        return page

    def gradebook(path: str, **params: str) -> Any:
        response = instructor.get(f"{api}/{path}", params=params, timeout=30)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        return response.json()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            teacher, student = new_page(browser), new_page(browser)
            try:
                # The instructor: the course's formgrader in its own tab -> Manage Assignments -> hw4's Collect.
                sign_in(teacher, INSTRUCTOR)
                formgrader = teacher.context.new_page()
                formgrader.set_default_timeout(60_000)
                formgrader.goto(f"{hub.base}{SERVICE}/formgrader")
                formgrader.wait_for_url(re.compile(rf"{SERVICE}/formgrader"), timeout=120_000)
                expect(formgrader.get_by_text("Manage Assignments").first).to_be_visible()
                expect(formgrader.locator("#main-table").get_by_text("hw4", exact=True)).to_be_visible()
                hw4 = formgrader.locator("#main-table tr", has=formgrader.get_by_text("hw4", exact=True))
                hw4.locator(".collect a").click()
                confirm(formgrader, "Successfully collected submissions of 'hw4'.")
                expect(hw4.locator(".num-submissions")).to_have_text("1")
                formgrader.screenshot(path=str(SHOTS / "01_formgrader_assignments.png"))
                step("collected in the formgrader")

                # The grader is a command, not a formgrader button (docs/deploy.md): run where a terminal of
                # the course service would run it. Then Manage Submissions -> alice's Autograde button.
                verdicts = grade_submitted(hub, grading_config["path"])[STUDENT]
                assert all(v["score"] == v["points"] for v in verdicts.values()), verdicts  # the reference
                step("graded by the sandboxed grader")
                hw4.locator(".num-submissions a").click()
                alice_row = formgrader.locator("#main-table tr", has_text=STUDENT)
                alice_row.locator(".autograde a").click()
                confirm(formgrader, f"Successfully autograded 'hw4' for student '{STUDENT}'.")
                expect(alice_row.locator(".status")).to_have_text("needs manual grading")
                step("autograded in the formgrader")
                assert not (hub.course_root / "verdicts").exists(), "autograde graded again instead of recording"
                before = gradebook(f"submission/hw4/{STUDENT}")
                assert before["autograded"] and before["needs_manual_grade"], before
                # Every autograded point is the sandboxed grader's; no written answer has a score yet.
                assert before["score"] == pytest.approx(sum(v["score"] for v in verdicts.values())), before

                # alice's submission -> the stage-1 notebook: the part's verdict, then the written answer.
                alice_row.locator(".student-name a").click()
                notebook_row = formgrader.locator("#main-table tr", has_text=WRITTEN_NOTEBOOK)
                notebook_row.locator(".name a").click()
                part = next(v for v in verdicts.values() if v["notebook"] == f"{WRITTEN_NOTEBOOK}.ipynb")
                part_line = f"{part['part']}: {part['score']:g} / {part['points']:g} points"
                verdict_output = formgrader.get_by_text(part_line).first
                expect(verdict_output).to_be_visible()
                expect(formgrader.locator(f"input.score#test_{part['part']}")).to_have_attribute(
                    "placeholder", f"{part['score']:g}")  # the recorded auto score
                score = formgrader.locator(f"input.score#{WRITTEN_ANSWER}")
                expect(score).to_have_class(re.compile(r"\bneeds_manual_grade\b"))
                verdict_output.scroll_into_view_if_needed()
                formgrader.screenshot(path=str(SHOTS / "02_submission_scores.png"))

                def saved(kind: str):
                    return formgrader.expect_response(
                        lambda r: f"/formgrader/api/{kind}/" in r.url and r.request.method == "PUT")

                comment = formgrader.locator(f"textarea#{WRITTEN_ANSWER}-comment")
                comment.scroll_into_view_if_needed()
                with saved("grade") as grade_put:  # the formgrader saves an input when it loses the focus
                    score.fill(f"{MANUAL_SCORE:g}")
                    score.blur()
                with saved("comment") as comment_put:
                    comment.fill(MANUAL_COMMENT)
                    comment.blur()
                assert grade_put.value.ok and comment_put.value.ok
                expect(score).not_to_have_class(re.compile(r"\bneeds_manual_grade\b"))
                formgrader.screenshot(path=str(SHOTS / "03_manual_grade.png"))

                # The gradebook holds what was typed, and the total rose by exactly the manual score.
                notebook_id = next(n["id"] for n in gradebook(f"student_notebook_submissions/{STUDENT}/hw4")
                                   if n["name"] == WRITTEN_NOTEBOOK)
                grades = {g["name"]: g for g in gradebook("grades", submission_id=notebook_id)}
                comments = {c["name"]: c for c in gradebook("comments", submission_id=notebook_id)}
                assert grades[WRITTEN_ANSWER]["manual_score"] == MANUAL_SCORE, grades[WRITTEN_ANSWER]
                assert not grades[WRITTEN_ANSWER]["needs_manual_grade"], grades[WRITTEN_ANSWER]
                assert grades[f"test_{part['part']}"]["auto_score"] == part["score"], grades
                assert comments[WRITTEN_ANSWER]["manual_comment"] == MANUAL_COMMENT, comments[WRITTEN_ANSWER]
                after = gradebook(f"submission/hw4/{STUDENT}")
                assert after["score"] == pytest.approx(before["score"] + MANUAL_SCORE), (before, after)
                step("graded by hand in the formgrader")

                # Back to Manage Assignments: hw4's Generate Feedback and Release Feedback buttons.
                formgrader.get_by_role("link", name="Manual Grading").click()
                formgrader.get_by_role("link", name="Manage Assignments").click()
                hw4.locator(".generate-feedback a").click()
                confirm(formgrader, "Successfully generated feedback of 'hw4'.")
                hw4.locator(".release-feedback a").click()
                confirm(formgrader, "Successfully released feedback of 'hw4'.")
                step("feedback generated and released in the formgrader")

                # alice: Nbgrader -> Assignment List -> Fetch Feedback -> (view feedback) -> the notebook's page.
                sign_in(student, STUDENT)
                expect(student.get_by_role("menuitem", name="Nbgrader", exact=True)).to_be_visible()
                open_from_nbgrader_menu(student, "Assignment List")
                assignments = student.locator(".jp-MainAreaWidget", has_text="Released assignments")
                expect(assignments.get_by_text(COURSE_ID).first).to_be_visible()
                expect(assignments.get_by_text("hw4").first).to_be_visible()
                assignments.get_by_role("button", name="Fetch Feedback").click()
                view_feedback = assignments.get_by_text("(view feedback)")
                expect(view_feedback).to_be_visible(timeout=120_000)
                view_feedback.click()  # the file browser goes to hw4/feedback/<timestamp>/
                student.locator(".jp-DirListing-item", has_text=f"{WRITTEN_NOTEBOOK}.html").dblclick()
                feedback = student.frame_locator(".jp-HTMLViewer iframe")
                expect(feedback.get_by_text(part_line).first).to_be_visible()
                expect(feedback.get_by_text(f"Written response (Score: {MANUAL_SCORE:g} / 1.0)")).to_be_visible()
                expect(feedback.get_by_text(MANUAL_COMMENT)).to_be_visible()
                student.screenshot(path=str(SHOTS / "04_student_feedback.png"))
                feedback.get_by_text(MANUAL_COMMENT).scroll_into_view_if_needed()
                student.screenshot(path=str(SHOTS / "05_student_feedback_comment.png"))
                student.get_by_role("tab", name="Assignments", exact=True).click()
                expect(view_feedback).to_be_visible()
                student.screenshot(path=str(SHOTS / "06_student_assignment_list.png"))
                student.get_by_role("menuitem", name="Nbgrader", exact=True).click()
                expect(student.get_by_role("menuitem", name="Formgrader", exact=True)).to_have_count(0)
                step("feedback fetched and read in the assignment list")
            except Exception:
                teacher.screenshot(path=str(SHOTS / "failure_instructor.png"))
                student.screenshot(path=str(SHOTS / "failure_student.png"))
                raise
        finally:
            browser.close()
    for shot in ("01_formgrader_assignments", "02_submission_scores", "03_manual_grade", "04_student_feedback",
                 "05_student_feedback_comment", "06_student_assignment_list"):
        assert (SHOTS / f"{shot}.png").stat().st_size > 10_000


# What the TA gives each student's written answer (WRITTEN_ANSWER, 1 point): distinct, so that each student's
# feedback and row must hold their own; carol's answer is the untouched release.
TA_SCORES = {STUDENT: 0.75, OTHER: 0.25, THIRD: 0.0}
TA_COMMENT = "Graded by the TA: {student}."


def test_a_class_whole_cycle_with_a_ta(hub, sessions, formgrader, ta, submitted, grading_config, trained_model):
    """The issue's "done when": the hub up from the roster (no demo passwords), hw4 released through the course
    service's formgrader, three students fetch and submit (alice the reference and the trained model, bob one part
    wrong, carol the untouched release); the instructor collects, the sandboxed grader grades as the course account,
    autograde records the verdicts; the TA grades a written answer of each student through the service's
    formgrader API; feedback is generated and released, and each student fetches their own, with the TA's score.
    The gradebook and LmsExport's ``manual`` column hold the TA's scores."""
    started = time.monotonic()
    mistake = next(m for m in MISTAKES if set(m.fails) == {m.part})  # costs its own part and no other

    def bobs_work(folder: Path) -> None:
        reference_work(trained_model)(folder)
        mistake.make(folder)

    # alice submitted (the `submitted` fixture); bob and carol now, through their own assignment lists.
    fetch_work_submit(hub, sessions[OTHER], OTHER, bobs_work)
    fetch_work_submit(hub, sessions[THIRD], THIRD, lambda folder: None)
    print(f"{time.monotonic() - started:6.1f} s  bob and carol submitted")

    formgrader_api(formgrader, hub, "POST", "assignment/hw4/collect")
    root = hub.course_root
    assert sorted(p.name for p in (root / "submitted").iterdir()) == sorted(STUDENTS)
    verdicts = grade_submitted(hub, grading_config["path"])
    assert set(verdicts) >= set(STUDENTS), sorted(verdicts)
    print(f"{time.monotonic() - started:6.1f} s  graded by the sandboxed grader")
    for student in STUDENTS:
        formgrader_api(formgrader, hub, "POST", f"submission/hw4/{student}/autograde")
    print(f"{time.monotonic() - started:6.1f} s  autograded")

    # The TA, in the course service: the written answer of each student, a score and a comment.
    for student in STUDENTS:
        notebooks = formgrader_api(ta, hub, "GET", f"student_notebook_submissions/{student}/hw4")
        notebook_id = next(n["id"] for n in notebooks if n["name"] == WRITTEN_NOTEBOOK)
        grade = next(g for g in formgrader_api(ta, hub, "GET", "grades", params={"submission_id": notebook_id})
                     if g["name"] == WRITTEN_ANSWER)
        comment = next(c for c in formgrader_api(ta, hub, "GET", "comments", params={"submission_id": notebook_id})
                       if c["name"] == WRITTEN_ANSWER)
        saved = formgrader_api(ta, hub, "PUT", f"grade/{grade['id']}", json={"manual_score": TA_SCORES[student]})
        assert saved["manual_score"] == TA_SCORES[student] and not saved["needs_manual_grade"], saved
        formgrader_api(ta, hub, "PUT", f"comment/{comment['id']}",
                       json={"manual_comment": TA_COMMENT.format(student=student)})

    formgrader_api(formgrader, hub, "POST", "assignment/hw4/generate_feedback")
    formgrader_api(formgrader, hub, "POST", "assignment/hw4/release_feedback")
    print(f"{time.monotonic() - started:6.1f} s  TA grades in; feedback generated and released")

    # The grades: the sandboxed grader's verdicts for the code parts, the TA's for the written answer.
    config = load_config(grading_config["path"])
    rows = gradebook_rows(root, list(STUDENTS), config, {}, log=pytest.fail)
    got = {(r["student"], r["grade_id"][len("test_"):]): (r["score"], r["max_score"]) for r in rows}
    parts = {p.name: p.points for p in config.parts}
    assert all(got[STUDENT, p] == (pts, pts) for p, pts in parts.items()), got
    assert got[OTHER, mistake.part][0] < parts[mistake.part], (mistake.name, got[OTHER, mistake.part])
    assert all(got[OTHER, p] == (pts, pts) for p, pts in parts.items() if p != mistake.part), got
    assert all(got[THIRD, p][0] == 0 for p in parts), got
    export = root / "lms_export.csv"
    run_in_service(hub, [sys.executable, "-m", "nbgrader", "export", "--exporter",
                         "autograder.nbgrader_plugins.LmsExport", "--to", str(export)], root)
    lms = {row["student_id"]: row for row in csv.DictReader(export.read_text().splitlines())}
    for student in STUDENTS:
        # Every other written answer of the notebooks has no grade yet: it adds 0 (nbgrader's rule).
        assert float(lms[student]["manual"]) == pytest.approx(TA_SCORES[student]), lms[student]

    # Each student fetches their own feedback: the part verdicts, and the TA's score and comment.
    for student in STUDENTS:
        assignment_list(hub, sessions[student], student, "fetch_feedback")
        pages = list((Path("/home") / student / "hw4" / "feedback").glob(f"*/{WRITTEN_NOTEBOOK}.html"))
        assert len(pages) == 1, pages
        text = " ".join(re.sub(r"<[^>]+>", " ", pages[0].read_text()).split())
        # nbgrader's feedback template prints the score as `score | float | round(2)`: 0.0, 0.25, 0.75
        assert f"Written response (Score: {round(TA_SCORES[student], 2)!r} / 1.0)" in text, (student, text[-3000:])
        assert TA_COMMENT.format(student=student) in text, student
        for other in STUDENTS:
            if other != student:
                assert TA_COMMENT.format(student=other) not in text, (student, other)
        part = next(p for p in config.parts if p.notebook == f"{WRITTEN_NOTEBOOK}.ipynb")
        assert f"{part.name}: {got[student, part.name][0]:g} / {part.points:g} points" in text, (student, part)
    print(f"{time.monotonic() - started:6.1f} s  each student read their feedback")

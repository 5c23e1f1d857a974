"""The one-machine JupyterHub (deploy/hub/) for real: PAM users, LocalProcessSpawner, configurable-http-proxy.

Starts ``deploy/hub/start.sh`` as root on a free port with its run folder and shared folder (exchange, role
config) in temporary places, logs in over HTTP with the demo passwords, and checks what each role gets: the
server runs as the student's Unix user and sees only ``hw4lib/`` of the clone, nobody reaches another user's
server, students have no formgrader, and the instructor generates and releases hw4 through the formgrader API
so that a student fetches and submits it through the assignment list's API and the exchange.

The Unix users ``awd-*`` are the deployment's own demo accounts (created if missing, kept afterwards); the
test removes what it put in their homes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import requests  # a dependency of jupyterhub

from tests.fixtures.hub import Hub, environ_of, login, running_hub, tagged_processes
from tests.notebook_tools import REPO
from tests.test_browser import CHROMIUM, LAUNCH_ARGS

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the hub needs root: PAM reads /etc/shadow, and servers run as the users")

COURSE_ID = "awd-course"
STUDENT, OTHER, INSTRUCTOR = "awd-alice", "awd-bob", "awd-instructor"


def _cleanup_homes() -> None:
    for user in (STUDENT, OTHER):
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
    """Logged-in sessions of alice, bob and the instructor, their servers started at once (the slow part)."""
    from concurrent.futures import ThreadPoolExecutor

    users = (STUDENT, OTHER, INSTRUCTOR)
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


@pytest.fixture(scope="module")
def released(hub, instructor) -> Path:
    """hw4 generated and released by the instructor through the formgrader's API (as its buttons do)."""
    base = f"{hub.base}/user/{INSTRUCTOR}/formgrader"
    headers = server_xsrf(instructor, INSTRUCTOR)
    for action in ("assign", "release"):  # nbgrader generate_assignment, then release_assignment
        result = instructor.post(f"{base}/api/assignment/hw4/{action}", headers=headers, timeout=120)
        assert result.status_code == 200 and result.json()["success"], (action, result.text[:2000])
    return hub.shared / "exchange" / COURSE_ID


def test_instructor_formgrader_answers(hub, instructor):
    base = f"{hub.base}/user/{INSTRUCTOR}/formgrader"
    page = instructor.get(base, timeout=30)
    assert page.status_code == 200 and "Manage Assignments" in page.text, page.text[:500]
    assert page.headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    assignments = instructor.get(f"{base}/api/assignments", timeout=60).json()
    assert "hw4" in {a["name"] for a in assignments}, assignments


def test_release_fetch_submit_through_the_exchange(hub, alice, released):
    import pwd

    uid = pwd.getpwnam(STUDENT).pw_uid
    assert sorted((released / "outbound" / "hw4").glob("*.ipynb")), "release put no notebook in the exchange"
    inbound = released / "inbound"
    assert os.stat(inbound).st_mode & 0o777 == 0o733, "inbound must be writable but not listable by students"
    url = f"{hub.base}/user/{STUDENT}/assignments"
    listed = alice.get(url, params={"course_id": COURSE_ID}, timeout=60).json()
    assert {(a["assignment_id"], a["status"]) for a in listed["value"]} >= {("hw4", "released")}, listed
    headers = server_xsrf(alice, STUDENT)
    for action in ("fetch", "submit"):
        result = alice.post(f"{url}/{action}", headers=headers, timeout=120,
                            data={"course_id": COURSE_ID, "assignment_id": "hw4"})
        assert result.status_code == 200 and result.json()["success"], (action, result.text[:2000])
    fetched = Path("/home") / STUDENT / "hw4"
    assert fetched.is_dir() and fetched.stat().st_uid == uid
    assert sorted(p.name for p in fetched.glob("*.ipynb")) == sorted(
        p.name for p in (released / "outbound" / "hw4").glob("*.ipynb"))
    submissions = [p for p in inbound.iterdir() if p.name.startswith(f"{STUDENT}+hw4+")]
    assert len(submissions) == 1 and submissions[0].stat().st_uid == uid


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_formgrader_and_assignment_list(hub, released, tmp_path):
    """Item 3: the hub's login page, the instructor's formgrader and a student's assignment list in Chromium."""
    from playwright.sync_api import expect, sync_playwright

    def sign_in(page, user: str) -> None:
        page.goto(f"{hub.base}/hub/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", user)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=120_000)
        page.locator(".jp-LabShell").wait_for()

    def open_from_nbgrader_menu(page, item: str) -> None:
        page.get_by_role("menuitem", name="Nbgrader", exact=True).click()
        page.get_by_role("menuitem", name=item, exact=True).click()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            teacher = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            teacher.set_default_timeout(60_000)
            student = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            student.set_default_timeout(60_000)
            try:
                sign_in(teacher, INSTRUCTOR)
                open_from_nbgrader_menu(teacher, "Formgrader")
                formgrader = teacher.frame_locator("iframe[src*='formgrader']")
                expect(formgrader.get_by_text("Manage Assignments").first).to_be_visible()
                expect(formgrader.locator("#main-table").get_by_text("hw4", exact=True)).to_be_visible()
                teacher.screenshot(path=str(tmp_path / "instructor_formgrader.png"))

                sign_in(student, STUDENT)
                expect(student.get_by_role("menuitem", name="Nbgrader", exact=True)).to_be_visible()
                open_from_nbgrader_menu(student, "Assignment List")
                assignments = student.locator(".jp-MainAreaWidget", has_text="Released assignments")
                expect(assignments.get_by_text(COURSE_ID).first).to_be_visible()
                expect(assignments.get_by_text("hw4").first).to_be_visible()
                student.screenshot(path=str(tmp_path / "student_assignment_list.png"))
                student.get_by_role("menuitem", name="Nbgrader", exact=True).click()
                expect(student.get_by_role("menuitem", name="Formgrader", exact=True)).to_have_count(0)
            except Exception:
                teacher.screenshot(path=str(tmp_path / "instructor_failure.png"))
                student.screenshot(path=str(tmp_path / "student_failure.png"))
                raise
        finally:
            browser.close()
    for shot in ("instructor_formgrader.png", "student_assignment_list.png"):
        assert (tmp_path / shot).stat().st_size > 10_000

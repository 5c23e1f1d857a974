"""The servers' view of the clone (deploy/hub/runtime.py) for layouts this machine does not have.

tests/test_hub.py runs the real thing with the clone and venv where they are here; these check the plan for
CI's layout (clone, venv and data under /root, Python from pyenv in /root) and a world-readable /opt clone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from deploy.hub import runtime


@pytest.fixture
def layout(monkeypatch):
    def use(repo: str, prefix: str, base_prefix: str, closed: tuple[str, ...]):
        monkeypatch.setattr(sys, "prefix", prefix)
        monkeypatch.setattr(sys, "base_prefix", base_prefix)
        monkeypatch.setattr(Path, "resolve", lambda self, strict=False: Path(str(self)))

        def hidden(path: Path) -> Path | None:
            return next((Path(c) for c in closed if Path(path).is_relative_to(c)), None)

        monkeypatch.setattr(runtime, "hidden_ancestor", hidden)
        return Path(repo)

    return use


def test_ci_layout_under_root(layout):
    repo = layout("/root/clone", "/root/clone/.venv", "/root/.pyenv/versions/3.11.7", ("/root",))
    # One tmpfs over /root; inside it, read-only, only what a student's server runs on (not the clone).
    assert runtime.view_for("student", repo, repo / "data").plan() == [(Path("/root"), [
        Path("/root/clone/.venv"), Path("/root/clone/data"), Path("/root/clone/hw4lib"),
        Path("/root/.pyenv/versions/3.11.7")])]
    instructor = runtime.view_for("instructor", repo, repo / "data").plan()
    assert [h for h, _ in instructor] == [Path("/root")]
    exposed = instructor[0][1]
    assert Path("/root/clone") in exposed
    # The clone is bound before the venv inside it, so the venv's bind lands on the clone's.
    assert exposed.index(Path("/root/clone")) < exposed.index(Path("/root/clone/.venv"))


def test_world_readable_clone_still_hides_solutions_from_students(layout):
    repo = layout("/opt/awd", "/opt/awd/.venv", "/usr", ())
    assert runtime.view_for("student", repo, repo / "data").plan() == [
        (Path("/opt/awd"), [Path("/opt/awd/.venv"), Path("/opt/awd/data"), Path("/opt/awd/hw4lib")])]
    assert runtime.view_for("instructor", repo, repo / "data").plan() == []


def test_unknown_role_is_refused(layout):
    repo = layout("/opt/awd", "/opt/awd/.venv", "/usr", ())
    with pytest.raises(ValueError, match="unknown role"):
        runtime.view_for("grader", repo, repo / "data")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_student_cannot_move_the_course_aside_in_the_hubs_exchange():
    """The hub's exchange is 1777 (sticky): anybody may create, nobody may rename or remove another's entry."""
    from deploy.hub import accounts

    top = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        exchange = accounts.ensure_exchange(top / "exchange")
        assert exchange.stat().st_mode & 0o7777 == 0o1777
        (exchange / "awd-course" / "outbound").mkdir(parents=True)  # the instructor's (here root's) course folder
        moved = subprocess.run(["runuser", "-u", "nobody", "--", "mv", str(exchange / "awd-course"),
                                str(exchange / "aside")], capture_output=True, text=True)
        assert moved.returncode != 0 and (exchange / "awd-course" / "outbound").is_dir(), moved.stderr
        made = subprocess.run(["runuser", "-u", "nobody", "--", "mkdir", str(exchange / "theirs")],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr  # creating stays open, as nbgrader needs
    finally:
        shutil.rmtree(top)


STUDENT_PROBE = """
import json, os, sys
from hw4lib import checks
from hw4lib.lab import curves
repo = sys.argv[1]
print(json.dumps({"checks": checks.__file__, "bar": checks.grading_bar(), "contract": checks.contract(1).data,
                  "visible": sorted(os.listdir(repo)), "measured": sorted(curves.read_csv("curves_60min.csv"))}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to build the view and act as another user")
def test_a_students_view_holds_the_contract_and_the_grading_bar():
    """What a student's kernel on the hub reaches: the spawner's view of this clone (runtime.view_for, laid out by
    the same preexec_fn), as another user, with the spawner's PYTHONPATH. Stage 7's thresholds and each stage's
    contract must come from hw4lib alone: autograder/config.toml and docs/components.md are out of sight."""
    import json
    import pwd

    from autograder.config import DEFAULT_CONFIG
    from hw4lib import checks

    repo = Path(__file__).resolve().parent.parent
    view = runtime.view_for("student", repo, repo / "data")
    nobody = pwd.getpwnam("nobody")

    def become_nobody() -> None:  # JupyterHub's own step after the view: drop to the user's uid
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    stage = Path(tempfile.mkdtemp(dir="/tmp"))  # root-only and empty, outside every hidden folder
    try:
        os.chmod(stage, 0o700)
        probe = subprocess.run([sys.executable, "-c", STUDENT_PROBE, str(repo)], cwd="/", capture_output=True,
                               text=True, timeout=120, preexec_fn=runtime.preexec_with_view(view, stage, become_nobody),
                               env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "HOME": "/"})
    finally:
        stage.rmdir()
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout)
    # Only what a student's server runs on: hw4lib/, and the data and the venv when they live in the clone (CI).
    inside = [p for p in (repo / "data", Path(sys.prefix).resolve()) if p.is_relative_to(repo)]
    assert seen["visible"] == sorted({"hw4lib", *(p.relative_to(repo).parts[0] for p in inside)}), seen["visible"]
    assert not {"solutions", "autograder", "docs"} & set(seen["visible"])
    assert Path(seen["checks"]) == repo / "hw4lib" / "checks.py"
    assert seen["bar"] == checks.grading_bar(DEFAULT_CONFIG) and seen["bar"]["full"] < seen["bar"]["zero"]
    source = (repo / "docs" / "components.md").read_text()
    assert seen["contract"] == checks.contract_text(1, source)
    assert "### Stage 1: LanguageModelDataLoader" in seen["contract"]
    assert "cpu60-wt2" in seen["measured"]  # stage 7's measured runs, from hw4lib/measured/


# The roster (deploy/roster.py), shared by the hub and deploy/course_setup.py.

def _roster_toml(folder: Path, extra: str = "") -> Path:
    path = folder / "roster.toml"
    path.write_text('course_id = "c1"\ninstructors = ["prof"]\ngraders = ["ta1"]\nstudents = ["s1"]\n' + extra +
                    '[paths]\nexchange = "/x"\ncourse = "/c"\nruntime = "/r"\ncode = "/k"\n')
    return path


def test_roster_reads_toml_and_an_lms_csv(tmp_path):
    from deploy import course_setup, roster

    # A Canvas-like export: BOM, capitalised headers, extra columns, the LMS's role names, a blank line.
    (tmp_path / "class.csv").write_text("\ufeffName,Username,Role\nAda,s2,StudentEnrollment\nBo,ta2,TA\n"
                                        "Cy,s3,\n,,\nDi,prof2,Teacher\n")
    loaded = roster.load(_roster_toml(tmp_path), tmp_path / "class.csv")
    assert (loaded.instructors, loaded.graders, loaded.students) == (("prof", "prof2"), ("ta1", "ta2"),
                                                                    ("s1", "s2", "s3"))
    assert loaded.instructor == "prof" and loaded.staff_group == "c1-staff"
    assert loaded.users == ("prof", "prof2", "ta1", "ta2", "s1", "s2", "s3")
    assert loaded.role_of("ta2") == "grader"
    # The TOML may name the CSV itself; course_setup reads the very same roster.
    named = _roster_toml(tmp_path, 'members_csv = "class.csv"\n')
    assert course_setup.load_roster(named) == loaded
    assert course_setup.load_roster(named, course=tmp_path).course == tmp_path


@pytest.mark.parametrize("csv, error", [
    ("username,role\ns1,instructor\n", "s1 is both instructor and student"),
    ("username,role\nBad Name,student\n", "not a valid Unix user name"),
    ("username,role\nx1,janitor\n", "line 2: unknown role 'janitor'"),
    ("user,role\nx1,student\n", "no 'username' column"),
])
def test_roster_refuses_what_would_make_wrong_accounts(tmp_path, csv, error):
    from deploy import roster

    (tmp_path / "class.csv").write_text(csv)
    with pytest.raises(ValueError, match=error):
        roster.load(_roster_toml(tmp_path), tmp_path / "class.csv")


def test_hub_config_takes_users_and_groups_from_the_roster(tmp_path, monkeypatch):
    """jupyterhub_config.py as JupyterHub loads it: who may sign in, the groups, who is an instructor."""
    from traitlets.config.loader import PyFileConfigLoader

    from deploy.hub import launch

    (tmp_path / "proxy_auth_token").write_text("t")
    (tmp_path / "class.csv").write_text("username,role\ns2,student\n")
    env = {"AWD_HUB_RUN_DIR": tmp_path, "AWD_HUB_PORT": 1, "AWD_HUB_INTERNAL_PORT": 2, "AWD_HUB_PROXY_API_PORT": 3,
           "AWD_HUB_REPO": "/r", "AWD_HUB_DATA_DIR": "/d", "AWD_HUB_ROLE_CONFIG": "/j", "AWD_HUB_STAGE_DIR": "/s",
           "AWD_HUB_ROSTER": _roster_toml(tmp_path), "AWD_HUB_MEMBERS": tmp_path / "class.csv",
           "AWD_HUB_MEM_LIMIT": 2**30, "AWD_HUB_CPU_LIMIT": 1.5, "AWD_HUB_MAX_PROCESSES": 100,
           "AWD_HUB_CULL_TIMEOUT": 600, "AWD_HUB_COURSE_SERVICE_PORT": 4, "AWD_HUB_COURSE_ROOT": "/h/grader-c1/c1"}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    config = PyFileConfigLoader("jupyterhub_config.py", str(launch.HERE)).load_config()
    assert config.JupyterHub.authenticator_class == "pam"
    assert config.Authenticator.allowed_users == {"prof", "ta1", "s1", "s2"}
    assert config.JupyterHub.load_groups == {"instructors": {"users": ["prof"]}, "graders": {"users": ["ta1"]},
                                             "students": {"users": ["s1", "s2"]}}
    assert config.CourseSpawner.instructors == ["prof"]
    assert config.Authenticator.admin_users == set()
    # Limits, culler, restarts (tests/test_hub_limits.py runs them): the values start.sh passed, as JupyterHub reads.
    assert (config.Spawner.mem_limit, config.Spawner.cpu_limit, config.CourseSpawner.max_processes) == (2**30, 1.5, 100)
    assert config.JupyterHub.cleanup_servers is False
    culler = next(s for s in config.JupyterHub.services if s["name"] == "idle-culler")
    assert "--timeout=600" in culler["command"] and "--cull-every=300" in culler["command"]
    # The course's formgrader: a service started as root through the entry point that drops to the course account
    # (its view and limits the servers'), for the instructors and graders groups only.
    course = next(s for s in config.JupyterHub.services if s["name"] == "c1")
    command = course["command"]
    assert command[1:3] == ["-m", "deploy.hub.service_account"] and "user" not in course
    assert command[command.index("--account") + 1] == "grader-c1"
    assert command[command.index("--memory-mb") + 1] == "1024" and command[command.index("--cores") + 1] == "1.5"
    assert command[-3:] == ["-m", "jupyterhub.singleuser", "--ServerApp.root_dir=/h/grader-c1"]
    assert course["url"] == "http://127.0.0.1:4" and course["environment"]["JUPYTER_CONFIG_PATH"] == "/j/instructor"
    assert config.JupyterHub.load_roles == [
        {"name": "c1-graders", "description": "the course's shared formgrader", "groups": ["instructors", "graders"],
         "scopes": ["access:services!service=c1"]},
        {"name": "idle-culler-role", "services": ["idle-culler"], "scopes": [
            "list:users", "read:users:activity", "read:servers", "delete:servers"]}]
    assert config.JupyterHub.bind_url.startswith("http://127.0.0.1:")  # no certificate: loopback, plain HTTP


# As root: the accounts the hub makes, its passwords, and its refusal to run with the solutions open.

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes Unix users and acts as them")


@needs_root
def test_hub_refuses_to_start_while_a_student_can_read_the_solutions(tmp_path_factory):
    """The check behind ``launch.py``'s refusal, on a temporary folder: real modes, asked of the kernel as each
    student (runuser). Readable, or only traversable (0711: a known file name is enough), are both refused."""
    from deploy import roster as roster_file
    from deploy.hub import accounts, launch

    roster = roster_file.load()
    accounts.ensure_users(roster.users)
    group = accounts.ensure_staff_group(roster.staff_group, roster.instructors)
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        solutions = top / "solutions"
        solutions.mkdir()
        (solutions / "01.ipynb").write_text("{}")
        os.chmod(solutions / "01.ipynb", 0o644)
        for mode in (0o755, 0o711):
            os.chmod(solutions, mode)
            with pytest.raises(SystemExit) as refused:
                launch.refuse_if_open(roster, [solutions])
            message = str(refused.value.code)
            assert f"{solutions} is readable by awd-alice, awd-bob, awd-carol" in message, message
            assert "cron job" in message and "fix: chmod 0700" in message, message
        shutil.chown(solutions, group=group)
        os.chmod(solutions, 0o750)  # the fix: students out, the staff group in
        launch.refuse_if_open(roster, [solutions])  # no exit
        assert launch.open_paths(roster, [solutions]) == {}
        assert accounts.reachable_by(roster.instructor, [solutions]) == [solutions]
        # The fix printed for the clone's own folders names the staff group.
        with pytest.raises(SystemExit) as refused:
            launch.refuse_if_open(roster, [launch.REPO / "hw4lib"])  # open to students, rightly: a stand-in
        assert f"chgrp {group} {launch.REPO / 'hw4lib'} && chmod 0750" in str(refused.value.code)
    finally:
        shutil.rmtree(top)


@needs_root
def test_no_password_without_demo_and_demo_announced(tmp_path, prepared_data):
    """``start.sh --prepare-only``: the account it makes for a new roster member has no login shell and no
    password, and no existing account's password changes; with ``--demo`` every account's password is its
    name, said loudly, and PAM (as the hub uses it) accepts it for the nologin account."""
    import pamela

    from deploy import roster as roster_file
    from deploy.hub import accounts
    from tests.fixtures.hub import closed_repo, restore_hashes, shadow_hashes

    newcomer = f"awd-new{os.getpid() % 100000}"
    (tmp_path / "class.csv").write_text(f"username,role\n{newcomer},student\n")
    users = roster_file.load().users
    before = shadow_hashes(users)
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    course_dir = f"awd-course-prepare-{os.getpid()}"
    os.chmod(top, 0o755)

    def prepare(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(Path(__file__).resolve().parent.parent / "deploy" / "hub" / "start.sh"), "--prepare-only",
             "--run-dir", str(top / "run"), "--shared-dir", str(top / "shared"), "--course-dir", course_dir,
             "--data-dir", str(prepared_data), "--members", str(tmp_path / "class.csv"), *extra],
            env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True)

    try:
        with closed_repo():
            plain = prepare()
            assert plain.returncode == 0, plain.stdout[-2000:] + plain.stderr[-2000:]
            assert "DEMO" not in plain.stdout + plain.stderr
            import pwd

            assert pwd.getpwnam(newcomer).pw_shell == accounts.NOLOGIN
            assert shadow_hashes((newcomer,))[newcomer].startswith(("!", "*")), "a new account got a password"
            assert shadow_hashes(users) == before, "a password changed without --demo"
            with pytest.raises(pamela.PAMError):
                pamela.authenticate(newcomer, newcomer, service="login")

            demo = prepare("--demo")
            assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
            assert "DEMO PASSWORDS" in demo.stdout and "Never use --demo for a class" in demo.stdout, demo.stdout
            for user in (newcomer, "awd-alice"):
                pamela.authenticate(user, user, service="login")  # raises on a refusal
                pamela.check_account(user, service="login")
    finally:
        restore_hashes(before)
        subprocess.run(["userdel", "-r", newcomer], capture_output=True)
        shutil.rmtree(Path("/home/awd-instructor") / course_dir, ignore_errors=True)
        shutil.rmtree(top, ignore_errors=True)


@needs_root
def test_start_sh_refuses_a_clone_whose_solutions_students_can_read(prepared_data):
    """The whole start script on a world-readable copy of the clone under /tmp (the real one is not opened):
    it stops before the hub, naming each open folder, who can read it and the fix."""
    repo = Path(__file__).resolve().parent.parent
    copy = Path(tempfile.mkdtemp(prefix="awd-open-clone-", dir="/tmp"))
    course_dir = f"awd-course-refused-{os.getpid()}"
    try:
        os.chmod(copy, 0o755)
        for name in ("deploy", "autograder", "hw4lib", "solutions", "notebooks"):
            shutil.copytree(repo / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(["chmod", "-R", "a+rX", str(copy)], check=True)
        started = subprocess.run(
            ["bash", str(copy / "deploy" / "hub" / "start.sh"), "--run-dir", str(copy / "run"), "--shared-dir",
             str(copy / "shared"), "--course-dir", course_dir, "--data-dir", str(prepared_data)],
            env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=120)
        assert started.returncode != 0, started.stdout[-2000:]
        assert "refusing to start" in started.stderr, started.stderr[-2000:]
        for name in ("solutions", "autograder"):
            assert f"{copy / name} is readable by awd-alice, awd-bob, awd-carol" in started.stderr, started.stderr
            assert f"fix: chgrp awd-course-staff {copy / name} && chmod 0750 {copy / name}" in started.stderr
        assert str(Path("/home/awd-instructor") / course_dir) not in started.stderr  # the course root is closed
        assert not (copy / "run" / "jupyterhub.pid").exists() and "JupyterHub on" not in started.stdout
    finally:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(Path("/home/awd-instructor") / course_dir, ignore_errors=True)

"""Fast checks of the autograder's pieces: the sandbox's walls, the verdict-to-nbgrader mapping, hidden cells."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.utils import determine_grade

from autograder import hidden, sandbox
from autograder.config import load as load_config
from autograder.preprocessors import outputs_for


def _grade_cell(points: float) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("import autograder.hidden\nautograder.hidden.verdict('x')")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "test_x",
                                 "points": points, "schema_version": 3, "task": False}
    return cell


@pytest.mark.parametrize("score", [0.0, 2.5, 7.99, 8.0])
def test_nbgrader_records_exactly_the_judged_score(score):
    cell = _grade_cell(8)
    cell.outputs = outputs_for({"part": "x", "score": score, "points": 8.0, "message": "FAIL  something: why"})
    assert determine_grade(cell) == (score, 8.0)
    text = json.dumps(cell.outputs)
    assert "something: why" in text  # the judge's reason reaches the feedback


def test_a_cell_without_verdict_scores_zero():
    cell = _grade_cell(5)
    cell.outputs = outputs_for(None)
    assert determine_grade(cell) == (0, 5.0)


def _write_verdicts(tmp_path: Path, score: float) -> Path:
    path = tmp_path / "verdicts.json"
    verdict = {"part": "x", "score": score, "points": 8.0, "message": "m"}
    path.write_text(json.dumps({"submission": {}, "parts": {"x": verdict}}))
    return path


def test_hidden_verdict_reports_full_partial_and_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HW4_VERDICTS", str(_write_verdicts(tmp_path, 8.0)))
    assert hidden.verdict("x") is None
    monkeypatch.setenv("HW4_VERDICTS", str(_write_verdicts(tmp_path, 3.0)))
    assert hidden.verdict("x") == 3.0  # the cell's last value: nbgrader's partial credit
    monkeypatch.setenv("HW4_VERDICTS", str(_write_verdicts(tmp_path, 0.0)))
    with pytest.raises(hidden.HiddenTestsFailed):
        hidden.verdict("x")
    with pytest.raises(hidden.HiddenTestsFailed):
        hidden.verdict("not_a_part")
    assert "m" in capsys.readouterr().out


def test_hidden_verdict_never_gives_silent_marks_under_autograde(monkeypatch):
    monkeypatch.delenv("HW4_VERDICTS", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(hidden.HiddenTestsFailed):
        hidden.verdict("x")
    monkeypatch.delenv("NBGRADER_EXECUTION")
    assert hidden.verdict("x") is None  # an instructor running the source notebook


def _run(tmp_path: Path, code: str, limits: sandbox.Limits | None = None, wall: float = 20.0):
    io_dir = tmp_path / "io"
    io_dir.mkdir(exist_ok=True)
    (tmp_path / "code.py").write_text(code)
    outcome = sandbox.run([sys.executable, "/code/code.py"], ro={"/code": tmp_path}, rw={"/io": io_dir},
                          limits=limits or sandbox.Limits(cpu_s=20, memory_mb=1024, file_mb=1),
                          log=tmp_path / "log.txt",
                          watchdog=lambda elapsed: "too slow" if elapsed > wall else None)
    return outcome, (tmp_path / "log.txt").read_text(errors="replace")


def test_sandbox_sees_only_what_is_bound(tmp_path):
    secret = Path(__file__).resolve().parents[1] / "solutions" / "04_model.ipynb"
    code = f"""
import os, socket
print("uid", os.getuid())
for path in [{str(secret)!r}, {str(tmp_path / 'log.txt')!r}, "/root/.ssh", "/home", "/etc/passwd"]:
    print(path, "visible" if os.path.exists(path) else "absent")
print("work holds", sorted(os.listdir("/work")) if os.path.exists("/work") else [])
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    print("network open")
except OSError:
    print("network closed")
open("/io/result.txt", "w").write("written")
"""
    outcome, log = _run(tmp_path, code)
    assert outcome.returncode == 0, log
    assert f"{secret} absent" in log and "network closed" in log and "uid 65534" in log
    assert "visible" not in log  # not the repository, not the grader's files, not the host's accounts
    venv = Path(sys.prefix)
    if venv.parent == Path("/work"):
        assert f"work holds ['{venv.name}']" in log  # /work exists only as the mount point of the venv
    assert (tmp_path / "io" / "result.txt").read_text() == "written"


def test_sandbox_stops_floods_and_endless_loops(tmp_path):
    flood, log = _run(tmp_path, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
    assert flood.returncode != 0 and (tmp_path / "log.txt").stat().st_size <= 1024 * 1024
    loop, _ = _run(tmp_path, "while True:\n    pass\n", wall=1.5)
    assert loop.killed == "too slow" and loop.seconds < 10
    cpu, _ = _run(tmp_path, "while True:\n    pass\n", limits=sandbox.Limits(cpu_s=1, memory_mb=1024, file_mb=1))
    assert cpu.killed is None and cpu.returncode < 0  # SIGXCPU from RLIMIT_CPU
    memory, log = _run(tmp_path, "x = bytearray(2 * 1024**3)\n")
    assert memory.returncode != 0 and "MemoryError" in log


def test_config_parts_total_100_and_thresholds_per_track():
    config = load_config()
    assert sum(p.points for p in config.parts) == 100
    assert config.thresholds == (150.0, 430.0)
    assert set(config.perplexity["tracks"]) == {"cpu", "gpu"}


def test_docs_show_the_graded_properties_as_generated():
    """docs/grading.md's table of promises and points is `python -m autograder properties`, not a restatement."""
    from autograder.judge import properties_table
    from hw4lib.components import REPO_ROOT

    text = (REPO_ROOT / "docs" / "grading.md").read_text()
    shown = text.split("<!-- properties table: python -m autograder properties -->\n")[1].split("\n<!-- end")[0]
    assert shown.strip() == properties_table(load_config()).strip(), "regenerate the table in docs/grading.md"


needs_groups = pytest.mark.skipif(not sandbox.control_groups()[0],
                                  reason=f"no control group for the sandbox here: {sandbox.control_groups()[1]}")


@needs_groups
def test_a_submission_gets_a_bounded_number_of_processes(tmp_path):
    code = """
import os, time
made = 0
for _ in range(200):
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        made += 1
    except OSError:
        break
print("forked", made, flush=True)
"""
    outcome, log = _run(tmp_path, code, limits=sandbox.Limits(cpu_s=20, memory_mb=1024, file_mb=1, processes=16))
    assert outcome.limit_hit == "processes", (outcome, log)
    assert int(log.split("forked")[1].split()[0]) < 16
    assert outcome.seconds < 15  # the sleeping children died with their group


@needs_groups
def test_a_submission_gets_a_bounded_memory_for_all_its_processes(tmp_path):
    code = """
import os, time
for _ in range(3):
    if os.fork() == 0:
        block = bytearray(300 * 2**20)  # each under the per-process limit; 900 MB together
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(5)
        os._exit(0)
for _ in range(3):
    os.wait()
"""
    outcome, log = _run(tmp_path, code, limits=sandbox.Limits(cpu_s=20, memory_mb=512, file_mb=1))
    assert outcome.limit_hit == "memory", (outcome, log)


@needs_groups
def test_a_submission_gets_its_cores_however_many_threads_it_starts(tmp_path):
    code = """
import os, time
start = time.monotonic()
for _ in range(4):
    if os.fork() == 0:
        while time.monotonic() - start < 2:
            pass
        os._exit(0)
for _ in range(4):
    os.wait()
t = os.times()
print("cpu", t.children_user + t.children_system, "wall", time.monotonic() - start, flush=True)
"""
    outcome, log = _run(tmp_path, code, limits=sandbox.Limits(cpu_s=20, memory_mb=1024, file_mb=1, threads=1))
    assert outcome.returncode == 0, log
    cpu, wall = float(log.split("cpu")[1].split()[0]), float(log.split("wall")[1].split()[0])
    assert cpu <= 1.25 * wall, log  # one core's worth, not four


def test_the_sandbox_writes_only_to_a_bounded_tmp_and_makes_no_user_namespaces(tmp_path):
    code = """
import ctypes, os
written = 0
try:
    for i in range(64):
        with open(f"/tmp/f{i}", "wb") as f:
            f.write(b"0" * 2**20)
        written += 2**20
except OSError as err:
    print("tmp stopped:", err.strerror)
print("written", written)
for where in ("/", "/dev/shm", "/code", "/io"):
    try:
        open(os.path.join(where, "x"), "w").close()
        print("wrote in", where)
    except OSError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
print("unshare", libc.unshare(0x10000000))
"""
    outcome, log = _run(tmp_path, code, limits=sandbox.Limits(cpu_s=20, memory_mb=1024, file_mb=4, tmp_mb=8))
    assert outcome.returncode == 0, log
    assert "tmp stopped" in log and int(log.split("written")[1].split()[0]) <= 8 * 2**20
    assert "wrote in / " not in log and "wrote in /dev/shm" not in log and "wrote in /code" not in log
    assert "unshare -1" in log


def test_doctor_says_what_is_enforced():
    rows = sandbox.doctor()
    assert rows[0][1], rows  # the sandbox itself works here (CI and developers' machines)
    assert len(rows) == 3 and all(how for _, _, how in rows)

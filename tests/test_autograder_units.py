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


# --- sharding, the merge's checks, and what the instructor is shown ----------------------------------------------

def test_shards_split_a_class_evenly_by_sorted_id():
    from autograder.shards import Shard

    students = [f"s{i:02d}" for i in range(10)][::-1]  # the order given does not matter
    shares = [Shard.parse(f"{i}/3").take(students) for i in range(3)]
    assert [len(s) for s in shares] == [4, 3, 3]
    assert sorted(sum(shares, [])) == sorted(students)
    assert shares[1] == ["s01", "s04", "s07"]
    assert str(Shard(2, 3)) == "2/3" and Shard.parse("0/1").take(students) == sorted(students)
    for bad in ("3/3", "-1/3", "1", "a/b", "0/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def _fake_shard(folder: Path, shard: str, seed: int, config, students: list[str]) -> Path:
    """A shard's folder as ``grade --shard`` leaves it: a verdict record and a judge's record per student, then the
    manifest."""
    from autograder import shards

    mine = shards.Shard.parse(shard).take(students)
    for student in mine:
        for path in (shards.record_path(folder, student), shards.work_path(folder, student)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"student": student}))
    shards.write_manifest(folder, shards.Shard.parse(shard), seed, config, students)
    return folder


def test_merge_refuses_other_seeds_configs_and_submission_sets(tmp_path):
    """Which shards the merge refuses, each with its reason (and all reasons at once); the real merge of real shards
    and a changed submission: tests/test_grading_determinism.py."""
    from autograder import shards

    config = load_config()
    students = ["ann", "bob", "cid", "dee"]
    good = [_fake_shard(tmp_path / f"ok{i}", f"{i}/2", 7, config, students) for i in range(2)]
    assert shards.check(shards.read_manifests(good), students, config) == 7
    with pytest.raises(shards.ShardMismatch, match="seed 7, not the --seed 8 given"):
        shards.check(shards.read_manifests(good), students, config, seed=8)

    def refused(folders: list[Path], *, with_students=students, with_config=config) -> str:
        with pytest.raises(shards.ShardMismatch) as err:
            shards.check(shards.read_manifests(folders), with_students, with_config)
        return str(err.value)

    other_seed = _fake_shard(tmp_path / "seed", "1/2", 8, config, students)
    assert "different seeds" in refused([good[0], other_seed])
    other_text = tmp_path / "other.toml"
    other_text.write_text(config.path.read_text().replace("points = 10", "points = 10.0", 1))
    assert "another config file" in refused(good, with_config=load_config(other_text))
    other_set = _fake_shard(tmp_path / "set", "1/2", 7, config, [*students, "eve"])
    said = refused([good[0], other_set])
    assert "another submission set" in said and "eve" in said
    assert "need each of the shards 0..1 once: missing [1]" in refused([good[0]])
    assert "split the class differently" in refused([good[0], _fake_shard(tmp_path / "n3", "1/3", 7, config,
                                                                          students)])
    (tmp_path / "ok1" / "work" / "dee" / "verdicts.json").unlink()
    assert "dee has no work/dee/verdicts.json" in refused(good)
    (tmp_path / "unfinished").mkdir()
    assert "did not finish" in refused([good[0], tmp_path / "unfinished"])
    everything = refused([good[0], other_seed], with_config=load_config(other_text))
    assert "different seeds" in everything and "another config file" in everything


def test_a_shard_that_dies_leaves_no_manifest(tmp_path):
    """An earlier run's shard.json must not vouch for the files of a run that did not finish."""
    from autograder import grade, shards

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / shards.MANIFEST).write_text("{}")
    with pytest.raises(FileNotFoundError):  # dies before grading anybody: no such submissions folder
        grade.judge_share(tmp_path / "no-submissions", tmp_path / "out", shard=shards.Shard(0, 2), seed=1)
    assert not (tmp_path / "out" / shards.MANIFEST).exists()


def test_grade_refuses_a_shard_without_a_seed():
    from autograder.__main__ import main

    with pytest.raises(SystemExit) as err:
        main(["grade", "--submissions", ".", "--out", "out", "--shard", "0/2"])
    assert err.value.code == 2


def test_why_a_probe_was_stopped_is_sorted_into_limits_and_failures(tmp_path):
    import signal

    from autograder.grade import _death
    from autograder.report import LIMITS

    limits = {"memory_mb": 1, "file_mb": 1, "cpu_s": 1, "processes": 8, "threads": 1, "tmp_mb": 8}
    cases = {"time": sandbox.Outcome(None, "stopped after 15 s", 1.0),
             "memory": sandbox.Outcome(-9, None, 1.0, "memory"),
             "processes": sandbox.Outcome(-9, None, 1.0, "processes"),
             "output": sandbox.Outcome(-signal.SIGXFSZ, None, 1.0),
             "crashed": sandbox.Outcome(-signal.SIGSEGV, None, 1.0),
             "exited": sandbox.Outcome(3, None, 1.0)}
    for kind, outcome in cases.items():
        assert _death(outcome, limits, tmp_path / "no-log")[0] == kind
    assert set(LIMITS) == {"time", "memory", "processes", "output"}


def test_limits_the_probe_reports_are_recognised():
    from autograder.grade import limit_reported

    assert limit_reported({"error": "your code printed more output than the limit allows (it was stopped there)"}) \
        == "output"
    assert limit_reported({"error": "MemoryError: ", "traceback": "..."}) == "memory"
    for obs in ({"error": "ValueError: MemoryError"}, {"values": [1]}, {"error": ["MemoryError"]}, None):
        assert limit_reported(obs) is None


def test_summary_counts_failures_and_limits_and_names_the_slowest(tmp_path):
    from autograder.report import summary

    stopped = {"ann": {}, "bob": {"nt_asgd": "memory", "train_batch": "time"}, "cid": {"data_loader": "exited"},
               "dee": {}, "eve": {}, "fay": {"weight_drop": "output"}}
    for i, (student, why) in enumerate(stopped.items()):
        path = tmp_path / "work" / student / "verdicts.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"seconds": 10.0 + i, "stopped": why}))
    lines = summary(tmp_path, [*stopped, "gus"])  # gus: no verdicts (not graded)
    assert lines[0] == "graded: 6 of 7 submissions"
    assert lines[1] == "failed to run (a part's probe died): 1: cid (data_loader: exited)"
    assert lines[2] == ("over a limit (time, memory, processes, output): 2: bob (nt_asgd: memory, train_batch: time), "
                        "fay (weight_drop: output)")
    assert lines[3] == "slowest: fay 15.0 s, eve 14.0 s, dee 13.0 s, cid 12.0 s, bob 11.0 s"


def test_progress_bar_only_on_a_terminal_or_when_asked(capsys):
    from autograder.report import progress

    said = []
    for enabled in (None, True):  # pytest's captured stderr is not a terminal
        with progress(3, enabled, said.append) as (advance, say):
            for student in ("ann", "bob", "cid"):
                say(student)
                advance()
        shown = capsys.readouterr()
        assert ("3/3" in shown.err) == bool(enabled) and shown.out == ""
    assert said == ["ann", "bob", "cid"] * 2

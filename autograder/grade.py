"""``python -m autograder grade``: a folder of submissions in, a grade table and feedback out.

Per student (in parallel, one worker per core): the probe runs the student's code in the sandbox and records
outputs; the judge (this process, which never imports student code) turns them into verdicts, saved where the
sandbox cannot see them. Then nbgrader's own ``autograde`` runs once for everybody, serially, with the
``InjectVerdicts`` preprocessor in place of the kernel: it writes each verdict into its hidden-test cell and
nbgrader's ``SaveAutoGrades`` records the score, so the gradebook is written by nbgrader, by one process.
Finally ``generate_feedback`` and a CSV read back from the gradebook.

The two halves are two functions: ``judge_share`` (probe and judge, for all students or for one shard of them on
one machine of many) and ``merge`` (checks the shards belong together, gathers their verdicts, runs nbgrader once:
``record_grades``). ``grade_all`` is the one shard of a class merged on its own folder (``autograder/shards.py``).
"""

from __future__ import annotations

import compileall
import csv
import json
import os
import re
import secrets
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat
import torch

from autograder import course, judge, model_file, report, results, sandbox, shards, submission, untrusted_files
from autograder.config import Config
from autograder.config import load as load_config
from autograder.shards import WHOLE, Shard
from hw4lib import cpu_runtime

RUNTIME_FILES = ("probe.py", "results.py")
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STARTUP_S = 20.0  # importing torch and loading the notebooks, on top of the first part's budget
RUNTIME_MOUNT = "/grader"  # where the sandbox sees the runtime


def prepare_runtime(dest: Path) -> Path:
    """What the sandbox may import: hw4lib and the probe. No judge, no solutions, no config."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "autograder").mkdir(parents=True)
    here = Path(__file__).resolve().parent
    (dest / "autograder" / "__init__.py").write_text('"""Probe runtime for the sandbox."""\n')
    for name in RUNTIME_FILES:
        shutil.copy2(here / name, dest / "autograder" / name)
    shutil.copytree(here.parent / "hw4lib", dest / "hw4lib", ignore=shutil.ignore_patterns("__pycache__"))
    # Compiled once here: the sandbox cannot write __pycache__, so every probe would compile the modules again.
    # Tracebacks name the files where the sandbox sees them.
    compileall.compile_dir(dest, ddir=RUNTIME_MOUNT, quiet=1)
    return dest


def graded_notebooks(config: Config) -> list[str]:
    """Every notebook a graded part loads (judge.STAGES: the model part runs stages 02-04; with the earlier stages
    as context), by the course's names."""
    stages = {stage for p in config.parts for stage in (*judge.STAGES[p.name], *judge.context(p.name))}
    return sorted(p.name for p in judge.SOLUTIONS.glob("*.ipynb") if p.name[:2] in stages)


def copy_submission(src: Path, dest: Path, notebooks: list[str]) -> None:
    """Regular files only, within their caps (a symlink could point at the gradebook): the notebooks and model.pt."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in notebooks:
        untrusted_files.copy_regular(src / name, dest / name, submission.cap_bytes(name))
    untrusted_files.copy_regular(src / "model.pt", dest / "model.pt", submission.cap_bytes("model.pt"))


def _death(outcome: sandbox.Outcome, limits: dict, log: Path) -> tuple[str, str]:
    """Why the probe process ended without finishing a part: (a kind for the summary, one of ``report.LIMITS`` or
    "crashed" / "exited"; the words a student can act on)."""
    if outcome.killed:
        return "time", outcome.killed
    if outcome.limit_hit == "memory":
        return "memory", (f"your code's processes used more than {limits['memory_mb']} MB of memory together (files "
                          "in /tmp count too); the process was stopped")
    if outcome.limit_hit == "processes":
        return "processes", (f"your code started more than {sandbox.Limits.from_config(limits).processes} processes "
                             "or threads; the process was stopped")
    code = outcome.returncode or 0
    if code == -signal.SIGXFSZ:
        return "output", f"your code printed more than {limits['file_mb']} MB of output; the process was stopped"
    if code in (-signal.SIGXCPU, -signal.SIGKILL):  # RLIMIT_CPU: soft limit, then hard
        return "time", (f"your code used more than {limits['cpu_s']} s of CPU time (or was killed); the process was "
                        "stopped")
    if code < 0:
        return "crashed", (f"the process crashed with signal {signal.Signals(-code).name}; often this is running out "
                           f"of memory (limit {limits['memory_mb']} MB)")
    tail = log.read_bytes()[-600:].decode("utf-8", "replace") if log.exists() else ""
    return "exited", f"the process exited with code {code} (sys.exit or os._exit in your code?)\n{tail}".strip()


def part_watchdog(parts: list[str], received: dict, limits: dict):
    """Kills the probe when the part it is on has run past its own wall-clock budget.

    The part "on" is the first one without a result in ``received``; its clock starts when the previous one
    finished.
    """
    state = {"part": None, "since": 0.0, "first": True}

    def watchdog(elapsed: float) -> str | None:
        current = next((p for p in parts if p not in received), None)
        if current != state["part"]:
            state["first"] = state["part"] is None  # the first part also pays for starting Python and torch
            state["part"], state["since"] = current, (0.0 if state["part"] is None else elapsed)
        if current is None:
            return None
        budget = float(limits["val_perplexity_wall_s"] if current == "val_perplexity" else limits["part_wall_s"])
        if state["first"]:
            budget += STARTUP_S
        if elapsed - state["since"] > budget:
            return f"stopped after {budget:.0f} s (the time limit for this part; an endless loop?)"
        return None

    return watchdog


Probed = tuple[dict | None, str | None, str | None]  # (observation, failure, why the part's code was stopped)

# How autograder/probe.py reports a limit that the part's code ran into while the probe lived on: the output cap
# (RLIMIT_FSIZE: the write fails with EFBIG) or the address space (RLIMIT_AS: MemoryError). The text is the probe's,
# or a student's imitating it, which can only put their own name in the summary.
REPORTED_LIMITS = {"your code printed more output than the limit allows": "output", "MemoryError": "memory"}


def limit_reported(obs: dict) -> str | None:
    """"output" or "memory" when the probe reports that the part's code ran into that limit, else None (for the
    summary only: the verdict comes from the judge as always)."""
    error = obs.get("error") if isinstance(obs, dict) else None
    if not isinstance(error, str):
        return None
    return next((kind for start, kind in REPORTED_LIMITS.items() if error.startswith(start)), None)


def probe_submission(sub: Path, work: Path, config: Config, seed: int, runtime: Path,
                     windows: dict, timing: dict | None = None) -> dict[str, Probed]:
    """Runs the probe until every part has a result or a failure; a part that hangs or crashes costs only itself.

    The sandbox gets nothing it can write outside itself: the submission and the request (``work/in``) are bound
    read-only, and results come back through a pipe (``autograder.results``). Returns {part: (observation or None,
    failure or None, why the part's code was stopped or None)}: a limit (``report.LIMITS``; the probe died, or it
    reported the output or memory limit), "crashed" or "exited", or "channel" when its results were unusable.
    ``timing``, if given, receives the seconds of the sandbox's start with the imports ("start") and of each part.
    """
    limits = config.limits
    in_dir, subcopy = work / "in", work / "sub"
    for folder in (in_dir, subcopy):
        if folder.exists():
            shutil.rmtree(folder)
    in_dir.mkdir(parents=True)
    torch.save(windows, in_dir / "consistency.pt")
    copy_submission(sub, subcopy, graded_notebooks(config))
    remaining = [p.name for p in config.parts]
    found: dict[str, Probed] = {}
    launch = 0
    while remaining:
        launch += 1
        request = {"seed": seed, "parts": remaining, "submission": "/sub", "checkpoint": "/sub/model.pt",
                   "threads": limits["threads"], "stages": judge.STAGES,
                   "context": {p: judge.context(p) for p in judge.STAGES}}
        (in_dir / "request.json").write_text(json.dumps(request))
        parts_now = list(remaining)
        read_end, write_end = os.pipe()
        receiver = results.Receiver(read_end, parts_now)
        outcome = sandbox.run(
            [sys.executable, "-m", "autograder.probe", "/in", str(write_end)],
            ro={RUNTIME_MOUNT: runtime, "/sub": subcopy, "/in": in_dir},
            limits=sandbox.Limits.from_config(limits), log=work / f"probe-{launch}.log",
            watchdog=part_watchdog(parts_now, receiver.payloads, limits), pass_fds=(write_end,),
            env={"PYTHONPATH": RUNTIME_MOUNT})
        receiver.finish()
        if timing is not None:
            _record_timing(timing, receiver, parts_now)
        failed_at = None
        for index, part in enumerate(parts_now):
            payload = receiver.payloads.get(part)
            if payload is None:
                failed_at = index
                kind, why = _death(outcome, limits, work / f"probe-{launch}.log")
                found[part] = (None, receiver.problem, "channel") if receiver.problem else (None, why, kind)
                break
            try:
                obs = results.decode(payload)
                found[part] = (obs, None, limit_reported(obs))
            except results.BadObservation as err:
                found[part] = (None, f"the grader could not use this part's result: {err}", None)
        remaining = [] if failed_at is None else parts_now[failed_at + 1:]
    return found


def _record_timing(timing: dict, receiver: results.Receiver, parts: list[str]) -> None:
    """Adds one launch's seconds to ``timing``: from the launch to the probe's READY frame ("start": the sandbox,
    the interpreter, torch and the probe's imports), then from one frame to the next (each part)."""
    last = receiver.started
    for name in [results.READY, *parts]:
        if name not in receiver.arrived:
            return
        key = "start" if name == results.READY else name
        timing[key] = round(timing.get(key, 0.0) + receiver.arrived[name] - last, 3)
        last = receiver.arrived[name]


def grade_student(sub: Path, work: Path, config: Config, seed: int, runtime: Path,
                  slices: dict[str, torch.Tensor]) -> list[judge.Verdict]:
    """All verdicts of one submission; also written to ``work/verdicts.json``."""
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    data, bounds = judge.consistency_windows(slices["valid"], config)
    probe_parts: dict[str, float] = {}
    results = probe_submission(sub, work, config, seed, runtime, {"data": data, "bounds": bounds}, probe_parts)
    probed = time.monotonic()
    ckpt, unusable = model_file.read(work / "sub" / "model.pt")  # the copy the probe ran: one model.pt judged
    measured = judge.measure_perplexity(ckpt, unusable, slices["valid"], slices["test"], config)
    scored = time.monotonic()
    verdicts = []
    for part in config.parts:
        obs, failure, _ = results[part.name]
        if part.name == "val_perplexity":
            verdicts.append(judge.judge_val_perplexity(part, obs, failure, measured, config))
        else:
            verdicts.append(judge.judge_part(part, obs, seed, failure))
    timing = {"probe": round(probed - start, 3), "probe_parts": probe_parts,
              "perplexity": round(scored - probed, 3), "properties": round(time.monotonic() - scored, 3)}
    payload = {"seed": seed, "seconds": round(time.monotonic() - start, 2), "timing": timing,
               "perplexity": {"valid": measured.valid, "test": measured.test},
               "submission": judged_files(work, config), "verdicts": {v.part: v.as_dict() for v in verdicts},
               "stopped": {part: kind for part, (_, _, kind) in results.items() if kind}}
    (work / "verdicts.json").write_text(json.dumps(payload, indent=1))
    return verdicts


def judged_files(work: Path, config: Config) -> dict:
    """What a verdict was judged on: the file names the grader copies and the digest of the copies it judged."""
    names = [*graded_notebooks(config), "model.pt"]
    return {"files": names, "sha256": submission.digest(work / "sub", names)}


def verdict_record(verdicts: list[judge.Verdict], work: Path, config: Config) -> dict:
    """The content of ``verdicts/<student>.json``: what was judged (as ``grade_student`` recorded it in
    ``work/verdicts.json``) and the verdict of every part."""
    judged = json.loads((work / "verdicts.json").read_text())["submission"]
    return {"submission": judged, "parts": {v.part: v.as_dict() for v in verdicts}}


def grading_slices(config: Config) -> dict[str, torch.Tensor]:
    """The validation slice that is graded and the test slice it is compared with."""
    return {"valid": judge.slice_tokens("valid", config), "test": judge.slice_tokens("test", config)}


# --- nbgrader ----------------------------------------------------------------------------------------------

def _readable(path: Path) -> nbformat.NotebookNode | None:
    """The submitted notebook at ``path`` (a regular file within the cap, valid nbformat), else None."""
    try:
        text = untrusted_files.read_regular(path, submission.cap_bytes(path.name)).decode("utf-8")
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
        return nb
    except Exception:
        return None


def place_submission(src: Path, root: Path, student: str, source_dir: Path, release_dir: Path) -> None:
    """Puts a student's notebooks where nbgrader looks, sanitized so nbgrader itself cannot be derailed.

    A missing or unreadable notebook is replaced by the released (blank) one, so nbgrader still records its
    cells (with the judge's zeros). Cells claiming a grade_id the source does not have lose their nbgrader
    metadata: a forged grade cell must neither count nor make nbgrader fail (one that holds a hidden-test region,
    such as an ungraded optional stage's test cell, is dropped: nbgrader's feedback refuses it anywhere else).
    """
    dest = root / "submitted" / student / course.ASSIGNMENT
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for source_nb in sorted(source_dir.glob("*.ipynb")):
        known = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nbformat.read(str(source_nb), 4).cells}
        path = src / source_nb.name
        nb = _readable(path)
        if nb is None:
            nb = nbformat.read(str(release_dir / source_nb.name), as_version=4)
        seen = set()
        kept = []
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader")
            gid = None if meta is None else meta.get("grade_id")
            if meta is not None and (gid not in known or gid in seen):
                del cell.metadata["nbgrader"]
                # e.g. the test cell of an optional stage this course does not grade: outside a grade cell, a
                # hidden-test region makes nbgrader's feedback refuse the student's whole assignment
                if "BEGIN HIDDEN TESTS" in cell.get("source", ""):
                    continue
            elif meta is not None:
                seen.add(gid)
            kept.append(cell)
        nb.cells = kept
        nbformat.write(nb, str(dest / source_nb.name))
    # nbgrader autograde by hand judges from here
    untrusted_files.copy_regular(src / "model.pt", dest / "model.pt", submission.cap_bytes("model.pt"))


def gradebook_rows(root: Path, students: list[str], config: Config, verdicts: dict, log=print) -> list[dict]:
    """One row per student and graded test cell, read back from the gradebook.

    A student nbgrader could not record (it failed on them) still gets rows, from the verdicts, and a warning.
    """
    from nbgrader.api import Gradebook, MissingEntry

    rows = []
    parts = {p.test_id: p for p in config.parts}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course.COURSE_ID) as gb:
        for student in students:
            try:
                submission = gb.find_submission(course.ASSIGNMENT, student)
            except MissingEntry:
                log(f"WARNING: {student} is not in the gradebook (nbgrader failed on it); rows from the verdicts")
                rows += [{"student": student, "notebook": p.notebook, "grade_id": p.test_id,
                          "score": verdicts[student][p.name]["score"], "max_score": p.points} for p in config.parts]
                continue
            for nb in submission.notebooks:
                for g in nb.grades:
                    if g.name not in parts:
                        continue
                    rows.append({"student": student, "notebook": nb.name + ".ipynb", "grade_id": g.name,
                                 "score": g.score, "max_score": g.max_score})
    return sorted(rows, key=lambda r: (r["student"], r["notebook"], r["grade_id"]))


def enforce_scores(root: Path, verdicts: dict[str, dict], config: Config) -> list[str]:
    """Makes the gradebook hold exactly the judged scores (and says if nbgrader had recorded anything else)."""
    from nbgrader.api import Gradebook, MissingEntry

    fixes = []
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course.COURSE_ID) as gb:
        for student, parts in verdicts.items():
            for part in config.parts:
                nb_name = part.notebook[: -len(".ipynb")]
                try:
                    grade = gb.find_grade(part.test_id, nb_name, course.ASSIGNMENT, student)
                except MissingEntry:
                    fixes.append(f"{student}/{part.name}: not in the gradebook")
                    continue
                score = float(parts[part.name]["score"])
                if grade.auto_score != score or grade.manual_score is not None:
                    fixes.append(f"{student}/{part.name}: gradebook had {grade.auto_score}, judged {score}")
                    grade.auto_score, grade.manual_score, grade.needs_manual_grade = score, None, False
        gb.db.commit()
    return fixes


def list_students(submissions: Path, log=print) -> list[str]:
    """The student ids of ``submissions/<id>/`` folders (no links), sorted; invalid ids are skipped, and said."""
    students = sorted(p.name for p in Path(submissions).iterdir() if p.is_dir() and not p.is_symlink())
    for bad in [s for s in students if not STUDENT_ID.match(s)]:
        log(f"skipping {bad!r}: not a valid student id")
    return [s for s in students if STUDENT_ID.match(s)]


def judge_share(submissions: Path, out: Path, *, config_path: Path | None = None, shard: Shard = WHOLE,
                workers: int | None = None, seed: int | None = None, progress: bool | None = None,
                log=print) -> dict:
    """The probe and the judge for ``shard``'s students (all of them for ``WHOLE``), in parallel threads.

    Writes each student's ``out/work/<student>/verdicts.json`` and verdict record
    ``out/course/verdicts/<student>.json``, then ``out/shard.json`` (``shards.write_manifest``); returns that
    manifest. No nbgrader here: ``merge`` runs it once.
    """
    config = load_config(config_path)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # A manifest left by an earlier run would vouch for this run's files if it died half way: gone until the end.
    (out / shards.MANIFEST).unlink(missing_ok=True)
    seed = secrets.randbelow(2**31) if seed is None else seed
    students = list_students(submissions, log)
    mine = shard.take(students)
    runtime = prepare_runtime(out / "work" / "_runtime")
    groups, how = sandbox.control_groups()
    log(f"limits per submission: {how}" if groups else
        f"WARNING: limits per process only ({how}); see `python -m autograder doctor`")
    if shard != WHOLE:
        log(f"shard {shard}: {len(mine)} of {len(students)} submissions, seed {seed}")
    slices = grading_slices(config)
    workers = workers or int(config.grading.get("workers") or 0) or os.cpu_count() or 1
    torch.set_num_threads(1)
    cpu_runtime.tune_malloc()  # the judge's perplexity runs here; the sandboxed probe keeps glibc's defaults

    def one(student: str) -> str:
        """Grades one student, writes both of its files, and returns the line that reports it."""
        t0 = time.monotonic()
        work = out / "work" / student
        verdicts = grade_student(submission.folder(submissions, student), work, config, seed, runtime, slices)
        record = shards.record_path(out, student)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(verdict_record(verdicts, work, config)))
        total = sum(v.score for v in verdicts)
        return f"{student}: {total:g} / {sum(v.points for v in verdicts):g} ({time.monotonic() - t0:.1f} s)"

    with report.progress(len(mine), progress, log) as (advance, say), ThreadPoolExecutor(max_workers=workers) as pool:
        for done in as_completed([pool.submit(one, student) for student in mine]):
            say(done.result())
            advance()
    return shards.write_manifest(out, shard, seed, config, students)


def record_grades(submissions: Path, out: Path, students: list[str], config: Config, source: Path | None = None,
                  log=print, workers: int | None = None) -> list[dict]:
    """nbgrader's part, once for the class: the course, autograde with the verdict records found in
    ``out/course/verdicts/`` (``InjectVerdicts``), feedback, and ``out/grades.csv`` read back from the gradebook.

    Autograde writes the one SQLite gradebook, so it runs as one process; generate_feedback only reads it and
    writes each student's own folder, so ``workers`` processes share the class (nbgrader's own
    ``student_id_exclude`` gives each its students), as the judging shared the cores before."""
    # InjectVerdicts checks each verdict against the files it was judged on: here, the folder that was graded
    settings = (f"c.InjectVerdicts.config_path = {str(config.path)!r}\n"
                f"c.InjectVerdicts.submitted_dir = {str(Path(submissions).resolve())!r}")
    root = course.make_course(out / "course", notebooks=source, extra_config=settings, config=config)
    seconds: dict[str, float] = {}

    def run(command: str, *args: str):
        t0 = time.monotonic()
        result = course.nbgrader(root, command, course.ASSIGNMENT, *args, check=False)
        seconds[command] = round(time.monotonic() - t0, 2)
        return result

    result = run("generate_assignment", "--force")
    if result.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{result.stdout}\n{result.stderr}")
    verdicts = {s: json.loads(shards.record_path(out, s).read_text())["parts"] for s in students}
    for student in students:
        place_submission(submission.folder(submissions, student), root, student, root / "source" / course.ASSIGNMENT,
                         root / "release" / course.ASSIGNMENT)
    result = run("autograde", "--create", "--force")
    if result.returncode != 0:
        log(f"nbgrader autograde reported a problem:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    for fix in enforce_scores(root, verdicts, config):
        log(f"gradebook corrected: {fix}")
    processes = max(1, min(workers or os.cpu_count() or 1, len(students)))
    groups = [students[i::processes] for i in range(processes)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=processes) as pool:
        done = pool.map(lambda group: course.nbgrader(
            root, "generate_feedback", course.ASSIGNMENT, "--force",
            f"--CourseDirectory.student_id_exclude={','.join(s for s in students if s not in group)}", check=False),
            groups)
        for result in done:
            if result.returncode != 0:
                log(f"nbgrader generate_feedback reported a problem:\n{result.stderr[-2000:]}")
    seconds[f"generate_feedback ({processes} at once)"] = round(time.monotonic() - t0, 2)
    (out / report.NBGRADER_TIMING).write_text(json.dumps({"students": len(students), "seconds": seconds}))
    for student in students:
        src = root / "feedback" / student / course.ASSIGNMENT
        if src.is_dir():
            shutil.copytree(src, out / "feedback" / student, dirs_exist_ok=True)
    rows = gradebook_rows(root, students, config, verdicts, log)
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["student", "notebook", "grade_id", "score", "max_score"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def stale_verdicts(submissions: Path, out: Path, students: list[str]) -> list[str]:
    """Students whose files in ``submissions`` are not the ones their verdict record was judged on."""
    stale = []
    for student in students:
        judged = json.loads(shards.record_path(out, student).read_text())["submission"]
        if submission.digest(submission.folder(submissions, student), judged["files"]) != judged["sha256"]:
            stale.append(student)
    return stale


def merge(shard_dirs: list[Path], submissions: Path, out: Path, *, config_path: Path | None = None,
          seed: int | None = None, source: Path | None = None, workers: int | None = None,
          log=print) -> list[dict]:
    """Checks that ``shard_dirs`` are the shards 0..N-1 of one grading of ``submissions`` (same seed, ``seed`` if
    given; same config, same students, same files), gathers their verdicts into ``out`` and runs nbgrader's part
    once."""
    config = load_config(config_path)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    found = shards.read_manifests(shard_dirs)
    students = list_students(submissions, log=lambda _: None)  # the shards said it when they listed them
    seed = shards.check(found, students, config, seed)
    shards.gather(found, out)
    stale = stale_verdicts(submissions, out, students)
    if stale:
        raise shards.ShardMismatch(
            "these students' files differ from the ones their shard judged (collected again since?): "
            f"{', '.join(stale[:10])}{f' and {len(stale) - 10} more' if len(stale) > 10 else ''}; "
            "grade their shards again")
    if len(found) > 1:
        log(f"merged {len(found)} shards: {len(students)} submissions, seed {seed}")
    return record_grades(submissions, out, students, config, source, log, workers)


def grade_all(submissions: Path, out: Path, *, config_path: Path | None = None, source: Path | None = None,
              workers: int | None = None, seed: int | None = None, progress: bool | None = None,
              log=print) -> list[dict]:
    """Grades every ``submissions/<student>/`` and writes ``out/grades.csv`` and ``out/feedback/``: the whole class
    as one shard, merged on its own folder (the path ``grade --shard`` and ``merge`` take on several machines)."""
    judge_share(submissions, out, config_path=config_path, workers=workers, seed=seed, progress=progress, log=log)
    return merge([out], submissions, out, config_path=config_path, seed=seed, source=source, workers=workers,
                 log=log)


def grade_one(submission: Path, work: Path, verdicts_file: Path, config_path: Path | None = None) -> dict:
    """The verdict record of one submission folder, written to ``verdicts_file`` (the path nbgrader's own autograde
    takes)."""
    config = load_config(config_path)
    runtime = prepare_runtime(Path(work) / "_runtime")
    verdicts = grade_student(Path(submission), Path(work), config, secrets.randbelow(2**31), runtime,
                             grading_slices(config))
    record = verdict_record(verdicts, Path(work), config)
    Path(verdicts_file).parent.mkdir(parents=True, exist_ok=True)
    Path(verdicts_file).write_text(json.dumps(record))
    return record

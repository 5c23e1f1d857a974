"""The cluster job definitions that grade a class in shards (deploy/k8s/grade-job.yaml, deploy/slurm/*.sbatch),
checked offline: no cluster runs them here. The Jobs against Kubernetes' published schema (kubernetes-validate, which
ships the schemas), their fields that must agree (the shard count, the seed), and every container's and script's
command run by its shell with a stand-in ``python`` that records its arguments, which ``python -m autograder``'s own
parser then reads: the index the cluster gives becomes ``--shard I/N``, and the merge gets the folders of 0..N-1."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from autograder.__main__ import build_parser
from autograder.shards import Shard

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s" / "grade-job.yaml"
SLURM = REPO / "deploy" / "slurm"
KUBERNETES_VERSION = "1.33.0"  # indexed Jobs' fields are GA since 1.24; any schema from then on accepts them


def _jobs() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(K8S.read_text())}


def _container(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def _stand_in(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with a ``python`` that writes its arguments, one per line, to the returned file."""
    bin_dir, args = tmp_path / "bin", tmp_path / "args.txt"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {args}\n')
    (bin_dir / "python").chmod(0o755)
    return bin_dir, args


def _autograder_args(args_file: Path):
    argv = args_file.read_text().splitlines()
    assert argv[:2] == ["-m", "autograder"], argv
    return build_parser().parse_args(argv[2:])


def kubernetes_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' own expansion of a container's command and args (k8s.io/kubernetes third_party/forked/golang/
    expansion): ``$(NAME)`` of a variable in the container's env becomes its value, ``$$`` is ``$``, anything else,
    ``$(seq ...)`` included, stays as written for the shell."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if text[i + 1] == "(" and (end := text.find(")", i + 2)) >= 0:
                name = text[i + 2 : end]
                out.append(env.get(name, f"$({name})"))
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _run_container(container: dict, tmp_path: Path, **extra: str) -> Path:
    """Runs the container's command as the kubelet would start it, with the stand-in python first on PATH."""
    bin_dir, args = _stand_in(tmp_path)
    env = {**_env(container), **extra}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    argv = [kubernetes_expand(a, env) for a in [*container["command"], *container["args"]]]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return args


def test_the_kubernetes_jobs_fit_the_job_schema():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -r requirements.txt")
    for name, job in _jobs().items():
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)  # raises, naming the field, if not
        assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job", name


def test_the_shards_are_an_indexed_job_and_the_merge_waits():
    jobs = _jobs()
    assert set(jobs) == {"awd-grade-shards", "awd-grade-merge"}
    shards, merge = jobs["awd-grade-shards"], jobs["awd-grade-merge"]
    assert shards["spec"]["completionMode"] == "Indexed"
    assert 1 <= shards["spec"]["parallelism"] <= shards["spec"]["completions"]
    assert merge["spec"]["suspend"] is True and merge["spec"]["completions"] == 1
    grade_env, merge_env = _env(_container(shards)), _env(_container(merge))
    assert int(grade_env["SHARDS"]) == shards["spec"]["completions"] == int(merge_env["SHARDS"])
    assert grade_env["SEED"] == merge_env["SEED"]
    for job in jobs.values():
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_completion_index_becomes_the_shard(tmp_path):
    container = _container(_jobs()["awd-grade-shards"])
    count = int(_env(container)["SHARDS"])
    for index in (0, count - 1):
        args = _autograder_args(_run_container(container, tmp_path / str(index), JOB_COMPLETION_INDEX=str(index)))
        assert args.command == "grade" and args.shard == Shard(index, count)
        assert args.seed == int(_env(container)["SEED"])
        assert args.out == Path(f"/srv/grading/shards/{index}")
        assert args.submissions == Path("/srv/grading/submitted")


def test_the_kubernetes_merge_reads_every_shard(tmp_path):
    container = _container(_jobs()["awd-grade-merge"])
    args = _autograder_args(_run_container(container, tmp_path))
    count = int(_env(container)["SHARDS"])
    assert args.command == "merge" and args.seed == int(_env(container)["SEED"])
    assert args.shards == [Path(f"/srv/grading/shards/{i}") for i in range(count)]
    assert args.submissions == Path("/srv/grading/submitted") and args.out == Path("/srv/grading/out")


def _sbatch(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    bin_dir, _ = _stand_in(tmp_path)
    full = {"PATH": "/usr/bin:/bin", "SEED": "11", "GRADING": "/shared/g", "AWD_ROOT": str(REPO),
            "PYTHON": str(bin_dir / "python"), **env}
    return subprocess.run(["bash", str(SLURM / script)], env=full, capture_output=True, text=True, timeout=30)


def test_the_slurm_scripts_parse():
    for script in ("grade.sbatch", "merge.sbatch"):
        result = subprocess.run(["bash", "-n", str(SLURM / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_the_slurm_array_index_becomes_the_shard(tmp_path):
    task = {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3",
            "SLURM_CPUS_PER_TASK": "2"}
    for index in (0, 3):
        result = _sbatch("grade.sbatch", tmp_path / str(index), SLURM_ARRAY_TASK_ID=str(index), **task)
        assert result.returncode == 0, result.stderr
        args = _autograder_args(tmp_path / str(index) / "args.txt")
        assert args.command == "grade" and args.shard == Shard(index, 4) and args.seed == 11 and args.workers == 2
        assert args.out == Path(f"/shared/g/shards/{index}") and args.submissions == Path("/shared/g/submitted")
    gap = _sbatch("grade.sbatch", tmp_path / "gap", SLURM_ARRAY_TASK_ID="3", **{**task, "SLURM_ARRAY_TASK_MIN": "1"})
    assert gap.returncode == 2 and "0..N-1" in gap.stderr
    unseeded = _sbatch("grade.sbatch", tmp_path / "seed", SLURM_ARRAY_TASK_ID="0", **task, SEED="")
    assert unseeded.returncode != 0 and "SEED" in unseeded.stderr


def test_the_slurm_merge_reads_every_shard(tmp_path):
    result = _sbatch("merge.sbatch", tmp_path, SHARDS="3")
    assert result.returncode == 0, result.stderr
    args = _autograder_args(tmp_path / "args.txt")
    assert args.command == "merge" and args.seed == 11 and args.out == Path("/shared/g/out")
    assert args.shards == [Path(f"/shared/g/shards/{i}") for i in range(3)]


def test_the_job_definitions_say_they_were_not_run_on_a_cluster():
    for path in (K8S, SLURM / "grade.sbatch", SLURM / "merge.sbatch"):
        assert "NOT RUN ON A CLUSTER" in path.read_text(), path

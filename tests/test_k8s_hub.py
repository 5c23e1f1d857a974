"""The Kubernetes plan for the hub (deploy/k8s/jupyterhub-values.yaml, Zero to JupyterHub) and its exchange service
(deploy/k8s/ngshare.yaml), checked offline: no cluster runs them here (docs/deploy.md says what is and is not).

* the ngshare objects, and the Kubernetes objects the values pass through to the user pods, against Kubernetes'
  published schema (kubernetes-validate, strict);
* the values against the chart's schema for the keys they use (tests/fixtures/z2jh_schema.py: the chart's own
  values.schema.json is not installable offline);
* the names the hub and ngshare must agree on, each role's files against what the one-machine hub writes, the spawn
  hook run for both roles, and ngshare started locally with the container's command and environment.
"""

from __future__ import annotations

import copy
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.fixtures.z2jh_schema import SCHEMA

REPO = Path(__file__).resolve().parents[1]
VALUES = REPO / "deploy" / "k8s" / "jupyterhub-values.yaml"
NGSHARE = REPO / "deploy" / "k8s" / "ngshare.yaml"
KUBERNETES_VERSION = "1.33.0"
NGSHARE_URL = "http://proxy-public/services/ngshare"  # what the values' nbgrader config names
CONFIG_ROOT = "/etc/awd-course/jupyter"
COURSE_ROOT = "/home/jovyan/course"


def _values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def _ngshare() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(NGSHARE.read_text())}


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _literal_env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _spawn_hook(values: dict):
    """The values' hub.extraConfig run as the chart runs it (exec with ``c``); returns KubeSpawner.pre_spawn_hook."""
    from traitlets.config import Config

    c = Config()
    for name, code in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(code, name, "exec"), {"c": c})
    return c.KubeSpawner.pre_spawn_hook


def test_the_ngshare_objects_fit_the_kubernetes_schema():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -r requirements.txt")
    objects = _ngshare()
    assert set(objects) == {"PersistentVolumeClaim", "Deployment", "Service"}
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)  # raises, naming the field, if not


def test_the_values_fit_the_charts_schema():
    import jsonschema

    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(_values(), SCHEMA)


@pytest.mark.parametrize("break_it", [
    lambda v: v["singleuser"].update(extraFile=v["singleuser"].pop("extraFiles")),  # a misspelt key
    lambda v: v["singleuser"]["storage"].pop("homeMountPath"),  # a required key
    lambda v: v["singleuser"]["cpu"].update(limit="2"),  # a wrong type
    lambda v: v["singleuser"]["extraFiles"]["student-nbgrader"].update(data={}),  # two contents for one file
    lambda v: v.update(ingres={}),  # an unknown section
], ids=["misspelt", "required", "type", "two-contents", "unknown-section"])
def test_the_schema_subset_refuses_what_the_chart_refuses(break_it):
    """The subset is not vacuous: each of these mistakes fails it, as it fails helm's check."""
    import jsonschema

    values = copy.deepcopy(_values())
    break_it(values)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, SCHEMA)


def test_what_the_values_pass_to_user_pods_fits_the_kubernetes_schema():
    """The chart copies these into every user pod and its NetworkPolicy as they are: a Pod and a NetworkPolicy made of
    them must be valid Kubernetes."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -r requirements.txt")
    user = _values()["singleuser"]
    storage = user["storage"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-awd-alice"}, "spec": {
        "containers": [{"name": "notebook", "image": f"{user['image']['name']}:{user['image']['tag']}",
                        "env": [{"name": k, "value": v} for k, v in user["extraEnv"].items()],
                        "volumeMounts": storage["extraVolumeMounts"]}],
        "volumes": storage["extraVolumes"]}}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    assert {m["name"] for m in storage["extraVolumeMounts"]} <= {v["name"] for v in storage["extraVolumes"]}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "singleuser"},
              "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": user["networkPolicy"]["egress"]}}
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)


def test_each_role_gets_the_files_the_one_machine_hub_writes(tmp_path):
    """The roles' Jupyter and nbgrader files are the ones deploy/hub/launch.py writes (tested there with real users),
    for the pod's course root and the exchange service; a change there must be carried here."""
    import json

    from deploy.hub.launch import write_role_configs

    write_role_configs(tmp_path, "awd-course", Path("/srv/nbgrader/exchange"), Path(COURSE_ROOT), NGSHARE_URL)
    written = {f"{CONFIG_ROOT}/{p.relative_to(tmp_path)}": p for p in tmp_path.rglob("*") if p.is_file()}
    files = {f["mountPath"]: f for f in _values()["singleuser"]["extraFiles"].values()}
    assert set(files) == set(written)
    for mount, path in written.items():
        if path.suffix == ".json":
            assert files[mount]["data"] == json.loads(path.read_text()), mount
        else:
            assert files[mount]["stringData"] == path.read_text(), mount


def test_the_nbgrader_url_is_ngshare_exchanges_own_kubernetes_default(monkeypatch):
    """ngshare-exchange falls back to this URL on Kubernetes (PROXY_PUBLIC_SERVICE_HOST set): the values' is the
    address its authors give the proxy's route to a hub service called ngshare."""
    monkeypatch.setenv("JUPYTERHUB_USER", "awd-alice")  # ngshare_exchange reads the user at import
    monkeypatch.setenv("PROXY_PUBLIC_SERVICE_HOST", "10.0.0.1")
    from ngshare_exchange.exchange import Exchange

    assert Exchange().ngshare_url == NGSHARE_URL


def test_the_spawn_hook_gives_each_role_its_image_and_files():
    from deploy import roster

    people = roster.load()

    values = _values()
    hook = _spawn_hook(values)
    student_image = f"{values['singleuser']['image']['name']}:{values['singleuser']['image']['tag']}"
    mounts = {f["mountPath"] for f in values["singleuser"]["extraFiles"].values()}
    # graders get a student's server here, as on the one-machine hub (docs/deploy.md: the graders' formgrader)
    for user, role in ((people.instructor, "instructor"),
                       *((s, "student") for s in (*people.graders, *people.students))):
        spawner = SimpleNamespace(user=SimpleNamespace(name=user), image=student_image, environment={})
        hook(spawner)
        path = spawner.environment["JUPYTER_CONFIG_PATH"]
        assert path == f"{CONFIG_ROOT}/{role}" and f"{path}/nbgrader_config.py" in mounts, user
        assert spawner.image == (student_image if role == "student" else hook.__globals__["INSTRUCTOR_IMAGE"]), user
    assert hook.__globals__["INSTRUCTORS"] == {people.instructor}


def test_the_hub_and_ngshare_agree_on_names():
    """What an external service gets from us, a managed one from JupyterHub: its name, route, OAuth client, token
    (from the key the chart stores it under) and port; plus the hub's network-access label, ngshare's admins and the
    values' nbgrader URL."""
    from jupyterhub.services.service import Service

    from deploy import roster

    values, objects = _values(), _ngshare()
    (name,) = values["hub"]["services"]
    entry = values["hub"]["services"][name]
    assert set(entry) <= set(Service.class_trait_names()), "hub.services entries are JupyterHub Service fields"
    deployment, service = objects["Deployment"], objects["Service"]
    container = _container(deployment)
    env = _literal_env(container)
    assert env["JUPYTERHUB_SERVICE_NAME"] == name == service["metadata"]["name"]
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == f"/services/{name}/"  # z2jh's hub.baseUrl is /
    assert env["JUPYTERHUB_CLIENT_ID"] == Service(name=name).oauth_client_id
    assert env["JUPYTERHUB_API_URL"] == "http://hub:8081/hub/api"  # the chart's Service `hub`, port 8081
    (token,) = [e for e in container["env"] if e["name"] == "JUPYTERHUB_API_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": f"hub.services.{name}.apiToken"}
    (port,) = container["ports"]
    (service_port,) = service["spec"]["ports"]
    assert entry["url"] == f"http://{name}:{service_port['port']}"
    assert service_port["targetPort"] == port["name"]
    assert env["JUPYTERHUB_SERVICE_URL"].endswith(f":{port['containerPort']}")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels["hub.jupyter.org/network-access-hub"] == "true"
    args = container["args"]
    assert args[args.index("--admins") + 1].split(",") == [roster.load().instructor]
    assert urlparse(NGSHARE_URL).path + "/" == env["JUPYTERHUB_SERVICE_PREFIX"]  # the route nbgrader calls
    # The database and the files live on the volume, which outlives the pod.
    mount = container["volumeMounts"][0]["mountPath"]
    assert args[args.index("--database") + 1].startswith(f"sqlite:///{mount}/")
    assert args[args.index("--storage") + 1].startswith(f"{mount}/")


def test_the_ngshare_image_pins_are_the_repositorys():
    """The image the Deployment names is built with the versions this repository tests ngshare with."""
    pins = _ngshare()["Deployment"]["metadata"]["annotations"]["awd-course/packages"].split()
    lines = [line.split("#")[0].strip() for name in ("requirements.txt", "requirements-ngshare-db.txt")
             for line in (REPO / name).read_text().splitlines()]
    repository = {line for line in lines if line.startswith(("ngshare==", "SQLAlchemy==", "alembic=="))}
    assert set(pins) == repository and len(pins) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_ngshare_container_starts_and_answers_its_probes(tmp_path):
    """The container's command, arguments and environment, run here with the pinned ngshare and SQLAlchemy 1.4 (as
    the image has them), the volume's path mapped to a temporary folder and a free port: ngshare creates its database
    and answers the readiness probe, also on the route the hub's proxy forwards."""
    from deploy.hub.ngshare import DB_PACKAGES

    if not (DB_PACKAGES / "sqlalchemy").is_dir():
        pytest.skip(f"{DB_PACKAGES} missing: run `bash setup.sh`")
    container = _container(_ngshare()["Deployment"])
    mount = container["volumeMounts"][0]["mountPath"]
    port = _free_port()
    env = {**_literal_env(container), "JUPYTERHUB_API_TOKEN": "offline",  # the hub's Secret, on a cluster
           "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{port}", "PYTHONPATH": str(DB_PACKAGES),
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [sys.executable if part == "python" else part for part in container["command"]]
    args = [a.replace(mount, str(tmp_path)) for a in container["args"]]
    probe = container["readinessProbe"]["httpGet"]["path"]
    proc = subprocess.Popen([*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        answers: dict[str, int] = {}
        deadline = time.monotonic() + 60
        for path in (probe, f"{env['JUPYTERHUB_SERVICE_PREFIX']}healthz"):
            while path not in answers:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                        answers[path] = response.status
                except OSError:
                    assert time.monotonic() < deadline, f"ngshare did not answer {path} within 60 s"
                    time.sleep(0.3)
        assert set(answers.values()) == {200}, answers
        assert (tmp_path / "ngshare.db").is_file()  # made (and migrated) on the volume at start
    finally:
        proc.terminate()
        proc.wait(timeout=30)

"""The hub's limits, idle culler, restart and HTTPS, for real (deploy/hub/, as root, cgroup v1 here).

One hub, started with a self-signed certificate (``--tls-cert/--tls-key``) and small limits: every request goes
over HTTPS, verified against that certificate. alice's server is started through the hub; each limit is then
exceeded by a process in that server's control group, run as alice: memory past ``--mem-limit`` is killed, a
fork past ``--max-processes`` is refused, and CPU-bound processes get no more CPU time than ``--cpu-limit``
allows (the group's own accounting against wall time: a ratio, not a timing). The idle culler runs as a hub
service whose token holds exactly the scopes it needs. Last, the hub is restarted: the server keeps running and
answers through the new hub, and a restart with a short culling timeout has it stopped as idle, its group gone.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from autograder import cgroups
from deploy.hub import culler
from tests.fixtures.hub import Hub, login, running_hub
from tests.test_hub import STUDENT, server_pid, server_xsrf, start_server

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the hub needs root: PAM reads /etc/shadow, and servers run as the users")

MEM_MB, CORES, PROCESSES = 400, 0.5, 64
PYTHON = "/usr/bin/python3"  # the system's: alice's processes here run outside the server's mount namespace


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (as subjectAltName: what TLS clients check) and its key, mode 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "awd-course test hub")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "hub.crt", folder / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def hub(tmp_path_factory, prepared_data) -> Iterator[Hub]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    with running_hub(tmp_path_factory.mktemp("hub-limits"), prepared_data, "--tls-cert", str(cert),
                     "--tls-key", str(key), "--mem-limit", f"{MEM_MB}M", "--cpu-limit", str(CORES),
                     "--max-processes", str(PROCESSES), "--cull-timeout", "3600") as started:
        yield started


@pytest.fixture(scope="module")
def alice(hub) -> requests.Session:
    session = login(hub, STUDENT)
    start_server(hub, session, STUDENT)
    return session


def group_of(pid: int) -> cgroups.Group:
    """The v1 control groups ``pid`` is in, for the controllers the spawner sets (and cpuacct, to measure)."""
    dirs = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(","):
            if name in (*cgroups.CONTROLLERS, cgroups.ACCOUNTING):
                dirs.append(cgroups.ROOT / name / path.lstrip("/"))
    return cgroups.Group("v1", dirs)


def in_group_as_alice(group: cgroups.Group, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``code`` run by alice in ``group`` (joined as root, before dropping to alice, as the spawner does)."""
    return subprocess.run([*group.join_prefix(), "runuser", "-u", STUDENT, "--", PYTHON, "-c", code],
                          capture_output=True, text=True, timeout=timeout)


def read(group: cgroups.Group, name: str) -> str:
    return next((d / name).read_text().strip() for d in group.dirs if (d / name).is_file())


def test_login_over_https_with_the_hubs_certificate(hub, alice):
    assert hub.base.startswith("https://")
    home = alice.get(f"{hub.base}/hub/home", timeout=30)
    assert home.status_code == 200 and home.url.startswith("https://"), home.url
    # The certificate is what the client checked: without it as the trust anchor, the handshake is refused.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{hub.base}/hub/login", timeout=10)
    # and the public port speaks no plain HTTP
    try:
        plain = requests.get(f"{hub.base.replace('https', 'http', 1)}/hub/login", timeout=10)
        assert plain.status_code != 200 or 'name="password"' not in plain.text
    except requests.RequestException:
        pass


def test_the_server_and_what_it_starts_are_in_a_group_with_the_limits(hub, alice):
    pid = server_pid(hub, STUDENT)
    group = group_of(pid)
    assert all(f"awd-hub-{STUDENT}-" in str(d) for d in group.dirs), group.dirs
    assert int(read(group, "memory.limit_in_bytes")) == MEM_MB * 2**20
    assert int(read(group, "pids.max")) == PROCESSES
    assert int(read(group, "cpu.cfs_quota_us")) / int(read(group, "cpu.cfs_period_us")) == CORES
    # A terminal the server starts (as a kernel would be) is born in the server's group.
    made = alice.post(f"{hub.base}/user/{STUDENT}/api/terminals", timeout=30, headers=server_xsrf(alice, STUDENT))
    assert made.status_code == 200, made.text[:300]
    children = [p for p in group.pids() if p != pid and f"PPid:\t{pid}\n" in Path(f"/proc/{p}/status").read_text()]
    assert children, f"nothing the server started is in its group {group.dirs}: {group.pids()}"
    alice.delete(f"{hub.base}/user/{STUDENT}/api/terminals/{made.json()['name']}", timeout=30,
                 headers=server_xsrf(alice, STUDENT))


def test_memory_past_the_limit_is_killed(hub, alice):
    group = group_of(server_pid(hub, STUDENT))
    # Written, not just reserved: every page of it counts against the group.
    done = in_group_as_alice(group, f"b = b'x' * ({MEM_MB + 200} * 2**20); print('allocated', len(b))")
    assert "allocated" not in done.stdout and done.returncode != 0, (done.returncode, done.stdout, done.stderr)
    # SIGKILL from the OOM killer (runuser reports it as 128 + 9), or a refused allocation
    assert done.returncode in (-9, 137) or "MemoryError" in done.stderr, (done.returncode, done.stderr[-500:])
    assert group.limit_hit() == "memory"  # the OOM killer of the group did it (memory.oom_control)
    server_pid(hub, STUDENT)  # the server itself survived its kernel's excess
    # Below the limit the same code runs: the limit is what stopped it, not something else.
    small = in_group_as_alice(group, "b = b'x' * (50 * 2**20); print('allocated', len(b))")
    assert small.returncode == 0 and "allocated" in small.stdout, small.stderr


def test_fork_past_the_process_cap_fails(hub, alice):
    group = group_of(server_pid(hub, STUDENT))
    code = f"""
import os, signal, time
children = []
try:
    for _ in range({PROCESSES * 2}):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    print("forked", len(children))
except OSError as err:
    print("refused after", len(children), err.errno)
finally:
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
"""
    done = in_group_as_alice(group, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused after"), done.stdout
    forked = int(done.stdout.split()[2])
    assert 0 < forked < PROCESSES, done.stdout
    assert int(read(group, "pids.events").split()[1]) > 0  # "max N": the cap refused N forks


def test_cpu_bound_processes_get_at_most_the_quota(hub, alice):
    group = group_of(server_pid(hub, STUDENT))
    # Two busy processes (this machine has two cores): unlimited, they would use about 2 cores.
    code = "import os, time\nos.fork()\nend = time.monotonic() + 8\nwhile time.monotonic() < end: pass\n"
    busy = subprocess.Popen([*group.join_prefix(), "runuser", "-u", STUDENT, "--", PYTHON, "-c", code])
    try:
        time.sleep(1)
        used0, wall0 = group.cpu_usage_ns(), time.monotonic_ns()
        throttled0 = int(dict(line.split() for line in read(group, "cpu.stat").splitlines())["nr_throttled"])
        time.sleep(4)
        used1, wall1 = group.cpu_usage_ns(), time.monotonic_ns()
        throttled1 = int(dict(line.split() for line in read(group, "cpu.stat").splitlines())["nr_throttled"])
    finally:
        busy.wait(timeout=30)
    cores = (used1 - used0) / (wall1 - wall0)
    # At most the quota (CFS grants it per 100 ms period; a little slack for the period at either end), and the
    # loops did run (on a busy shared machine possibly less than the quota, never more).
    assert cores <= CORES * 1.1, f"{cores:.2f} cores used with a quota of {CORES}"
    assert cores > CORES * 0.3, f"the busy loops barely ran ({cores:.2f} cores): the measure shows nothing"
    assert throttled1 > throttled0, "the CFS quota never throttled the group"


def test_idle_culler_runs_as_a_service_with_only_its_scopes(hub):
    procs = [p for p in os.listdir("/proc") if p.isdigit()]
    found = []
    for p in procs:
        try:
            if b"jupyterhub_idle_culler" in Path(f"/proc/{p}/cmdline").read_bytes():
                found.append(int(p))
        except OSError:
            pass
    mine = [p for p in found if f"PPid:\t{hub.process.pid}\n" in Path(f"/proc/{p}/status").read_text()]
    assert len(mine) == 1, f"no idle culler started by the hub ({found})"
    cmdline = Path(f"/proc/{mine[0]}/cmdline").read_bytes().decode().split("\0")
    assert "--timeout=3600" in cmdline, cmdline
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{mine[0]}/environ").read_bytes().decode().split("\0") if "=" in item)
    # Its own token, asked what it may do: the hub's answer for the service's identity and scopes.
    who = requests.get(f"{hub.base}/hub/api/user", timeout=30, verify=hub.verify,
                       headers={"Authorization": f"token {environ['JUPYTERHUB_API_TOKEN']}"})
    assert who.status_code == 200, who.text
    identity = who.json()
    assert identity["kind"] == "service" and identity["name"] == culler.NAME, identity
    scopes = set(identity["scopes"])
    assert set(culler.SCOPES) <= scopes, scopes
    # Nothing that reaches into servers or accounts: it stops servers, it does not use them or delete users.
    assert not scopes & {"admin:users", "admin:servers", "access:servers", "users", "servers", "admin-ui"}, scopes


def test_a_restarted_hub_keeps_the_server_and_the_culler_stops_it_when_idle(hub, alice):
    pid = server_pid(hub, STUDENT)
    group = group_of(pid)
    hub.restart()
    assert server_pid(hub, STUDENT) == pid, "the server did not survive the hub's restart"
    # Through the new hub and proxy, with the session from before the restart.
    status = alice.get(f"{hub.base}/user/{STUDENT}/api/status", timeout=30)
    assert status.status_code == 200 and "started" in status.json(), (status.status_code, status.text[:300])
    # Again, now with a culling timeout this idle server has long passed.
    hub.restart("--cull-timeout", "20")
    deadline = time.monotonic() + 120
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(1)
    assert not os.path.exists(f"/proc/{pid}"), f"the idle server was not culled:\n{hub.log_tail()}"
    assert f"Culling server {STUDENT}" in hub.log.read_text(), hub.log_tail()  # the culler did it, not a crash
    # The restarted hub knew the server's group (from its database) and removed it with the server.
    deadline = time.monotonic() + 15
    while any(d.exists() for d in group.dirs) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(d.exists() for d in group.dirs), group.dirs

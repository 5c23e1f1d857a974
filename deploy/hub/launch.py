"""Starts the course's JupyterHub on this machine (as root): ``bash deploy/hub/start.sh [--port 8000]``.

Prepares what the hub needs, then replaces this process with ``jupyterhub`` (same PID: stopping it with
SIGTERM or Ctrl-C stops the proxy and its services; the users' servers keep running, and the hub started again
with the same ``--run-dir`` takes them back; ``python -m deploy.hub.spawner stop-all RUN_DIR`` stops them):

* the Unix users and groups of the roster (``deploy/roster.toml``, plus ``--members CLASS.csv``), the exchange,
  the course account ``grader-<course_id>`` and its course root (``deploy/hub/accounts.py``), which the shared
  formgrader serves (``deploy/hub/course_service.py``); no password is set unless ``--demo`` is given;
* a refusal to start while a student's own processes (a cron job, an ``at`` job, an ssh session: they run outside
  the servers' mount namespaces) could read ``solutions/``, ``autograder/`` or the course root;
* ``<shared>/jupyter/<role>/``: each role's nbgrader config (course id, exchange; the course root for the
  instructor's, which the course's formgrader service runs with) and which of nbgrader's extensions load: students
  get the assignment list and validation, the instructor also the formgrader, course list and create-assignment
  toolbar;
* the run folder (root only): the hub's sqlite database, cookie secret, proxy token and pid files, log;
* with ``--exchange ngshare``: the ngshare service instead of the exchange directory (``deploy/hub/ngshare.py``),
  run as the ``ngshare`` account on loopback, its state in ``<shared>/ngshare/``, and each role's nbgrader
  config pointing at it;
* each server's limits (``--mem-limit``, ``--cpu-limit``, ``--max-processes``) and the idle culler's timeout;
* with ``--tls-cert``/``--tls-key``: HTTPS on the public port, on ``--bind-ip``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import sys
from pathlib import Path

from deploy import roster as roster_file
from deploy.hub import accounts, course_service, ngshare, runtime

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

STUDENT_OFF = ("formgrader", "course_list")
LAB_STUDENT_OFF = ("formgrader", "course-list", "create-assignment")
SERVER_EXTENSIONS = ("formgrader", "assignment_list", "course_list", "validate_assignment")
# Defaults of JupyterLab's settings for every server (each user may still change them): no pop-up asking each
# user whether to fetch Jupyter's news from the internet, which also covered part of the formgrader's pages.
LAB_DEFAULTS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_role_configs(root: Path, course_id: str, exchange: Path, course_root: Path,
                       ngshare_url: str | None = None) -> None:
    """``<root>/student`` and ``<root>/instructor``: the JUPYTER_CONFIG_PATH entry of each role's servers.

    The same settings nbgrader documents per user (``jupyter server extension disable --user …`` writes
    ``jpserver_extensions``; ``jupyter labextension disable --level=user …`` writes ``disabledExtensions`` in
    ``labconfig/page_config.json``), kept in one root-owned place instead of in every home; and
    ``labconfig/default_setting_overrides.json``, JupyterLab's defaults for the settings in ``LAB_DEFAULTS``.
    """
    for role in ("student", "instructor"):
        folder = root / role
        (folder / "labconfig").mkdir(parents=True, exist_ok=True)
        off = STUDENT_OFF if role == "student" else ()
        lab_off = LAB_STUDENT_OFF if role == "student" else ()
        extensions = {f"nbgrader.server_extensions.{name}": name not in off for name in SERVER_EXTENSIONS}
        server: dict = {"jpserver_extensions": extensions}
        if role == "instructor":
            # nbgrader's lab extension shows the formgrader in an iframe of the server's own /formgrader page;
            # jupyterhub-singleuser forbids all framing by default ("frame-ancestors 'none'"), which leaves that
            # tab blank ("refused to connect"). 'self' lets the instructor's lab frame it; students keep 'none'.
            server["tornado_settings"] = {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}
        (folder / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": server}, indent=2))
        (folder / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {f"@jupyter/nbgrader:{name}": True for name in lab_off}}, indent=2))
        (folder / "labconfig" / "default_setting_overrides.json").write_text(json.dumps(LAB_DEFAULTS, indent=2))
        lines = ["c = get_config()  # noqa: F821",
                 f"c.CourseDirectory.course_id = {course_id!r}",
                 f"c.Exchange.root = {str(exchange)!r}"]
        if role == "instructor":
            lines.append(f"c.CourseDirectory.root = {str(course_root)!r}")
        text = "\n".join(lines) + "\n"
        if ngshare_url:  # the exchange service instead of the directory (which then stays unused)
            text += ngshare.nbgrader_config(ngshare_url)
        (folder / "nbgrader_config.py").write_text(text)
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)


def closed_paths(course_root: Path) -> list[Path]:
    """What no student may read or enter: the reference solutions, the grader (its hidden checks and config),
    the instructor's course root (``source/``, ``gradebook.db``, the verdicts)."""
    return [REPO / "solutions", REPO / "autograder", course_root, course_root / "gradebook.db"]


def open_paths(roster: roster_file.Roster, paths: list[Path]) -> dict[Path, list[str]]:
    """For each of ``paths`` that some student can read or enter, which students (the kernel asked as each)."""
    found: dict[Path, list[str]] = {}
    for student in roster.students:
        for path in accounts.reachable_by(student, paths):
            found.setdefault(path, []).append(student)
    return found


def refuse_if_open(roster: roster_file.Roster, paths: list[Path]) -> None:
    """Exits, naming each path and its fix, when a student could read it. The servers' mount namespaces hide
    the clone, but a student's crontab, ``at`` job or ``ssh localhost`` runs outside them: only the files'
    permissions keep those out."""
    found = open_paths(roster, paths)
    if not found:
        return
    lines = ["deploy/hub: refusing to start: students can read what must stay closed to them "
             "(a student's cron job, at job or ssh session runs outside the servers' mount namespaces):"]
    for path, students in found.items():
        who = ", ".join(students[:3]) + (f" and {len(students) - 3} more" if len(students) > 3 else "")
        if path.is_relative_to(REPO):
            fix = (f"chgrp {roster.staff_group} {path} && chmod 0750 {path}   (the roster's instructors are in "
                   f"{roster.staff_group}), or keep the clone in a folder other users cannot enter, such as /root")
        else:
            fix = f"chmod 0700 {path.parent if path.name == 'gradebook.db' else path}"
        lines += [f"  {path} is readable by {who}", f"    fix: {fix}"]
    sys.exit("\n".join(lines))


def stable_ports(run: Path, wanted: dict[str, int]) -> dict[str, int]:
    """The hub's internal ports, the same at every start with this run folder: servers that outlived a hub call
    the hub's API at the address they were given, so a restarted hub must listen there again. 0 means: the one
    used last time, else a free one."""
    saved = run / "ports.json"
    previous = json.loads(saved.read_text()) if saved.exists() else {}
    ports = {name: port or int(previous.get(name, 0)) or free_port() for name, port in wanted.items()}
    saved.write_text(json.dumps(ports))
    return ports


def mem_bytes(text: str) -> int:
    """``2G``, ``512M``, ``1048576``: JupyterHub's own notation for mem_limit, checked here rather than at spawn."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (e.g. 2G, 512M)")
    return int(match[1]) * 1024 ** " KMGT".index(match[2] or " ")


def check_tls(cert: str, key: str) -> tuple[str, str]:
    """Both or neither; readable; the key not readable by other users."""
    if bool(cert) != bool(key):
        sys.exit("deploy/hub: --tls-cert and --tls-key go together")
    if not cert:
        return "", ""
    cert_path, key_path = Path(cert).resolve(), Path(key).resolve()
    for path in (cert_path, key_path):
        if not path.is_file():
            sys.exit(f"deploy/hub: {path} is not a file")
    if key_path.stat().st_mode & 0o077:
        sys.exit(f"deploy/hub: the TLS key {key_path} is readable by other users; chmod 0600 {key_path}")
    return str(cert_path), str(key_path)


def announce_demo(users: tuple[str, ...]) -> None:
    """Says, where nobody can miss it, that every account now has a password anyone can guess."""
    bar = "!" * 100
    print(f"{bar}\ndeploy/hub: --demo: DEMO PASSWORDS. Each account's password is now its own name "
          f"({users[0]} / {accounts.demo_password(users[0])}): {', '.join(users)}.\n"
          "deploy/hub: anyone who reaches this hub can sign in as anyone. Never use --demo for a class.\n"
          f"{bar}", flush=True)


def prepare(args: argparse.Namespace) -> dict[str, str]:
    """Everything but the hub itself; returns the environment jupyterhub_config.py reads."""
    if os.geteuid() != 0:
        sys.exit("deploy/hub: run as root (PAM needs /etc/shadow, and the hub starts servers as the users)")
    proxy = shutil.which(args.proxy)
    if proxy is None:
        sys.exit(f"deploy/hub: {args.proxy!r} not found; install it with "
                 "`npm install -g configurable-http-proxy@5.3.0` (bash setup.sh does, as root)")
    shared = Path(args.shared_dir).resolve()
    shared.mkdir(parents=True, exist_ok=True)
    os.chmod(shared, 0o755)
    blocked = runtime.hidden_ancestor(shared)
    if blocked is not None:
        sys.exit(f"deploy/hub: the shared folder {shared} is inside {blocked}, which other users cannot enter; "
                 "choose a --shared-dir every user can reach (default /srv/awd-course)")
    roster = roster_file.load(args.roster, args.members)
    accounts.ensure_users(roster.users)
    # The course account runs the shared formgrader (deploy/hub/course_service.py) and owns the course: it joins
    # the staff group because the course config imports autograder/.
    owner = accounts.ensure_users([course_service.account_name(roster.course_id)])[
        course_service.account_name(roster.course_id)]
    accounts.ensure_staff_group(roster.staff_group, (*roster.instructors, owner.name))
    exchange = accounts.ensure_exchange(shared / "exchange")
    # nbgrader's formgrader refuses a course root outside the server's root folder (the course account's home).
    course_root = owner.home / args.course_dir
    tls_cert, tls_key = check_tls(args.tls_cert, args.tls_key)
    public = f"https://{args.bind_ip}:{args.port}" if tls_cert else f"http://127.0.0.1:{args.port}"
    ngshare_url = ngshare.service_url(public) if args.exchange == "ngshare" else None
    accounts.ensure_course_root(course_root, owner, exchange, roster.due, ngshare_url)
    refuse_if_open(roster, closed_paths(course_root))
    if args.demo:
        accounts.set_demo_passwords(roster.users)
        announce_demo(roster.users)
    write_role_configs(shared / "jupyter", roster.course_id, exchange, course_root, ngshare_url)

    run = Path(args.run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    os.chmod(run, 0o700)
    token = run / "proxy_auth_token"
    if not token.exists():
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))
    stage = run / "stage"
    stage.mkdir(exist_ok=True)
    for role in ("student", "instructor"):
        for hidden, _ in runtime.view_for(role, REPO, Path(args.data_dir)).plan():
            if stage.is_relative_to(hidden):
                sys.exit(f"deploy/hub: the run folder {run} is inside {hidden}, which the {role}s' servers see "
                         "as an empty folder; choose a --run-dir elsewhere")
    data_dir = Path(args.data_dir).resolve()
    ports = stable_ports(run, {"hub": args.hub_port, "proxy_api": args.proxy_api_port})
    service: dict[str, str] = {"AWD_HUB_COURSE_SERVICE_PORT": str(free_port())}
    if ngshare_url:
        # ngshare's database and files: its own account's, 0700 (it runs as that account, not root). In the shared
        # folder, which every account can reach, not in the run folder (root only).
        account = accounts.ensure_users([ngshare.ACCOUNT])[ngshare.ACCOUNT]
        state = shared / "ngshare"
        state.mkdir(mode=0o700, exist_ok=True)
        os.chown(state, account.uid, account.gid)
        os.chmod(state, 0o700)
        service |= {"AWD_HUB_NGSHARE_PORT": str(args.ngshare_port or free_port()), "AWD_HUB_NGSHARE_URL": ngshare_url,
                    "AWD_HUB_NGSHARE_STATE": str(state)}
    if tls_cert:
        service.update({"AWD_HUB_TLS_CERT": tls_cert, "AWD_HUB_TLS_KEY": tls_key, "AWD_HUB_BIND_IP": args.bind_ip})
    return {
        **service,
        "AWD_HUB_RUN_DIR": str(run),
        "AWD_HUB_PORT": str(args.port),
        "AWD_HUB_INTERNAL_PORT": str(ports["hub"]),
        "AWD_HUB_PROXY_API_PORT": str(ports["proxy_api"]),
        "AWD_HUB_MEM_LIMIT": str(args.mem_limit),
        "AWD_HUB_CPU_LIMIT": str(args.cpu_limit),
        "AWD_HUB_MAX_PROCESSES": str(args.max_processes),
        "AWD_HUB_CULL_TIMEOUT": str(args.cull_timeout),
        "AWD_HUB_PROXY": proxy,
        "AWD_HUB_REPO": str(REPO),
        "AWD_HUB_DATA_DIR": str(data_dir),
        "AWD_HUB_ROLE_CONFIG": str(shared / "jupyter"),
        "AWD_HUB_STAGE_DIR": str(stage),
        "AWD_HUB_COURSE_ROOT": str(course_root),
        "AWD_HUB_EXCHANGE": str(exchange),
        # The hub's config reads the same roster: allowed users, groups, who is an instructor.
        "AWD_HUB_ROSTER": str(Path(args.roster).resolve()),
        "AWD_HUB_MEMBERS": str(Path(args.members).resolve()) if args.members else "",
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    from hw4lib.data import data_dir

    parser = argparse.ArgumentParser(prog="deploy/hub/start.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="the hub's public port on 127.0.0.1 (8000)")
    parser.add_argument("--run-dir", default="/srv/awd-course/hub",
                        help="hub state: database, cookie secret, proxy token, log (root only)")
    parser.add_argument("--shared-dir", default="/srv/awd-course",
                        help="world-readable: the exchange and each role's Jupyter config")
    parser.add_argument("--course-dir", default="awd-course",
                        help="the course root, as a folder in the course account's home (grader-<course_id>)")
    parser.add_argument("--data-dir", default=str(data_dir()), help="prepared datasets (HW4_DATA_DIR)")
    parser.add_argument("--proxy", default="configurable-http-proxy", help="the proxy command")
    parser.add_argument("--hub-port", type=int, default=0, help="the hub's internal port (default: a free one)")
    parser.add_argument("--proxy-api-port", type=int, default=0, help="the proxy's API port (default: a free one)")
    parser.add_argument("--exchange", choices=("directory", "ngshare"), default="directory",
                        help="nbgrader's exchange: the shared directory (default) or the ngshare service")
    parser.add_argument("--ngshare-port", type=int, default=0, help="ngshare's own port (default: a free one)")
    parser.add_argument("--roster", default=str(roster_file.ROSTER),
                        help="the course's roster (deploy/roster.toml): its people, by role")
    parser.add_argument("--members", default=None,
                        help="a CSV class list from an LMS (columns username,role) added to the roster's people")
    parser.add_argument("--demo", action="store_true",
                        help="set each account's password to its own name (a demo nobody else can reach; "
                             "never for a class). Without it, no password is set or changed")
    parser.add_argument("--prepare-only", action="store_true",
                        help="make the accounts, folders and config, run the checks, and exit without the hub")
    parser.add_argument("--mem-limit", type=mem_bytes, default=mem_bytes("3G"),
                        help="memory of each user's server with its kernels and terminals (3G)")
    parser.add_argument("--cpu-limit", type=float, default=1.0, help="CPU cores per server (1.0)")
    parser.add_argument("--max-processes", type=int, default=512,
                        help="processes and threads per server, kernels included (512)")
    parser.add_argument("--cull-timeout", type=int, default=3600,
                        help="stop a server idle this many seconds (3600; 0: never)")
    parser.add_argument("--tls-cert", default="", help="PEM certificate (chain): serve HTTPS on the public port")
    parser.add_argument("--tls-key", default="", help="its PEM private key (mode 0600)")
    parser.add_argument("--bind-ip", default="127.0.0.1",
                        help="with --tls-cert: the address the public port listens on (0.0.0.0: every interface); "
                             "without TLS the hub stays on 127.0.0.1")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    settings = prepare(args)
    if args.prepare_only:
        print("deploy/hub: prepared; not starting the hub (--prepare-only)", flush=True)
        return
    env = dict(os.environ, **settings, AWD_HUB_LOG_LEVEL=args.log_level)
    # The config imports deploy.hub.spawner; the proxy (node) is found by absolute path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for role in ("student", "instructor"):
        view = runtime.view_for(role, REPO, Path(settings["AWD_HUB_DATA_DIR"]))
        for line in runtime.describe(view):
            print(f"deploy/hub: {role} servers: {line}", flush=True)
    scheme, ip = ("https", args.bind_ip) if settings.get("AWD_HUB_TLS_CERT") else ("http", "127.0.0.1")
    print(f"deploy/hub: JupyterHub on {scheme}://{ip}:{args.port}/ (state in {settings['AWD_HUB_RUN_DIR']}); "
          f"each server: {args.mem_limit // 2**20} MiB, {args.cpu_limit} cores, {args.max_processes} processes; "
          f"idle servers stopped after {args.cull_timeout or 'never'} s", flush=True)
    os.chdir(settings["AWD_HUB_RUN_DIR"])
    cmd = [sys.executable, "-m", "jupyterhub", "-f", str(HERE / "jupyterhub_config.py")]
    os.execve(sys.executable, cmd, env)


if __name__ == "__main__":
    main()

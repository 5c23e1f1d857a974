# JupyterHub for the course on one machine. Started by deploy/hub/start.sh (deploy/hub/launch.py), which
# creates the users, the exchange and the course, then sets the AWD_HUB_* variables read here. Who may sign in,
# and in which group, comes from the course's roster (deploy/roster.toml), the same one course_setup.py reads.
import os
import sys
from pathlib import Path

from autograder.cgroups import Quota
from deploy import roster as roster_file
from deploy.hub import course_service, culler, ngshare
from deploy.hub.spawner import CourseSpawner

c = get_config()  # noqa: F821

env = os.environ
run = Path(env["AWD_HUB_RUN_DIR"])
roster = roster_file.load(Path(env["AWD_HUB_ROSTER"]), Path(env["AWD_HUB_MEMBERS"]) if env.get("AWD_HUB_MEMBERS")
                          else None)

# On loopback, plain HTTP, unless start.sh got --tls-cert/--tls-key: then the public proxy itself terminates TLS
# (JupyterHub's ssl_cert/ssl_key, passed on to configurable-http-proxy), on --bind-ip. The hub's internal port
# and the servers stay on 127.0.0.1, behind it.
if env.get("AWD_HUB_TLS_CERT"):
    c.JupyterHub.bind_url = f"https://{env['AWD_HUB_BIND_IP']}:{env['AWD_HUB_PORT']}"
    c.JupyterHub.ssl_cert = env["AWD_HUB_TLS_CERT"]
    c.JupyterHub.ssl_key = env["AWD_HUB_TLS_KEY"]
else:
    c.JupyterHub.bind_url = f"http://127.0.0.1:{env['AWD_HUB_PORT']}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{env['AWD_HUB_INTERNAL_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['AWD_HUB_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.auth_token = (run / "proxy_auth_token").read_text().strip()
c.ConfigurableHTTPProxy.pid_file = str(run / "proxy.pid")
c.ConfigurableHTTPProxy.command = [env.get("AWD_HUB_PROXY", "configurable-http-proxy")]
c.JupyterHub.db_url = f"sqlite:///{run / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(run / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(run / "jupyterhub.pid")
# Stopping the hub stops the proxy, but not the users' servers: a restart (an upgrade, a config change) must not
# kill every student's kernels. The restarted hub reads each server's pid and control group from its database
# (CourseSpawner's state), checks it still runs, and routes to it again; launch.py keeps the hub's internal port
# (which the servers call) from one start to the next. To stop the servers too:
# `python -m deploy.hub.spawner stop-all RUN_DIR` once the hub has stopped.
c.JupyterHub.cleanup_servers = False
c.JupyterHub.cleanup_proxy = True

# The authenticator: JupyterHub's own PAMAuthenticator, the Unix accounts' passwords (which the institution or the
# instructor sets: LDAP/Kerberos through PAM, or passwd/chpasswd; the course sets none, but with start.sh --demo).
# Chosen because it needs no other service, runs offline, ships with (so is pinned with) jupyterhub, and checks the
# very accounts the servers run as; only the roster's users may sign in. NativeAuthenticator would keep a second
# set of passwords in the hub's database, for accounts that still need a Unix user each; OAuthenticator (an
# institution's SSO) and LTI (sign-in from the LMS) need that server reachable: see docs/deploy.md.
# The "login" PAM service checks the password and the account, not the shell: nologin accounts sign in.
# No PAM session: containers often lack systemd-logind, and the servers are plain processes started by the hub.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_users = set(roster.users)
c.Authenticator.admin_users = set()  # nobody, the instructor included, may open another user's server
# A group per role of the roster. load_groups only adds: someone dropped from the roster loses the sign-in
# (allowed_users) at the next start, but leaving a group takes the hub's admin API.
# Graders (TAs) and instructors reach the course through the shared formgrader service below, by their groups.
c.JupyterHub.load_groups = {f"{role}s": {"users": list(getattr(roster, f"{role}s"))}
                            for role in roster_file.ROLES}

c.JupyterHub.spawner_class = CourseSpawner
# `python -m` with the hub's own interpreter: console scripts' shebangs would name a path students may not see.
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.CourseSpawner.repo = env["AWD_HUB_REPO"]
c.CourseSpawner.data_dir = env["AWD_HUB_DATA_DIR"]
c.CourseSpawner.role_config_root = env["AWD_HUB_ROLE_CONFIG"]
c.CourseSpawner.stage_dir = env["AWD_HUB_STAGE_DIR"]
c.CourseSpawner.tag = str(run)
c.CourseSpawner.instructors = list(roster.instructors)
# Each server's limits (start.sh --mem-limit/--cpu-limit/--max-processes), for its whole process tree, enforced by
# its control group (deploy/hub/spawner.py): memory past mem_limit is refused or the process OOM-killed, cpu_limit
# cores at most however many threads run, and no fork past max_processes.
c.Spawner.mem_limit = int(env["AWD_HUB_MEM_LIMIT"])  # bytes
c.Spawner.cpu_limit = float(env["AWD_HUB_CPU_LIMIT"])
c.CourseSpawner.max_processes = int(env["AWD_HUB_MAX_PROCESSES"])
c.JupyterHub.log_level = env.get("AWD_HUB_LOG_LEVEL", "INFO")

# nbgrader's "one class, multiple graders": the course's formgrader as a service run as the course account, with
# the instructor's config and view and a server's limits, for the instructors and graders groups only.
services: list[dict] = [course_service.service(
    roster.course_id, int(env["AWD_HUB_COURSE_SERVICE_PORT"]), Path(env["AWD_HUB_COURSE_ROOT"]).parent,
    Path(env["AWD_HUB_ROLE_CONFIG"]) / "instructor", Path(env["AWD_HUB_REPO"]), Path(env["AWD_HUB_DATA_DIR"]),
    Path(env["AWD_HUB_STAGE_DIR"]), Quota(int(env["AWD_HUB_MAX_PROCESSES"]), int(env["AWD_HUB_MEM_LIMIT"]) // 2**20,
                                          float(env["AWD_HUB_CPU_LIMIT"])))]
roles: list[dict] = [course_service.role(roster.course_id)]
# `start.sh --exchange ngshare`: nbgrader's exchange is the ngshare service instead of a shared directory.
if env.get("AWD_HUB_NGSHARE_PORT"):
    services.append(ngshare.service(int(env["AWD_HUB_NGSHARE_PORT"]), Path(env["AWD_HUB_NGSHARE_STATE"]),
                                    roster.instructors, Path(env["AWD_HUB_REPO"]), Path(env["AWD_HUB_DATA_DIR"]),
                                    Path(env["AWD_HUB_STAGE_DIR"])))
# jupyterhub-idle-culler, a service the hub starts and stops: servers without activity for the timeout
# (start.sh --cull-timeout; 0: none) are stopped, their memory and processes given back. Its role holds only the
# scopes its README lists for culling servers (not users: accounts stay).
cull_timeout = int(env.get("AWD_HUB_CULL_TIMEOUT", "0"))
if cull_timeout > 0:
    services.append(culler.service(cull_timeout))
    roles.append(culler.role())
c.JupyterHub.services = services
c.JupyterHub.load_roles = roles

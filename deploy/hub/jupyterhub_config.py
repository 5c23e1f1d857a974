# JupyterHub for the course on one machine. Started by deploy/hub/start.sh (deploy/hub/launch.py), which
# creates the users, the exchange and the course, then sets the AWD_HUB_* variables read here.
import os
import sys
from pathlib import Path

from deploy.hub import ngshare
from deploy.hub.accounts import INSTRUCTOR, USERS
from deploy.hub.spawner import CourseSpawner

c = get_config()  # noqa: F821

env = os.environ
run = Path(env["AWD_HUB_RUN_DIR"])

# Only on loopback: put a TLS-terminating reverse proxy in front for anything beyond this machine.
c.JupyterHub.bind_url = f"http://127.0.0.1:{env['AWD_HUB_PORT']}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{env['AWD_HUB_INTERNAL_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['AWD_HUB_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.auth_token = (run / "proxy_auth_token").read_text().strip()
c.ConfigurableHTTPProxy.pid_file = str(run / "proxy.pid")
c.ConfigurableHTTPProxy.command = [env.get("AWD_HUB_PROXY", "configurable-http-proxy")]
c.JupyterHub.db_url = f"sqlite:///{run / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(run / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(run / "jupyterhub.pid")
# Stopping the hub stops the proxy and every user's server: nothing outlives it.
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# The system's users and passwords, through PAM ("login" service). No PAM session: containers often lack
# systemd-logind, and the servers are plain processes started by the hub.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_users = set(USERS)
c.Authenticator.admin_users = set()  # nobody, the instructor included, may open another user's server

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
c.JupyterHub.log_level = env.get("AWD_HUB_LOG_LEVEL", "INFO")

# `start.sh --exchange ngshare`: nbgrader's exchange is the ngshare service instead of a shared directory.
if env.get("AWD_HUB_NGSHARE_PORT"):
    c.JupyterHub.services = [ngshare.service(int(env["AWD_HUB_NGSHARE_PORT"]), run / "ngshare", (INSTRUCTOR,))]

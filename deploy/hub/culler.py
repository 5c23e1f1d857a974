"""The idle culler: jupyterhub-idle-culler, run by the hub as a managed service (its own process, its own token).

Chosen over writing our own: it is JupyterHub's maintained culler (the one Zero to JupyterHub ships), and it
only needs the hub's REST API, so it works with any spawner.
"""

from __future__ import annotations

import sys

NAME = "idle-culler"
# What jupyterhub-idle-culler's README lists for culling servers (not users): list users, read their activity
# and servers, stop servers. No admin:users: it never deletes accounts (no --cull-users).
SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")


def service(timeout: int) -> dict:
    """The service entry: cull servers idle for ``timeout`` seconds, looking twice per timeout (at most every
    10 minutes, its default), so that a server is stopped at most 1.5 timeouts after its last activity."""
    every = max(5, min(600, timeout // 2))
    return {"name": NAME, "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                                      f"--timeout={timeout}", f"--cull-every={every}"]}


def role() -> dict:
    return {"name": f"{NAME}-role", "scopes": list(SCOPES), "services": [NAME]}

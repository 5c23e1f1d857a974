#!/usr/bin/env bash
# Starts the course's JupyterHub on 127.0.0.1 (as root). Options: python -m deploy.hub.launch --help.
# Stop it with Ctrl-C, or `kill $(cat RUN_DIR/jupyterhub.pid)`: the proxy stops with it; the users' servers keep
# running for the next start (`python -m deploy.hub.spawner stop-all RUN_DIR` stops them).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
cd "$repo"
exec "$python" -m deploy.hub.launch "$@"

#!/usr/bin/env bash
# Sets up a fresh machine in one command: system packages (as root, with apt), a virtualenv `.venv` with the
# pinned requirements and this project, and the prepared WikiText-2 and Penn Treebank data.
set -euo pipefail
cd "$(dirname "$0")"

# bubblewrap sandboxes student code while grading; chromium drives JupyterLab in the browser test.
need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v chromium >/dev/null || need+=(chromium chromium-driver)
command -v xz >/dev/null || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]} with apt-get"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
  else
    echo "setup: please install these system packages (as root): ${need[*]}" >&2
  fi
fi

# JupyterHub's proxy (deploy/hub/): configurable-http-proxy from npm, with Debian's node.
if ! command -v configurable-http-proxy >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v npm >/dev/null; then
    echo "setup: installing configurable-http-proxy with npm"
    npm install -g -q configurable-http-proxy@5.3.0 >/dev/null
  else
    echo "setup: for deploy/hub/, install configurable-http-proxy (as root): npm install -g configurable-http-proxy@5.3.0" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# The locks (made by `bash lock.sh` from the requirements*.txt): every package pinned, each file checked against its
# sha256 (--require-hashes), so every machine gets the environment the tests ran in, or an error.
.venv/bin/python -m pip install -q --require-hashes -r requirements.lock
.venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements-nodeps.lock
# ngshare's own SQLAlchemy 1.4, on its PYTHONPATH only (deploy/hub/ngshare.py; docs/deploy.md, "ngshare").
.venv/bin/python -m pip install -q --require-hashes --no-deps --upgrade --target .venv/ngshare-db \
  -r requirements-ngshare-db.lock
# The project itself, built with the locked setuptools (no build isolation: it would fetch an unpinned one).
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .

# Prepares the course format from ../shared/data when it is there, downloads (with sha256 checks) otherwise.
.venv/bin/python -m hw4lib data ensure
echo "setup: done. Run the tests with: .venv/bin/python -m pytest"

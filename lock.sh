#!/usr/bin/env bash
# Refreshes the locks that setup.sh installs from, after a change to a requirements*.txt:
#
#   bash lock.sh              # keeps every pin the lock already has that still fits, resolves the rest
#   bash lock.sh --upgrade    # resolves everything anew (the newest versions that fit requirements.txt)
#
# requirements.txt -> requirements.lock: every package, transitive ones, pip and setuptools included (setup.sh
# builds the editable install without build isolation, with the locked setuptools), each with the sha256 of every
# file the index offers for its version. pip-compile (pip-tools) resolves with pip itself, so it sees the same
# indexes and find-links (pip.conf) as setup.sh's `pip install`.
#
# requirements-nodeps.txt and requirements-ngshare-db.txt -> *.lock: their packages are installed with --no-deps (their
# declared dependencies conflict with the rest; see the files), so they are not resolved: each pin gets the sha256 of
# the wheel pip downloads for this machine (Linux, the interpreter below).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PYTHON" -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q pip-tools==7.6.2

# The header of the lock names this command, not the temporary pip-compile.
CUSTOM_COMPILE_COMMAND="bash lock.sh" "$tools/venv/bin/pip-compile" -q --generate-hashes --allow-unsafe \
  --strip-extras --no-emit-index-url --no-emit-find-links "$@" -o requirements.lock requirements.txt

for name in nodeps ngshare-db; do
  "$tools/venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$tools/$name" -r "requirements-$name.txt"
  "$tools/venv/bin/python" - "requirements-$name.txt" "$tools/$name" > "requirements-$name.lock" <<'EOF'
import hashlib
import sys
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

source, folder = sys.argv[1], Path(sys.argv[2])
wheels = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in folder.glob("*.whl")}
print(f"# Written by `bash lock.sh` from {source}: installed with --no-deps (see there). The sha256 of the wheel")
print("# pip downloads for Linux and the interpreter lock.sh ran with.")
for line in Path(source).read_text().splitlines():
    pin = line.split("#")[0].strip()
    if pin:
        wheel = wheels[canonicalize_name(pin.split("==")[0])]
        print(f"{pin} \\\n    --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}")
EOF
done
echo "lock.sh: wrote requirements.lock, requirements-nodeps.lock, requirements-ngshare-db.lock"

"""What breaks when ngshare and ngshare-exchange meet today's Jupyter, and the configuration that mends it.

Both packages' last releases are from 2022. Two facts, kept here so that a new release (or a new pin) shows up:

* ngshare 0.6.0 under SQLAlchemy 2 stores nothing it builds from a relationship (a released assignment, a
  submission): SQLAlchemy 2 dropped the backref cascade that ngshare's models rely on, and ngshare still answers
  ``success``. Its own SQLAlchemy 1.4 (``deploy.hub.ngshare.DB_PACKAGES``) stores them.
* ngshare-exchange 0.5.3 declares ``jupyter-core<4.11.2``, which excludes every jupyter_core that jupyter_server 2
  accepts (JupyterLab 4, which nbgrader 0.9.6 needs), so pip refuses the pair and it is installed with
  ``--no-deps`` (tests/test_exchange_e2e.py then runs the whole course cycle through it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from deploy.hub import ngshare

pytest.importorskip("ngshare", reason="ngshare is not installed: bash setup.sh")

# An instructor's course, then a release as ngshare's handler builds it: Assignment(name, course), commit.
RELEASE = """
import json, warnings
import sqlalchemy
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from ngshare.database import Assignment, Base, Course, User

engine = create_engine("sqlite://")
Base.metadata.create_all(engine)
db = sessionmaker(bind=engine)()
db.add(Course("awd-course", [User("awd-instructor")]))
db.commit()
course = db.query(Course).one()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    Assignment("hw4", course)
    db.commit()
print(json.dumps({"sqlalchemy": sqlalchemy.__version__, "assignments": [a.id for a in db.query(Assignment)],
                  "warnings": [str(w.message) for w in caught]}))
"""


def _release(pythonpath: str | None) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run([sys.executable, "-c", RELEASE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_ngshare_loses_a_release_under_sqlalchemy_2():
    got = _release(None)
    assert int(got["sqlalchemy"].split(".")[0]) >= 2, got  # the project's own SQLAlchemy (jupyterhub, nbgrader)
    assert got["assignments"] == [], got
    assert any("not in session" in w and "Course.assignments" in w for w in got["warnings"]), got


def test_ngshare_keeps_a_release_with_its_own_sqlalchemy_1_4():
    if not (ngshare.DB_PACKAGES / "sqlalchemy").is_dir():
        pytest.fail(f"{ngshare.DB_PACKAGES} is missing: bash setup.sh installs requirements-ngshare-db.txt there")
    got = _release(str(ngshare.DB_PACKAGES))
    assert got["sqlalchemy"].startswith("1.4."), got
    assert got["assignments"] == ["hw4"], got


def test_ngshare_exchange_declares_a_jupyter_core_that_nbgrader_excludes():
    declared = [Requirement(r) for r in metadata.requires("ngshare-exchange") or []]
    pin = next(r for r in declared if r.name.replace("_", "-") == "jupyter-core")
    installed = metadata.version("jupyter_core")
    assert installed not in pin.specifier, (str(pin), installed)  # hence pip install --no-deps
    # jupyter_server 2 (JupyterLab 4, and nbgrader 0.9's server extensions on it) needs the newer one.
    server_needs = next(Requirement(r) for r in metadata.requires("jupyter_server")
                        if Requirement(r).name.replace("_", "-") == "jupyter-core")
    assert installed in server_needs.specifier and not any(v in pin.specifier for v in ("4.12", "5.0.0", "5.1"))
    # Every other requirement of ngshare-exchange is met by what requirements.txt installs.
    for req in declared:
        if req is not pin:
            assert metadata.version(req.name) in req.specifier, req

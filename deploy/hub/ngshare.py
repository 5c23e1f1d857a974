"""nbgrader's exchange as a service (ngshare) instead of a shared directory: the hub side and the client side.

ngshare (a Tornado app) runs as a JupyterHub managed service, reached through the hub's proxy at
``<hub>/services/ngshare/``; it authenticates every request by asking the hub who owns the caller's API token
(``JUPYTERHUB_API_TOKEN`` of the user's server), so a student can only act as themself. ngshare-exchange is
nbgrader's side: ``configureExchange`` points nbgrader's ``ExchangeFactory`` at its classes and the URL.

Two version problems, each solved by configuration (docs/deploy.md, "ngshare"; tests/test_ngshare_versions.py):

* ngshare-exchange 0.5.3 (the latest) declares ``jupyter-core<4.11.2``, which jupyter_server 2 (JupyterLab 4,
  nbgrader 0.9.6) excludes (``jupyter_core>=4.12``): it is installed with ``pip install --no-deps``
  (requirements-nodeps.txt) and works as it is;
* ngshare 0.6.0 (the latest) relies on SQLAlchemy 1.x's backref cascade: under SQLAlchemy 2 a released assignment
  or a submission is never saved, while ngshare answers success. The service runs with SQLAlchemy 1.4 put first
  on its own ``PYTHONPATH`` (``DB_PACKAGES``, requirements-ngshare-db.txt); the hub keeps SQLAlchemy 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from autograder import cgroups
from deploy.hub import service_account

NAME = "ngshare"
# SQLAlchemy 1.4 and a matching alembic for the ngshare process only (setup.sh installs them there).
DB_PACKAGES = Path(sys.prefix) / "ngshare-db"
COURSE_ID = "awd-course"


def service_url(hub_base: str) -> str:
    """Where nbgrader reaches ngshare: through the hub's public proxy, as on Kubernetes (``proxy-public``)."""
    return f"{hub_base.rstrip('/')}/services/{NAME}"


ACCOUNT = "ngshare"  # the Unix account ngshare runs as (nologin, no groups): it owns its state folder only
# ngshare listens on every interface (hard-coded, "for proxy": meant for a pod, where the proxy is another pod). On
# one machine the proxy is on loopback, so the service runs ngshare's own main with Tornado's listen held to the
# address JupyterHub gave the service (JUPYTERHUB_SERVICE_URL: 127.0.0.1). A `-c` program, not a module of this
# repository: ngshare runs in a student's view of the clone, which holds hw4lib/ only.
LOOPBACK = (
    "import os, sys, urllib.parse, tornado.httpserver as h\n"
    "listen = h.HTTPServer.listen\n"
    "host = urllib.parse.urlparse(os.environ['JUPYTERHUB_SERVICE_URL']).hostname\n"
    "h.HTTPServer.listen = lambda self, port, address='': listen(self, port, host)\n"
    "from ngshare.ngshare import main\n"
    "main(sys.argv[1:])\n"
)
# ngshare's own limits: a SQLite database and files, one Tornado process.
QUOTA = cgroups.Quota(processes=64, memory_mb=1024, cores=1.0)


def service(port: int, state: Path, admins: tuple[str, ...], repo: Path, data_dir: Path, stage: Path) -> dict:
    """The ``c.JupyterHub.services`` entry: the hub starts ngshare and stops it with itself.

    ngshare runs as ``ACCOUNT``, not root, in a student's view of the clone and a control group of its own
    (``deploy/hub/service_account.py``), listening on 127.0.0.1 only (``LOOPBACK``): the hub's proxy is its only
    way in. It keeps its database and every released, submitted and feedback file in ``state`` (``ACCOUNT``'s,
    0700). ``admins`` may create courses; instructors and students are then added per course.
    """
    state = Path(state)
    if not (DB_PACKAGES / "sqlalchemy").is_dir():
        raise FileNotFoundError(f"{DB_PACKAGES} is missing (ngshare needs SQLAlchemy 1.4 there): run `bash setup.sh`, "
                                f"or pip install --no-deps --target {DB_PACKAGES} -r requirements-ngshare-db.txt")
    return {
        "name": NAME,
        "url": f"http://127.0.0.1:{port}",
        "command": service_account.command(ACCOUNT, "student", repo, data_dir, stage, QUOTA, [
            sys.executable, "-c", LOOPBACK, "--admins", ",".join(admins),
            "--database", f"sqlite:///{state / 'ngshare.db'}", "--storage", str(state / "files")]),
        # The root entry point imports deploy/ from the clone; ngshare itself gets SQLAlchemy 1.4 first.
        "environment": {"PYTHONPATH": os.pathsep.join((str(DB_PACKAGES), str(repo)))},
        # A token-authenticated API: no OAuth consent page for users who open it in a browser.
        "oauth_no_confirm": True,
    }


def nbgrader_config(url: str) -> str:
    """Lines of an ``nbgrader_config.py`` that make nbgrader use ngshare at ``url`` (ngshare-exchange's own way)."""
    return (
        "import ngshare_exchange  # noqa: E402\n"
        f"ngshare_exchange.configureExchange(c, {url!r})  # noqa: F821\n"
    )


def create_course(course_id: str, instructor: str, students: tuple[str, ...], run_as_instructor: Callable[
        [list[str]], subprocess.CompletedProcess], workdir: Path, services: tuple[str, ...] = ()) -> None:
    """The course on ngshare with ngshare-exchange's own commands (``ngshare-course-management``), run by an
    ngshare admin (the instructor here): the course with its instructor, then the students from a CSV file.

    ``services``: hub services that act as the course's instructors too. ngshare knows a caller by the name the hub
    gives for its token (``/hub/api/user``), and the course's formgrader service (deploy/hub/course_service.py)
    calls ngshare with its own token, which the hub names after the service (the course id), not after a person.

    ``--no-gb``: nbgrader's gradebook gets its students from ``nbgrader autograde --create`` instead.
    ``run_as_instructor(argv)`` runs a command as the instructor, with their hub token in the environment.
    """
    workdir = Path(workdir)
    roster = workdir / "ngshare_students.csv"
    roster.write_text("student_id,first_name,last_name,email\n" + "".join(f"{s},,,\n" for s in students))
    os.chmod(roster, 0o644)
    run_as_instructor(["ngshare-course-management", "create_course", course_id, instructor, *services])
    run_as_instructor(["ngshare-course-management", "add_students", course_id, str(roster), "--no-gb"])

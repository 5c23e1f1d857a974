"""``python -m autograder backup --course ROOT --out DIR``: a consistent copy of the course's gradebook.

SQLite's online backup API (``sqlite3.Connection.backup``) copies the database page by page under SQLite's own
locks, and starts again if another connection writes meanwhile, so the copy is one consistent state of the
gradebook even while nbgrader (the formgrader, an autograde) is writing to it; copying the file could catch half
a transaction. Restore: stop nbgrader, then copy the backup over ``ROOT/gradebook.db``.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
from pathlib import Path

GRADEBOOK = "gradebook.db"


def backup_gradebook(root: Path, out: Path, now: datetime.datetime | None = None) -> Path:
    """Copies ``root/gradebook.db`` to ``out/gradebook-<UTC time>.db`` (mode 0600: it holds every grade) and
    returns its path. The source is opened read-only: a missing gradebook is an error, not an empty new one."""
    source = Path(root) / GRADEBOOK
    if not source.is_file():
        raise FileNotFoundError(f"no gradebook at {source}")
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / f"gradebook-{stamp}.db"
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite an earlier backup
    os.close(fd)
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(dest)
    try:
        with dst:
            src.backup(dst)
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise RuntimeError(f"the backup {dest} fails SQLite's integrity check: {check}")
    finally:
        dst.close()
        src.close()
    return dest

"""Reading a file a student controls: a regular file or nothing, never a link followed, never more than a cap.

A submission folder can hold symlinks to the gradebook or to a classmate's work, and a name can be swapped for a
link between a check and an open. So the file is opened with ``O_NOFOLLOW`` and judged by ``fstat`` on the open
descriptor (a regular file, under the size cap), and everything after that reads from that descriptor.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


class Refused(OSError):
    """Not a regular file within the cap (the message says which)."""


def open_regular(path: Path, max_bytes: int) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file (not a link) of at most ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise Refused(f"{Path(path).name}: not a regular file ({err.strerror})") from err
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused(f"{Path(path).name}: not a regular file")
    if info.st_size > max_bytes:
        os.close(fd)
        raise Refused(f"{Path(path).name} is larger than {max_bytes // 2**20} MB")
    return os.fdopen(fd, "rb")


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path`` (see ``open_regular``); a file that grows past the cap while read is refused."""
    with open_regular(path, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Refused(f"{Path(path).name} is larger than {max_bytes // 2**20} MB")
    return data


def copy_regular(src: Path, dest: Path, max_bytes: int) -> bool:
    """Copies ``src`` to a new ``dest`` if it is a regular file within the cap; False (nothing written) if not."""
    try:
        data = read_regular(src, max_bytes)
    except Refused:
        return False
    dest.write_bytes(data)
    return True

"""Settings read from the environment, in one place."""

from __future__ import annotations

import os


def quick_mode() -> bool:
    """True in CI and while nbgrader grades: heavy notebook cells (training) shrink to seconds.

    ``HW4_QUICK=1`` turns it on by hand; nbgrader sets ``NBGRADER_EXECUTION`` while it autogrades.
    ``HW4_QUICK=0`` forces the full size even under nbgrader.
    """
    flag = os.environ.get("HW4_QUICK")
    if flag is not None:
        return flag.strip().lower() not in ("", "0", "false", "no")
    return bool(os.environ.get("NBGRADER_EXECUTION"))

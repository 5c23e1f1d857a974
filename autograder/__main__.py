"""``python -m autograder release``: regenerate ``notebooks/`` from ``solutions/`` with nbgrader."""

from __future__ import annotations

import argparse
from pathlib import Path

from autograder import course


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder")
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="regenerate notebooks/ from solutions/ with nbgrader generate_assignment")
    rel.add_argument("--course", type=Path, default=course.DEFAULT_ROOT, help="nbgrader course root")
    rel.add_argument("--out", type=Path, default=course.RELEASE_DIR)
    args = parser.parse_args(argv)
    if args.command == "release":
        for path in course.release(args.course, args.out):
            print(f"released {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

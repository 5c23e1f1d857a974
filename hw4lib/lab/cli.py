"""Command line: ``python -m hw4lib {data,train,evaluate,generate,bench,curves,cache} ...``.

Each concept module registers its own sub-commands, so this file only wires them together.
"""

from __future__ import annotations

import argparse
import sys

from hw4lib import data
from hw4lib.errors import HW4Error
from hw4lib.lab import bench, cache_pointer, curves, runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hw4lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data.register_cli(sub)
    runs.register_cli(sub)
    bench.register_cli(sub)
    curves.register_cli(sub)
    cache_pointer.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HW4Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

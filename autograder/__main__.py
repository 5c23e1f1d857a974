"""``python -m autograder release`` (notebooks/ from solutions/), ``grade`` (also in shards), ``merge``,
``similarity``, ``backup`` (the gradebook), ``doctor`` and ``properties``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autograder import course


def _shard(text: str):
    """``--shard I/N`` parsed, or argparse's usage error saying what is wrong."""
    from autograder.shards import Shard

    try:
        return Shard.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def print_totals(rows: list[dict]) -> None:
    """One line per student: the sum of their parts' scores."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        t = totals.setdefault(row["student"], [0.0, 0.0])
        t[0] += row["score"]
        t[1] += row["max_score"]
    for student, (score, points) in totals.items():
        print(f"{student:24s} {score:7.2f} / {points:g}")


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests check the cluster job definitions' commands against it)."""
    parser = argparse.ArgumentParser(prog="python -m autograder")
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="regenerate notebooks/ from solutions/ with nbgrader generate_assignment")
    rel.add_argument("--course", type=Path, default=course.DEFAULT_ROOT, help="nbgrader course root")
    rel.add_argument("--out", type=Path, default=course.RELEASE_DIR)
    rel.add_argument("--config", type=Path, default=None,
                     help="grading config: which optional stages are graded (default autograder/config.toml)")
    grd = sub.add_parser("grade", help="grade a folder of submissions: DIR/<student>/*.ipynb + model.pt")
    grd.add_argument("--submissions", type=Path, required=True,
                     help="folder with one sub-folder per student (or a course's submitted/, after nbgrader collect)")
    grd.add_argument("--out", type=Path, required=True, help="grades.csv, feedback/, the nbgrader course")
    grd.add_argument("--config", type=Path, default=None, help="grading config (default autograder/config.toml)")
    grd.add_argument("--workers", type=int, default=None, help="students graded at once (default: cores)")
    grd.add_argument("--seed", type=int, default=None, help="grading seed (default: random, recorded)")
    grd.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                     help="grade only shard I of N (0 <= I < N; needs --seed): the probe and the judge for every N-th "
                          "student from the I-th, sorted by id; then `merge` the N shards' --out folders")
    grd.add_argument("--progress", action="store_true",
                     help="show the progress bar on stderr even when it is not a terminal")
    grd.add_argument("--source", type=Path, default=None, help=argparse.SUPPRESS)  # source notebooks (tests)
    mrg = sub.add_parser("merge", help="combine the shards of `grade --shard` and run nbgrader once: grades.csv, "
                                       "feedback/, the course")
    mrg.add_argument("--shards", type=Path, nargs="+", required=True, help="the --out folders of shards 0..N-1")
    mrg.add_argument("--submissions", type=Path, required=True, help="the folder the shards graded")
    mrg.add_argument("--out", type=Path, required=True, help="grades.csv, feedback/, the nbgrader course")
    mrg.add_argument("--config", type=Path, default=None, help="grading config the shards used")
    mrg.add_argument("--seed", type=int, default=None, help="refuse unless the shards were graded with this seed")
    mrg.add_argument("--workers", type=int, default=None,
                     help="nbgrader generate_feedback processes at once (default: cores)")
    mrg.add_argument("--source", type=Path, default=None, help=argparse.SUPPRESS)
    tim = sub.add_parser("timings", help="where a grading run's seconds went (a Markdown table)")
    tim.add_argument("--out", type=Path, required=True, help="the --out folder of a grade or merge run")
    sim = sub.add_parser("similarity", help="pairwise code similarity of submissions (copydetect, MOSS's method)")
    sim.add_argument("--submissions", type=Path, required=True, help="folder with one sub-folder per student")
    sim.add_argument("--out", type=Path, required=True, help="similarity.csv, similarity.html, code/")
    sim.add_argument("--release", type=Path, default=None, help="released notebooks (boilerplate; default notebooks/)")
    bkp = sub.add_parser("backup", help="a consistent copy of a course's gradebook.db, safe while nbgrader runs")
    bkp.add_argument("--course", type=Path, required=True, help="the nbgrader course root (holds gradebook.db)")
    bkp.add_argument("--out", type=Path, required=True, help="folder for gradebook-<UTC time>.db")
    sub.add_parser("doctor", help="what this machine's sandbox enforces for each submission, and what it cannot")
    prp = sub.add_parser("properties", help="print the markdown table of graded promises and their points")
    prp.add_argument("--config", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "grade" and args.shard is not None and args.seed is None:
        parser.error("grade --shard needs --seed: every shard must grade with the same seed (merge checks)")
    if args.command == "release":
        from autograder.config import load as load_config

        config = load_config(args.config)
        for path in course.release(args.course, args.out, config):
            print(f"released {path}")
        print(f"released {course.ship_grading_bar(config)}")
        print(f"released {course.ship_contract()}")
        print(f"released {course.ship_measured()}/")
    elif args.command == "timings":
        from autograder.report import timing_table

        print("\n".join(timing_table(args.out.resolve())))
    elif args.command == "backup":
        from autograder.backup import backup_gradebook

        print(f"wrote {backup_gradebook(args.course, args.out)}")
    elif args.command == "properties":
        from autograder.config import load as load_config
        from autograder.judge import properties_table

        print(properties_table(load_config(args.config)))
    elif args.command == "doctor":
        from autograder.sandbox import doctor

        rows = doctor()
        for what, ok, how in rows:
            print(f"{'yes' if ok else 'NO ':3s}  {what}\n     {how}")
        return 0 if rows[0][1] else 1
    elif args.command == "similarity":
        from autograder.similarity import FLAG_AT, report

        rows = report(args.submissions, args.out, args.release)
        flagged = [r for r in rows if r["score"] >= FLAG_AT]
        for r in flagged:
            print(f"{r['student_a']:24s} {r['student_b']:24s} {r['score']:.2f}")
        print(f"{len(flagged)} of {len(rows)} pairs at or above {FLAG_AT}; "
              f"wrote {args.out / 'similarity.csv'} and {args.out / 'similarity.html'}")
    elif args.command == "grade" and args.shard is not None:
        from autograder.grade import judge_share
        from autograder.report import summary

        manifest = judge_share(args.submissions, args.out, config_path=args.config, shard=args.shard,
                               workers=args.workers, seed=args.seed, progress=args.progress or None)
        print("\n".join(summary(args.out.resolve(), manifest["graded"])))
        print(f"wrote the verdicts of shard {manifest['shard']} to {args.out}/; when every shard is done: "
              "python -m autograder merge --shards OUT0 OUT1 ... --submissions DIR --out OUT")
    elif args.command in ("grade", "merge"):
        from autograder.grade import grade_all, merge
        from autograder.report import summary
        from autograder.shards import ShardMismatch

        try:
            if args.command == "grade":
                rows = grade_all(args.submissions, args.out, config_path=args.config, source=args.source,
                                 workers=args.workers, seed=args.seed, progress=args.progress or None)
            else:
                rows = merge(args.shards, args.submissions, args.out, config_path=args.config, seed=args.seed,
                             source=args.source, workers=args.workers)
        except ShardMismatch as err:
            print(f"refusing to record these verdicts:\n{err}", file=sys.stderr)
            return 2
        print_totals(rows)
        print("\n".join(summary(args.out.resolve(), sorted({row["student"] for row in rows}))))
        print(f"wrote {args.out / 'grades.csv'} and {args.out / 'feedback'}/ (the written answers show 0 there until "
              "they are graded by hand in the formgrader: generate the feedback again before releasing it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(argv=None))

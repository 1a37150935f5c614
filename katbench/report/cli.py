"""``python -m katbench.report``: build the report of a results folder, or publish it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from katbench.report import build_report, publish


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and build (or publish) the report; user errors exit 2."""
    parser = argparse.ArgumentParser(
        prog="python -m katbench.report",
        description="Build summary.csv, runs.csv, summary.md and plots/ from the run folders "
                    "of RESULTS_DIR, or publish them to DEST.")
    parser.add_argument("results_dir", nargs="?", default="results", type=Path,
                        help="results folder holding runs/<task>/<mixer>/seed<k>/ "
                             "(default: results)")
    parser.add_argument("runs", nargs="*", metavar="task/mixer/seed<k>",
                        help="runs the pipeline asked for; those not finished are shown as "
                             "missing (with --publish: the runs to publish)")
    parser.add_argument("--publish", metavar="DEST", type=Path,
                        help="copy each finished run's metrics.json and config.yaml to "
                             "DEST/runs/... and build the report in DEST")
    parser.add_argument("--study", action="append", metavar="NAME",
                        help="also write studies/NAME.md, the table of studies/NAME.yaml's "
                             "variants (repeatable)")
    args = parser.parse_intermixed_args(argv)
    try:
        if args.publish is not None:
            publish(args.results_dir, args.publish, args.runs or None, args.study)
        else:
            build_report(args.results_dir, args.runs or None, studies=args.study)
    except ValueError as err:
        print(f"python -m katbench.report: {err}", file=sys.stderr)
        return 2
    return 0

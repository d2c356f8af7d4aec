"""Taxi-v4's optimum from its transition table, and trained runs measured against it
(rlexp.analysis.taxi).

    python scripts/taxi_optimum.py                       # the optimum and how it is computed
    python scripts/taxi_optimum.py outputs/multirun/results_taxi/*   # runs (or multirun dirs) against it

For runs: per run, the final evaluation, the best mean return on the same evaluation episodes,
the steps and wall time to the first evaluation within --gap of it, and the exact return of the
final greedy policy over all 300 start states; a markdown table (docs/results.md, Taxi).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rlexp.analysis import taxi


def run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories: each path itself, or a multirun's job directories under it."""
    found = []
    for path in paths:
        if (path / ".hydra").is_dir():
            found.append(path)
        else:
            found += sorted(p.parent.parent for p in path.glob("*/.hydra/overrides.yaml"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taxi_optimum.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run or multirun directories of Taxi-v4 runs")
    parser.add_argument("--gap", type=float, default=taxi.GAP, help="how close to the best counts as reached")
    args = parser.parse_args(argv)

    table = taxi.taxi_table()
    value, iterations = taxi.optimal_values(table)
    starts = table.initial > 0
    best = taxi.optimum(table)
    print(f"{taxi.TAXI_ID}: value iteration (gamma 1, from zero, one backup per step left) settles after "
          f"{iterations} backups, within the {table.limit}-step limit")
    print(f"optimum over the initial-state distribution ({starts.sum()} start states, uniform): {best:.4f} "
          f"= {taxi.optimum_fraction(table)}; with the action mask: {taxi.optimum(table, masked=True):.4f}")
    print(f"optimal values of the start states: {value[starts].min():g} to {value[starts].max():g} "
          f"(std {value[starts].std():.2f}; mean of 100 episodes: +/- {value[starts].std() / 10:.2f})")
    if not args.runs:
        return 0
    dirs = run_dirs(args.runs)
    if not dirs:
        print("taxi_optimum.py: error: no run directories under " + " ".join(map(str, args.runs)), file=sys.stderr)
        return 1
    reports = [taxi.report_run(d, table, args.gap) for d in dirs]
    reports.sort(key=lambda r: (not r.masked, r.seed))
    print()
    print(taxi.report_table(reports, args.gap))
    return 0


if __name__ == "__main__":
    sys.exit(main())

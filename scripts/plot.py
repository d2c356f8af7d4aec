"""Learning curves and a results table for a multirun directory.

    python -m rlexp.cli.train -m +sweep=compare_algos
    python scripts/plot.py outputs/multirun/compare_algos/<time> --png outputs/compare_algos.png --md outputs/compare_algos.md

(--png docs/compare_algos.png --md docs/compare_algos.md regenerates the committed docs' picture
and table: tracked files, written only when updating the docs.)

Jobs that differ only in their seed are averaged (mean ± std); jobs that failed or
never ran are listed, not fatal. The logic lives in rlexp/analysis/results.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlexp.analysis.results import differing_settings, group_by_setting, load_multirun, plot_learning_curves, results_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path, help="a Hydra multirun directory (or a single run's)")
    parser.add_argument("--png", type=Path, help="curves image (default: <multirun_dir>/curves.png)")
    parser.add_argument("--md", type=Path, help="markdown table (default: <multirun_dir>/results.md)")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[195, 475], help="returns to report steps-to-reach for")
    parser.add_argument("--title", default="", help="figure title")
    args = parser.parse_args(argv)

    try:
        run = load_multirun(args.multirun_dir)
    except FileNotFoundError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 1
    finished = run.finished()
    problems = run.problems()
    if not finished:
        print(f"plot.py: error: no finished job under {args.multirun_dir}", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1

    groups = group_by_setting(run.jobs)
    png = plot_learning_curves(groups, args.png or run.root / "curves.png", title=args.title)
    lines = [f"### {args.title}", ""] if args.title else []
    lines += [results_table(groups, args.thresholds), ""]
    lines.append(
        f"{', '.join(sorted({job.summary['env_id'] for job in finished}))}; mean ± std over seeds. Final eval return: "
        "each run's last evaluation. Steps to N: env steps at the first evaluation at or above N, over the seeds "
        "that reached it. Train time excludes evaluation."
    )
    settings = differing_settings(groups)
    if any(settings.values()):
        lines += ["", "Algorithm settings that differ between the rows (the rest are shared):", ""]
        lines += [f"- {label}: " + ", ".join(f"{k}={v}" for k, v in keys.items()) for label, keys in settings.items()]
    if problems:
        lines += ["", "Failed or missing jobs:", ""] + [f"- {line}" for line in problems]
    text = "\n".join(lines) + "\n"
    md = args.md or run.root / "results.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    print(text)
    print(f"wrote {png} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""docs/results.md: one row per tuned preset, from one multirun directory per preset.

    python -m rlexp.cli.train -m hparams=ppo_cartpole seed=0,1,2 eval.episodes=20 \\
        hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweep.dir=outputs/multirun/results/ppo_cartpole
    python scripts/results_page.py outputs/multirun/results/*        # -> docs/results.md, docs/results/*.png

Per preset: the final deterministic evaluation return (mean ± std over seeds), the env
steps and the wall time to the environment's reward threshold, steps per second, the
command that reproduces the row, the machine, and the target below with whether the mean
final return reached it. Presets of conf/hparams without a directory are listed as not
run. Reading, grouping and plotting are rlexp/analysis/results.py's and rlexp/analysis/report.py's.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import yaml

from rlexp.analysis.report import Row, build_rows
from rlexp.analysis.results import EVAL_TAG, Job, fmt_mean_std, load_multirun, mean_std, plot_learning_curves

ROOT = Path(__file__).resolve().parent.parent

# preset -> (env steps, mean final eval return it should reach)
TARGETS = {
    "ppo_cartpole": (100_000, 500.0),
    "ppo_acrobot": (1_000_000, -75.0),
    "ppo_lunarlander": (1_000_000, 250.0),
    "ppo_pendulum": (100_000, -170.0),
    "ppo_bipedalwalker": (5_000_000, 290.0),
    "ppo_halfcheetah": (1_000_000, 5000.0),
    "a2c_lunarlander": (1_000_000, 200.0),
    "reinforce_cartpole": (None, 475.0),
    "ppo_lstm_cartpole_novel": (200_000, 475.0),
}
MIN_SEEDS, MIN_EVAL_EPISODES = 3, 20


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}, torch {torch.__version__}"


def reproduce_command(root: Path) -> str:
    """The command line that made the multirun, from Hydra's multirun.yaml."""
    path = root / "multirun.yaml"
    if not path.exists():
        return "-"
    overrides = (yaml.safe_load(path.read_text()) or {}).get("hydra", {}).get("overrides", {})
    hydra_args = [o for o in overrides.get("hydra", []) if o != "hydra.mode=MULTIRUN"]
    return " ".join(["python -m rlexp.cli.train -m", *map(shlex.quote, overrides.get("task", [])), *map(shlex.quote, hydra_args)])


def preset_name(root: Path, jobs: Sequence[Job]) -> str:
    for job in jobs:
        for override in job.overrides:
            if override.startswith("hparams="):
                return override.split("=", 1)[1]
    return root.name


def wall_to_threshold(job: Job, threshold: float) -> Optional[float]:
    """Seconds from the run's start (evaluation included) to its first evaluation at or above the threshold."""
    curve = job.curves.get(EVAL_TAG)
    if curve is None:
        return None
    hits = np.nonzero(curve.values >= threshold)[0]
    return float(curve.wall[hits[0]]) if len(hits) else None


def reached_cell(values: list[float], row: Row, fmt: str) -> str:
    if row.threshold is None:
        return "- (no threshold)"
    if not values:
        return "never"
    text = fmt_mean_std(values, fmt)
    return text if len(values) == len(row.finished) else f"{text} ({len(values)}/{len(row.finished)} seeds)"


def target_cell(preset: str, budget: Optional[int], mean_return: Optional[float]) -> tuple[str, str]:
    if preset not in TARGETS:
        return "-", "- (no target)"
    target_steps, target = TARGETS[preset]
    where = f"{target:g}" + (f" at {target_steps:,}" if target_steps else "")
    if mean_return is None:
        return where, "no (no finished run)"
    verdict = "yes" if mean_return >= target else f"no ({mean_return:.1f})"
    if target_steps and budget is not None and budget != target_steps:
        verdict += f" (ran {budget:,} steps, target is for {target_steps:,})"
    return where, verdict


def preset_row(root: Path, figures: Path, machine: str, page_dir: Path) -> tuple[str, list[str]]:
    """The table row of one multirun directory, and notes on anything short of the protocol."""
    run = load_multirun(root)
    if not run.jobs:
        raise FileNotFoundError(f"{root}: no job directories (no */.hydra/overrides.yaml)")
    _, rows = build_rows(run)
    if len(rows) != 1:
        raise ValueError(f"{root}: expected one setting swept over seeds, found {len(rows)}: {[r.label for r in rows]}")
    row = rows[0]
    preset = preset_name(root, run.jobs)
    notes = [f"{preset}: {line}" for line in run.problems()]
    if len(row.finished) < MIN_SEEDS:
        notes.append(f"{preset}: only {len(row.finished)} finished seeds (want >= {MIN_SEEDS})")
    episodes = {(job.config.get("eval") or {}).get("episodes") for job in row.finished}
    if any(e is None or e < MIN_EVAL_EPISODES for e in episodes):
        notes.append(f"{preset}: eval.episodes {sorted(map(str, episodes))} (want >= {MIN_EVAL_EPISODES})")

    budgets = {job.config.get("total_steps") for job in row.finished}
    budget = budgets.pop() if len(budgets) == 1 else None
    mean_return, _ = mean_std(row.values("eval_return_mean"))
    walls = [w for w in (wall_to_threshold(job, row.threshold) for job in row.finished) if w is not None] \
        if row.threshold is not None else []
    target, verdict = target_cell(preset, budget, mean_return)

    png = None
    if row.finished:
        png = plot_learning_curves({preset: row.finished}, figures / f"{preset}.png",
                                   title=f"{preset} ({row.env_id}), mean ± std over {len(row.finished)} seeds")
    curve_link = f"[png]({os.path.relpath(png, page_dir)})" if png else "-"
    threshold = "-" if row.threshold is None else f"{row.threshold:g}"
    cells = [
        f"`{preset}`", row.env_id or "-", f"{len(row.finished)}/{len(row.jobs)}",
        f"{budget:,}" if budget else "-",
        fmt_mean_std(row.values("eval_return_mean")),
        threshold,
        reached_cell(row.steps_to_threshold(), row, "{:,.0f}"),
        reached_cell(walls, row, "{:.1f}"),
        fmt_mean_std(row.values("sps"), "{:,.0f}"),
        target, verdict, curve_link,
        f"`{reproduce_command(root)}`", machine,
    ]
    return "| " + " | ".join(cells) + " |", notes


HEADER = ["preset", "env", "seeds", "steps", "final eval return", "env threshold", "steps to threshold",
          "wall time to threshold (s)", "steps/s", "target", "reached", "curves", "command", "machine"]


def not_run_lines(done: set[str], reason: str) -> list[str]:
    presets = sorted(p.stem for p in (ROOT / "conf" / "hparams").glob("*.yaml"))
    lines = []
    for preset in presets:
        if preset in done:
            continue
        target = TARGETS.get(preset)
        aim = f"target {target[1]:g}" + (f" at {target[0]:,} steps" if target[0] else "") if target else "no target"
        lines.append(f"- `{preset}` ({aim}): {reason}")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="results_page.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun_dirs", nargs="+", type=Path, help="one multirun directory per preset (>= 3 seeds)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--machine", help="where the runs ran (default: this machine)")
    parser.add_argument("--not-run-reason", default="not run here (CPU time).",
                        help="what to say about presets without a directory")
    parser.add_argument("--intro", type=Path, help="markdown to put under the title (e.g. notes on the runs)")
    args = parser.parse_args(argv)

    machine = args.machine or machine_description()
    page_dir = args.out.resolve().parent
    rows, notes, done = [], [], set()
    for root in args.multirun_dirs:
        try:
            line, row_notes = preset_row(root, args.figures, machine, page_dir)
        except (FileNotFoundError, ValueError) as error:
            print(f"results_page.py: error: {error}", file=sys.stderr)
            return 1
        rows.append(line)
        notes += row_notes
        done.add(line.split("`")[1])

    lines = ["# Results of the tuned presets", ""]
    if args.intro:
        lines += [args.intro.read_text().strip(), ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|", *rows, ""]
    lines.append(
        "Mean ± std over the finished seeds (ddof=0). Final eval return: each run's last deterministic evaluation "
        f"(eval.episodes as in the command). Env threshold: Gymnasium's reward_threshold. Steps / wall time to "
        "threshold: at the first evaluation at or above it (every eval.every_steps env steps), over the seeds that "
        "got there; wall time counts from the run's start and includes evaluation. Steps/s excludes evaluation. "
        "Reached: whether the mean final eval return is at or above the target (the mean is given when not). "
        "Curves: mean ± std over seeds of evaluation and training returns against steps and wall time.")
    if notes:
        lines += ["", "## Short of the protocol", "", *(f"- {n}" for n in notes)]
    missing = not_run_lines(done, args.not_run_reason)
    if missing:
        lines += ["", "## Not run", "", *missing]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out} and {len(rows)} figure(s) under {args.figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

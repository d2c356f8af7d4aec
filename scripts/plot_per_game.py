"""Evaluation curves with one panel per environment, for runs of several games (MinAtar, Atari).

    python scripts/plot_per_game.py --out docs/results/minatar.png \\
        --group ppo_minatar 'outputs/results_minatar/*_seed?' \\
        --group ppo_minatar_mlp 'outputs/results_minatar_mlp/*_seed?' \\
        --ref MinAtar/Breakout-v1=28 --ref MinAtar/Asterix-v1=15
    python scripts/plot_per_game.py --out docs/results/atari.png --group ppo_atari 'outputs/results_atari/*_seed?' \\
        --ref ALE/Pong-v5=1300000:0 --ref ALE/Pong-v5=2000000:13

Each run directory's summary.json gives its environment and evaluation history (a run stopped
early counts with the evaluations it made). A panel shows each seed thin and the mean of the
seeds that reached each evaluation thick, per group; --ref ENV=SCORE draws a published score
dashed, --ref ENV=STEP:SCORE marks a published point of a learning curve (repeat it per point).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections import defaultdict
from pathlib import Path


def load(pattern: str) -> list[dict]:
    runs = []
    for d in sorted(glob.glob(pattern)):
        summary = Path(d) / "summary.json"
        if summary.is_file():
            s = json.loads(summary.read_text())
            if s.get("eval_history"):
                runs.append({"env": s["env_id"], "steps": [h[0] for h in s["eval_history"]],
                             "returns": [h[1] for h in s["eval_history"]]})
    return runs


def mean_curve(runs: list[dict]) -> tuple[list[int], list[float]]:
    """The mean return at each evaluation step, over the runs that evaluated there."""
    points = defaultdict(list)
    for run in runs:
        for step, ret in zip(run["steps"], run["returns"]):
            points[step].append(ret)
    steps = sorted(points)
    return steps, [sum(points[s]) / len(points[s]) for s in steps]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", nargs=2, action="append", metavar=("LABEL", "GLOB"), required=True,
                        help="a label and a glob of run directories (quote it)")
    parser.add_argument("--ref", action="append", default=[], metavar="ENV_ID=SCORE", help="a published score to draw")
    parser.add_argument("--out", type=Path, required=True, help="the png to write")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)

    refs: dict[str, list[tuple[float | None, float]]] = defaultdict(list)  # env -> (step or None: a line, score)
    for item in args.ref:
        env_id, _, value = item.rpartition("=")
        step, _, score = value.rpartition(":")
        try:
            refs[env_id].append((float(step) if step else None, float(score)))
        except ValueError:
            print(f"plot_per_game.py: error: --ref {item!r} must be ENV_ID=SCORE or ENV_ID=STEP:SCORE", file=sys.stderr)
            return 2
    by_env: dict[str, dict[str, list[dict]]] = defaultdict(dict)
    for label, pattern in args.group:
        runs = load(pattern)
        if not runs:
            print(f"plot_per_game.py: error: --group {label}: no run with an evaluation history matches {pattern!r}", file=sys.stderr)
            return 1
        for run in runs:
            by_env[run["env"]].setdefault(label, []).append(run)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted(by_env)
    fig, axes = plt.subplots(1, len(envs), figsize=(3.4 * len(envs), 3.2), squeeze=False)
    colours = {label: f"C{i}" for i, (label, _) in enumerate(args.group)}
    for ax, env_id in zip(axes[0], envs):
        for label, runs in by_env[env_id].items():
            for run in runs:
                ax.plot(run["steps"], run["returns"], color=colours[label], alpha=0.35, linewidth=0.8)
            ax.plot(*mean_curve(runs), color=colours[label], linewidth=2,
                    label=f"{label} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
        for score in [score for step, score in refs.get(env_id, []) if step is None]:
            ax.axhline(score, color="black", linestyle="--", linewidth=1, label=f"published {score:g}")
        points = sorted((step, score) for step, score in refs.get(env_id, []) if step is not None)
        if points:
            ax.plot(*zip(*points), color="black", linestyle="none", marker="x", label="published, at those steps")
        ax.set_title(env_id.split("/")[-1], fontsize=10)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("evaluation return")
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(envs)} environments)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

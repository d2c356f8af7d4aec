"""A labelled benchmark for the warning signs (rlexp.run.warning_signs): healthy runs and runs with
a fault injected by config, each recorded once (every update's inputs to the checks, through a
callback), then the checks replayed on the recordings with the settings of
conf/diagnostics/warn.yaml or changed ones. Replaying is exact: the checks read only what the
recording holds, so a threshold can be tried on every run in a second.

    python scripts/signs_benchmark.py record --out signs.jsonl            # all cases, all seeds
    python scripts/signs_benchmark.py record --out signs.jsonl --cases default --seeds 0-19
    python scripts/signs_benchmark.py table signs.jsonl                   # warn.yaml's settings
    python scripts/signs_benchmark.py table signs.jsonl max_best_explained_variance=0.1
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

#: name -> (label, overrides, the signs this fault is meant to raise). Healthy runs must raise none.
CASES: dict[str, tuple[str, list[str], tuple[str, ...]]] = {
    "default": ("healthy", [], ()),
    "ppo_cartpole": ("healthy", ["hparams=ppo_cartpole"], ()),
    "ppo_acrobot": ("healthy", ["hparams=ppo_acrobot", "total_steps=200000"], ()),
    "ppo_pendulum": ("healthy", ["hparams=ppo_pendulum"], ()),
    "ppo_frozenlake": ("healthy", ["hparams=ppo_frozenlake"], ()),
    "a2c_cartpole": ("healthy", ["hparams=a2c_cartpole", "total_steps=100000"], ()),
    "lr_too_large": ("fault", ["algo.learning_rate=0.01", "algo.clip_range=100", "algo.n_epochs=20", "total_steps=20000"],
                     ("updates_too_large",)),
    "critic_off": ("fault", ["algo.vf_coef=0", "total_steps=30000"], ("value_not_learning",)),
    "nothing_learns": ("fault", ["algo.learning_rate=1e-9", "total_steps=30000"], ("nothing_learnt",)),
    # a negative entropy coefficient (forced collapse) cannot be injected: config validation refuses algo.ent_coef < 0
}
DEFAULT_SEEDS = {"healthy": range(5), "fault": range(5)}


def record_run(case: str, seed: int, *extra: str) -> dict[str, Any]:
    """One run of ``case`` on ``seed`` (``extra``: more overrides): what the checks were given after
    every update, and what fired during the run (``fired_live``)."""
    from rlexp.config import compose_config
    from rlexp.run.callbacks import Callback, WarningSignsCheck
    from rlexp.run.trainer import Trainer

    class Recorder(Callback):
        def __init__(self) -> None:
            self.updates: list[dict[str, Any]] = []

        def on_update_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
            self.updates.append({"metrics": {k: v for k, v in metrics.items() if k.startswith("train/")},
                                 **WarningSignsCheck.inputs(trainer)})

    label, overrides, meant = CASES[case]
    recorder = Recorder()
    cfg = compose_config([*overrides, f"seed={seed}", "logger=none", "progress=false", "checkpoint.every_updates=0", *extra])
    with tempfile.TemporaryDirectory() as run_dir:
        summary = Trainer(cfg, run_dir, callbacks=[recorder]).fit()
    return {"case": case, "label": label, "meant": list(meant), "seed": seed, "overrides": overrides,
            "eval_return": summary["eval_return_mean"], "fired_live": summary["diagnostics"], "updates": recorder.updates}


def replay(run: Mapping[str, Any], **settings: Any) -> dict[str, int]:
    """{sign: the update it fired at} when the checks with ``settings`` see the recorded run."""
    from rlexp.run.warning_signs import make_warning_signs

    signs = make_warning_signs(None, mode="warn", **settings)
    fired: dict[str, int] = {}
    for i, u in enumerate(run["updates"], start=1):
        for finding in signs.check(**u):
            fired[finding.name] = i
    return fired


def table(runs: Iterable[Mapping[str, Any]], **settings: Any) -> str:
    """Per case: seeds, what fired (and at which update), false alarms or detections."""
    lines = ["| case | label | seeds | final eval return per seed | fired (seed: sign@update) | verdict |",
             "| --- | --- | --- | --- | --- | --- |"]
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_case.setdefault(run["case"], []).append(run)
    for case, group in by_case.items():
        fired = [replay(run, **settings) for run in group]
        label, meant = group[0]["label"], set(group[0]["meant"])
        shown = "; ".join(f"{run['seed']}: " + (", ".join(f"{k}@{v}" for k, v in f.items()) or "-") for run, f in zip(group, fired))
        if label == "healthy":
            verdict = f"{sum(bool(f) for f in fired)} of {len(group)} with a false alarm"
        else:
            verdict = f"{sum(meant <= set(f) for f in fired)} of {len(group)} detected"
        returns = ", ".join(f"{run['eval_return']:.1f}" if "eval_return" in run else "-" for run in group)
        lines.append(f"| {case} | {label} | {len(group)} | {returns} | {shown} | {verdict} |")
    return "\n".join(lines)


def seeds_of(text: str) -> list[int]:
    start, _, end = text.partition("-")
    return list(range(int(start), int(end or start) + 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="signs_benchmark.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the cases and append their recordings (JSON lines) to --out")
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    rec.add_argument("--seeds", help="e.g. 0-19 (default: 0-4)")
    tab = sub.add_parser("table", help="replay the checks on recordings and print the table")
    tab.add_argument("recordings", type=Path)
    tab.add_argument("settings", nargs="*", help="diagnostics settings to change, key=value")
    args = parser.parse_args(argv)
    if args.command == "record":
        for case in args.cases:
            for seed in (seeds_of(args.seeds) if args.seeds else DEFAULT_SEEDS[CASES[case][0]]):
                run = record_run(case, seed)
                with args.out.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                print(f"{case} seed {seed}: eval return {run['eval_return']:.1f}, fired {replay(run) or '-'}", flush=True)
    else:
        settings = {k: float(v) if "." in v or "e" in v else int(v) for k, v in (s.split("=", 1) for s in args.settings)}
        runs = [json.loads(line) for line in args.recordings.read_text().splitlines() if line.strip()]
        print(table(runs, **settings))

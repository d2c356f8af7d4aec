"""A labelled benchmark for the warning signs (rlexp.run.warning_signs): healthy runs and runs with
a fault injected (by config, a callback or a small env), each recorded once (every update's inputs to the checks, through a
callback), then the checks replayed on the recordings with the settings of
conf/diagnostics/warn.yaml or changed ones. Replaying is exact: the checks read only what the
recording holds, so a threshold can be tried on every run in a second.

    python scripts/signs_benchmark.py record --out signs.jsonl            # every case on its seeds
    python scripts/signs_benchmark.py record --out signs.jsonl --cases critic_off --seeds 5-9
    python scripts/signs_benchmark.py table signs.jsonl                   # warn.yaml's settings
    python scripts/signs_benchmark.py table signs.jsonl max_best_explained_variance=0.2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional

import gymnasium as gym
import numpy as np

from rlexp.run.callbacks import Callback

class NegativeEntropyBonus(Callback):
    """Fault: the entropy bonus turned into a penalty (``algo.ent_coef`` below 0 is refused by the
    config check, so the benchmark sets it on the algorithm when the run starts)."""

    def __init__(self, coef: float = -1.0):
        self.coef = coef

    def on_run_start(self, trainer: Any) -> None:
        trainer.algo.ent_coef = self.coef


class StrongNegativeEntropyBonus(NegativeEntropyBonus):
    """Fault: an entropy penalty five times as strong."""

    def __init__(self) -> None:
        super().__init__(-5.0)


class StaleNetwork(Callback):
    """Fault: the policy moves between collecting a rollout and the update's first minibatch (as a
    stale copy, or dropout left in train mode, would make it): action 0 made likelier each time."""

    def on_run_start(self, trainer: Any) -> None:
        import torch

        collect = trainer.collector.collect

        def collect_then_nudge(*args: Any) -> Any:
            finished = collect(*args)
            with torch.no_grad():
                trainer.policy.action_head.output_layer.bias[0] += 0.5
            return finished

        trainer.collector.collect = collect_then_nudge


class RewardTimes1000(gym.Wrapper):
    """CartPole paying 1000 per step instead of 1."""

    def __init__(self, **kwargs: Any):
        super().__init__(gym.make("CartPole-v1", **kwargs))

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, 1000.0 * float(reward), terminated, truncated, info


class ActionBlind(gym.Env):
    """An env whose reward ignores the actions: observations and rewards are noise, and every
    episode lasts 50 steps, so no policy does better than another."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: Optional[int] = None, options: Any = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 4).astype(np.float32), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 4).astype(np.float32)
        return obs, float(self.np_random.normal(1.0, 1.0)), self.t >= 50, False, {}


# the ids are module-qualified so that gym.make imports this module wherever the env is built
gym.register("RlexpSignsRewardTimes1000-v0", entry_point=RewardTimes1000)
gym.register("RlexpSignsActionBlind-v0", entry_point=ActionBlind)
ENV_MODULE = __name__


@dataclass(frozen=True)
class Case:
    label: str  # "healthy" (must raise no sign) or "fault"
    overrides: tuple[str, ...]
    meant: tuple[str, ...] = ()  # the signs the fault is meant to raise
    inject: Optional[Callable[[], Any]] = None  # a callback that injects the fault when config cannot
    note: str = ""  # why the fault goes undetected, where it does (shown in the table)
    seeds: range = range(5)


UNDETECTED_COLLAPSE = ("the returns climb while the entropy collapses (CartPole: from 22 to 40-110), so the policy is not "
                       "collapsing without learning; a rule that waited for the returns to stall after the collapse fired on "
                       "healthy MiniGrid DoorKey, whose returns stall at their maximum once it turns deterministic")

CASES: dict[str, Case] = {
    "default": Case("healthy", (), seeds=range(20)),
    "ppo_cartpole": Case("healthy", ("hparams=ppo_cartpole",)),
    "ppo_acrobot": Case("healthy", ("hparams=ppo_acrobot", "total_steps=200000")),
    "ppo_pendulum": Case("healthy", ("hparams=ppo_pendulum",)),
    "ppo_frozenlake": Case("healthy", ("hparams=ppo_frozenlake",)),
    "a2c_cartpole": Case("healthy", ("hparams=a2c_cartpole", "total_steps=100000")),
    "ppo_lunarlander": Case("healthy", ("hparams=ppo_lunarlander", "eval.every_steps=100000")),
    "ppo_minigrid_doorkey": Case("healthy", ("hparams=ppo_minigrid_doorkey",)),
    "ppo_lstm_cartpole_novel": Case("healthy", ("hparams=ppo_lstm_cartpole_novel", "total_steps=50000")),
    "ppo_minatar": Case("healthy", ("hparams=ppo_minatar", "total_steps=200000", "eval.every_steps=100000")),
    # faults, each on the default run (PPO on CartPole) unless it needs its own env
    "lr_too_large": Case("fault", ("algo.learning_rate=0.1", "total_steps=30000"), ("updates_too_large",)),
    "clip_off": Case("fault", ("algo.clip_range=100", "algo.n_epochs=40", "total_steps=30000"), ("updates_too_large",)),
    "critic_off": Case("fault", ("algo.vf_coef=0", "total_steps=30000"), ("value_not_learning",)),
    "reward_x1000": Case("fault", (f"env.id={ENV_MODULE}:RlexpSignsRewardTimes1000-v0", "total_steps=30000"), ("reward_scale",)),
    "negative_entropy": Case("fault", ("total_steps=30000",), ("policy_collapse",), NegativeEntropyBonus, note=UNDETECTED_COLLAPSE),
    "negative_entropy_strong": Case("fault", ("total_steps=30000",), ("policy_collapse",), StrongNegativeEntropyBonus,
                                    note=UNDETECTED_COLLAPSE),
    "stale_network": Case("fault", ("total_steps=30000",), ("first_ratio_not_one",), StaleNetwork),
    "action_blind": Case("fault", (f"env.id={ENV_MODULE}:RlexpSignsActionBlind-v0", "total_steps=30000"), ("nothing_learnt",)),
    "nothing_learns": Case("fault", ("algo.learning_rate=1e-9", "total_steps=30000"), ("nothing_learnt",)),
}


def record_run(case: str, seed: int, *extra: str) -> dict[str, Any]:
    """One run of ``case`` on ``seed`` (``extra``: more overrides): what the checks were given after
    every update, and what fired during the run (``fired_live``)."""
    from rlexp.config import compose_config
    from rlexp.run.callbacks import WarningSignsCheck
    from rlexp.run.trainer import Trainer

    class Recorder(Callback):
        def __init__(self) -> None:
            self.updates: list[dict[str, Any]] = []

        def on_update_end(self, trainer: Any, metrics: Mapping[str, float]) -> None:
            self.updates.append({"metrics": {k: v for k, v in metrics.items() if k.startswith("train/")},
                                 **WarningSignsCheck.inputs(trainer)})

    spec = CASES[case]
    recorder = Recorder()
    injector = spec.inject() if spec.inject is not None else None
    callbacks = [recorder] if injector is None else [injector, recorder]
    cfg = compose_config([*spec.overrides, f"seed={seed}", "logger=none", "progress=false", "checkpoint.every_updates=0", *extra])
    with tempfile.TemporaryDirectory() as run_dir:
        summary = Trainer(cfg, run_dir, callbacks=callbacks).fit()
    return {"case": case, "label": spec.label, "meant": list(spec.meant), "seed": seed, "overrides": list(spec.overrides),
            "injected": type(injector).__name__ if injector is not None else None,
            "status": summary["status"], "eval_return": summary["eval_return_mean"], "fired_live": summary["diagnostics"], "updates": recorder.updates}


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
            detected = sum(meant <= set(f) for f in fired)
            verdict = f"{detected} of {len(group)} detected"
            note = CASES[case].note if case in CASES else ""
            if note and detected < len(group):
                verdict += f": {note}"
        returns = ", ".join(f"{run['eval_return']:.1f}" if "eval_return" in run else "-" for run in group)
        lines.append(f"| {case} | {label} | {len(group)} | {returns} | {shown} | {verdict} |")
    return "\n".join(lines)


def sign_table(runs: Iterable[Mapping[str, Any]], **settings: Any) -> str:
    """Per sign: its false alarms on the healthy runs, its detections on the faults meant to raise
    it, and the updates at which it fired on them."""
    from rlexp.run.warning_signs import REMEDIES

    runs = list(runs)
    fired = [replay(run, **settings) for run in runs]
    lines = ["| sign | false alarms (healthy runs) | detections (its faults' runs) | fired at update (its faults) |",
             "| --- | --- | --- | --- |"]
    healthy = [f for run, f in zip(runs, fired) if run["label"] == "healthy"]
    for sign in REMEDIES:
        meant = [(run, f) for run, f in zip(runs, fired) if run["label"] == "fault" and sign in run["meant"]]
        hits = [f[sign] for _, f in meant if sign in f]
        faults = ", ".join(dict.fromkeys(run["case"] for run, _ in meant)) or "-"
        at = f"{min(hits)}-{max(hits)}" if hits else "-"
        lines.append(f"| {sign} | {sum(sign in f for f in healthy)} of {len(healthy)} | {len(hits)} of {len(meant)} ({faults}) | {at} |")
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
    rec.add_argument("--seeds", help="e.g. 0-19 (default: each case's own, 0-19 for the default run and 0-4 for the others)")
    tab = sub.add_parser("table", help="replay the checks on recordings and print the table")
    tab.add_argument("recordings", type=Path)
    tab.add_argument("settings", nargs="*", help="diagnostics settings to change, key=value")
    args = parser.parse_args(argv)
    if args.command == "record":
        for case in args.cases:
            for seed in (seeds_of(args.seeds) if args.seeds else CASES[case].seeds):
                run = record_run(case, seed)
                if run["status"] != "finished":  # stopped early (a signal): not a whole run to measure
                    print(f"{case} seed {seed}: {run['status']}, not recorded", flush=True)
                    continue
                with args.out.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                print(f"{case} seed {seed}: eval return {run['eval_return']:.1f}, fired {replay(run) or '-'}", flush=True)
    else:
        settings = {k: float(v) if "." in v or "e" in v else int(v) for k, v in (s.split("=", 1) for s in args.settings)}
        runs = [json.loads(line) for line in args.recordings.read_text().splitlines() if line.strip()]
        print(sign_table(runs, **settings) + "\n\n" + table(runs, **settings))

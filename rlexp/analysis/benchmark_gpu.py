"""PPO end to end on torch-native envs: SPS and the wall time to solve, one process per run.

    python scripts/benchmark_gpu.py --device cuda --seeds 3
    python scripts/benchmark_gpu.py --device cpu --variants small      # the same path on a CPU

Each run is a fresh ``python -m rlexp.analysis.benchmark_gpu`` process that trains with
``eval.stop_at`` set to the threshold, so it stops at the first evaluation that reaches
it. Reported per variant (mean over seeds): training SPS (collection + GAE + update,
evaluations excluded), training time and env steps until that evaluation, the wall
time from the start of training to the end of that evaluation (evaluations included),
the set-up time before training (imports, CUDA context, envs, network) and the whole
process's wall time as the shell sees it.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rlexp.run.callbacks import Callback

from rlexp.analysis.benchmark import worker_result

T0 = time.perf_counter()

# name -> overrides on top of hparams=ppo_cartpole_gpu
VARIANTS: dict[str, list[str]] = {
    "preset": [],
    "envs1024": ["env.num_envs=1024", "algo.n_steps=32", "algo.batch_size=4096"],
    "envs16384": ["env.num_envs=16384", "algo.n_steps=16", "algo.batch_size=32768"],
    # 4x the preset's rollout with the same 8 minibatches x 10 epochs: on a CPU it reaches 475
    # after 10 updates like the preset (5.2M steps); the budget keeps the LR decay as slow
    "envs16384x32": ["env.num_envs=16384", "algo.n_steps=32", "algo.batch_size=65536", "total_steps=15000000",
                     "eval.every_steps=1048576"],
    # 2 minibatches x 4 epochs = 8 gradient steps per update instead of 80, on 4x the preset's
    # rollout: on a CPU it reached 475 after 7 updates (3.67M steps) on each of seeds 0-5, the
    # preset after 10. The GPU's gradient step is bound by its ~130 kernel launches, not the
    # batch size, so this should cut the update's time ~7x there. Not yet run on a GPU.
    "envs16384_mb2x4": ["env.num_envs=16384", "algo.n_steps=32", "algo.batch_size=262144", "algo.n_epochs=4",
                        "total_steps=15000000", "eval.every_steps=524288"],
    "compiled": ["compile=true"],
    # a CPU-sized check of the same code path (tests, machines without a GPU)
    "small": ["env.num_envs=256", "algo.n_steps=32", "algo.batch_size=2048", "eval.every_steps=16384", "total_steps=400000"],
}


class EvaluationTimes(Callback):
    """(env steps, training seconds, wall seconds since fit started, mean return) at every evaluation."""

    def __init__(self) -> None:
        self.start, self.marks = 0.0, []

    def on_evaluation_end(self, trainer: Any, evaluation: Any) -> None:
        self.marks.append((evaluation.step, trainer.train_time, time.perf_counter() - self.start, evaluation.mean))


def run_worker(overrides: list[str], seed: int, device: str, threshold: float) -> dict[str, Any]:
    from rlexp.config import compose_config
    from rlexp.run.trainer import Trainer

    import tempfile

    import torch

    cfg = compose_config(["hparams=ppo_cartpole_gpu", f"seed={seed}", f"device={device}", "logger=none", "progress=false",
                          "checkpoint.every_updates=0", f"eval.stop_at={threshold}", *overrides])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir)
        # one warm-up forward pass so the CUDA context and kernels load before the clock starts
        with torch.inference_mode():
            trainer.policy.act(torch.zeros((1, *trainer.env.single_observation_space.shape), device=trainer.device),
                               trainer.policy.initial_state(1, trainer.device), torch.ones(1, dtype=torch.bool))
        setup_s = time.perf_counter() - T0
        timer = EvaluationTimes()
        trainer.callbacks.callbacks.append(timer)
        timer.start = time.perf_counter()
        summary = trainer.fit()
        marks = timer.marks
    solved = next((m for m in marks if m[3] >= threshold), None)
    return {
        "device": str(trainer.device),
        "gpu": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "",
        "sps": summary["sps"],
        "steps": summary["steps"],
        "solved": solved is not None,
        "steps_to_solve": solved[0] if solved else math.nan,
        "train_s_to_solve": solved[1] if solved else math.nan,
        "wall_s_to_solve": solved[2] if solved else math.nan,
        "setup_s": setup_s,
        "final_eval": summary["eval_return_mean"],
        "evals": [[m[0], round(m[1], 3), round(m[2], 3), m[3]] for m in marks],
        "peak_gpu_mb": torch.cuda.max_memory_allocated(trainer.device) / 2**20 if trainer.device.type == "cuda" else 0.0,
    }


def run_one(variant: str, overrides: list[str], seed: int, device: str, threshold: float) -> dict[str, Any]:
    start = time.perf_counter()
    args = ["rlexp.analysis.benchmark_gpu", "--worker", json.dumps([overrides, seed, device, threshold])]
    result = worker_result(args, f"{variant} seed {seed}", PYTHONUNBUFFERED="1")
    result.update(variant=variant, seed=seed, process_s=time.perf_counter() - start)
    return result


def fmt(values: list[float], digits: int = 2) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "never"
    mean = statistics.mean(values)
    spread = f" ± {statistics.stdev(values):,.{digits}f}" if len(values) > 1 else ""
    return f"{mean:,.{digits}f}{spread}"


COLUMNS = [("sps", "SPS", 0), ("steps_to_solve", "env steps to solve", 0), ("train_s_to_solve", "training s to solve", 2),
           ("wall_s_to_solve", "wall s to solve (evals incl.)", 2), ("setup_s", "set-up s", 2), ("process_s", "process s", 2),
           ("peak_gpu_mb", "peak GPU MB", 0)]


def table(results: list[dict[str, Any]], variants: dict[str, list[str]]) -> str:
    lines = ["| variant | overrides | solved | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " |"]
    for name, overrides in variants.items():
        rows = [r for r in results if r["variant"] == name]
        if not rows:
            continue
        cells = [fmt([float(r[key]) for r in rows], digits) for key, _, digits in COLUMNS]
        solved = f"{sum(r['solved'] for r in rows)}/{len(rows)}"
        lines.append(f"| {name} | `{' '.join(overrides) or '(preset)'}` | {solved} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    parser.add_argument("--variants", nargs="+", default=["preset", "envs16384x32", "envs16384_mb2x4"],
                        help=f"named override sets: {', '.join(VARIANTS)}")
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME=OVERRIDES",
                        help='more variants, e.g. "lr1e-3=algo.learning_rate=1e-3 algo.n_epochs=5"')
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=475.0, help="evaluation mean return that counts as solved")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table and the raw results (.json) here")
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    variants = {name: VARIANTS[name] for name in args.variants}
    for spec in args.extra:
        name, _, overrides = spec.partition("=")
        if not name or not overrides:
            parser.error(f"--extra wants NAME=OVERRIDES, got {spec!r}")
        variants[name] = overrides.split()

    results = []
    for seed in range(args.seeds):
        for name, overrides in variants.items():  # variants interleaved seed by seed
            result = run_one(name, overrides, seed, args.device, args.threshold)
            print(f"{name} seed {seed}: {result['sps']:,.0f} SPS, solved={result['solved']} after {result['steps_to_solve']:,.0f} steps, "
                  f"{result['train_s_to_solve']:.2f} s training, {result['wall_s_to_solve']:.2f} s wall; set-up {result['setup_s']:.2f} s, "
                  f"process {result['process_s']:.2f} s", flush=True)
            results.append(result)
    import torch

    first = results[0]
    header = (f"PPO on the torch-native CartPole-v1 (hparams=ppo_cartpole_gpu), device {first['device']} {first['gpu']}; "
              f"torch {torch.__version__}; {args.seeds} seed(s) per variant; solved = first evaluation (10 deterministic "
              f"episodes) with mean return >= {args.threshold:g}, where the run stops (eval.stop_at).")
    text = header + "\n\n" + table(results, variants) + "\n"
    print("\n" + text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        overrides, seed, device, threshold = json.loads(sys.argv[2])
        print("RESULT " + json.dumps(run_worker(overrides, seed, device, threshold)))
    else:
        main()

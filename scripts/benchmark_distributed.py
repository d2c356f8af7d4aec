"""Speed of one run on N ranks against one process, same per-rank settings, alternated.

    python scripts/benchmark_distributed.py                       # ppo_atari on Pong, 2 ranks vs 1, 3 pairs
    python scripts/benchmark_distributed.py --nproc 8 --device cuda --steps 409600   # a GPU node: 8 ranks vs 1

Each pair runs ``rlexp-train hparams=<preset> <overrides>`` once in one process and once with
``distributed.nproc=N`` (each rank as the one process: the same envs, threads and batch per
rank), in alternating order. It reports the training speed each run's summary.json gives
(env steps of all ranks over training time: start-up and evaluation left out), the
whole-process wall time, how many cores the one process kept busy (its CPU seconds over its
wall seconds), and their ratios; medians over the pairs. Runs go to a temporary directory.

``--ceiling`` first measures what the machine itself allows: the update's own arithmetic (the
Nature CNN's forward and backward pass on a minibatch of 4 x 84 x 84 frames, one torch thread)
in one process, then in N processes at once. N processes doing N times the work in the same
time is a ratio of N; cores that share a physical core, or memory bandwidth, give less, and no
data-parallel run can beat that ratio on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(overrides: list[str], where: Path) -> tuple[float, float, float]:
    """(training steps/s from summary.json, whole-process wall seconds, cores busy on average)."""
    where.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cpu, start = children_cpu(), time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "rlexp.cli.train", *overrides], cwd=where, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"benchmark_distributed: a run failed:\n{result.stderr[-3000:]}")
    summary = json.loads(next((where / "outputs" / "runs").glob("*/summary.json")).read_text())
    return summary["sps"], wall, (children_cpu() - cpu) / wall


CEILING_WORK = """
import sys, time, torch
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(4, 32, 8, 4), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 4, 2), torch.nn.ReLU(),
                          torch.nn.Conv2d(64, 64, 3, 1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3136, 512),
                          torch.nn.ReLU(), torch.nn.Linear(512, 7))
frames = torch.rand(64, 4, 84, 84)
for _ in range(3):
    net(frames).sum().backward()
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    net(frames).sum().backward()
print(time.perf_counter() - start)
"""


def ceiling(nproc: int, iterations: int = 40) -> tuple[float, float, float]:
    """(seconds for the work in one process, in each of nproc processes at once, the throughput ratio)."""
    command = [sys.executable, "-c", CEILING_WORK, str(iterations)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    alone = float(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(nproc)]
    together = max(float(p.communicate()[0]) for p in procs)
    return alone, together, nproc * alone / together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="ppo_atari")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40960, help="env steps of the one-process run (the N-rank run: N times as many)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ceiling", action="store_true", help="first measure the machine's own N-process ratio (above)")
    parser.add_argument("overrides", nargs="*", default=["env.id=ALE/Pong-v5", "env.threads=1"],
                        help="more overrides for both sides (default: Pong, one ale-py thread per process)")
    args = parser.parse_args()
    common = [f"hparams={args.preset}", f"device={args.device}", "torch_threads=1", "progress=false", "eval.episodes=1",
              "eval.every_steps=1000000000", "checkpoint.every_updates=1000000", "logger.tensorboard.histogram_every=0",
              "fast_cpu=false", *args.overrides]
    limit = None
    if args.ceiling:
        alone, together, limit = ceiling(args.nproc)
        print(f"ceiling: the CNN update's arithmetic took {alone:.2f} s alone and {together:.2f} s in each of "
              f"{args.nproc} processes at once: {limit:.2f}x the work per second", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            order = ["one", "ranks"] if pair % 2 == 0 else ["ranks", "one"]
            got = {}
            for side in order:
                extra = [f"total_steps={args.steps}"] if side == "one" else [f"total_steps={args.steps * args.nproc}", f"distributed.nproc={args.nproc}"]
                got[side] = run([*common, *extra], Path(tmp) / f"{pair}-{side}")
                print(f"pair {pair + 1} {side}: {got[side][0]:.0f} steps/s, {got[side][1]:.1f} s, "
                      f"{got[side][2]:.2f} cores busy", flush=True)
            rows.append(got)
    median = lambda side, i: statistics.median(r[side][i] for r in rows)  # noqa: E731
    print()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores; {args.preset} {' '.join(args.overrides)}, device={args.device}, "
          f"1 torch thread per process; {args.pairs} alternated pairs; medians")
    print()
    print(f"| | 1 process | {args.nproc} ranks | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| env steps | {args.steps} | {args.steps * args.nproc} | {args.nproc}.00 |")
    print(f"| training steps/s (summary.json) | {median('one', 0):.0f} | {median('ranks', 0):.0f} | {median('ranks', 0) / median('one', 0):.2f} |")
    print(f"| whole-process wall time (s) | {median('one', 1):.1f} | {median('ranks', 1):.1f} | "
          f"{median('ranks', 1) / median('one', 1):.2f} |")
    print(f"| cores busy (CPU s / wall s) | {median('one', 2):.2f} | {median('ranks', 2):.2f} | |")
    ratios = ", ".join(f"{r['ranks'][0] / r['one'][0]:.2f}" for r in rows)
    print(f"| per-pair steps/s ratio | | | {ratios} |")
    if limit is not None:
        print(f"| the machine's own ratio for the CNN update's arithmetic (--ceiling) | | | {limit:.2f} |")


if __name__ == "__main__":
    main()

"""Env steps per second of the torch-native classic-control envs, as a markdown table.

    python scripts/bench_torch_envs.py --device cpu
    python scripts/bench_torch_envs.py --device cuda --batch-sizes 1024 16384 262144 1048576

Random actions are drawn before timing (a pool cycled through), so the figures are the
env's own cost: dynamics, autoreset, time limit and episode statistics. For scale, the
last rows step Gymnasium's SyncVectorEnv (CartPole, numpy, one env at a time) and the
torch CartPole at the same small batch.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from rlexp.envs.torch_native import TORCH_ENVS, make_torch_env

ACTION_POOL = 8


def random_action_pool(env, n: int, device: torch.device, generator: torch.Generator) -> list[torch.Tensor]:
    space = env.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        return [torch.randint(0, int(space.n), (n,), generator=generator).to(device) for _ in range(ACTION_POOL)]
    low, high = float(space.low[0]), float(space.high[0])
    return [(low + (high - low) * torch.rand(n, 1, generator=generator)).to(device) for _ in range(ACTION_POOL)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_torch_env(env_id: str, num_envs: int, steps: int, device: torch.device, warmup: int) -> float:
    env = make_torch_env(env_id, num_envs, device, seed=0)
    actions = random_action_pool(env, num_envs, device, torch.Generator().manual_seed(0))
    env.reset()
    for t in range(warmup):
        env.step(actions[t % ACTION_POOL])
    sync(device)
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t % ACTION_POOL])
    sync(device)
    return num_envs * steps / (time.perf_counter() - start)


def time_gymnasium_sync(env_id: str, num_envs: int, steps: int, warmup: int) -> float:
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 2, size=num_envs) for _ in range(ACTION_POOL)]
    for t in range(warmup):
        env.step(actions[t % ACTION_POOL])
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t % ACTION_POOL])
    sps = num_envs * steps / (time.perf_counter() - start)
    env.close()
    return sps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--envs", nargs="+", default=list(TORCH_ENVS), choices=list(TORCH_ENVS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1024, 16384, 262144])
    parser.add_argument("--steps", type=int, default=200, help="timed vector steps per measurement")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--gym-envs", type=int, default=8, help="SyncVectorEnv size for the CartPole comparison (0: skip)")
    parser.add_argument("--gym-steps", type=int, default=5000)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    rows = []
    for env_id in args.envs:
        for n in args.batch_sizes:
            rows.append((env_id, "torch", args.device, n, time_torch_env(env_id, n, args.steps, device, args.warmup)))
    if args.gym_envs:
        n = args.gym_envs
        rows.append(("CartPole-v1", "gymnasium SyncVectorEnv", "cpu", n, time_gymnasium_sync("CartPole-v1", n, args.gym_steps, args.warmup)))
        rows.append(("CartPole-v1", "torch", args.device, n, time_torch_env("CartPole-v1", n, args.gym_steps, device, args.warmup)))

    print(f"torch {torch.__version__}, gymnasium {gym.__version__}, torch threads {torch.get_num_threads()}, "
          f"{args.steps} timed steps (SyncVectorEnv and small-batch rows: {args.gym_steps})\n")
    print("| env | implementation | device | num_envs | env steps/s | us per vector step |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for env_id, impl, dev, n, sps in rows:
        print(f"| {env_id} | {impl} | {dev} | {n:,} | {sps:,.0f} | {n / sps * 1e6:,.1f} |")


if __name__ == "__main__":
    main()

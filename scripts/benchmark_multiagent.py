"""Speed of PPO on MPE's Spread with 3 agents: rlexp against SB3 + SuperSuit (issue #31).

    python scripts/benchmark_multiagent.py --lib rlexp --steps 61440      # one rlexp run, one JSON line
    python scripts/benchmark_multiagent.py --lib sb3 --steps 61440        # SB3 + SuperSuit, the same settings
    python scripts/benchmark_multiagent.py --lib rlexp --collect-only     # env stepping only, random actions
    python scripts/benchmark_multiagent.py --lib sb3 --no-agent-id        # both sides without the agent index input

One side per process, so that whole processes can be timed against each other from outside
(alternate the two commands). The game is mpe2's ``simple_spread_v3`` with N=3, max_cycles=25,
local_ratio 0.5 and discrete actions, ``--copies`` game copies side by side; each copy gives one
vector row per agent (8 copies: 24 rows), and one PPO policy plays every row.

* ``--lib rlexp``: ``rlexp.train`` with ``env=simple_spread`` (rlexp.envs.multiagent.ParallelVectorEnv,
  agent index one-hot beside the observation: 18 + 3 inputs) and PPO's defaults of conf/algo/ppo.yaml
  unless set below; logger, progress bar, diagnostics and periodic evaluation and checkpoints off
  (one evaluation episode and one checkpoint at the end, outside the training time).
* ``--lib sb3``: SuperSuit's route to SB3: ``agent_indicator_v0`` (the same one-hot agent index, so
  both policies see 21 inputs), ``pettingzoo_env_to_vec_env_v1``, ``concat_vec_envs_v1(...,
  num_cpus=0, base_class="stable_baselines3")`` (the copies stepped in this process, as rlexp
  does), ``VecMonitor`` (episode returns, which rlexp's env keeps too), then SB3 ``PPO("MlpPolicy")``.
  SB3's ``PPO(seed=...)`` cannot seed SuperSuit's ConcatVecEnv (it has no ``seed``), so the seed
  goes to ``set_random_seed`` (Python, numpy, torch) and the games start unseeded.

``--no-agent-id`` leaves the agent index out on both sides (rlexp ``env.agent_id_input=false``,
no ``agent_indicator_v0``): 18 inputs. SuperSuit's indicator is a PettingZoo wrapper around every
game (its ``observe`` runs per agent per step in Python), so this tells how much of the
difference is that wrapper rather than the vectorization or the update.

Both sides: n_steps 128 per row, batch 256, 10 epochs, learning rate 1e-3 decayed linearly to 0,
gamma 0.99, GAE lambda 0.95, clip 0.2, ent_coef 0, vf_coef 0.5, max_grad_norm 0.5, Adam eps 1e-5,
separate actor and critic MLPs [64, 64] with tanh and orthogonal initialisation, CPU, one torch
thread.

The unit is the AGENT STEP (one vector row for one step) on both sides: rlexp's ``total_steps``,
summary ``steps`` and ``sps`` count rows (n_steps x copies x 3 per rollout), and SB3's
``num_timesteps`` adds ``n_envs`` per vector step, where SuperSuit makes every agent an env row.
``--steps`` should be a multiple of n_steps x copies x 3 (3,072 with the defaults) so that both
stop at the same count (SB3 finishes its last rollout; rlexp rounds the same way); the JSON line
says how many each side took.

The line printed: ``sps`` is agent steps per second of training (rlexp: its summary's ``sps``,
training time without start-up or evaluation; SB3: ``num_timesteps`` over the wall time of
``learn``); ``call_s`` and ``sps_call`` the wall time of the whole ``rlexp.train`` call (config,
env and network built, training, the last evaluation episode and checkpoint) or, for SB3, of
building the env and the model plus ``learn``. With ``--collect-only``: random actions through
each vector env for ``--steps`` agent steps, no policy: raw env stepping speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GAME = "mpe2.simple_spread_v3"
MAKE_KWARGS = {"N": 3, "max_cycles": 25, "local_ratio": 0.5, "continuous_actions": False}
PPO = {"batch_size": 256, "n_epochs": 10, "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.0,
       "clip_range": 0.2, "vf_coef": 0.5, "max_grad_norm": 0.5}


def run_rlexp(args: argparse.Namespace) -> dict[str, Any]:
    import rlexp

    overrides = ["env=simple_spread", "algo=ppo", f"env.num_envs={args.copies}", f"total_steps={args.steps}", f"seed={args.seed}",
                 f"algo.n_steps={args.n_steps}", *(f"algo.{key}={value}" for key, value in PPO.items()),
                 "algo.lr_schedule=linear", "network.hidden_sizes=[64,64]", "network.activation=tanh",
                 "logger=none", "progress=false", "diagnostics=off", f"eval.every_steps={args.steps * 10}", "eval.episodes=1",
                 "checkpoint.every_updates=1000000", "device=cpu", f"torch_threads={args.threads}",
                 f"env.agent_id_input={str(not args.no_agent_id).lower()}", *args.overrides]
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # rlexp's log lines: stdout keeps the one JSON line
            result = rlexp.train(overrides, run_dir=run_dir)
        call = time.perf_counter() - start
        log_file = Path(run_dir) / "train.log"
        log = log_file.read_text() if log_file.exists() else ""
    summary = result.summary
    path = "fast_cpu" if "numpy fast path" in log else "autograd"  # the trainer's start-up line says which
    return {"steps": summary["steps"], "sps": summary["sps"], "train_s": summary["train_time_s"], "call_s": call,
            "sps_call": summary["steps"] / call, "update_path": path}


def supersuit_env(copies: int, agent_id: bool) -> Any:
    import mpe2.simple_spread_v3 as spread
    import supersuit
    from stable_baselines3.common.vec_env import VecMonitor

    game = spread.parallel_env(**MAKE_KWARGS)
    if agent_id:
        game = supersuit.agent_indicator_v0(game)
    env = supersuit.pettingzoo_env_to_vec_env_v1(game)
    env = supersuit.concat_vec_envs_v1(env, copies, num_cpus=0, base_class="stable_baselines3")
    return VecMonitor(env)


def run_sb3(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.utils import set_random_seed

    torch.set_num_threads(args.threads)
    set_random_seed(args.seed)
    start = time.perf_counter()
    env = supersuit_env(args.copies, not args.no_agent_id)
    settings = dict(PPO)
    initial = settings.pop("learning_rate")
    model = SB3PPO("MlpPolicy", env, n_steps=args.n_steps, learning_rate=lambda progress: progress * initial, device="cpu", verbose=0,
                   policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh, "ortho_init": True,
                                  "optimizer_kwargs": {"eps": 1e-5}}, **settings)
    learn_start = time.perf_counter()
    model.learn(total_timesteps=args.steps)
    learn = time.perf_counter() - learn_start
    call = time.perf_counter() - start
    env.close()
    return {"steps": model.num_timesteps, "sps": model.num_timesteps / learn, "train_s": learn, "call_s": call,
            "sps_call": model.num_timesteps / call}


def collect_only(args: argparse.Namespace) -> dict[str, Any]:
    """Random actions through the vector env, ``args.steps`` agent steps (whole vector steps)."""
    import numpy as np

    rng = np.random.default_rng(args.seed)
    if args.lib == "rlexp":
        from rlexp.envs.multiagent import PettingZooSpec

        env = PettingZooSpec(id=GAME, num_envs=args.copies, make_kwargs=MAKE_KWARGS, agent_id_input=not args.no_agent_id).make()
        env.reset(seed=args.seed)
        step = env.step
    else:
        env = supersuit_env(args.copies, not args.no_agent_id)
        env.reset()
        step = env.step
    rows = env.num_envs
    n = -(-args.steps // rows)
    start = time.perf_counter()
    for _ in range(n):
        step(rng.integers(5, size=rows))
    seconds = time.perf_counter() - start
    env.close()
    return {"steps": n * rows, "sps": n * rows / seconds, "collect_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lib", choices=("rlexp", "sb3"), required=True)
    parser.add_argument("--steps", type=int, default=61440, help="agent steps (vector rows x steps) on either side")
    parser.add_argument("--copies", type=int, default=8, help="game copies (x 3 agents = rows)")
    parser.add_argument("--n-steps", type=int, default=128, help="rollout length per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-agent-id", action="store_true", help="no one-hot agent index in the observation (either side)")
    parser.add_argument("--collect-only", action="store_true", help="env stepping with random actions, no training")
    parser.add_argument("overrides", nargs="*", default=[], help="more rlexp overrides (--lib rlexp)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.collect_only:
        out = collect_only(args)
    else:
        out = run_rlexp(args) if args.lib == "rlexp" else run_sb3(args)
    import torch

    out = {"lib": args.lib, "mode": "collect" if args.collect_only else "train", "copies": args.copies, "rows": args.copies * 3,
           "n_steps": args.n_steps, "agent_id": not args.no_agent_id, **{k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()},
           "unit": "agent steps", "torch": torch.__version__, "cores": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())

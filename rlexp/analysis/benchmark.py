"""rlexp against Stable-Baselines3 on identical settings, each run in its own process.

``python scripts/benchmark.py`` alternates rlexp and SB3 (A B A B ...) over seeds so
that drifts of a noisy machine hit both alike, pins both to the same torch thread
count, and writes a markdown table. SB3 is only needed here (``pip install -e ".[bench]"``);
the cases that run sb3-contrib (RecurrentPPO, MaskablePPO) are skipped, with a line, without it.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository (rlexp/analysis/benchmark.py)


@dataclass
class Case:
    env_id: str
    preset: str             # rlexp's conf/hparams preset with the same settings
    threshold: float        # rolling (last 100 episodes) return that counts as solved
    total_steps: int
    sb3: dict[str, Any] = field(default_factory=dict)
    normalize: bool = False
    algo: str = "PPO"       # the SB3 class with the same algorithm
    atari: bool = False     # SB3: make_atari_env (AtariWrapper) + VecFrameStack(4) and CnnPolicy; no final evaluation
    recurrent: bool = False  # SB3: sb3-contrib's RecurrentPPO with MlpLstmPolicy on the env without its velocities
    normalize_reward: bool = True  # with normalize: VecNormalize's norm_reward
    # with normalize: VecNormalize's clip_obs and clip_reward (SB3's defaults: 10 each; inf: no clipping),
    # which must be the preset's env.clip_obs and env.clip_reward (tests/test_benchmark_settings.py)
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    normalize_obs: bool = True  # with normalize: VecNormalize's norm_obs (off: rewards only)
    # SB3: sb3-contrib's MaskablePPO with MlpPolicy on sb3_env_id, its masks from the env's
    # action_masks() (rlexp reads the same masks from env_id's info), evaluated with masks
    masked: bool = False
    sb3_env_id: str = ""    # the env SB3 makes, when not env_id

    @property
    def contrib(self) -> bool:
        """Whether the SB3 side needs sb3-contrib."""
        return self.recurrent or self.masked


CASES = {
    # RL Zoo ppo.yml, CartPole-v1
    "cartpole": Case("CartPole-v1", "ppo_cartpole", 475.0, 100_000, dict(
        n_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
        learning_rate=("linear", 1e-3), clip_range=("linear", 0.2), ent_coef=0.0)),
    # RL Zoo ppo.yml, Pendulum-v1 (gSDE, new noise every 4 steps), with the preset's linear LR decay on both sides
    "pendulum": Case("Pendulum-v1", "ppo_pendulum", -200.0, 100_000, dict(
        n_envs=4, n_steps=1024, batch_size=64, n_epochs=10, gamma=0.9, gae_lambda=0.95,
        learning_rate=("linear", 1e-3), clip_range=0.2, ent_coef=0.0, use_sde=True, sde_sample_freq=4)),
    # RL Zoo a2c.yml, LunarLander-v2 (run on v3), plus the preset's observation/reward normalisation
    # (SB3: VecNormalize with its clipping off, as the preset has none), GAE lambda 0.95, ent_coef 1e-3
    # (the Zoo's: 1e-5) and max_grad_norm 0.2; the Zoo's 200k-step budget (the preset trains 1M)
    "lunarlander_a2c": Case("LunarLander-v3", "a2c_lunarlander", 200.0, 200_000, dict(
        n_envs=8, n_steps=5, gamma=0.995, gae_lambda=0.95, learning_rate=("linear", 8.3e-4), ent_coef=1e-3,
        max_grad_norm=0.2),
        normalize=True, algo="A2C", clip_obs=math.inf, clip_reward=math.inf),
    # RL Zoo ppo_lstm.yml, CartPoleNoVel-v1 (CartPole without velocities), sb3-contrib's RecurrentPPO
    "cartpole_lstm": Case("CartPole-v1", "ppo_lstm_cartpole_novel", 475.0, 100_000, dict(
        n_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
        learning_rate=("linear", 1e-3), clip_range=("linear", 0.2), ent_coef=0.0,
        policy_kwargs=dict(ortho_init=False, activation_fn="relu", lstm_hidden_size=64, enable_critic_lstm=True,
                           net_arch=dict(pi=[64], vf=[64]))), normalize=True, normalize_reward=False, recurrent=True),
    # RL Zoo ppo.yml "atari" (CleanRL's settings, clip range annealed as the Zoo does) on Pong, one ALE
    # worker thread per torch thread; a short budget: this measures speed, not learning
    "atari": Case("ALE/Pong-v5", "ppo_atari", 0.0, 20_480, dict(
        n_envs=8, n_steps=128, batch_size=256, n_epochs=4, gamma=0.99, gae_lambda=0.95,
        learning_rate=("linear", 2.5e-4), clip_range=("linear", 0.1), ent_coef=0.01, vf_coef=0.5), atari=True),
    # Invalid-action masks: the identity task with 70 actions, 55 invalid in each state (sb3-contrib's
    # InvalidActionEnvDiscrete), the ppo_invalid_actions preset's settings (SB3's PPO defaults with
    # gamma 0.01, rewards scaled by VecNormalize/NormalizeReward, one hidden layer of 256, learning
    # rate 1e-3) against
    # sb3-contrib's MaskablePPO. Both sides step the same env class (rlexp/analysis/mask_envs.py), the
    # mask read from info by rlexp and from action_masks() by MaskablePPO; strict, so either side
    # raises on an invalid action. 10 updates of 2,048 steps (the preset trains one)
    "invalid_actions": Case("rlexp.analysis.mask_envs:RlexpInvalidActions-v0", "ppo_invalid_actions", 90.0, 20_480, dict(
        n_envs=1, n_steps=2048, batch_size=64, n_epochs=10, gamma=0.01, gae_lambda=0.95, learning_rate=1e-3,
        clip_range=0.2, ent_coef=0.0, policy_kwargs=dict(net_arch=dict(pi=[256], vf=[256]))),
        normalize=True, normalize_obs=False, clip_reward=math.inf, masked=True,
        sb3_env_id="rlexp.analysis.mask_envs:RlexpInvalidActionsMethod-v0"),
}


def first_reaching(history: list[tuple[int, float, float]], threshold: float) -> tuple[float, float]:
    """(steps, seconds) when the rolling return first reached ``threshold``; nan if never."""
    for steps, seconds, rolling in history:
        if not math.isnan(rolling) and rolling >= threshold:
            return float(steps), seconds
    return math.nan, math.nan


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# -- the two workers (each runs in a fresh process) ---------------------------------

def run_rlexp(case: Case, seed: int, threads: int, eval_episodes: int, extra: list[str] = ()) -> dict[str, Any]:
    from rlexp.config import compose_config
    from rlexp.run.trainer import Trainer

    overrides = [f"hparams={case.preset}", f"seed={seed}", f"torch_threads={threads}", f"total_steps={case.total_steps}",
                 "logger=none", "progress=false", "eval.every_steps=0", f"eval.episodes={eval_episodes}",
                 "checkpoint.every_updates=0", "device=cpu", *extra]
    if case.atari:  # as many ALE worker threads as torch threads (SB3 steps its envs in the main thread)
        overrides.append(f"env.threads={threads}")
    cfg = compose_config(overrides)
    import tempfile

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir)
        summary = trainer.fit()
    steps, seconds = first_reaching(trainer.progress_history, case.threshold)
    return {"sps": summary["sps"], "train_time_s": summary["train_time_s"], "steps_to_threshold": steps, "time_to_threshold_s": seconds,
            "eval_return": summary["eval_return_mean"], "steps": summary["steps"],
            "update_path": "fast_cpu" if trainer.backend is not None else "autograd"}


def run_sb3(case: Case, seed: int, threads: int, eval_episodes: int) -> dict[str, Any]:
    import numpy as np
    import stable_baselines3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(threads)
    env_id = case.sb3_env_id or case.env_id
    settings = dict(case.sb3)
    n_envs = settings.pop("n_envs")
    for key in ("learning_rate", "clip_range"):
        if isinstance(settings.get(key), tuple):  # ("linear", initial)
            initial = settings[key][1]
            settings[key] = lambda progress, initial=initial: progress * initial
    if case.atari:
        import ale_py
        import gymnasium as gym
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        # the v5 id with ALE's own frame skip and sticky actions off: AtariWrapper skips frames itself
        env = VecFrameStack(make_atari_env(case.env_id, n_envs=n_envs, seed=seed,
                                           env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0}), n_stack=4)
    else:
        env = make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=without_velocities if case.recurrent else None)
    if case.normalize:  # the case's clips, which are the preset's env.clip_obs and env.clip_reward
        env = VecNormalize(env, gamma=settings["gamma"], norm_obs=case.normalize_obs, norm_reward=case.normalize_reward,
                           clip_obs=case.clip_obs, clip_reward=case.clip_reward)
    if "policy_kwargs" in settings and settings["policy_kwargs"].get("activation_fn") == "relu":
        settings["policy_kwargs"] = {**settings["policy_kwargs"], "activation_fn": torch.nn.ReLU}

    class Rolling(BaseCallback):
        def _on_training_start(self) -> None:
            self.start, self.history = time.perf_counter(), []

        def _on_rollout_end(self) -> None:
            buffer = self.model.ep_info_buffer
            rolling = float(np.mean([e["r"] for e in buffer])) if buffer else math.nan
            self.history.append((self.model.num_timesteps, time.perf_counter() - self.start, rolling))

        def _on_step(self) -> bool:
            return True

    if case.recurrent:
        from sb3_contrib import RecurrentPPO

        model = RecurrentPPO("MlpLstmPolicy", env, seed=seed, device="cpu", verbose=0, **settings)
    elif case.masked:
        from sb3_contrib import MaskablePPO

        model = MaskablePPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **settings)
    else:
        policy = "CnnPolicy" if case.atari else "MlpPolicy"
        model = getattr(stable_baselines3, case.algo)(policy, env, seed=seed, device="cpu", verbose=0, **settings)
    callback = Rolling()
    start = time.perf_counter()
    model.learn(total_timesteps=case.total_steps, callback=callback)
    train_time = time.perf_counter() - start
    steps, seconds = first_reaching(callback.history, case.threshold)
    if case.atari:  # Atari's evaluation is rlexp's (whole games, raw scores); SB3's side measures speed only
        return {"sps": model.num_timesteps / train_time, "train_time_s": train_time, "steps_to_threshold": steps,
                "time_to_threshold_s": seconds, "eval_return": math.nan, "steps": model.num_timesteps}
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 10_000, wrapper_class=without_velocities if case.recurrent else None)
    if case.normalize and case.normalize_obs:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, clip_obs=case.clip_obs)
        eval_env.obs_rms = env.obs_rms
    if case.masked:  # SB3's evaluate_policy gives the policy no masks
        from sb3_contrib.common.maskable.evaluation import evaluate_policy as evaluate_masked

        mean, _ = evaluate_masked(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
    else:
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True)
    steps, seconds = first_reaching(callback.history, case.threshold)
    return {"sps": model.num_timesteps / train_time, "train_time_s": train_time, "steps_to_threshold": steps, "time_to_threshold_s": seconds,
            "eval_return": float(mean), "steps": model.num_timesteps}


def without_velocities(env: Any) -> Any:
    """SB3's side of env.mask_velocity: the same entries left out, per env."""
    import gymnasium as gym
    import numpy as np

    from rlexp.envs.velocity import velocity_entries

    space = env.observation_space
    keep = np.array([i for i in range(space.shape[0]) if i not in velocity_entries(env.spec.id)])
    return gym.wrappers.TransformObservation(env, lambda obs: obs[keep], gym.spaces.Box(space.low[keep], space.high[keep], dtype=space.dtype))


def worker(lib: str, case_name: str, seed: int, threads: int, eval_episodes: int, extra: list[str] = ()) -> None:
    case = CASES[case_name]
    result = run_rlexp(case, seed, threads, eval_episodes, extra) if lib == "rlexp" else run_sb3(case, seed, threads, eval_episodes)
    result.update(lib=lib, case=case_name, seed=seed, peak_rss_mb=peak_rss_mb())
    print("RESULT " + json.dumps(result))


# -- the driver ----------------------------------------------------------------------

def worker_result(args: list[str], what: str, **env: str) -> dict[str, Any]:
    """Run ``python -m <args>`` in a fresh process and return the dict its ``RESULT {json}``
    line carries (the workers of both benchmarks print one)."""
    out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")


def run_one(lib: str, case: str, seed: int, threads: int, eval_episodes: int, extra: list[str] = ()) -> dict[str, Any]:
    args = ["rlexp.analysis.benchmark", lib, case, str(seed), str(threads), str(eval_episodes), *(extra if lib == "rlexp" else ())]
    return worker_result(args, f"{lib} {case} seed {seed}", OMP_NUM_THREADS=str(threads))


def mean_std(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "never"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def ratio(a: list[float], b: list[float]) -> str:
    a, b = [v for v in a if not math.isnan(v)], [v for v in b if not math.isnan(v)]
    return f"{statistics.mean(a) / statistics.mean(b):.2f}" if a and b and statistics.mean(b) else "-"


METRICS = [("sps", "SPS"), ("train_time_s", "training wall time (s)"), ("time_to_threshold_s", "wall time to threshold (s)"),
           ("steps_to_threshold", "steps to threshold"), ("eval_return", "final eval return"), ("peak_rss_mb", "peak RSS (MB)")]


def table(results: list[dict[str, Any]], case: str) -> str:
    c = CASES[case]
    paths = sorted({r.get("update_path", "?") for r in results if r["case"] == case and r["lib"] == "rlexp"})
    against = " (masked; SB3: sb3-contrib's MaskablePPO)" if c.masked else ""
    lines = [f"### {c.algo} on {c.env_id}{against} ({c.total_steps:,} steps, threshold {c.threshold:g}, rolling mean of 100 episodes)", "",
             f"rlexp's update path: {', '.join(paths)}", "",
             "| metric | rlexp | SB3 | rlexp / SB3 |", "| --- | --- | --- | --- |"]
    for key, label in METRICS:
        ours = [r[key] for r in results if r["case"] == case and r["lib"] == "rlexp"]
        theirs = [r[key] for r in results if r["case"] == case and r["lib"] == "sb3"]
        lines.append(f"| {label} | {mean_std(ours)} | {mean_std(theirs)} | {ratio(ours, theirs)} |")
    return "\n".join(lines)


def runnable(cases: list[str]) -> list[str]:
    """``cases`` less those whose SB3 side needs sb3-contrib when it is not installed (one line each)."""
    import importlib.util

    if importlib.util.find_spec("sb3_contrib") is not None:
        return list(cases)
    for case in cases:
        if CASES[case].contrib:
            print(f'benchmark: skipping {case}: its SB3 side needs sb3-contrib, which is not installed (pip install -e ".[bench]")', flush=True)
    return [case for case in cases if not CASES[case].contrib]


def main(argv: list[str] | None = None) -> None:
    import argparse
    import platform

    parser = argparse.ArgumentParser(description="rlexp vs Stable-Baselines3 on identical settings")
    parser.add_argument("--cases", nargs="+", default=["cartpole", "pendulum"], choices=list(CASES),
                        help="default: the two PPO cases; lunarlander_a2c checks A2C against SB3 at the a2c_lunarlander preset's settings")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here too")
    parser.add_argument("--rlexp-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra rlexp config overrides, e.g. fast_cpu=false to time the autograd path")
    args = parser.parse_args(argv)
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        sys.exit('benchmark: error: Stable-Baselines3 is not installed: pip install -e ".[bench]"')
    cases = runnable(args.cases)
    results = []
    for case in cases:
        for seed in range(args.seeds):
            for lib in ("rlexp", "sb3"):  # alternate A B A B
                result = run_one(lib, case, seed, args.threads, args.eval_episodes, args.rlexp_overrides)
                print(f"{case} seed {seed} {lib:5s}: {result['sps']:.0f} SPS, {result['train_time_s']:.1f}s, "
                      f"eval {result['eval_return']:.1f}, threshold after {result['time_to_threshold_s']:.1f}s", flush=True)
                results.append(result)
    import torch

    header = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}, "
              f"SB3 {stable_baselines3.__version__}; {args.threads} torch thread(s) each; {args.seeds} seeds, A/B alternated; "
              f"final evaluation: {args.eval_episodes} deterministic episodes"
              + (f"; rlexp overrides: {' '.join(args.rlexp_overrides)}." if args.rlexp_overrides else "."))
    text = "\n\n".join([header] + [table(results, case) for case in cases]) + "\n"
    print("\n" + text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] in ("rlexp", "sb3"):
        worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:])
    else:
        main()

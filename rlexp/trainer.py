"""The on-policy loop, written once: collect -> algo.update -> log -> evaluate -> checkpoint."""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from rlexp.algos.base import OnPolicyAlgorithm
from rlexp.checkpoint import save_checkpoint
from rlexp.envs import EnvSpec, find_wrapper, sync_obs_normalization
from rlexp.errors import ConfigError, require
from rlexp.evaluate import evaluate_policy
from rlexp.logger import write_json_atomic
from rlexp.rollout import Rollout

log = logging.getLogger("rlexp")


def build(group: str, node: DictConfig, **runtime: Any) -> Any:
    """instantiate(cfg.<group>, **runtime objects) with errors that name the config key."""
    try:
        return instantiate(node, _convert_="all", **runtime)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause.under(group) from None
        if isinstance(cause, TypeError):
            raise ConfigError(group, f"{node.get('_target_')} rejected the config: {cause}") from None
        raise ConfigError(group, str(e).splitlines()[0]) from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("device", f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        require(torch.cuda.is_available(), "device", f"{name} requested but CUDA is not available here; use device=cpu or device=auto")
        require(device.index is None or device.index < torch.cuda.device_count(), "device", f"{name}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: str | Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        require(cfg.total_steps >= 1, "total_steps", f"must be >= 1, got {cfg.total_steps}")
        require(cfg.torch_threads >= 1, "torch_threads", f"must be >= 1, got {cfg.torch_threads}")
        require(cfg.eval.episodes >= 1, "eval.episodes", f"must be >= 1, got {cfg.eval.episodes}")
        require(cfg.log_interval >= 1, "log_interval", f"must be >= 1, got {cfg.log_interval}")
        torch.set_num_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)

        self.env_spec: EnvSpec = build("env", cfg.env)
        gamma = float(cfg.algo.get("gamma", 0.99))
        try:
            self.env = self.env_spec.make(training=True, gamma=gamma)
        except ConfigError as e:
            raise e.under("env") from None
        self.eval_env: Optional[gym.vector.VectorEnv] = None
        self.policy = build(
            "network", cfg.network, observation_space=self.env.single_observation_space, action_space=self.env.single_action_space
        ).to(self.device)
        self.algo: OnPolicyAlgorithm = build("algo", cfg.algo, policy=self.policy)
        self._check_batch_size()

        space = self.env.single_action_space
        self.rollout = Rollout(
            self.algo.n_steps,
            self.env.num_envs,
            self.env.single_observation_space.shape,
            space.shape,
            torch.int64 if isinstance(space, gym.spaces.Discrete) else torch.float32,
            self.device,
        )
        self.logger = build("logger", cfg.logger, run_dir=self.run_dir)
        self.global_step = 0
        self.updates = 0
        self.episodes = 0
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.eval_history: list[tuple[int, float, float]] = []
        self.best_eval = -math.inf

    def _check_batch_size(self) -> None:
        batch_size = getattr(self.algo, "batch_size", None)
        if batch_size is not None:
            rollout_size = self.algo.n_steps * self.env.num_envs
            require(batch_size <= rollout_size, "algo.batch_size", f"{batch_size} is larger than n_steps * num_envs = {rollout_size}")

    # -- collection ---------------------------------------------------------------
    @torch.inference_mode()
    def collect(self, obs: np.ndarray, ended: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[float, int]]]:
        """Fill the rollout with n_steps vector steps; return the next obs, the episode-end
        flags of the last step and the (return, length) of every episode that finished."""
        finished: list[tuple[float, int]] = []
        for t in range(self.rollout.n_steps):
            obs_t = torch.as_tensor(obs, dtype=torch.float32).to(self.device, non_blocking=True)
            action, log_prob, value = self.policy.act(obs_t)
            self.rollout.store_policy(t, obs_t, action, log_prob, value)
            obs, reward, terminated, truncated, info = self.env.step(action.cpu().numpy())
            # after an episode ends, NEXT_STEP autoreset spends one step on the reset
            self.rollout.store_env(t, reward, terminated, truncated, valid=~ended)
            ended = terminated | truncated
            if "_episode" in info:
                done = info["_episode"]
                finished += zip(info["episode"]["r"][done].tolist(), info["episode"]["l"][done].tolist())
        return obs, ended, finished

    # -- the loop -----------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg, algo = self.cfg, self.algo
        steps_per_rollout = algo.n_steps * self.env.num_envs
        n_updates = math.ceil(cfg.total_steps / steps_per_rollout)
        next_eval = cfg.eval.every_steps if cfg.eval.every_steps > 0 else math.inf
        log.info(
            "%s on %s: %d steps (%d updates of %d) on %s; run dir %s",
            type(algo).__name__, self.env_spec.id, n_updates * steps_per_rollout, n_updates, steps_per_rollout, self.device, self.run_dir,
        )
        obs, _ = self.env.reset(seed=cfg.seed)
        ended = np.zeros(self.env.num_envs, dtype=bool)
        bar = tqdm(total=n_updates * steps_per_rollout, unit="step", disable=None if cfg.progress else True, dynamic_ncols=True)
        start = time.perf_counter()
        eval_time = 0.0
        status = "finished"
        try:
            for _ in range(n_updates):
                obs, ended, finished = self.collect(obs, ended)
                self.global_step += steps_per_rollout
                if algo.needs_advantages:
                    with torch.inference_mode():
                        last_value = self.policy.value(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
                    self.rollout.compute_gae(last_value, algo.gamma, algo.gae_lambda)
                # progress at the start of this rollout, so the last update still learns (CleanRL's choice;
                # SB3 measures after collection and spends its last update at learning rate 0)
                metrics = algo.update(self.rollout, progress_remaining=1.0 - self.updates / n_updates)
                self.updates += 1
                self.episodes += len(finished)
                self.recent_returns.extend(r for r, _ in finished)
                train_time = time.perf_counter() - start - eval_time
                sps = self.global_step / max(train_time, 1e-9)
                if finished:
                    metrics["rollout/episode_return"] = float(np.mean([r for r, _ in finished]))
                    metrics["rollout/episode_length"] = float(np.mean([n for _, n in finished]))
                metrics["time/sps"] = sps
                if self.updates % cfg.log_interval == 0:
                    self.logger.log(metrics, self.global_step)
                bar.update(steps_per_rollout)
                bar.set_postfix(sps=f"{sps:.0f}", ret=f"{np.mean(self.recent_returns):.1f}" if self.recent_returns else "-")
                if self.global_step >= next_eval:
                    eval_start = time.perf_counter()
                    self.evaluate_and_log()
                    eval_time += time.perf_counter() - eval_start
                    next_eval += cfg.eval.every_steps
                if cfg.checkpoint.every_updates > 0 and self.updates % cfg.checkpoint.every_updates == 0:
                    self.save("last.pt")
        except KeyboardInterrupt:
            status = "interrupted"
            log.warning("interrupted at step %d; saving checkpoints/last.pt", self.global_step)
        finally:
            bar.close()
        train_time = time.perf_counter() - start - eval_time
        if status == "finished" and (not self.eval_history or self.eval_history[-1][0] != self.global_step):
            self.evaluate_and_log()
        self.save("last.pt")
        summary = self.summary(status, train_time)
        write_json_atomic(self.run_dir / "summary.json", summary)
        self.close()
        log.info(
            "done: %d steps in %.1fs (%.0f SPS); eval return %.1f +/- %.1f",
            self.global_step, train_time, summary["sps"], summary["eval_return_mean"], summary["eval_return_std"],
        )
        return summary

    # -- evaluation, checkpoints, summary ------------------------------------------
    def evaluate(self) -> np.ndarray:
        episodes = self.cfg.eval.episodes
        if self.eval_env is None:
            self.eval_env = self.env_spec.make(num_envs=episodes, training=False)
        sync_obs_normalization(self.env, self.eval_env)
        self.policy.eval()
        try:
            # a fixed seed per evaluation: every checkpoint is judged on the same episodes
            return evaluate_policy(self.policy, self.eval_env, episodes, self.device, self.cfg.eval.deterministic, seed=self.cfg.seed + 10_000)
        finally:
            self.policy.train()

    def evaluate_and_log(self) -> None:
        returns = self.evaluate()
        mean, std = float(returns.mean()), float(returns.std())
        self.eval_history.append((self.global_step, mean, std))
        self.logger.log({"eval/return_mean": mean, "eval/return_std": std}, self.global_step)
        log.info("step %d: eval return %.1f +/- %.1f over %d episodes", self.global_step, mean, std, len(returns))
        if mean > self.best_eval:
            self.best_eval = mean
            self.save("best.pt")

    def state(self) -> dict[str, Any]:
        from gymnasium.wrappers.vector import NormalizeObservation

        norm = find_wrapper(self.env, NormalizeObservation)
        obs_rms = None
        if norm is not None:
            obs_rms = {
                "mean": torch.as_tensor(norm.obs_rms.mean),
                "var": torch.as_tensor(norm.obs_rms.var),
                "count": float(norm.obs_rms.count),
            }
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.algo.optimizer.state_dict(),
            "global_step": self.global_step,
            "updates": self.updates,
            "obs_rms": obs_rms,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }

    def save(self, name: str) -> None:
        save_checkpoint(self.run_dir / "checkpoints" / name, self.state())

    def summary(self, status: str, train_time: float) -> dict[str, Any]:
        last = self.eval_history[-1] if self.eval_history else (self.global_step, float("nan"), float("nan"))
        return {
            "status": status,
            "algo": type(self.algo).__name__,
            "env_id": self.env_spec.id,
            "seed": int(self.cfg.seed),
            "device": str(self.device),
            "steps": self.global_step,
            "updates": self.updates,
            "train_time_s": round(train_time, 3),
            "sps": self.global_step / max(train_time, 1e-9),
            "episodes": self.episodes,
            "rolling_return": float(np.mean(self.recent_returns)) if self.recent_returns else None,
            "eval_return_mean": last[1],
            "eval_return_std": last[2],
            "best_eval_return": self.best_eval if self.eval_history else None,
            "eval_history": [list(e) for e in self.eval_history],
        }

    def close(self) -> None:
        self.logger.close()
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()

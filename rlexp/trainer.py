"""The on-policy loop, written once: collect -> algo.update -> log -> evaluate -> checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import time
from collections import deque
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator, Optional

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm  # a widget in Jupyter, text in a terminal

from rlexp import tb_records
from rlexp.algos.base import OnPolicyAlgorithm
from rlexp.builders import build, resolve_device
from rlexp.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from rlexp.diagnostics import Diagnostics
from rlexp.envs import (ActionAdapter, EnvSpec, is_torch_env, load_normalization_state, normalization_state, reward_threshold,
                        sync_obs_normalization)
from rlexp.errors import ConfigError, TrainingError, require
from rlexp.evaluation import episode_frames, evaluate_policy
from rlexp.logger import write_json_atomic
from rlexp.networks.actor_critic import native_bf16
from rlexp.networks.heads import action_storage
from rlexp.observations import to_tensor
from rlexp.rollout import Rollout
from rlexp.stopping import StopRequest

log = logging.getLogger("rlexp")


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
        require(cfg.eval.get("video_frames", 1) >= 1, "eval.video_frames", f"must be >= 1, got {cfg.eval.get('video_frames')}")
        torch.set_num_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        eval_device = cfg.eval.get("device", "cpu")
        try:
            self.eval_device = self.device if eval_device == "same" else resolve_device(eval_device)
        except ConfigError as e:
            raise e.under("eval") from None
        self.eval_policy: Optional[torch.nn.Module] = None  # the policy's copy on eval_device, if that differs
        resume_state = load_checkpoint(cfg.resume, key="resume") if cfg.get("resume") else None
        self.diagnostics = make_diagnostics(cfg.get("diagnostics"))

        self.env_spec: EnvSpec = build("env", cfg.env)
        gamma = float(cfg.algo.get("gamma", 0.99))
        try:
            self.env = self.env_spec.make(training=True, gamma=gamma, device=self.device)
        except ConfigError as e:
            raise e.under("env") from None
        self.eval_env: Optional[gym.vector.VectorEnv] = None
        self.policy = build(
            "network", cfg.network, observation_space=self.env.single_observation_space, action_space=self.env.single_action_space
        ).to(self.device)
        if getattr(self.policy, "precision", "fp32") == "bf16" and not native_bf16(self.device):
            log.warning("network.precision=bf16: %s has no bfloat16 units, so autocast emulates them and runs "
                        "slower than float32 (network.precision=fp32)", self.device)
        self.algo: OnPolicyAlgorithm = build("algo", cfg.algo, policy=self.policy)
        self.steps_per_rollout = self.algo.n_steps * self.env.num_envs
        self._check_batch_size()
        if cfg.compile:
            # dynamic: minibatch sizes vary a little (autoreset steps are dropped)
            self.algo.loss = torch.compile(self.algo.loss, dynamic=True)
        self.fast = self.algo.enable_fast_cpu(cfg.get("fast_cpu", "auto"), self.device, compiled=bool(cfg.compile))

        self.obs_space = self.env.single_observation_space
        # recurrent policies: one state per env, carried across steps and rollouts (reset_envs zeroes it)
        self.recurrent = bool(getattr(self.policy, "is_recurrent", False))
        self.policy_state: Optional[torch.Tensor] = None
        self.episode_starts: Optional[torch.Tensor] = None
        self.rollout = Rollout(
            self.algo.n_steps,
            self.env.num_envs,
            self.obs_space,
            *action_storage(self.env.single_action_space),
            self.device,
            env_device=self.device if is_torch_env(self.env) else None,
            state_shape=tuple(self.policy.initial_state(1).shape[1:]) if self.recurrent else None,
        )
        self.to_env = ActionAdapter(self.env, self.device)
        self.global_step = 0
        self.updates = 0
        self.episodes = 0
        self.train_time = 0.0
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.eval_history: list[tuple[int, float, float]] = []
        # (env steps, training seconds, mean return of the last 100 episodes) after every update
        self.progress_history: list[tuple[int, float, float]] = []
        self.best_eval = -math.inf
        if resume_state is not None:
            self.load_state(resume_state)
        # on resume, TensorBoard hides events the crashed run wrote after the checkpoint
        purge_step = self.global_step + 1 if resume_state is not None else None
        self.logger = build("logger", cfg.logger, run_dir=self.run_dir, purge_step=purge_step)
        self.start_records()
        self.stop = StopRequest()

    def _check_batch_size(self) -> None:
        batch_size = getattr(self.algo, "batch_size", None)
        if batch_size is not None:
            require(batch_size <= self.steps_per_rollout, "algo.batch_size",
                    f"{batch_size} is larger than n_steps * num_envs = {self.steps_per_rollout}")

    # -- collection ---------------------------------------------------------------
    @torch.inference_mode()
    def collect(self, obs: Any, ended: Any) -> tuple[Any, Any, list[tuple[float, int]]]:
        """Fill the rollout with n_steps vector steps; return the next obs, the episode-end
        flags of the last step and the (return, length) of every episode that finished."""
        finished: list[tuple[float, int]] = []
        on_device: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # torch envs' episode info, read once
        self.policy.reset_noise(self.env.num_envs)  # gSDE: fresh noise for each rollout, as SB3
        fast = self.fast if not self.to_env.native else None  # torch-native envs take torch actions
        for t in range(self.rollout.n_steps):
            if fast is not None:  # rlexp.algos.ppo_fast_cpu: numpy from the env to the rollout buffers
                action, log_prob, value = fast.act(obs)
                self.rollout.store_policy(t, obs, action, log_prob, value)
                env_action = self.to_env(action)
            else:
                obs_t = to_tensor(obs, self.obs_space, self.device)
                if self.recurrent:  # the state before the step is stored: the update re-runs sequences from it
                    self.rollout.store_state(t, self.policy_state, self.episode_starts)
                    action, log_prob, value, self.policy_state = self.policy.act(obs_t, self.policy_state, self.episode_starts)
                else:
                    action, log_prob, value = self.policy.act(obs_t)
                self.rollout.store_policy(t, obs_t, action, log_prob, value)
                env_action = self.to_env(action)
            obs, reward, terminated, truncated, info = self.env.step(env_action)
            # after an episode ends, NEXT_STEP autoreset spends one step on the reset
            self.rollout.store_env(t, reward, terminated, truncated, valid=~ended)
            if self.recurrent:  # this step was an autoreset step where the last one ended: a new episode's first obs
                self.episode_starts = torch.as_tensor(ended, device=self.device)
            ended = terminated | truncated
            if "_episode" in info:
                done, episode = info["_episode"], info["episode"]
                if isinstance(done, torch.Tensor):  # no host read per step (on CUDA each is a sync)
                    on_device.append((done, episode["r"], episode["l"]))
                else:
                    finished += zip(episode["r"][done].tolist(), episode["l"][done].tolist())
        if on_device:
            done, returns, lengths = (torch.stack(x) for x in zip(*on_device))
            finished += zip(returns[done].tolist(), lengths[done].tolist())
        return obs, ended, finished

    # -- the loop -----------------------------------------------------------------
    @property
    def n_updates(self) -> int:
        """Updates in the whole run (the last rollout may overshoot total_steps)."""
        return math.ceil(self.cfg.total_steps / self.steps_per_rollout)

    def fit(self) -> dict[str, Any]:
        cfg, steps_per_rollout, n_updates = self.cfg, self.steps_per_rollout, self.n_updates
        every = cfg.eval.every_steps
        next_eval = (self.global_step // every + 1) * every if every > 0 else math.inf
        log.info(
            "%s on %s: %d steps (%d updates of %d) on %s%s%s; run dir %s",
            type(self.algo).__name__, self.env_spec.id, n_updates * steps_per_rollout, n_updates, steps_per_rollout, self.device,
            " (numpy fast path: fast_cpu)" if self.fast is not None else " (autograd)",
            f", resuming at step {self.global_step}" if self.global_step else "", self.run_dir,
        )
        # fresh episodes on resume: the environments' internal state is not checkpointed
        obs, ended = self.reset_envs(seed=cfg.seed + self.updates)
        clock = Clock(self.train_time)
        bar = tqdm(total=n_updates * steps_per_rollout, initial=self.global_step, unit="step", disable=None if cfg.progress else True, dynamic_ncols=True)
        try:
            with self.stop, bar:
                while self.updates < n_updates and not self.stop:
                    obs, ended, metrics, finished = self.train_one_rollout(obs, ended, progress_remaining=1.0 - self.updates / n_updates)
                    self.train_time = clock.train_time()
                    self.record(metrics, finished)
                    self.check_warning_signs(metrics, progress=self.updates / n_updates)
                    bar.update(steps_per_rollout)
                    bar.set_postfix(sps=f"{metrics['time/sps']:.0f}", ret=f"{np.mean(self.recent_returns):.1f}" if self.recent_returns else "-")
                    if self.global_step >= next_eval:
                        with clock.paused():
                            self.evaluate_and_log()
                        next_eval += every
                        if self.solved():
                            log.info("eval return %.1f reached eval.stop_at=%g: stopping", self.eval_history[-1][1], cfg.eval.stop_at)
                            break
                    if cfg.checkpoint.every_updates > 0 and self.updates % cfg.checkpoint.every_updates == 0:
                        self.save("last.pt")
        except TrainingError as error:
            # last.pt keeps the last good state: nothing from the diverged update is saved
            self._finish("failed", error=str(error))
            raise
        except Exception:
            # anything else (a bug, an env that raised): no summary.json as before, but the
            # HParams session says it failed rather than staying open
            with suppress(Exception):  # never in place of the error itself
                self.logger.end_hparams("failed", {}, self.global_step)
            raise
        status = "interrupted" if self.stop and self.updates < n_updates else "finished"
        if status == "finished" and (not self.eval_history or self.eval_history[-1][0] != self.global_step):
            self.evaluate_and_log()
        self.save("last.pt")
        summary = self._finish(status)
        if status == "interrupted":
            log.warning("stopped by %s at step %d; checkpoints/last.pt saved", self.stop.name, self.global_step)
        else:
            log.info(
                "done: %d steps in %.1fs (%.0f SPS); eval return %.1f +/- %.1f",
                self.global_step, self.train_time, summary["sps"], summary["eval_return_mean"], summary["eval_return_std"],
            )
        return summary

    def solved(self) -> bool:
        """Whether the last evaluation reached ``eval.stop_at``."""
        stop_at = self.cfg.eval.get("stop_at")
        return stop_at is not None and bool(self.eval_history) and self.eval_history[-1][1] >= stop_at

    def train_one_rollout(self, obs: Any, ended: Any, progress_remaining: float) -> tuple[Any, Any, dict[str, float], list[tuple[float, int]]]:
        """Collect one rollout, compute its advantages, update the policy."""
        obs, ended, finished = self.collect(obs, ended)
        self.global_step += self.steps_per_rollout
        self._check_finite_rewards()
        self.compute_advantages(obs)
        # progress is measured at the start of the rollout so the last update still learns
        # (CleanRL's choice; SB3 measures after collection and spends its last update at lr 0)
        try:
            metrics = self.algo.update(self.rollout, progress_remaining=progress_remaining)
        except TrainingError as error:
            raise TrainingError(f"{error} in the update ending at step {self.global_step}") from None
        self._check_finite_parameters()
        self.updates += 1
        return obs, ended, metrics, finished

    def reset_envs(self, seed: int) -> tuple[Any, Any]:
        """Fresh episodes in every env: (first observations, "previous step ended" flags)."""
        obs, _ = self.env.reset(seed=seed)
        shape = self.env.num_envs
        ended = torch.zeros(shape, dtype=torch.bool, device=self.device) if self.to_env.native else np.zeros(shape, dtype=bool)
        if self.recurrent:  # zero state, as on resume: the envs' own state is not checkpointed either
            self.policy_state = self.policy.initial_state(shape, self.device)
            self.episode_starts = torch.ones(shape, dtype=torch.bool, device=self.device)
        return obs, ended

    def compute_advantages(self, next_obs: Any) -> None:
        """GAE advantages and value targets of the rollout, bootstrapped from V(next_obs)
        (nothing to do for algorithms that use Monte Carlo returns)."""
        if self.algo.needs_advantages:
            with torch.inference_mode():
                obs_t = to_tensor(next_obs, self.obs_space, self.device)
                if self.recurrent:  # V of the next obs, from the state the rollout ended in
                    last_value = self.policy.value(obs_t, self.policy_state, self.episode_starts)
                else:
                    last_value = self.policy.value(obs_t)
            self.rollout.compute_gae(last_value, self.algo.gamma, self.algo.gae_lambda)

    def record(self, metrics: dict[str, float], finished: list[tuple[float, int]]) -> None:
        """Episode statistics, progress history and the TensorBoard scalars of one update."""
        self.episodes += len(finished)
        self.recent_returns.extend(r for r, _ in finished)
        rolling = float(np.mean(self.recent_returns)) if self.recent_returns else math.nan
        self.progress_history.append((self.global_step, self.train_time, rolling))
        if finished:
            metrics["rollout/episode_return"] = float(np.mean([r for r, _ in finished]))
            metrics["rollout/episode_length"] = float(np.mean([n for _, n in finished]))
        metrics["time/sps"] = self.global_step / max(self.train_time, 1e-9)
        if self.updates % self.cfg.log_interval == 0:
            self.logger.log(metrics, self.global_step)
        every = self.logger.histogram_every
        if every > 0 and self.updates % every == 0:
            self.record_distributions()

    def start_records(self) -> None:
        """What TensorBoard shows of the run as a whole (rlexp.tb_records): its hyperparameters
        for the HParams dashboard, the job's Hydra overrides among them (read from the run
        dir: the trainer does not import Hydra), and the resolved config as text."""
        hparams = tb_records.run_hparams(self.cfg, tb_records.read_overrides(self.run_dir))
        self.logger.start_hparams(hparams, tb_records.group_name(hparams), step=self.global_step)
        self.logger.text("config", tb_records.config_markdown(self.cfg), self.global_step)

    def record_distributions(self) -> None:
        """Every ``logger.histogram_every`` updates: weight histograms and per-layer gradient
        norms (of the update's last gradient step), the rollout's advantages and value targets,
        PPO's ratio after the update, and the policy's action distribution on the rollout's states."""
        step, logger = self.global_step, self.logger
        logger.histograms({f"weights/{name}": param for name, param in self.policy.named_parameters()}, step)
        fast = self.algo.fast  # the numpy fast path keeps the gradient in one buffer of its own
        scalars = tb_records.gradient_norms(tb_records.parameter_gradients(self.policy, fast.grad if fast is not None else None))
        batch = self.rollout.batch()
        if self.algo.needs_advantages:  # Monte Carlo algorithms compute their returns inside the update
            logger.histograms({"rollout/advantages": batch.advantages, "rollout/returns": batch.returns}, step)
        action_scalars, counts = tb_records.action_records(self.policy, batch)
        if getattr(self.algo, "clip_range", None) is not None and len(batch):  # PPO: how far the update moved each sample
            with torch.no_grad():
                log_prob, _, _ = batch.evaluate(self.policy)
            logger.histograms({"train/ratio": (log_prob - batch.log_probs).exp()}, step)
        logger.log({**scalars, **action_scalars}, step)
        if counts is not None:
            logger.counts("actions/histogram", counts, step)

    def check_warning_signs(self, metrics: dict[str, float], progress: float) -> None:
        """The lesson's warning signs (rlexp.diagnostics): each one once, as a console line and a
        TensorBoard text entry; diagnostics=strict stops the run at the first."""
        if not self.diagnostics.enabled:
            return
        abs_reward = float(self.rollout.rewards_env.abs().max())
        abs_target, spread = 0.0, math.inf
        if self.algo.needs_advantages:
            targets = self.rollout.returns.reshape(-1)[self.rollout.valid_env.reshape(-1).to(self.device)]
            magnitude = targets.abs()
            abs_target = float(magnitude.max())
            spread = float(targets.std() / magnitude.mean().clamp_min(1e-8)) if targets.numel() > 1 else math.inf
        rolling = float(np.mean(self.recent_returns)) if self.recent_returns else math.nan
        normalized = bool(getattr(self.env_spec, "normalize_reward", False))
        for finding in self.diagnostics.check(metrics, progress, rolling, abs_reward, abs_target, normalized, spread):
            line = finding.line()
            log.warning("step %d: %s", self.global_step, line)
            self.logger.text(f"diagnostics/{finding.name}", line, self.global_step)
            if self.diagnostics.mode == "strict":
                raise TrainingError(f"{line} (diagnostics=strict stops here; diagnostics=warn goes on)")

    def _finish(self, status: str, error: Optional[str] = None) -> dict[str, Any]:
        summary = self.summary(status)
        if error:
            summary["error"] = error
        # the final hparams/* scalars and the HParams session's real end status
        self.logger.end_hparams(status, tb_records.final_metrics(summary, reward_threshold(self.env_spec.id)), self.global_step)
        write_json_atomic(self.run_dir / "summary.json", summary)
        self.close()
        return summary

    # -- divergence ---------------------------------------------------------------
    def _check_finite_rewards(self) -> None:
        if not bool(torch.isfinite(self.rollout.rewards_env).all()):
            raise TrainingError(f"the environment returned a non-finite reward in the rollout ending at step {self.global_step}")

    def _check_finite_parameters(self) -> None:
        """Non-finite losses and gradient norms stop the run at the end of their update (the
        algorithm's finish_update); this catches finite gradients that still produced
        NaN/Inf weights (an infinite learning rate, say)."""
        named = list(self.policy.named_parameters())
        if bool(torch.stack([torch.isfinite(param).all() for _, param in named]).all()):  # one host read
            return
        for name, param in named:
            if not torch.isfinite(param).all():
                raise TrainingError(f"parameter {name} became non-finite at step {self.global_step}")

    # -- evaluation ---------------------------------------------------------------
    def evaluate(self) -> np.ndarray:
        episodes = self.cfg.eval.episodes
        if self.eval_env is None:
            self.eval_env = self.env_spec.make(num_envs=episodes, training=False, device=self.eval_device)
        sync_obs_normalization(self.env, self.eval_env)
        policy = self.policy_on_eval_device()
        policy.eval()
        try:
            # a fixed seed per evaluation: every checkpoint is judged on the same episodes
            return evaluate_policy(policy, self.eval_env, episodes, self.eval_device, self.cfg.eval.deterministic, seed=self.cfg.seed + 10_000)
        finally:
            self.policy.train()

    def policy_on_eval_device(self) -> torch.nn.Module:
        """The policy itself, or (eval.device other than the training device) its copy there,
        refreshed from the current weights: one device-to-host copy per evaluation."""
        if self.eval_device == self.device:
            return self.policy
        if self.eval_policy is None:
            self.eval_policy = copy.deepcopy(self.policy).to(self.eval_device)
        self.eval_policy.load_state_dict(self.policy.state_dict())
        return self.eval_policy

    def evaluate_and_log(self) -> None:
        returns = self.evaluate()
        mean, std = float(returns.mean()), float(returns.std())
        self.eval_history.append((self.global_step, mean, std))
        self.logger.log({"eval/return_mean": mean, "eval/return_std": std}, self.global_step)
        log.info("step %d: eval return %.1f +/- %.1f over %d episodes", self.global_step, mean, std, len(returns))
        if self.cfg.eval.get("video"):
            self.log_eval_video()
        if mean > self.best_eval:
            self.best_eval = mean
            self.save("best.pt")

    def log_eval_video(self) -> None:
        """One deterministic episode, rendered, as a TensorBoard video (``eval.video=true``)."""
        spec = dataclasses.replace(self.env_spec, make_kwargs={**self.env_spec.make_kwargs, "render_mode": "rgb_array"})
        try:
            env = spec.make(num_envs=1, training=False, device=self.eval_device)
        except ConfigError as e:
            raise e.under("env") from None
        try:
            sync_obs_normalization(self.env, env)
            policy = self.policy_on_eval_device()
            policy.eval()
            frames = episode_frames(policy, env, self.eval_device, seed=self.cfg.seed + 10_000, max_frames=self.cfg.eval.get("video_frames", 500))
        finally:
            self.policy.train()
            env.close()
        self.logger.video("eval/video", frames, self.global_step, fps=int(env.metadata.get("render_fps") or 30))

    # -- checkpoints ----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.algo.optimizer.state_dict(),
            "global_step": self.global_step,
            "updates": self.updates,
            "episodes": self.episodes,
            "train_time": self.train_time,
            "recent_returns": list(self.recent_returns),
            "eval_history": [list(e) for e in self.eval_history],
            "best_eval": self.best_eval,
            "diagnostics": self.diagnostics.state(),
            **normalization_state(self.env),
            "rng": rng_state(),
            "spaces": spaces_signature(self.env),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue a run from its checkpoint; refuse one trained on other spaces or shapes."""
        if state.get("spaces") != spaces_signature(self.env):
            raise ConfigError("resume", f"checkpoint was trained on {state.get('spaces')}, this config gives {spaces_signature(self.env)}")
        try:
            self.policy.load_state_dict(state["policy"])
            self.algo.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError("resume", f"checkpoint does not fit this network/optimizer config ({first[:200]})") from None
        self.global_step, self.updates, self.episodes = state["global_step"], state["updates"], state["episodes"]
        self.train_time = state["train_time"]
        self.recent_returns.extend(state["recent_returns"])
        self.eval_history = [tuple(e) for e in state["eval_history"]]
        self.best_eval = state["best_eval"]
        # each sign once per run, resumed or not, and measured against the run's own start
        self.diagnostics.load(state.get("diagnostics"), fired=state.get("diagnostics_fired"),
                              progress=self.updates / self.n_updates)
        load_normalization_state(self.env, state)
        restore_rng_state(state["rng"])

    def save(self, name: str) -> None:
        save_checkpoint(self.run_dir / "checkpoints" / name, self.state())

    def summary(self, status: str) -> dict[str, Any]:
        last = self.eval_history[-1] if self.eval_history else (self.global_step, float("nan"), float("nan"))
        return {
            "status": status,
            "algo": type(self.algo).__name__,
            "env_id": self.env_spec.id,
            "seed": int(self.cfg.seed),
            "device": str(self.device),
            "steps": self.global_step,
            "updates": self.updates,
            "train_time_s": round(self.train_time, 3),
            "sps": self.global_step / max(self.train_time, 1e-9),
            "episodes": self.episodes,
            "rolling_return": float(np.mean(self.recent_returns)) if self.recent_returns else None,
            "eval_return_mean": last[1],
            "eval_return_std": last[2],
            "best_eval_return": self.best_eval if self.eval_history else None,
            "reached_stop_at": self.solved(),
            "eval_history": [list(e) for e in self.eval_history],
            "diagnostics": dict(self.diagnostics.fired),
        }

    def close(self) -> None:
        self.logger.close()
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()


def make_diagnostics(node: Any) -> Diagnostics:
    """The ``diagnostics`` group's checks (defaults where a saved config predates the group)."""
    settings = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    try:
        return Diagnostics(**settings)
    except ConfigError as e:
        raise e.under("diagnostics") from None
    except TypeError as e:
        raise ConfigError("diagnostics", str(e).replace("Diagnostics.__init__() ", "")) from None


def spaces_signature(env: gym.vector.VectorEnv) -> str:
    return f"obs {env.single_observation_space}, actions {env.single_action_space}"


class Clock:
    """Training wall time: resumes from ``already`` seconds and leaves evaluation out."""

    def __init__(self, already: float = 0.0):
        self.start, self.already, self.excluded = time.perf_counter(), already, 0.0

    def train_time(self) -> float:
        return self.already + time.perf_counter() - self.start - self.excluded

    @contextmanager
    def paused(self) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - begin

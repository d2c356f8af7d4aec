"""The run's schedule: collect a rollout, update, then the callbacks (records, warning signs,
progress, evaluation, checkpoints, the user's); at the end a last evaluation, last.pt and
summary.json.

The trainer builds the run's parts from its config and wires them together; it does no
collection (rlexp.run.collector), computes no targets (the algorithm does), and holds none of
the algorithm's hyperparameters. Backends are chosen here, once: the algorithm's numpy
fast path (``fast_cpu``), when it applies, acts in the collector and updates in the algorithm.
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlexp.algos.base import OnPolicyAlgorithm
from rlexp.builders import build, resolve_device
from rlexp.config import with_current_defaults
from rlexp.data.observations import MASK_KEY
from rlexp.data.rollout import Rollout
from rlexp.envs import EnvSpec, is_torch_env, reward_threshold
from rlexp.errors import ConfigError, TrainingError, require
from rlexp.networks.actor_critic import native_bf16
from rlexp.networks.heads import action_storage
from rlexp.run import records
from rlexp.run.callbacks import (Callback, CallbackList, Evaluation, PeriodicCheckpoint, PeriodicEvaluation, ProgressBar, Records,
                                 WarningSignsCheck)
from rlexp.run.checkpoint import load_checkpoint, restore_run_state, run_state, save_checkpoint
from rlexp.run import distributed
from rlexp.run.collector import Collector
from rlexp.run.episodes import Evaluator
from rlexp.run.info_metrics import InfoMetrics
from rlexp.run.selfplay import SelfPlay, opponent_from_setting
from rlexp.run.logger import NullLogger, make_logger, write_json_atomic
from rlexp.run.stopping import StopRequest
from rlexp.run.warning_signs import make_warning_signs

log = logging.getLogger("rlexp")

#: how the start-of-run line names the source of the action masks (env.action_mask)
MASK_SOURCE_WORDS = {"obs": "the observation's action_mask entry", "info": 'info["action_mask"]', "method": "the env's action_masks()"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: str | Path, callbacks: Iterable[Callback] = ()):
        cfg = with_current_defaults(cfg)  # a run saved by an older rlexp lacks the keys added since
        self.cfg, self.run_dir = cfg, Path(run_dir)
        require(cfg.total_steps >= 1, "total_steps", f"must be >= 1, got {cfg.total_steps}")
        require(cfg.torch_threads >= 1, "torch_threads", f"must be >= 1, got {cfg.torch_threads}")
        require(cfg.eval.episodes >= 1, "eval.episodes", f"must be >= 1, got {cfg.eval.episodes}")
        require(cfg.log_interval >= 1, "log_interval", f"must be >= 1, got {cfg.log_interval}")
        require(cfg.eval.video_frames >= 1, "eval.video_frames", f"must be >= 1, got {cfg.eval.video_frames}")
        torch.set_num_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        #: this process's rank among several (torchrun, distributed.nproc); None when it trains alone
        self.world = distributed.current()
        self.device = resolve_device(cfg.device)
        if self.world is not None and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.world.local_rank % torch.cuda.device_count())  # one GPU per rank where there are enough
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        try:
            eval_device = self.device if cfg.eval.device == "same" else resolve_device(cfg.eval.device)
        except ConfigError as e:
            raise e.under("eval") from None
        resume_state = load_checkpoint(cfg.resume, key="resume") if cfg.get("resume") else None
        self.warning_signs = make_warning_signs(cfg.get("diagnostics"))
        configured = cfg.get("callbacks") or []
        require(OmegaConf.is_list(configured) or isinstance(configured, list), "callbacks",
                f"must be a list of {{_target_: ...}} entries, got {configured!r}")
        user_callbacks = [*(build("callbacks", node) for node in configured), *callbacks]

        self.env_spec: EnvSpec = build("env", cfg.env)
        #: turn-based games: the pool of past selves the learner plays against (rlexp.run.selfplay)
        self.selfplay: Optional[SelfPlay] = None
        if getattr(self.env_spec, "kind", None) == "aec":
            sp = cfg.selfplay
            self.selfplay = SelfPlay(float(sp.latest_share), list(sp.opponents), int(sp.snapshot_every), int(sp.pool_size), float(sp.elo_k), seed=cfg.seed)
            self.env_spec.opponents = self.selfplay
        try:  # the env's reward normalisation discounts with the algorithm's gamma
            self.env = self.env_spec.make(training=True, gamma=float(cfg.algo.gamma), device=self.device)
        except ConfigError as e:
            raise e.under("env") from None
        self.policy = build("network", cfg.network, observation_space=self.env.single_observation_space,
                            action_space=self.env.single_action_space).to(self.device)
        if self.selfplay is not None:
            self.selfplay.attach(self.policy, self.env.single_observation_space, self.device)
            # evaluation plays env.opponent (a run directory is played by a copy of this network)
            self.env_spec.eval_opponents = opponent_from_setting(self.env_spec, self.policy, self.env.single_observation_space, self.device)
        if getattr(self.policy, "precision", "fp32") == "bf16" and not native_bf16(self.device):
            log.warning("network.precision=bf16: %s has no bfloat16 units, so autocast emulates them and runs "
                        "slower than float32 (network.precision=fp32)", self.device)
        self.algo: OnPolicyAlgorithm = build("algo", cfg.algo, policy=self.policy)
        self.data_parallel: Optional[distributed.DataParallel] = None
        if self.world is not None:
            dist_cfg = cfg.get("distributed") or {}
            self.data_parallel = distributed.DataParallel(self.world, str(dist_cfg.get("backend", "auto")), self.device)
            self.algo.data_parallel = self.data_parallel
        #: ranks training this run together (their steps all count)
        self.world_size = self.world.world_size if self.world is not None else 1
        self.steps_per_rollout = self.algo.n_steps * self.env.num_envs * self.world_size
        try:
            self.algo.check_rollout_size(self.steps_per_rollout)
        except ConfigError as e:
            raise e.under("algo") from None
        if cfg.compile:  # dynamic: minibatch sizes vary a little (autoreset steps are dropped)
            self.algo.loss = torch.compile(self.algo.loss, dynamic=True)
        # the backend, chosen once: a numpy fast path acts in the collector (not on torch-native
        # envs, which take torch actions) and updates in the algorithm
        if self.world is not None and str(cfg.fast_cpu).lower() == "true":
            raise ConfigError("fast_cpu", "the numpy fast path trains in one process; a run on several uses autograd "
                                          "(fast_cpu=auto or false)")
        fast_setting = "false" if self.world is not None else cfg.fast_cpu
        self.backend = self.algo.enable_fast_cpu(fast_setting, self.device, compiled=bool(cfg.compile))
        native_env = is_torch_env(self.env)
        self.rollout = Rollout(self.algo.n_steps, self.env.num_envs, self.env.single_observation_space,
                               *action_storage(self.env.single_action_space), self.device,
                               env_device=self.device if native_env else None,
                               state_shape=tuple(self.policy.initial_state(1).shape[1:]))
        act = self.backend.act_step if self.backend is not None and not native_env else None
        self.collector = Collector(self.env, self.policy, self.rollout, self.device, act=act,
                                   info_metrics=InfoMetrics(self.env_spec.info_reductions))
        self.evaluator = Evaluator(self.env_spec, self.env, self.policy, self.device, eval_device, cfg.eval.episodes,
                                   cfg.eval.deterministic, seed=cfg.seed + 10_000, video_frames=cfg.eval.video_frames)
        self.global_step = self.updates = 0
        self.train_time = 0.0
        self.eval_history: list[tuple[int, float, float]] = []
        # (env steps, training seconds, mean return of the last 100 episodes) after every update
        self.progress_history: list[tuple[int, float, float]] = []
        self.best_eval = -math.inf
        #: the last value of each env.info_metrics tag (rollout/<key>, eval/<key>), for summary.json
        self.info_values: dict[str, float] = {}
        if resume_state is not None:
            self.load_state(resume_state)
        if self.world is not None and not self.world.is_main:  # each rank samples its own actions
            seed_everything(distributed.rank_seed(cfg.seed + self.updates, self.world))
        #: the merged normalisation statistics every rank starts a rollout from (data-parallel)
        self.merged_normalization: Optional[dict[str, Any]] = None
        self.is_main = self.world is None or self.world.is_main
        if not self.is_main:  # rank 0 alone writes the run's records
            self.logger = NullLogger(self.run_dir)
            self.progress = ProgressBar(False)
            self.callbacks = CallbackList([])
            self.stop = StopRequest()
            self.clock = Clock()
            return
        # on resume, TensorBoard hides events the crashed run wrote after the checkpoint
        self.logger = make_logger(cfg, self.run_dir, purge_step=self.global_step + 1 if resume_state else None)
        hparams = records.run_hparams(cfg, records.read_overrides(self.run_dir))
        self.logger.start_hparams(hparams, records.group_name(hparams), step=self.global_step,
                                  metrics=records.hparams_metrics(self.env_spec.info_reductions))
        self.logger.text("config", records.config_markdown(cfg), self.global_step)
        self.progress = ProgressBar(cfg.progress)
        self.callbacks = CallbackList([Records(cfg.log_interval), WarningSignsCheck(), self.progress,
                                       PeriodicEvaluation(cfg.eval.every_steps, cfg.eval.stop_at),
                                       PeriodicCheckpoint(cfg.checkpoint.every_updates), *user_callbacks])
        self.stop = StopRequest()
        self.clock = Clock()

    @property
    def n_updates(self) -> int:
        """Updates in the whole run (the last rollout may overshoot total_steps)."""
        return math.ceil(self.cfg.total_steps / self.steps_per_rollout)

    # -- the schedule -----------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        n_updates = self.n_updates
        masks = getattr(self.env_spec, "mask_source", "none")
        if self.backend is not None:
            path = " (numpy fast path: fast_cpu)"
        else:  # the fast path has no masks: say why it is not taken where it otherwise might be
            path = " (autograd: the numpy fast path has no action masks)" if masks != "none" and self.device.type == "cpu" else " (autograd)"
        if self.world is not None:
            path = " (autograd: the numpy fast path trains in one process)"
            ranks = (f" on {self.world_size} ranks: global batch {self.steps_per_rollout} = {self.world_size} x "
                     f"{self.algo.n_steps * self.env.num_envs} steps")
            if hasattr(self.algo, "batch_size"):
                ranks += f", minibatches of {self.world_size} x {self.algo.batch_size}"
        else:
            ranks = ""
        log.info("%s on %s: %d steps (%d updates of %d) on %s%s%s%s%s; run dir %s", type(self.algo).__name__, self.env_spec.id,
                 n_updates * self.steps_per_rollout, n_updates, self.steps_per_rollout, self.device, ranks, path,
                 f", action masks from {MASK_SOURCE_WORDS[masks]}" if masks != "none" else "",
                 f", resuming at step {self.global_step}" if self.global_step else "", self.run_dir)
        # fresh episodes on resume: the environments' internal state is not checkpointed
        # each rank's envs seeded past the ranks before it: two ranks of n envs play the episodes
        # of one process of 2n envs
        rank = self.world.rank if self.world is not None else 0
        self.collector.reset(seed=self.cfg.seed + self.updates + rank * self.env.num_envs)
        self.clock = Clock(self.train_time)
        self.interrupted = False
        # the failure is written while the stop request still holds the signals: when a rank is
        # lost, the launcher stops the others at once, and rank 0 must not die halfway through
        # its summary (it would leave neither the summary nor the reason in train.log)
        with self.stop:
            try:
                if self.data_parallel is not None:  # one start for every rank, whatever each one's init
                    self.data_parallel.broadcast_parameters(self.policy)
                self.callbacks.on_run_start(self)
                while self.updates < n_updates and not self.stopping():
                    metrics = self.train_one_rollout(progress_remaining=1.0 - self.updates / n_updates)
                    self.callbacks.on_update_end(self, metrics)
            except TrainingError as error:
                self.stop.failing = True  # (a lost rank's reason is in the log files already: DataParallel.lost)
                # last.pt keeps the last good state: nothing from the diverged update is saved
                if self.is_main:
                    self.finish("failed", error=str(error))
                else:
                    self.close()
                raise
            except Exception:
                self.stop.failing = True
                # anything else (a bug, an env that raised): no summary.json, but the HParams session
                # says it failed rather than staying open
                with suppress(Exception):  # never in place of the error itself
                    self.progress.close()
                    self.logger.end_hparams("failed", {}, self.global_step)
                raise
        # a stopping callback may name its own end (OptunaPruning: "pruned")
        status = "interrupted" if self.interrupted and self.updates < n_updates else self.callbacks.stop_status
        if not self.is_main:  # rank 0 evaluates, saves and writes the summary
            self.close()
            self.data_parallel.finish_together()
            return {"status": status, "steps": self.global_step, "updates": self.updates, "rank": self.world.rank}
        if status != "interrupted" and (not self.eval_history or self.eval_history[-1][0] != self.global_step):
            self.evaluate_and_log()
        self.save("last.pt")
        summary = self.finish(status)
        if self.data_parallel is not None:
            self.data_parallel.finish_together()
        if status == "interrupted":
            log.warning("stopped by %s at step %d; checkpoints/last.pt saved", self.stop.name, self.global_step)
        else:
            if self.callbacks.stopped_by is not None:
                log.info("stopped by %s at step %d", self.callbacks.stopped_by, self.global_step)
            log.info("done: %d steps in %.1fs (%.0f SPS); eval return %.1f +/- %.1f", self.global_step, self.train_time,
                     summary["sps"], summary["eval_return_mean"], summary["eval_return_std"])
        return summary

    def stopping(self) -> bool:
        """Whether to stop before the next rollout: a signal, or a callback that asked to. In a
        data-parallel run every rank stops when one has to."""
        signalled, asked = bool(self.stop), self.callbacks.stopped_by is not None
        if self.data_parallel is not None:
            signalled, asked = self.data_parallel.flags(signalled, asked)
        self.interrupted = signalled
        return signalled or asked

    def train_one_rollout(self, progress_remaining: float) -> dict[str, float]:
        """Collect one rollout and update the policy on it; the update's metrics, with the
        rollout's episode statistics and the speed."""
        finished = self.collector.collect()
        self.global_step += self.steps_per_rollout
        dp = self.data_parallel
        if dp is not None:
            dp.step = self.global_step
            self.merged_normalization = dp.merge_normalization(self.env, self.merged_normalization)
            # the episodes every rank finished, in the records and the rolling return
            others = [f for rank, part in enumerate(dp.gather(finished, "episode statistics")) if rank != dp.rank for f in part]
            self.collector.episodes += len(others)
            self.collector.recent_returns.extend(r for r, _ in others)
            finished = [*finished, *others]
        if not bool(torch.isfinite(self.rollout.rewards_env).all()):
            raise TrainingError(f"the environment returned a non-finite reward in the rollout ending at step {self.global_step}")
        last_value = self.collector.bootstrap_value()
        # progress is measured at the start of the rollout so the last update still learns
        # (CleanRL's choice; SB3 measures after collection and spends its last update at lr 0)
        try:
            metrics = self.algo.update(self.rollout, last_value, progress_remaining=progress_remaining)
        except distributed.RankLost:
            raise  # it names its step already
        except TrainingError as error:
            raise TrainingError(f"{error} in the update ending at step {self.global_step}") from None
        self.check_finite_parameters()
        self.updates += 1
        if self.selfplay is not None:  # the opponents of the next rollout
            self.selfplay.after_update(self.updates)
            metrics.update(self.selfplay.metrics())
        if dp is not None:  # one policy on every rank, bit for bit, or the run stops here
            metrics["distributed/param_checksum"] = float(dp.check_same_parameters(self.policy, self.updates) % 2**24)
        self.train_time = self.clock.train_time()
        self.progress_history.append((self.global_step, self.train_time, self.collector.rolling_return()))
        if finished:
            metrics["rollout/episode_return"] = float(np.mean([r for r, _ in finished]))
            metrics["rollout/episode_length"] = float(np.mean([n for _, n in finished]))
        info_values = self.collector.info_metrics.pop("rollout")
        metrics.update(info_values)
        self.info_values.update(info_values)
        if isinstance(self.rollout.obs, dict) and MASK_KEY in self.rollout.obs and getattr(self.policy, "masked", False):
            # the mean share of allowed choices over the rollout's steps (autoreset steps left out)
            valid = self.rollout.valid_env.to(self.device)
            metrics["rollout/valid_action_fraction"] = float(self.rollout.obs[MASK_KEY][valid].float().mean())
        metrics["time/sps"] = self.global_step / max(self.train_time, 1e-9)
        return metrics

    def check_finite_parameters(self) -> None:
        """Non-finite losses and gradient norms stop the run at the end of their update (the
        algorithm's finish_update); this catches finite gradients that still produced
        NaN/Inf weights (an infinite learning rate, say)."""
        named = list(self.policy.named_parameters())
        if bool(torch.stack([torch.isfinite(param).all() for _, param in named]).all()):  # one host read
            return
        for name, param in named:
            if not torch.isfinite(param).all():
                raise TrainingError(f"parameter {name} became non-finite at step {self.global_step}")

    def solved(self) -> bool:
        """Whether the last evaluation reached ``eval.stop_at``."""
        stop_at = self.cfg.eval.stop_at
        return stop_at is not None and bool(self.eval_history) and self.eval_history[-1][1] >= stop_at

    # -- evaluation -------------------------------------------------------------------
    def evaluate_and_log(self) -> Evaluation:
        returns = self.evaluator.returns()
        evaluation = Evaluation(self.global_step, float(returns.mean()), float(returns.std()), returns)
        self.eval_history.append((self.global_step, evaluation.mean, evaluation.std))
        info_values = self.evaluator.info_metrics.pop("eval")
        self.info_values.update(info_values)
        self.logger.log({"eval/return_mean": evaluation.mean, "eval/return_std": evaluation.std, **info_values}, self.global_step)
        if len(self.eval_history) == 1:  # a key asked for but never seen: say so once
            self.collector.info_metrics.warn_missing(self.env_spec.id, [self.evaluator.info_metrics])
        log.info("step %d: eval return %.1f +/- %.1f over %d episodes", self.global_step, evaluation.mean, evaluation.std, len(returns))
        if self.cfg.eval.video:
            frames, fps = self.evaluator.video()
            self.logger.video("eval/video", frames, self.global_step, fps=fps)
        if evaluation.mean > self.best_eval:
            self.best_eval = evaluation.mean
            self.save("best.pt")
        self.callbacks.on_evaluation_end(self, evaluation)
        return evaluation

    # -- checkpoints and the summary ----------------------------------------------------
    def state(self) -> dict[str, Any]:
        return run_state(self)

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue a run from its checkpoint; refuse one trained on other spaces or shapes."""
        restore_run_state(self, state)

    def save(self, name: str) -> None:
        save_checkpoint(self.run_dir / "checkpoints" / name, self.state())

    def finish(self, status: str, error: Optional[str] = None) -> dict[str, Any]:
        summary = self.summary(status)
        if error:
            summary["error"] = error
        self.callbacks.on_run_end(self, summary)
        # the final hparams/* scalars and the HParams session's real end status
        self.logger.end_hparams(status, records.final_metrics(summary, reward_threshold(self.env_spec.id)), self.global_step)
        write_json_atomic(self.run_dir / "summary.json", summary)
        self.close()
        return summary

    def summary(self, status: str) -> dict[str, Any]:
        return records.run_summary(self, status)

    def close(self) -> None:
        self.progress.close()
        self.logger.close()
        self.env.close()
        self.evaluator.close()


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

"""Proximal Policy Optimization with the clipped surrogate objective (Schulman et al. 2017)."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch

from rlexp.algos import ppo_fast_cpu
from rlexp.algos.base import SCHEDULES, OnPolicyAlgorithm, fast_cpu_setting
from rlexp.errors import require
from rlexp.data.rollout import Batch, Rollout


class PPO(OnPolicyAlgorithm):
    def __init__(
        self,
        *,
        batch_size: int = 64,
        n_epochs: int = 10,
        clip_range: float = 0.2,
        clip_range_schedule: str = "constant",
        clip_range_vf: Optional[float] = None,
        target_kl: Optional[float] = None,
        sequence_length: Optional[int] = None,
        **common,
    ):
        super().__init__(**common)
        require(batch_size >= 1, "batch_size", f"must be >= 1, got {batch_size}")
        require(n_epochs >= 1, "n_epochs", f"must be >= 1, got {n_epochs}")
        require(clip_range > 0, "clip_range", f"must be > 0, got {clip_range}")
        require(clip_range_schedule in SCHEDULES, "clip_range_schedule", f"must be one of {', '.join(SCHEDULES)}")
        require(clip_range_vf is None or clip_range_vf > 0, "clip_range_vf", f"must be > 0 or null, got {clip_range_vf}")
        require(target_kl is None or target_kl > 0, "target_kl", f"must be > 0 or null, got {target_kl}")
        require(sequence_length is None or (sequence_length >= 1 and self.n_steps % sequence_length == 0), "sequence_length",
                f"must divide n_steps = {self.n_steps} (or be null: whole rollouts), got {sequence_length}")
        self.sequence_length = int(sequence_length or self.n_steps)
        self.batch_size, self.n_epochs = int(batch_size), int(n_epochs)
        self.initial_clip_range, self.clip_range_schedule = float(clip_range), clip_range_schedule
        self.clip_range = self.initial_clip_range
        self.clip_range_vf, self.target_kl = clip_range_vf, target_kl

    def enable_fast_cpu(self, setting: Any, device: torch.device, compiled: bool) -> Optional[ppo_fast_cpu.FastActorCritic]:
        setting = fast_cpu_setting(setting)
        if type(self) is not PPO or setting == "false":  # a subclass may change the loss the backend writes out by hand
            return super().enable_fast_cpu(setting, device, compiled)
        self.fast = ppo_fast_cpu.select(setting == "true", self.policy, self.optimizer, device, compiled)
        return self.fast

    def check_rollout_size(self, steps_per_rollout: int) -> None:
        require(self.batch_size <= steps_per_rollout, "batch_size", f"{self.batch_size} is larger than n_steps * num_envs = {steps_per_rollout}")

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        log_prob, entropy, value = batch.evaluate_actions(self.policy)
        advantages = self.normalized(batch.advantages)  # per minibatch, as in SB3 and CleanRL

        # clipped surrogate: take the pessimistic of the unclipped and clipped objectives
        log_ratio = log_prob - batch.log_probs
        ratio = log_ratio.exp()
        eps = self.clip_range
        surrogate = torch.min(ratio * advantages, ratio.clamp(1 - eps, 1 + eps) * advantages)
        policy_loss = -surrogate.mean()

        # value regression on the GAE returns; optionally clipped around the old value
        # estimate, taking the larger of the two errors (OpenAI baselines' PPO2)
        value_error = (value - batch.returns).pow(2)
        if self.clip_range_vf is not None:
            clipped = batch.values + (value - batch.values).clamp(-self.clip_range_vf, self.clip_range_vf)
            value_error = torch.max(value_error, (clipped - batch.returns).pow(2))
        value_loss = value_error.mean()

        entropy_mean = entropy.mean()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()  # the low-variance k3 estimator of KL(old||new)
            clip_fraction = ((ratio - 1).abs() > eps).float().mean()
        return {
            "loss/policy": policy_loss,
            "loss/value": self.vf_coef * value_loss,
            "loss/entropy": -self.ent_coef * entropy_mean,
            "train/entropy": entropy_mean.detach(),
            "train/approx_kl": approx_kl,
            "train/clip_fraction": clip_fraction,
        }

    def update(self, rollout: Rollout, last_value: torch.Tensor, progress_remaining: float) -> dict[str, float]:
        self.compute_targets(rollout, last_value)
        self.set_progress(progress_remaining)
        self.clip_range = self.scheduled(self.initial_clip_range, self.clip_range_schedule, progress_remaining)
        batch = rollout.batch()
        if self.fast is not None:
            metrics, stopped_early = self._update_fast(rollout, batch)
        else:
            metrics, stopped_early = self._update_autograd(rollout, batch)
        metrics["train/clip_range"] = self.clip_range
        metrics["train/epochs_stopped_early"] = float(stopped_early)
        return metrics

    def histograms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Also the ratio after the update: how far the update moved each sample."""
        found = super().histograms(batch)
        if len(batch):
            with torch.no_grad():
                log_prob, _, _ = batch.evaluate_actions(self.policy)
            found["train/ratio"] = (log_prob - batch.log_probs).exp()
        return found

    def _epochs(self, rollout: Rollout, batch: Batch, step: Callable[[Batch], Optional[Any]]) -> tuple[list[Any], bool]:
        """n_epochs passes of shuffled minibatches through ``step``; a step that returns None
        stops the whole update (SB3's target_kl early stop). Returns (results, stopped early)."""
        results = []
        # data-parallel: every rank cuts its samples into the same number of minibatches
        count = self.data_parallel.minibatch_count(len(batch), self.batch_size) if self.data_parallel is not None else None
        for _ in range(self.n_epochs):
            for minibatch in rollout.minibatches(batch, self.batch_size, self.sequence_length, count=count):
                result = step(minibatch)
                if result is None:
                    return results, True
                results.append(result)
        return results, False

    def _update_autograd(self, rollout: Rollout, batch: Batch) -> tuple[dict[str, float], bool]:
        def step(minibatch: Batch) -> Optional[dict[str, torch.Tensor]]:
            terms = self.loss(minibatch)
            # SB3's early stop: skip the step once the policy has moved too far
            if self.target_kl is not None and self.minibatch_kl(terms["train/approx_kl"], len(minibatch)) > 1.5 * self.target_kl:
                return None
            return self.gradient_step(terms, n=len(minibatch))

        steps, stopped_early = self._epochs(rollout, batch, step)
        metrics = self.finish_update(steps, batch)
        if steps:  # the policy has not moved yet: its ratio must be exactly 1 (rlexp.run.warning_signs checks)
            metrics["train/first_minibatch_kl"] = float(steps[0]["train/approx_kl"])
        return metrics, stopped_early

    def minibatch_kl(self, kl: torch.Tensor, n: int) -> float:
        """The minibatch's approximate KL: over every rank's minibatch in a data-parallel run,
        so that all ranks stop early together."""
        return self.data_parallel.weighted_mean(kl, n) if self.data_parallel is not None else float(kl.item())

    def _update_fast(self, rollout: Rollout, batch: Batch) -> tuple[dict[str, float], bool]:
        """The same epochs and minibatches, each step computed by rlexp.algos.ppo_fast_cpu in numpy."""
        fast = self.fast
        fast.attach_optimizer_state()  # after a resume, take over the loaded Adam state
        settings = dict(clip_range=self.clip_range, clip_range_vf=self.clip_range_vf, ent_coef=self.ent_coef, vf_coef=self.vf_coef,
                        normalize_advantage=self.normalize_advantage, max_grad_norm=self.max_grad_norm,
                        lr=self.optimizer.param_groups[0]["lr"],
                        kl_limit=1.5 * self.target_kl if self.target_kl is not None else None)
        rows, stopped_early = self._epochs(rollout, batch, lambda minibatch: fast.ppo_step(tuple(f.numpy() for f in minibatch.flat_fields()), **settings))
        fast.sync_step_count()
        metrics = self.summarize_steps(list(ppo_fast_cpu.STEP_KEYS), np.stack(rows) if rows else None, batch)
        if rows:
            metrics["train/first_minibatch_kl"] = float(rows[0][ppo_fast_cpu.STEP_KEYS.index("train/approx_kl")])
        return metrics, stopped_early

"""What every on-policy algorithm shares: the optimiser, the schedule, one gradient step.

An algorithm's ``loss(batch)`` returns a dict: ``loss/*`` entries are the weighted
terms of the objective (they carry gradients and are summed into ``loss/total``),
everything else is a detached diagnostic (``train/approx_kl``, ``train/entropy``...).
``update(rollout, last_value, progress_remaining)`` computes the rollout's targets (GAE from
the bootstrap value ``last_value``, or Monte Carlo returns: each algorithm its own, with the
pure functions of rlexp.data.returns), turns the rollout into gradient steps and returns the
mean of every entry over those steps, ready to be logged. The loop that calls it holds none
of the algorithm's hyperparameters.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlexp.algos.kl import approx_kl, approx_kl_after_step
from rlexp.errors import ConfigError, TrainingError, require
from rlexp.data.returns import explained_variance, gae
from rlexp.data.rollout import Batch, Rollout

SCHEDULES = ("constant", "linear")


def fast_cpu_setting(setting: Any) -> str:
    """``fast_cpu`` as one of auto | true | false (YAML may give a bool)."""
    setting = {True: "true", False: "false"}.get(setting, setting) if isinstance(setting, bool) else setting
    if setting not in ("auto", "true", "false"):
        raise ConfigError("fast_cpu", f"must be auto, true or false, got {setting!r}")
    return setting


class OnPolicyAlgorithm:
    #: whether this algorithm learns from GAE advantages and value targets (else: Monte Carlo returns)
    needs_advantages: bool = True
    #: a numpy backend that acts and updates in place of autograd (PPO's: rlexp.algos.ppo_fast_cpu),
    #: set by enable_fast_cpu; None: everything runs through torch
    fast: Any = None
    #: the run's collectives when it trains on several processes (rlexp.run.distributed.DataParallel,
    #: set by the trainer): gradients, advantage statistics and early stops then agree across
    #: ranks; None in a run of one process
    data_parallel: Any = None

    def __init__(
        self,
        policy: nn.Module,
        learning_rate: float,
        n_steps: int,
        gamma: float,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: Optional[float] = 0.5,
        normalize_advantage: bool = True,
        lr_schedule: str = "constant",
        lr_warmup: float = 0.0,
        optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
    ):
        require(learning_rate > 0, "learning_rate", f"must be > 0, got {learning_rate}")
        require(lr_schedule in SCHEDULES, "lr_schedule", f"must be one of {', '.join(SCHEDULES)}, got {lr_schedule!r}")
        require(0 <= lr_warmup < 1, "lr_warmup", f"must be a fraction of training in [0, 1), got {lr_warmup}")
        require(n_steps >= 1, "n_steps", f"must be >= 1, got {n_steps}")
        require(0 < gamma <= 1, "gamma", f"must be in (0, 1], got {gamma}")
        require(0 <= gae_lambda <= 1, "gae_lambda", f"must be in [0, 1], got {gae_lambda}")
        require(ent_coef >= 0, "ent_coef", f"must be >= 0, got {ent_coef}")
        require(vf_coef >= 0, "vf_coef", f"must be >= 0, got {vf_coef}")
        require(max_grad_norm is None or max_grad_norm > 0, "max_grad_norm", f"must be > 0 or null, got {max_grad_norm}")
        self.policy = policy
        self.learning_rate, self.lr_schedule, self.lr_warmup = float(learning_rate), lr_schedule, float(lr_warmup)
        self.n_steps, self.gamma, self.gae_lambda = int(n_steps), float(gamma), float(gae_lambda)
        self.ent_coef, self.vf_coef = float(ent_coef), float(vf_coef)
        self.max_grad_norm = max_grad_norm
        self.normalize_advantage = normalize_advantage
        make_optimizer = optimizer or (lambda params, lr: torch.optim.Adam(params, lr=lr, eps=1e-5))
        self.optimizer = make_optimizer(policy.parameters(), lr=self.learning_rate)

    # -- schedule -----------------------------------------------------------------
    def scheduled(self, initial: float, schedule: str, progress_remaining: float) -> float:
        """SB3's convention: progress_remaining goes from 1 (start) to 0 (end of training)."""
        return initial * progress_remaining if schedule == "linear" else initial

    def set_progress(self, progress_remaining: float) -> None:
        lr = self.scheduled(self.learning_rate, self.lr_schedule, progress_remaining)
        progress = 1.0 - progress_remaining
        if progress < self.lr_warmup:  # linear warm-up from 0 over the first lr_warmup of training
            lr *= progress / self.lr_warmup
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- what subclasses write ----------------------------------------------------
    def check_rollout_size(self, steps_per_rollout: int) -> None:
        """Refuse settings that do not fit a rollout of ``steps_per_rollout`` steps (PPO's batch_size)."""

    def enable_fast_cpu(self, setting: Any, device: torch.device, compiled: bool) -> Any:
        """``fast_cpu=<setting>``: switch on this algorithm's numpy backend where it has one and
        it applies (returns it), or keep autograd (returns None). Only PPO has one."""
        if fast_cpu_setting(setting) == "true":
            raise ConfigError("fast_cpu", f"cannot be used here: it implements PPO only (algo is {type(self).__name__}) "
                                          "(fast_cpu=auto falls back to autograd)")
        return None

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def update(self, rollout: Rollout, last_value: torch.Tensor, progress_remaining: float) -> dict[str, float]:
        raise NotImplementedError

    # -- targets, and what the records and warning signs read of them ---------------
    def compute_targets(self, rollout: Rollout, last_value: torch.Tensor) -> None:
        """GAE advantages and value targets of the rollout, in place, bootstrapped from
        ``last_value`` = V(s_T) (A2C and PPO; REINFORCE has Monte Carlo returns of its own)."""
        rewards, terminated, episode_end, _ = rollout.env_tensors()
        next_values = torch.cat([rollout.values[1:], last_value.unsqueeze(0)])
        rollout.advantages[:] = gae(rewards, rollout.values, next_values, terminated, episode_end, self.gamma, self.gae_lambda)
        rollout.returns[:] = rollout.advantages + rollout.values

    def value_targets(self, rollout: Rollout) -> Optional[torch.Tensor]:
        """The value targets of the last update's valid steps, for the warning signs' scale
        checks; None where the algorithm computes no GAE targets."""
        if not self.needs_advantages:
            return None
        return rollout.returns.reshape(-1)[rollout.valid_env.reshape(-1).to(rollout.device)]

    def histograms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Distributions of the last update worth a TensorBoard histogram: the advantages and
        value targets (Monte Carlo algorithms compute their returns inside the update)."""
        if not self.needs_advantages:
            return {}
        return {"rollout/advantages": batch.advantages, "rollout/returns": batch.returns}

    # -- shared mechanics ---------------------------------------------------------
    def normalized(self, advantages: torch.Tensor) -> torch.Tensor:
        if not self.normalize_advantage:
            return advantages
        return self.standardized(advantages)

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / (std + 1e-8) over the batch (over every rank's batch in a data-parallel
        run); as it is when there are fewer than two values."""
        if self.data_parallel is not None:
            stats = self.data_parallel.mean_std(x)
            if stats is None:
                return x
            mean, std = stats
        else:
            if x.numel() < 2:
                return x
            mean, std = x.mean(), x.std()
        return (x - mean) / (std + 1e-8)

    def gradient_step(self, terms: dict[str, torch.Tensor], n: Optional[int] = None) -> dict[str, torch.Tensor]:
        """Sum the ``loss/*`` terms, backpropagate, clip the gradient norm, step. In a
        data-parallel run the ranks' gradients are averaged first, each weighted by its ``n``
        samples (the loss is a mean over them)."""
        total = sum(value for key, value in terms.items() if key.startswith("loss/"))
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.data_parallel is not None:
            require(n is not None, "algo", "a data-parallel gradient step needs its sample count")
            self.data_parallel.average_gradients(params, n)
        max_norm = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        # no host read here: finish_update checks every step's loss and gradient norm once per
        # update and names the first non-finite one (the trainer then stops without saving)
        self.optimizer.step()
        return {**{k: v.detach() for k, v in terms.items()}, "loss/total": total.detach(), "train/grad_norm": grad_norm}

    def policy_gradient_terms(
        self,
        batch: Batch,
        log_prob: torch.Tensor,
        weights: torch.Tensor,
        entropy: torch.Tensor,
        value: Optional[torch.Tensor] = None,
        value_targets: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """The plain policy-gradient objective that REINFORCE, its baseline variant and A2C
        share; they differ only in the ``weights`` (G_t, G_t - V(s_t), the GAE advantage):

            loss/policy  = -mean(log pi(a_t|s_t) * weight_t)
            loss/value   = vf_coef * mean((V(s_t) - target_t)^2)     (when V is learnt)
            loss/entropy = -ent_coef * mean(entropy)
        """
        entropy_mean = entropy.mean()
        terms = {"loss/policy": -(log_prob * weights).mean()}
        if value is not None:
            terms["loss/value"] = self.vf_coef * F.mse_loss(value, value_targets)
        terms["loss/entropy"] = -self.ent_coef * entropy_mean
        terms["train/entropy"] = entropy_mean.detach()
        # KL from the same forward pass: 0 when the batch is fresh from this policy
        terms["train/approx_kl"] = approx_kl(log_prob, batch.log_probs)
        return terms

    def single_step_update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on the whole batch. The loss's own KL is 0 then (the batch
        comes from this very policy), so log how far the step moved the policy instead."""
        step = self.gradient_step(self.loss(batch), n=len(batch))
        step["train/approx_kl"] = approx_kl_after_step(self.policy, batch)
        return self.finish_update([step], batch)

    def finish_update(self, steps: list[dict[str, torch.Tensor]], batch: Batch) -> dict[str, float]:
        """Average the per-step metrics, stop on a non-finite loss or gradient norm, and add
        the rollout-level metrics. The steps' numbers reach the host in one copy."""
        keys = list(dict.fromkeys(key for step in steps for key in step))
        per_step = torch.stack([torch.stack([step[k] for k in keys]).float() for step in steps]).cpu().numpy() if steps else None
        return self.summarize_steps(keys, per_step, batch)

    def summarize_steps(self, keys: list[str], per_step: Optional[np.ndarray], batch: Batch) -> dict[str, float]:
        """``per_step``: one row per gradient step, one column per key (None: no step)."""
        metrics: dict[str, Any] = {}
        if per_step is not None and len(per_step):
            checked = [i for i, k in enumerate(keys) if k.startswith("loss/") or k == "train/grad_norm"]
            finite = np.isfinite(per_step[:, checked]).all(axis=1)
            if not finite.all():
                first = int(np.argmin(finite))
                raise TrainingError(f"{non_finite_report(keys, per_step[first])} at gradient step {first + 1}")
            metrics = dict(zip(keys, per_step.astype(np.float64).mean(axis=0).tolist()))  # float64: no overflow
        metrics["train/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        if self.needs_advantages:
            metrics["train/explained_variance"] = explained_variance(batch.values, batch.returns)
        return metrics


def non_finite_report(keys: list[str], row: np.ndarray) -> str:
    """The non-finite loss terms of one gradient step's row, else its gradient norm."""
    bad = [f"{key} is {value}" for key, value in zip(keys, row.tolist())
           if key.startswith("loss/") and key != "loss/total" and not math.isfinite(value)]
    return ", ".join(bad) if bad else f"train/grad_norm is {row[keys.index('train/grad_norm')]}"

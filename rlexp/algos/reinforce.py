"""REINFORCE (Williams 1992): the Monte Carlo policy gradient.

    grad J = E[ sum_t grad log pi(a_t | s_t) * G_t ],   G_t = sum_k gamma^k r_{t+k}

G_t is the discounted return of the rest of the episode as it really happened:
nothing is bootstrapped from a value estimate. So a step can only be learnt from
once its episode has ended; the steps of an episode still running when the rollout
window closes are dropped rather than given an invented return. ``n_steps`` (per
environment) must therefore be long enough to hold whole episodes: the share of
steps that could be used is logged as ``train/finished_fraction``.
"""

from __future__ import annotations

import torch

from rlexp.algos.base import OnPolicyAlgorithm
from rlexp.data.returns import discounted_returns, explained_variance, finished_mask
from rlexp.data.rollout import Batch, Rollout


class REINFORCE(OnPolicyAlgorithm):
    needs_advantages = False  # Monte Carlo returns only: no GAE, nothing bootstrapped
    learns_value = False

    def __init__(self, *, normalize_returns: bool = False, **common):
        super().__init__(normalize_advantage=False, **common)  # REINFORCE has no advantage but G_t
        self.normalize_returns = normalize_returns

    def monte_carlo_returns(self, batch: Batch) -> torch.Tensor:
        """G_t, standardised over the rollout when ``normalize_returns`` is set (a
        batch-mean baseline and a step size that does not grow with the returns)."""
        return self.standardized(batch.returns) if self.normalize_returns else batch.returns

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        log_prob, entropy, _ = batch.evaluate_actions(self.policy)
        # -mean(log pi * G) - ent_coef * entropy: no value function, nothing bootstrapped
        return self.policy_gradient_terms(batch, log_prob, self.monte_carlo_returns(batch), entropy)

    def monte_carlo_batch(self, rollout: Rollout) -> tuple[Batch, torch.Tensor]:
        """The steps whose episode ended inside the window, with their returns G_t
        (the batch's ``advantages`` field holds G_t too: it is REINFORCE's advantage).
        Also returns the number of valid steps in the window."""
        rewards, _, episode_end, valid = rollout.env_tensors()
        returns = discounted_returns(rewards, episode_end, self.gamma)
        # `valid` is False on Gymnasium's autoreset steps (reset observation, reward 0)
        keep = finished_mask(episode_end) & valid
        g = returns[keep]
        batch = rollout.batch(keep)
        return Batch(batch.obs, batch.actions, batch.log_probs, batch.values, g, g, batch.seq), valid.sum()

    def update(self, rollout: Rollout, last_value: torch.Tensor, progress_remaining: float) -> dict[str, float]:
        """``last_value`` is not used: a Monte Carlo return bootstraps from nothing."""
        self.set_progress(progress_remaining)
        batch, n_valid = self.monte_carlo_batch(rollout)
        finished_fraction = len(batch) / max(int(n_valid), 1)
        # data-parallel: every rank steps or none does, so one rank whose window holds no whole
        # episode makes them all skip this update
        empty = self.data_parallel.any(len(batch) == 0) if self.data_parallel is not None else len(batch) == 0
        if empty:
            # no episode ended in this window (n_steps shorter than an episode): nothing to learn from
            return {
                "train/skipped_update": 1.0,
                "train/finished_fraction": finished_fraction,
                "train/learning_rate": self.optimizer.param_groups[0]["lr"],
            }
        metrics = self.single_step_update(batch)
        metrics["train/skipped_update"] = 0.0
        metrics["train/finished_fraction"] = finished_fraction
        if self.learns_value:  # of V (before the step) on the targets it regresses on
            metrics["train/explained_variance"] = explained_variance(batch.values, self.monte_carlo_returns(batch))
        return metrics

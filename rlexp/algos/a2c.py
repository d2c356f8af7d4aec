"""Advantage actor-critic, synchronous (A2C; Mnih et al. 2016, as in OpenAI baselines/SB3).

Each rollout is n_steps from every environment, turned into GAE advantages and value
targets (OnPolicyAlgorithm.compute_targets) (``gae_lambda=1`` gives the paper's n-step returns,
bootstrapped from V at the end of the window). Then ONE gradient step on the whole
rollout: no epochs, no minibatches, no ratio clipping -- that is what PPO adds.
"""

from __future__ import annotations

import torch

from rlexp.algos.base import OnPolicyAlgorithm
from rlexp.data.rollout import Batch, Rollout


class A2C(OnPolicyAlgorithm):
    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        log_prob, entropy, value = batch.evaluate_actions(self.policy)
        advantages = self.normalized(batch.advantages)  # off by default, as in SB3
        # -mean(log pi * A) + vf_coef * MSE(V, GAE returns) - ent_coef * entropy
        return self.policy_gradient_terms(batch, log_prob, advantages, entropy, value=value, value_targets=batch.returns)

    def update(self, rollout: Rollout, last_value: torch.Tensor, progress_remaining: float) -> dict[str, float]:
        self.set_progress(progress_remaining)
        self.compute_targets(rollout, last_value)
        return self.single_step_update(rollout.batch())

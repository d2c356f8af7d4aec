"""Advantage actor-critic, synchronous (A2C; Mnih et al. 2016, as in OpenAI baselines/SB3).

Each rollout is n_steps from every environment; the trainer turns it into GAE
advantages and value targets (``gae_lambda=1`` gives the paper's n-step returns,
bootstrapped from V at the end of the window). Then ONE gradient step on the whole
rollout: no epochs, no minibatches, no ratio clipping -- that is what PPO adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlexp.algos.base import OnPolicyAlgorithm
from rlexp.algos.diagnostics import approx_kl, approx_kl_after_step
from rlexp.rollout import Batch, Rollout


class A2C(OnPolicyAlgorithm):
    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        log_prob, entropy, value = self.policy.evaluate(batch.obs, batch.actions)
        advantages = self.normalized(batch.advantages)  # off by default, as in SB3
        policy_loss = -(log_prob * advantages).mean()
        value_loss = F.mse_loss(value, batch.returns)

        entropy_mean = entropy.mean()
        return {
            "loss/policy": policy_loss,
            "loss/value": self.vf_coef * value_loss,
            "loss/entropy": -self.ent_coef * entropy_mean,
            "train/entropy": entropy_mean.detach(),
            # KL from the same forward pass: 0 when the batch is fresh from this policy
            "train/approx_kl": approx_kl(log_prob, batch.log_probs),
        }

    def update(self, rollout: Rollout, progress_remaining: float) -> dict[str, float]:
        self.set_progress(progress_remaining)
        batch = rollout.batch()
        step = self.gradient_step(self.loss(batch))
        # one step per rollout: the loss's KL is 0, so log how far the step moved the policy
        step["train/approx_kl"] = approx_kl_after_step(self.policy, batch)
        return self.finish_update([step], batch)

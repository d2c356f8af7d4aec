"""Diagnostics shared by the algorithms that take one gradient step per rollout.

PPO reads its KL estimate off the loss's own forward pass, because after its first
minibatch the policy has already moved. REINFORCE and A2C take a single step per
rollout, so in their loss the current policy *is* the one that collected the batch
and the estimate is 0 by construction; what is worth logging is how far that step
moved the policy, measured with one more (gradient-free) forward pass after it.
"""

from __future__ import annotations

import torch
from torch import nn

from rlexp.data.rollout import Batch


def approx_kl(log_prob: torch.Tensor, old_log_prob: torch.Tensor) -> torch.Tensor:
    """The low-variance k3 estimator of KL(old || new): mean of (ratio - 1) - log(ratio)."""
    log_ratio = log_prob.detach() - old_log_prob
    return ((log_ratio.exp() - 1) - log_ratio).mean()


@torch.no_grad()
def approx_kl_after_step(policy: nn.Module, batch: Batch) -> torch.Tensor:
    """KL between the policy that collected ``batch`` and ``policy`` as it is now."""
    log_prob, _, _ = batch.evaluate_actions(policy)
    return approx_kl(log_prob, batch.log_probs)

"""REINFORCE with a learned state-value baseline (Williams 1992; Sutton & Barto 13.4).

Everything is REINFORCE's (complete episodes, Monte Carlo returns, one step per
rollout) except the loss: the log-prob of each action is weighted by G_t - V(s_t)
instead of G_t. Subtracting a function of the state alone leaves the gradient's
expectation unchanged (E[grad log pi(a|s)] = 0) and, with V close to E[G_t | s_t],
shrinks its variance. V regresses on the same Monte Carlo returns, standardised over
the rollout when ``normalize_returns`` is set: V then predicts a number of order 1,
which it can learn in the few steps it gets (one per rollout), where raw CartPole
returns of up to ~100 take it thousands of Adam steps to reach.
"""

from __future__ import annotations

import torch

from rlexp.algos.reinforce import REINFORCE
from rlexp.data.rollout import Batch


class REINFORCEWithBaseline(REINFORCE):
    learns_value = True

    def __init__(self, *, normalize_advantage: bool = False, **common):
        super().__init__(**common)
        self.normalize_advantage = normalize_advantage  # standardise G_t - V(s_t), as SB3 does

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        log_prob, entropy, value = batch.evaluate_actions(self.policy)
        returns = self.monte_carlo_returns(batch)
        # detached: the baseline only lowers the variance, the policy loss must not train it
        advantages = self.normalized(returns - value.detach())
        # -mean(log pi * (G - V)) + vf_coef * MSE(V, G) - ent_coef * entropy
        return self.policy_gradient_terms(batch, log_prob, advantages, entropy, value=value, value_targets=returns)

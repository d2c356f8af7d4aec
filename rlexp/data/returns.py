"""Discounted returns and GAE as pure functions over ``[T, N]`` tensors.

Time runs along dim 0, environments along dim 1. Conventions (Gymnasium 1.x):

* ``rewards[t]`` is the reward for the action taken at step ``t``.
* ``next_values[t]`` is V(s_{t+1}), the value of the observation that step ``t``
  produced. When an episode ends at ``t`` with the vector env's default NEXT_STEP
  autoreset, that observation is the episode's true final observation, so a
  truncated episode bootstraps from it for free.
* ``terminated[t]``: the MDP ended at ``t`` (no future reward, so no bootstrap).
* ``episode_end[t]``: terminated or truncated at ``t``; the advantage recursion
  never crosses it.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> torch.Tensor:
    """Generalised advantage estimates A_t (Schulman et al. 2016).

    delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - episode_end_t) * A_{t+1}

    ``gae_lambda=1`` gives n-step Monte Carlo advantages bootstrapped at the end of
    the rollout; ``gae_lambda=0`` gives one-step TD errors.
    """
    not_terminated = 1.0 - terminated.to(rewards.dtype)
    continues = 1.0 - episode_end.to(rewards.dtype)
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * gae_lambda * continues[t] * running
        advantages[t] = running
    return advantages


def discounted_returns(rewards: torch.Tensor, episode_end: torch.Tensor, gamma: float) -> torch.Tensor:
    """Monte Carlo returns G_t = sum_k gamma^k r_{t+k} within each episode.

    Nothing is bootstrapped: for steps whose episode has not ended inside the window
    the value is only a partial sum; :func:`finished_mask` says which steps are
    complete and are the only ones REINFORCE may learn from.
    """
    continues = 1.0 - episode_end.to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * continues[t] * running
        returns[t] = running
    return returns


def finished_mask(episode_end: torch.Tensor) -> torch.Tensor:
    """True at steps whose episode ends at or after them inside the window."""
    ended = episode_end.to(torch.int64)
    # reverse cumulative sum: number of episode ends at or after t
    ends_after = ended.flip(0).cumsum(0).flip(0)
    return ends_after > 0


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - Var[target - prediction] / Var[target]; nan when the targets are constant."""
    var_targets = torch.var(targets)
    if var_targets.item() == 0:
        return float("nan")
    return float(1.0 - torch.var(targets - predictions) / var_targets)

"""Preallocated rollout storage and the one ``Batch`` type the algorithms consume.

Policy-side tensors (observations, actions, log-probs, values) live on the training
device and are written in place each step. Environment-side results (rewards,
terminations, truncations) arrive as numpy arrays; they are written into numpy
buffers and moved to the device once per rollout, not once per step.

A step is *valid* unless it is the autoreset step that Gymnasium's NEXT_STEP mode
inserts after an episode ends (reset observation, reward 0, action ignored). Invalid
steps take part in the GAE recursion only as a barrier and never reach a loss.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import torch

from rlexp.returns import gae


class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    def __len__(self) -> int:
        return self.obs.shape[0]

    def select(self, index: torch.Tensor) -> "Batch":
        return Batch(*(field[index] for field in self))


class Rollout:
    def __init__(
        self,
        n_steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        device: torch.device,
    ):
        self.n_steps, self.num_envs, self.device = n_steps, num_envs, device
        shape = (n_steps, num_envs)
        self.obs = torch.zeros(shape + tuple(obs_shape), device=device)
        self.actions = torch.zeros(shape + tuple(action_shape), dtype=action_dtype, device=device)
        self.log_probs = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        self.rewards_np = np.zeros(shape, dtype=np.float32)
        self.terminated_np = np.zeros(shape, dtype=bool)
        self.truncated_np = np.zeros(shape, dtype=bool)
        self.valid_np = np.ones(shape, dtype=bool)
        self.advantages = torch.zeros(shape, device=device)
        self.returns = torch.zeros(shape, device=device)

    def store_policy(self, t: int, obs: torch.Tensor, action: torch.Tensor, log_prob: torch.Tensor, value: torch.Tensor) -> None:
        self.obs[t] = obs
        self.actions[t] = action
        self.log_probs[t] = log_prob
        self.values[t] = value

    def store_env(self, t: int, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray) -> None:
        self.rewards_np[t] = reward
        self.terminated_np[t] = terminated
        self.truncated_np[t] = truncated
        self.valid_np[t] = valid

    def env_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rewards, terminated, episode_end, valid) on the device, one copy per rollout."""
        to = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        return (
            to(self.rewards_np),
            to(self.terminated_np),
            to(self.terminated_np | self.truncated_np),
            to(self.valid_np),
        )

    def compute_gae(self, last_value: torch.Tensor, gamma: float, gae_lambda: float) -> None:
        """Fill ``advantages`` and ``returns`` (the value targets) in place."""
        rewards, terminated, episode_end, _ = self.env_tensors()
        next_values = torch.cat([self.values[1:], last_value.unsqueeze(0)])
        self.advantages[:] = gae(rewards, self.values, next_values, terminated, episode_end, gamma, gae_lambda)
        self.returns[:] = self.advantages + self.values

    def batch(self) -> Batch:
        """All valid transitions, flattened over time and environments."""
        valid = torch.from_numpy(self.valid_np.reshape(-1)).to(self.device)
        flat = lambda x: x.reshape((-1,) + x.shape[2:])[valid]  # noqa: E731
        return Batch(
            flat(self.obs), flat(self.actions), flat(self.log_probs), flat(self.values), flat(self.advantages), flat(self.returns)
        )


def minibatches(batch: Batch, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
    """Shuffled minibatches of ``batch_size``; the last one takes the remainder.

    The number of valid transitions varies from rollout to rollout (autoreset steps
    are dropped), so a short remainder is folded into the previous minibatch rather
    than producing a tiny, noisy gradient step.
    """
    n = len(batch)
    order = torch.randperm(n, generator=generator, device="cpu").to(batch.obs.device)
    n_full = max(round(n / batch_size), 1)
    for i in range(n_full):
        end = n if i == n_full - 1 else (i + 1) * batch_size
        yield batch.select(order[i * batch_size : end])

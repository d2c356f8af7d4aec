"""Action heads keyed by action space: Categorical for Discrete, diagonal Gaussian for Box."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from rlexp.errors import ConfigError


class CategoricalHead(nn.Module):
    """Logits for a Discrete action space."""

    def __init__(self, in_features: int, n_actions: int):
        super().__init__()
        self.logits = nn.Linear(in_features, n_actions)
        self.output_layer = self.logits

    def forward(self, features: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(features), validate_args=False)

    @staticmethod
    def log_prob(dist: Categorical, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions)

    @staticmethod
    def entropy(dist: Categorical) -> torch.Tensor:
        return dist.entropy()

    @staticmethod
    def mode(dist: Categorical) -> torch.Tensor:
        return dist.logits.argmax(dim=-1)


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent, learned log standard deviation.

    Samples are unbounded; the environment wrapper clips them to the action space
    (gymnasium's ClipAction), and the log-probability is that of the unclipped
    sample, as in SB3 and CleanRL.
    """

    def __init__(self, in_features: int, action_dim: int, log_std_init: float = 0.0):
        super().__init__()
        self.mean = nn.Linear(in_features, action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.output_layer = self.mean

    def forward(self, features: torch.Tensor) -> Normal:
        mean = self.mean(features)
        return Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)

    @staticmethod
    def log_prob(dist: Normal, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions).sum(-1)

    @staticmethod
    def entropy(dist: Normal) -> torch.Tensor:
        return dist.entropy().sum(-1)

    @staticmethod
    def mode(dist: Normal) -> torch.Tensor:
        return dist.mean


def make_action_head(action_space: gym.Space, in_features: int, log_std_init: float = 0.0) -> nn.Module:
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(in_features, int(action_space.n))
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(in_features, action_space.shape[0], log_std_init)
    raise ConfigError("env.id", f"action space {action_space} is not supported (Discrete or 1-D Box only)")

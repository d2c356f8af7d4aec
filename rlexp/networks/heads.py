"""Action heads keyed by action space: Categorical for Discrete, diagonal Gaussian for Box
(with either state-independent noise or gSDE's state-dependent noise), independent
Categoricals for MultiDiscrete, Bernoulli for MultiBinary.

Heads act in the policy's own terms: a Discrete action is an index from 0 (the env adapter
adds the space's ``start``), MultiDiscrete and MultiBinary actions are flat vectors (the
adapter gives them the space's shape and dtype).

Every head has the same small interface: ``forward(features, mask=None)`` gives a
distribution, and ``sample``, ``log_prob``, ``entropy``, ``mode`` act on it.

``mask`` (the discrete heads): an invalid-action mask, (batch, flags) bools in the layout of
rlexp.envs.masks (one flag per choice; MultiBinary: may be 0, may be 1 per bit). A masked
choice gets a logit so low that its probability is exactly 0: it is never sampled, it adds
nothing to the entropy (which is then the entropy over the allowed choices), and its logit
gets no gradient. Log-probabilities of the allowed choices are those of the renormalised
distribution, as in sb3-contrib's MaskablePPO.
"""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Normal

from rlexp.errors import ConfigError


#: a MultiBinary bit that must be 0 (or 1) gets this logit (or its negative): sigmoid gives
#: exactly 0 (or 1) in float32, and binary cross-entropy exactly 0 for the forced value
FORCED_BIT_LOGIT = 1e4


#: the logit of a masked-out choice: exp(-1e9 - max logit) is exactly 0 in float32, bfloat16
#: and float64, so its probability is exactly 0, while torch's exp and logsumexp stay on their
#: fast path (the dtype's lowest value, -3.4e38, costs about a quarter more per gradient step
#: of a 70-action head). float16, whose range ends at 65504, takes its own lowest value.
MASKED_LOGIT = -1e9


def masked_logits(logits: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``logits`` with the masked-out choices at :data:`MASKED_LOGIT`: probability exactly 0
    after the softmax, and finite (no NaN in the entropy or in the gradient)."""
    if mask is None:
        return logits
    info = torch.finfo(logits.dtype)
    return logits.masked_fill(~mask.bool(), MASKED_LOGIT if info.max > -MASKED_LOGIT else info.min)


class CategoricalHead(nn.Module):
    """Logits for a Discrete action space."""

    def __init__(self, in_features: int, n_actions: int):
        super().__init__()
        self.logits = nn.Linear(in_features, n_actions)
        self.output_layer = self.logits

    def forward(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Categorical:
        return Categorical(logits=masked_logits(self.logits(features), mask), validate_args=False)

    def sample(self, dist: Categorical) -> torch.Tensor:
        return dist.sample()

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

    def forward(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Normal:
        mean = self.mean(features)
        return Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)

    def sample(self, dist: Normal) -> torch.Tensor:
        return dist.sample()

    @staticmethod
    def log_prob(dist: Normal, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions).sum(-1)

    @staticmethod
    def entropy(dist: Normal) -> torch.Tensor:
        return dist.entropy().sum(-1)

    @staticmethod
    def mode(dist: Normal) -> torch.Tensor:
        return dist.mean


class StateDependentNoiseHead(GaussianHead):
    """generalized State-Dependent Exploration, gSDE (Raffin, Kober & Stulp, 2021).

    The exploration noise is a linear function of the policy's last hidden features z(s):
    a = mu(s) + z(s) @ E, with a noise matrix E ~ N(0, sigma^2) per environment (sigma is a
    learned in_features x action_dim matrix). E is kept for ``sample_freq`` steps (-1: the
    whole rollout), so nearby states get nearby noise: smooth exploration, where
    independent noise per step shakes a joint back and forth. For a fixed E the action is
    Gaussian with variance (z^2) @ sigma^2 per action dimension, which is what log_prob
    and entropy use; z is detached there, as in SB3 (the features are learned through the
    mean only).
    """

    def __init__(self, in_features: int, action_dim: int, log_std_init: float = 0.0, sample_freq: int = -1):
        super().__init__(in_features, action_dim, log_std_init)
        # one std per (feature, action) pair instead of one per action
        self.log_std = nn.Parameter(torch.full((in_features, action_dim), float(log_std_init)))
        self.sample_freq = int(sample_freq)
        # (batch, in_features, action_dim): a buffer, so .to() moves it with the weights (the
        # CPU evaluation copy of a GPU run), but not saved in checkpoints
        self.register_buffer("noise", None, persistent=False)
        self.samples_since_reset = 0

    def reset_noise(self, batch_size: int) -> None:
        std = self.log_std.detach().exp()
        self.noise = torch.randn((batch_size, *std.shape), device=std.device) * std
        self.samples_since_reset = 0

    def forward(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Normal:
        mean = self.mean(features)
        latent = features.detach()
        std = (latent.pow(2) @ self.log_std.exp().pow(2) + 1e-6).sqrt()
        dist = Normal(mean, std, validate_args=False)
        dist.latent = latent  # the sample needs z(s) as well as the moments
        return dist

    def noise_for_sample(self, batch_size: int) -> torch.Tensor:
        """The noise matrices for the next sample of ``batch_size`` actions: new ones when
        there are none for that batch or they have served ``sample_freq`` samples."""
        stale = self.sample_freq > 0 and self.samples_since_reset >= self.sample_freq
        if self.noise is None or self.noise.shape[0] != batch_size or stale:
            self.reset_noise(batch_size)
        self.samples_since_reset += 1
        return self.noise

    def sample(self, dist: Normal) -> torch.Tensor:
        latent = dist.latent
        return dist.mean + torch.bmm(latent.unsqueeze(1), self.noise_for_sample(latent.shape[0])).squeeze(1)


class MultiCategorical:
    """Independent Categoricals over the entries of a MultiDiscrete action."""

    def __init__(self, logits: torch.Tensor, sizes: list[int], mask: Optional[torch.Tensor] = None):
        chunks = torch.split(masked_logits(logits, mask), sizes, dim=-1)
        self.parts = [Categorical(logits=chunk, validate_args=False) for chunk in chunks]


class MultiCategoricalHead(nn.Module):
    """MultiDiscrete(nvec): one block of logits per entry; log-prob and entropy are the sums."""

    def __init__(self, in_features: int, sizes: list[int]):
        super().__init__()
        self.sizes = [int(n) for n in sizes]
        self.logits = nn.Linear(in_features, sum(self.sizes))
        self.output_layer = self.logits

    def forward(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> MultiCategorical:
        return MultiCategorical(self.logits(features), self.sizes, mask)

    def sample(self, dist: MultiCategorical) -> torch.Tensor:
        return torch.stack([part.sample() for part in dist.parts], dim=-1)

    @staticmethod
    def log_prob(dist: MultiCategorical, actions: torch.Tensor) -> torch.Tensor:
        return sum(part.log_prob(actions[..., i]) for i, part in enumerate(dist.parts))

    @staticmethod
    def entropy(dist: MultiCategorical) -> torch.Tensor:
        return sum(part.entropy() for part in dist.parts)

    @staticmethod
    def mode(dist: MultiCategorical) -> torch.Tensor:
        return torch.stack([part.logits.argmax(dim=-1) for part in dist.parts], dim=-1)


class BernoulliHead(nn.Module):
    """MultiBinary(n): one independent Bernoulli per bit; actions are 0./1. floats."""

    def __init__(self, in_features: int, n: int):
        super().__init__()
        self.logits = nn.Linear(in_features, n)
        self.output_layer = self.logits

    def forward(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Bernoulli:
        logits = self.logits(features)
        if mask is not None:  # (batch, 2 * bits): may the bit be 0, may it be 1
            allowed = mask.bool().reshape(*logits.shape, 2)
            forced = torch.full_like(logits, FORCED_BIT_LOGIT)
            logits = torch.where(~allowed[..., 1], -forced, torch.where(~allowed[..., 0], forced, logits))
        return Bernoulli(logits=logits, validate_args=False)

    def sample(self, dist: Bernoulli) -> torch.Tensor:
        return dist.sample()

    @staticmethod
    def log_prob(dist: Bernoulli, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions).sum(-1)

    @staticmethod
    def entropy(dist: Bernoulli) -> torch.Tensor:
        return dist.entropy().sum(-1)

    @staticmethod
    def mode(dist: Bernoulli) -> torch.Tensor:
        return (dist.logits > 0).float()


def action_storage(space: gym.Space) -> tuple[tuple[int, ...], torch.dtype]:
    """(shape, dtype) of one action as the policy gives it and the rollout keeps it."""
    if isinstance(space, gym.spaces.Discrete):
        return (), torch.int64
    if isinstance(space, gym.spaces.MultiDiscrete):
        return (int(np.prod(space.shape)),), torch.int64
    if isinstance(space, gym.spaces.MultiBinary):
        return (int(np.prod(space.shape)),), torch.float32
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return tuple(space.shape), torch.float32
    raise ConfigError("env.id", unsupported_action_space(space))


def unsupported_action_space(space: gym.Space) -> str:
    return (f"action space {space} is not supported: rlexp acts in Discrete, 1-D Box, MultiDiscrete and MultiBinary spaces; "
            "wrap the env so that its actions are one of those")


def make_action_head(
    action_space: gym.Space, in_features: int, log_std_init: float = 0.0, use_sde: bool = False, sde_sample_freq: int = -1
) -> nn.Module:
    is_box = isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
    if use_sde and not is_box:
        raise ConfigError("use_sde", f"applies to continuous (Box) action spaces only; this env's actions are {action_space}")
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead(in_features, int(action_space.n))
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return MultiCategoricalHead(in_features, np.asarray(action_space.nvec).reshape(-1).tolist())
    if isinstance(action_space, gym.spaces.MultiBinary):
        return BernoulliHead(in_features, int(np.prod(action_space.shape)))
    if is_box:
        if use_sde:
            if sde_sample_freq == 0 or sde_sample_freq < -1:
                raise ConfigError("sde_sample_freq", f"must be -1 (once per rollout) or >= 1, got {sde_sample_freq}")
            return StateDependentNoiseHead(in_features, action_space.shape[0], log_std_init, sde_sample_freq)
        return GaussianHead(in_features, action_space.shape[0], log_std_init)
    raise ConfigError("env.id", unsupported_action_space(action_space))

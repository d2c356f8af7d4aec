"""The actor-critic the algorithms train: encoder torsos for the actor and the critic, an
action head chosen by the action space and a value head."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import gymnasium as gym
import torch
from torch import nn

from rlexp.errors import ConfigError, require
from rlexp.networks.encoders import ACTIVATIONS, CnnSpec, make_encoder, mlp, orthogonal_init
from rlexp.networks.heads import make_action_head


class ActorCritic(nn.Module):
    """A policy pi(a|s) and a state-value V(s): encoder -> MLP torso -> heads, separate for
    the actor and the critic or one shared encoder and torso (``shared``).

    The encoder is chosen by the observation space (rlexp.networks.encoders: a CNN for
    images, one-hots for discrete entries, one encoder per Dict/Tuple entry), the action
    head by the action space (rlexp.networks.heads). ``hidden_sizes`` may be empty: the
    heads then read the encoder's features (the Atari setting, a CNN straight into them).

    Orthogonal init follows the PPO implementation details everyone copies: sqrt(2)
    for hidden layers, 0.01 for the policy output (near-uniform initial policy) and
    1 for the value output.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared: bool = False,
        ortho_init: bool = True,
        log_std_init: Optional[float] = None,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        encoder: str | dict[str, str] = "auto",
        cnn: Optional[dict[str, Any]] = None,
    ):
        super().__init__()
        hidden_sizes = [int(h) for h in hidden_sizes]
        require(all(h >= 1 for h in hidden_sizes), "hidden_sizes", f"must be a list of positive ints (empty: the heads read the encoder), got {hidden_sizes}")
        require(activation in ACTIVATIONS, "activation", f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if log_std_init is not None and not isinstance(action_space, gym.spaces.Box):
            raise ConfigError("log_std_init", f"applies to continuous (Box) action spaces only; this env's actions are {action_space}")
        try:
            cnn_spec = CnnSpec(**(cnn or {}))
        except TypeError as e:
            raise ConfigError("cnn", str(e).replace("CnnSpec.__init__() ", "")) from None
        self.shared, self.activation = shared, activation
        self.is_continuous = isinstance(action_space, gym.spaces.Box)
        self.actor_encoder = make_encoder(observation_space, encoder, cnn_spec)
        self.critic_encoder = self.actor_encoder if shared else make_encoder(observation_space, encoder, cnn_spec)
        features = self.actor_encoder.out_features
        self.actor_body = mlp(features, hidden_sizes, activation)
        self.critic_body = self.actor_body if shared else mlp(features, hidden_sizes, activation)
        out = hidden_sizes[-1] if hidden_sizes else features
        self.action_head = make_action_head(action_space, out, 0.0 if log_std_init is None else log_std_init, use_sde, sde_sample_freq)
        self.value_head = nn.Linear(out, 1)
        if ortho_init:
            orthogonal_init(self.actor_encoder, math.sqrt(2))
            orthogonal_init(self.critic_encoder, math.sqrt(2))
            orthogonal_init(self.actor_body, math.sqrt(2))
            orthogonal_init(self.critic_body, math.sqrt(2))
            orthogonal_init(self.action_head.output_layer, 0.01)
            orthogonal_init(self.value_head, 1.0)

    def _features(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        actor = self.actor_body(self.actor_encoder(obs))
        critic = actor if self.shared else self.critic_body(self.critic_encoder(obs))
        return actor, critic

    def value(self, obs: Any) -> torch.Tensor:
        return self.value_head(self.critic_body(self.critic_encoder(obs))).squeeze(-1)

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions for a batch of observations: (action, log_prob, value)."""
        actor, critic = self._features(obs)
        dist = self.action_head(actor)
        action = self.action_head.sample(dist)
        return action, self.action_head.log_prob(dist, action), self.value_head(critic).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log_prob, entropy, value) of given actions under the current parameters."""
        actor, critic = self._features(obs)
        dist = self.action_head(actor)
        return self.action_head.log_prob(dist, actions), self.action_head.entropy(dist), self.value_head(critic).squeeze(-1)

    def predict(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        dist = self.action_head(self.actor_body(self.actor_encoder(obs)))
        return self.action_head.mode(dist) if deterministic else self.action_head.sample(dist)

    def reset_noise(self, batch_size: int) -> None:
        """Start a rollout: draw fresh gSDE noise matrices (nothing to do for other heads)."""
        if hasattr(self.action_head, "reset_noise"):
            self.action_head.reset_noise(batch_size)

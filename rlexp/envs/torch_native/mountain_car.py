"""MountainCar-v0 (Moore 1990) as a batch of tensors.

Constants, update order, clipping, the inelastic left wall, termination and reward
are those of ``gymnasium.envs.classic_control.mountain_car.MountainCarEnv``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control.utils import maybe_parse_reset_bounds

from rlexp.envs.torch_native.base import TorchVectorEnv, uniform

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GOAL_POSITION = 0.5
FORCE = 0.001
GRAVITY = 0.0025


class MountainCarTorchEnv(TorchVectorEnv):
    """Actions 0, 1, 2 accelerate left, not at all, right; reward -1 per step."""

    env_id = "MountainCar-v0"
    state_names = ("position", "velocity")
    default_max_episode_steps = 200

    def __init__(self, num_envs: int = 1, device="cpu", seed: Optional[int] = None, max_episode_steps: Optional[int] = None,
                 dtype=torch.float32, goal_velocity: float = 0.0):
        low = np.array([MIN_POSITION, -MAX_SPEED], dtype=np.float32)
        high = np.array([MAX_POSITION, MAX_SPEED], dtype=np.float32)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(3)
        self.goal_velocity = goal_velocity
        super().__init__(num_envs, device, seed, max_episode_steps, dtype)

    def sample_initial_state(self, n: int, options: Optional[dict[str, Any]] = None) -> torch.Tensor:
        return car_at_rest(self, n, options)

    def dynamics(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        position, velocity = state
        velocity = velocity + ((actions - 1).to(self.dtype) * FORCE + torch.cos(3 * position) * (-GRAVITY))
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED)
        position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
        velocity = stop_at_left_wall(position, velocity)
        terminated = (position >= GOAL_POSITION) & (velocity >= self.goal_velocity)
        return torch.stack((position, velocity)), torch.full_like(position, -1.0), terminated

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        return state.T.contiguous()


def car_at_rest(env: TorchVectorEnv, n: int, options: Optional[dict[str, Any]]) -> torch.Tensor:
    """Position uniform in [-0.6, -0.4] (or options' low/high), velocity 0."""
    low, high = maybe_parse_reset_bounds(options, -0.6, -0.4)
    position = uniform(env.generator, (n,), low, high, env.dtype)
    return torch.stack((position, torch.zeros_like(position)))


def stop_at_left_wall(position: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """The left wall is inelastic: a car pushed against it stops."""
    return velocity.masked_fill((position == MIN_POSITION) & (velocity < 0), 0.0)

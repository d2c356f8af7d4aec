"""MountainCarContinuous-v0 as a batch of tensors.

Constants (goal at 0.45, power 0.0015), clipping, the inelastic left wall,
termination and reward are those of
``gymnasium.envs.classic_control.continuous_mountain_car.Continuous_MountainCarEnv``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from gymnasium import spaces

from rlexp.envs.torch_native.base import TorchVectorEnv
from rlexp.envs.torch_native.mountain_car import MAX_POSITION, MAX_SPEED, MIN_POSITION, car_at_rest, stop_at_left_wall

MIN_ACTION = -1.0
MAX_ACTION = 1.0
GOAL_POSITION = 0.45
POWER = 0.0015


class MountainCarContinuousTorchEnv(TorchVectorEnv):
    """The action (clipped to [-1, 1]) is the engine force; reward +100 on reaching the
    goal minus 0.1 * action^2 every step. As in Gymnasium, the penalty uses the action as
    given, before clipping (rlexp's gymnasium backend clips actions before they get here)."""

    env_id = "MountainCarContinuous-v0"
    state_names = ("position", "velocity")
    default_max_episode_steps = 999

    def __init__(self, num_envs: int = 1, device="cpu", seed: Optional[int] = None, max_episode_steps: Optional[int] = None,
                 dtype=torch.float32, goal_velocity: float = 0.0):
        low = np.array([MIN_POSITION, -MAX_SPEED], dtype=np.float32)
        high = np.array([MAX_POSITION, MAX_SPEED], dtype=np.float32)
        self.single_observation_space = spaces.Box(low=low, high=high, dtype=np.float32)
        self.single_action_space = spaces.Box(low=MIN_ACTION, high=MAX_ACTION, shape=(1,), dtype=np.float32)
        self.goal_velocity = goal_velocity
        super().__init__(num_envs, device, seed, max_episode_steps, dtype)

    def sample_initial_state(self, n: int, options: Optional[dict[str, Any]] = None) -> torch.Tensor:
        return car_at_rest(self, n, options)

    def dynamics(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        position, velocity = state
        force = actions.clamp(MIN_ACTION, MAX_ACTION)
        velocity = velocity + (force * POWER - 0.0025 * torch.cos(3 * position))
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED)
        position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
        velocity = stop_at_left_wall(position, velocity)
        terminated = (position >= GOAL_POSITION) & (velocity >= self.goal_velocity)
        reward = terminated.to(self.dtype) * 100.0 - actions.square() * 0.1
        return torch.stack((position, velocity)), reward, terminated

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        return state.T.contiguous()

"""Pendulum-v1 as a batch of tensors.

Constants, the semi-implicit Euler update, torque and speed clipping and the cost
(with ``angle_normalize``) are those of
``gymnasium.envs.classic_control.pendulum.PendulumEnv``. It never terminates; only
the time limit (200 steps) ends an episode.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control.utils import verify_number_and_cast

from rlexp.envs.torch_native.base import TorchVectorEnv, uniform_columns

MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
MASS = 1.0
LENGTH = 1.0
DEFAULT_X = math.pi  # initial angle in [-x, x]
DEFAULT_Y = 1.0  # initial angular velocity in [-y, y]


class PendulumTorchEnv(TorchVectorEnv):
    """The action (clipped to [-2, 2]) is the torque; reward
    -(angle^2 + 0.1 * angular_velocity^2 + 0.001 * torque^2), angle normalised to [-pi, pi)."""

    env_id = "Pendulum-v1"
    state_names = ("theta", "theta_dot")
    default_max_episode_steps = 200

    def __init__(self, num_envs: int = 1, device="cpu", seed: Optional[int] = None, max_episode_steps: Optional[int] = None,
                 dtype=torch.float32, g: float = 10.0):
        high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
        self.single_observation_space = spaces.Box(low=-high, high=high, dtype=np.float32)
        self.single_action_space = spaces.Box(low=-MAX_TORQUE, high=MAX_TORQUE, shape=(1,), dtype=np.float32)
        self.g = g
        super().__init__(num_envs, device, seed, max_episode_steps, dtype)

    def sample_initial_state(self, n: int, options: Optional[dict[str, Any]] = None) -> torch.Tensor:
        options = options or {}
        x = verify_number_and_cast(options.get("x_init", DEFAULT_X))
        y = verify_number_and_cast(options.get("y_init", DEFAULT_Y))
        return uniform_columns(self.generator, n, [-x, -y], [x, y], self.dtype)

    def dynamics(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        th, thdot = state
        g, m, l, dt = self.g, MASS, LENGTH, DT
        u = actions.clamp(-MAX_TORQUE, MAX_TORQUE)
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
        newthdot = thdot + (3 * g / (2 * l) * torch.sin(th) + 3.0 / (m * l**2) * u) * dt
        newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED)
        newth = th + newthdot * dt  # semi-implicit: the angle moves with the new velocity
        terminated = torch.zeros_like(th, dtype=torch.bool)
        return torch.stack((newth, newthdot)), -costs, terminated

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        theta, thetadot = state
        return torch.stack((torch.cos(theta), torch.sin(theta), thetadot), -1)


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Into [-pi, pi): floor-modulo like numpy's ``%`` (torch.remainder, not fmod)."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi

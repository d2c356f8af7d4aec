"""CartPole-v1 (Barto, Sutton & Anderson 1983) as a batch of tensors.

Constants, Euler integration, thresholds and rewards are those of
``gymnasium.envs.classic_control.cartpole.CartPoleEnv``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control.utils import maybe_parse_reset_bounds

from rlexp.envs.torch_native.base import TorchVectorEnv, uniform

GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_POLE + MASS_CART
HALF_POLE_LENGTH = 0.5
POLE_MASS_LENGTH = MASS_POLE * HALF_POLE_LENGTH
FORCE_MAG = 10.0
TAU = 0.02  # seconds per step
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4


class CartPoleTorchEnv(TorchVectorEnv):
    """Action 0 pushes the cart left, 1 right; +1 per step including the terminating
    one (``sutton_barto_reward=True``: 0 per step, -1 on termination)."""

    env_id = "CartPole-v1"
    state_names = ("x", "x_dot", "theta", "theta_dot")
    default_max_episode_steps = 500

    def __init__(self, num_envs: int = 1, device="cpu", seed: Optional[int] = None, max_episode_steps: Optional[int] = None,
                 dtype=torch.float32, sutton_barto_reward: bool = False):
        high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        self.single_observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.sutton_barto_reward = sutton_barto_reward
        super().__init__(num_envs, device, seed, max_episode_steps, dtype)

    def sample_initial_state(self, n: int, options: Optional[dict[str, Any]] = None) -> torch.Tensor:
        low, high = maybe_parse_reset_bounds(options, -0.05, 0.05)
        return uniform(self.generator, (4, n), low, high, self.dtype)

    def dynamics(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, x_dot, theta, theta_dot = state
        force = torch.where(actions == 1, FORCE_MAG, -FORCE_MAG).to(self.dtype)
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        # https://coneural.org/florian/papers/05_cart_pole.pdf; same operation order as Gymnasium
        temp = (force + POLE_MASS_LENGTH * theta_dot.square() * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            HALF_POLE_LENGTH * (4.0 / 3.0 - MASS_POLE * costheta.square() / TOTAL_MASS)
        )
        xacc = temp - POLE_MASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        # explicit Euler: positions advance with the old velocities
        next_state = torch.stack((x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot, theta_dot + TAU * thetaacc))
        x, theta = next_state[0], next_state[2]
        terminated = (x < -X_THRESHOLD) | (x > X_THRESHOLD) | (theta < -THETA_THRESHOLD) | (theta > THETA_THRESHOLD)
        if self.sutton_barto_reward:
            reward = -terminated.to(self.dtype)
        else:
            reward = torch.ones_like(x)
        return next_state, reward, terminated

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        return state.T.contiguous()

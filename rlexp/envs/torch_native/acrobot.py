"""Acrobot-v1 (Sutton & Barto's book dynamics) as a batch of tensors.

Constants, the equations of motion, one RK4 step of dt = 0.2 s, angle wrapping,
velocity bounds, termination and reward are those of
``gymnasium.envs.classic_control.acrobot.AcrobotEnv``; the RK4 step runs on the whole
batch at once.
"""

from __future__ import annotations

from math import pi
from typing import Any, Optional

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control.utils import maybe_parse_reset_bounds

from rlexp.errors import require
from rlexp.envs.torch_native.base import TorchVectorEnv, uniform

DT = 0.2
LINK_LENGTH_1 = 1.0
LINK_MASS_1 = 1.0
LINK_MASS_2 = 1.0
LINK_COM_POS_1 = 0.5
LINK_COM_POS_2 = 0.5
LINK_MOI = 1.0
MAX_VEL_1 = 4 * pi
MAX_VEL_2 = 9 * pi
GRAVITY = 9.8


class AcrobotTorchEnv(TorchVectorEnv):
    """Actions 0, 1, 2 apply torque -1, 0, +1 at the joint between the links; reward
    -1 per step and 0 on the step that reaches the goal height."""

    env_id = "Acrobot-v1"
    state_names = ("theta1", "theta2", "dtheta1", "dtheta2")
    default_max_episode_steps = 500

    def __init__(self, num_envs: int = 1, device="cpu", seed: Optional[int] = None, max_episode_steps: Optional[int] = None,
                 dtype=torch.float32, book_or_nips: str = "book", torque_noise_max: float = 0.0):
        require(book_or_nips in ("book", "nips"), "book_or_nips", f"must be 'book' or 'nips', got {book_or_nips!r}")
        high = np.array([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], dtype=np.float32)
        self.single_observation_space = spaces.Box(low=-high, high=high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(3)
        self.book_or_nips = book_or_nips
        self.torque_noise_max = torque_noise_max
        super().__init__(num_envs, device, seed, max_episode_steps, dtype)

    def sample_initial_state(self, n: int, options: Optional[dict[str, Any]] = None) -> torch.Tensor:
        low, high = maybe_parse_reset_bounds(options, -0.1, 0.1)
        return uniform(self.generator, (4, n), low, high, self.dtype)

    def dynamics(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        torque = actions.to(self.dtype) - 1.0
        if self.torque_noise_max > 0:
            torque = torque + uniform(self.generator, torque.shape, -self.torque_noise_max, self.torque_noise_max, self.dtype)
        ns = rk4_step(lambda s: self._dsdt(s, torque), state, DT)
        next_state = torch.stack((
            wrap(ns[0], -pi, pi),
            wrap(ns[1], -pi, pi),
            ns[2].clamp(-MAX_VEL_1, MAX_VEL_1),
            ns[3].clamp(-MAX_VEL_2, MAX_VEL_2),
        ))
        theta1, theta2 = next_state[0], next_state[1]
        terminated = -torch.cos(theta1) - torch.cos(theta2 + theta1) > 1.0  # free end above the bar
        reward = terminated.to(self.dtype) - 1.0
        return next_state, reward, terminated

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        theta1, theta2, dtheta1, dtheta2 = state
        return torch.stack((torch.cos(theta1), torch.sin(theta1), torch.cos(theta2), torch.sin(theta2), dtheta1, dtheta2), -1)

    def _dsdt(self, s: torch.Tensor, torque: torch.Tensor) -> torch.Tensor:
        """Time derivative of the state; the torque is held constant over the RK4 step.
        Written in Gymnasium's operation order so float64 results agree to rounding."""
        m1, m2, l1, lc1, lc2, I1, I2, g = LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2, LINK_MOI, LINK_MOI, GRAVITY
        theta1, theta2, dtheta1, dtheta2 = s
        sin_theta2 = torch.sin(theta2)
        cos_theta2 = torch.cos(theta2)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos_theta2) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos_theta2) + I2
        phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2**2 * sin_theta2
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin_theta2
            + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - pi / 2)
            + phi2
        )
        if self.book_or_nips == "nips":
            # the NIPS'96 paper's version, which omits a term
            ddtheta2 = (torque + d2 / d1 * phi1 - phi2) / (m2 * lc2**2 + I2 - d2**2 / d1)
        else:
            ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * sin_theta2 - phi2) / (m2 * lc2**2 + I2 - d2**2 / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2))


def rk4_step(derivs, y0: torch.Tensor, dt: float) -> torch.Tensor:
    """One classical Runge-Kutta step for a batch of states (any shape ``derivs`` maps to itself)."""
    dt2 = dt / 2.0
    k1 = derivs(y0)
    k2 = derivs(y0 + dt2 * k1)
    k3 = derivs(y0 + dt2 * k2)
    k4 = derivs(y0 + dt * k3)
    return y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def wrap(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Shift ``x`` by whole periods ``high - low`` into ``[low, high]``, like Gymnasium's
    ``wrap`` (which subtracts one period at a time in a loop; one period is the usual case
    and gives bit-identical results)."""
    period = high - low
    x = torch.where(x > high, x - torch.ceil((x - high) / period) * period, x)
    return torch.where(x < low, x + torch.ceil((low - x) / period) * period, x)

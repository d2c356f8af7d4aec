"""``env.mask_velocity=true``: the classic partially observed benchmarks, with the velocity
entries taken out of the observation (the RL Zoo's CartPoleNoVel-v1 and PendulumNoVel-v1
are CartPole and Pendulum observed this way). A policy then has to infer speeds from the
positions it has seen: the task for a recurrent core or stacked frames."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import vector as vw

from rlexp.errors import ConfigError

#: env id (without version) -> indices of the velocity entries in its observation vector
VELOCITY_ENTRIES = {
    "CartPole": (1, 3),  # x, x_dot, theta, theta_dot
    "Pendulum": (2,),  # cos theta, sin theta, theta_dot
    "MountainCar": (1,),  # position, velocity
    "MountainCarContinuous": (1,),
    "Acrobot": (4, 5),  # cos/sin of both joint angles, then both angular velocities
    "LunarLander": (2, 3, 5),  # x, y, vx, vy, angle, angular velocity, two leg contacts
}


def velocity_entries(env_id: str) -> tuple[int, ...]:
    name = env_id.rpartition(":")[2].rpartition("/")[2].rsplit("-v", 1)[0]
    if name not in VELOCITY_ENTRIES:
        known = ", ".join(sorted(VELOCITY_ENTRIES))
        raise ConfigError("mask_velocity", f"knows the velocity entries of {known} only, not {env_id!r}; set env.mask_velocity=false")
    return VELOCITY_ENTRIES[name]


def mask_velocity(env: gym.vector.VectorEnv, env_id: str) -> gym.vector.VectorEnv:
    """``env`` with the velocity entries of its (1-D Box) observations left out."""
    space = env.single_observation_space
    drop = velocity_entries(env_id)
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ConfigError("mask_velocity", f"applies to flat Box observations; {env_id}'s are {space}")
    keep = np.array([i for i in range(space.shape[0]) if i not in drop])
    single = gym.spaces.Box(space.low[keep], space.high[keep], dtype=space.dtype)
    return vw.TransformObservation(env, lambda obs: obs[:, keep], single_observation_space=single)

"""MiniGrid: its "image" entry is not pixels but one (object, colour, state) code triple per
cell, declared as Box(0, 255, uint8). Scaled by 1/255 as pixels are, the codes (at most 10)
reach a CNN as 0..0.04 and it barely learns (DoorKey-5x5: 0.0 at 150k steps, where the same
CNN on codes brought to [0, 1] reaches the optimum by 75k). This adapter declares the codes'
true bounds, per channel, from minigrid's own tables; the encoder then scales each channel by
1/bound (rlexp.networks.encoders.CnnEncoder). The observations themselves are not touched.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import vector as vw


def is_minigrid(env_id: str) -> bool:
    return env_id.rpartition(":")[2].startswith(("MiniGrid-", "BabyAI-"))


def code_bounds() -> np.ndarray:
    """The largest object, colour and state code (minigrid.core.constants)."""
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

    return np.array([max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()), max(STATE_TO_IDX.values())], dtype=np.uint8)


def declare_code_bounds(env: gym.vector.VectorEnv) -> gym.vector.VectorEnv:
    """``env`` with its "image" entry's space bounded by the code tables (same observations)."""
    space = env.single_observation_space
    if not isinstance(space, gym.spaces.Dict) or "image" not in space.spaces:
        return env
    image = space.spaces["image"]
    if not (isinstance(image, gym.spaces.Box) and image.dtype == np.uint8 and image.shape[-1:] == (3,)):
        return env
    high = np.broadcast_to(code_bounds(), image.shape).copy()
    single = gym.spaces.Dict({**space.spaces, "image": gym.spaces.Box(0, high, dtype=np.uint8)})
    batched = gym.vector.utils.batch_space(single, env.num_envs)
    return vw.TransformObservation(env, lambda obs: obs, observation_space=batched, single_observation_space=single)

"""Torch-native, batched classic-control environments (state in tensors on any device).

They follow Gymnasium's vector-env API and NEXT_STEP autoreset and put episode
statistics in ``info`` like ``RecordEpisodeStatistics``, but take and return tensors::

    env = make_torch_env("CartPole-v1", num_envs=4096, device="cuda", seed=0)
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step(actions)  # all tensors on cuda
"""

from __future__ import annotations

from typing import Any, Optional

from rlexp.errors import ConfigError
from rlexp.envs.torch_native.acrobot import AcrobotTorchEnv
from rlexp.envs.torch_native.base import DeviceLike, TorchVectorEnv
from rlexp.envs.torch_native.cartpole import CartPoleTorchEnv
from rlexp.envs.torch_native.continuous_mountain_car import MountainCarContinuousTorchEnv
from rlexp.envs.torch_native.mountain_car import MountainCarTorchEnv
from rlexp.envs.torch_native.pendulum import PendulumTorchEnv

TORCH_ENVS: dict[str, type[TorchVectorEnv]] = {
    cls.env_id: cls
    for cls in (CartPoleTorchEnv, AcrobotTorchEnv, MountainCarTorchEnv, MountainCarContinuousTorchEnv, PendulumTorchEnv)
}


def make_torch_env(env_id: str, num_envs: int, device: DeviceLike = "cpu", seed: Optional[int] = None, **kwargs: Any) -> TorchVectorEnv:
    """The torch-native vector env for a Gymnasium id. ``kwargs``: ``max_episode_steps``
    (default: the registered limit), ``dtype`` and the env's own options (e.g.
    ``sutton_barto_reward`` for CartPole, ``g`` for Pendulum)."""
    cls = TORCH_ENVS.get(env_id)
    if cls is None:
        raise ConfigError("id", f"no torch-native version of {env_id!r}; supported: {', '.join(TORCH_ENVS)}")
    try:
        return cls(num_envs=num_envs, device=device, seed=seed, **kwargs)
    except TypeError as e:
        raise ConfigError("make_kwargs", f"{env_id} rejected {kwargs}: {e}") from None


__all__ = [
    "TORCH_ENVS",
    "TorchVectorEnv",
    "make_torch_env",
    "CartPoleTorchEnv",
    "AcrobotTorchEnv",
    "MountainCarTorchEnv",
    "MountainCarContinuousTorchEnv",
    "PendulumTorchEnv",
]

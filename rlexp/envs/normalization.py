"""Observation and reward normalisation statistics: read from, written to and copied between
the vector envs' NormalizeObservation / NormalizeReward wrappers (checkpoints, evaluation)."""

from __future__ import annotations

from typing import Any, Optional

import gymnasium as gym
from gymnasium.wrappers import vector as vw


def find_wrapper(env: gym.vector.VectorEnv, cls: type) -> Optional[gym.vector.VectorEnv]:
    while env is not None:
        if isinstance(env, cls):
            return env
        env = getattr(env, "env", None)
    return None


def rms_state(rms: Any) -> dict[str, Any]:
    """A gymnasium RunningMeanStd as checkpoint-safe values (tensors and a float)."""
    import torch

    return {"mean": torch.as_tensor(rms.mean), "var": torch.as_tensor(rms.var), "count": float(rms.count)}


def load_rms(rms: Any, state: dict[str, Any]) -> None:
    """Set a RunningMeanStd from :func:`rms_state` values (copies, in its own dtype)."""
    rms.mean = state["mean"].numpy().astype(rms.mean.dtype)
    rms.var = state["var"].numpy().astype(rms.var.dtype)
    rms.count = state["count"]


def normalization_state(env: gym.vector.VectorEnv) -> dict[str, Any]:
    """Observation and reward normalisation statistics of ``env`` (None where it has none)."""
    obs_norm, reward_norm = find_wrapper(env, vw.NormalizeObservation), find_wrapper(env, vw.NormalizeReward)
    return {
        "obs_rms": rms_state(obs_norm.obs_rms) if obs_norm is not None else None,
        "return_rms": rms_state(reward_norm.return_rms) if reward_norm is not None else None,
    }


def load_normalization_state(env: gym.vector.VectorEnv, state: dict[str, Any]) -> None:
    """Inverse of :func:`normalization_state`, for the wrappers ``env`` has."""
    for wrapper_cls, key in ((vw.NormalizeObservation, "obs_rms"), (vw.NormalizeReward, "return_rms")):
        wrapper = find_wrapper(env, wrapper_cls)
        if wrapper is not None and state.get(key) is not None:
            load_rms(getattr(wrapper, key), state[key])


def sync_obs_normalization(source: gym.vector.VectorEnv, target: gym.vector.VectorEnv) -> None:
    """Copy observation-normalisation statistics (training env -> evaluation env)."""
    load_normalization_state(target, {"obs_rms": normalization_state(source)["obs_rms"]})

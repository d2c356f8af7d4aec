"""The environment factory: Gymnasium vector envs by id, with Gymnasium's own vector wrappers.

The vector env keeps Gymnasium's default NEXT_STEP autoreset: the step that ends an
episode returns the episode's true final observation (so a truncated episode
bootstraps from it), and the following step returns the reset observation with
reward 0. The trainer marks that following step invalid (see rlexp.rollout).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Optional

import gymnasium as gym
from gymnasium.wrappers import vector as vw

from rlexp.errors import ConfigError, require

EXTRAS = {"box2d": "box2d", "mujoco": "mujoco"}
BACKENDS = ("gymnasium", "torch")


@dataclass
class EnvSpec:
    """What to build; checked on construction, built by :meth:`make`."""

    id: str
    num_envs: int = 8
    backend: str = "gymnasium"
    vectorization: str = "sync"
    normalize_obs: bool = False
    normalize_reward: bool = False
    clip_obs: Optional[float] = None
    clip_reward: Optional[float] = None
    max_episode_steps: Optional[int] = None
    make_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.num_envs >= 1, "num_envs", f"must be >= 1, got {self.num_envs}")
        require(self.vectorization in ("sync", "async"), "vectorization", f"must be 'sync' or 'async', got {self.vectorization!r}")
        require(self.clip_obs is None or self.clip_obs > 0, "clip_obs", f"must be > 0 or null, got {self.clip_obs}")
        require(self.clip_reward is None or self.clip_reward > 0, "clip_reward", f"must be > 0 or null, got {self.clip_reward}")
        require(self.max_episode_steps is None or self.max_episode_steps >= 1, "max_episode_steps", "must be >= 1 or null")
        self.make_kwargs = dict(self.make_kwargs)
        require(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "torch":
            from rlexp.envs.torch_native import TORCH_ENVS

            require(self.id in TORCH_ENVS, "id", f"no torch-native version of {self.id!r}; backend=torch supports {', '.join(TORCH_ENVS)}")
            for key in ("normalize_obs", "normalize_reward", "clip_obs", "clip_reward"):
                require(not getattr(self, key), key, "is a gymnasium (numpy) wrapper: not available with backend=torch")
            return
        check_env_id(self.id)

    def make(
        self, num_envs: Optional[int] = None, training: bool = True, gamma: float = 0.99, device: Any = "cpu"
    ) -> gym.vector.VectorEnv:
        """The wrapped vector env. ``training=False`` (evaluation) leaves rewards raw and
        observation statistics frozen (copy them in with :func:`sync_obs_normalization`).
        ``gamma`` is the discount NormalizeReward scales rewards by: the algorithm's own."""
        kwargs = dict(self.make_kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        if self.backend == "torch":  # state, inputs and outputs stay on ``device``
            from rlexp.envs.torch_native import make_torch_env

            return make_torch_env(self.id, num_envs or self.num_envs, device=device, **kwargs)
        try:
            env = gym.make_vec(self.id, num_envs=num_envs or self.num_envs, vectorization_mode=self.vectorization, **kwargs)
        except gym.error.DependencyNotInstalled as e:
            raise ConfigError("id", f"{self.id} needs an optional dependency: {missing_extra_hint(self.id, e)}") from None
        except TypeError as e:
            raise ConfigError("make_kwargs", f"{self.id} rejected {kwargs}: {e}") from None
        env = vw.RecordEpisodeStatistics(env)
        if isinstance(env.single_action_space, gym.spaces.Box):
            env = vw.ClipAction(env)
        if self.normalize_obs:
            env = vw.NormalizeObservation(env)
            env.update_running_mean = training
        if self.clip_obs is not None:
            env = vw.TransformObservation(env, lambda obs, c=self.clip_obs: obs.clip(-c, c))
        if training and self.normalize_reward:
            env = vw.NormalizeReward(env, gamma=gamma)
        if training and self.clip_reward is not None:
            env = vw.ClipReward(env, -self.clip_reward, self.clip_reward)
        return env


def check_env_id(env_id: str) -> None:
    if ":" in env_id:  # "package.module:Env-v0": importing the module registers the env
        module, _, name = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError("id", f"cannot import {module!r} for {env_id!r}: {e}") from None
        env_id = name
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.pprint_registry() for the list"
    raise ConfigError("id", f"unknown Gymnasium environment {env_id!r}{hint}")


def missing_extra_hint(env_id: str, error: Exception) -> str:
    entry = str(gym.registry[env_id.rpartition(":")[2]].entry_point)
    for module, extra in EXTRAS.items():
        if module in entry:
            return f'install it with: pip install "rlexp[{extra}]"'
    return str(error)


def is_torch_env(env: gym.vector.VectorEnv) -> bool:
    from rlexp.envs.torch_native import TorchVectorEnv

    return isinstance(env, TorchVectorEnv)


class ActionAdapter:
    """Policy actions -> what the env takes: tensors stay on the device for torch-native
    envs (clipped to a Box's bounds, as ClipAction does for gymnasium envs); gymnasium
    envs get one numpy array per step."""

    def __init__(self, env: gym.vector.VectorEnv, device: Any):
        self.native = is_torch_env(env)
        space = env.single_action_space
        self.bounds = None
        if self.native and isinstance(space, gym.spaces.Box):
            import torch

            self.bounds = (torch.as_tensor(space.low, device=device), torch.as_tensor(space.high, device=device))

    def __call__(self, action: Any) -> Any:
        if not self.native:
            return action.cpu().numpy()
        return action if self.bounds is None else action.clamp(*self.bounds)

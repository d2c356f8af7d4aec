"""The environment factory: Gymnasium vector envs by id, with Gymnasium's own vector wrappers.

The vector env keeps Gymnasium's default NEXT_STEP autoreset: the step that ends an
episode returns the episode's true final observation (so a truncated episode
bootstraps from it), and the following step returns the reset observation with
reward 0. The trainer marks that following step invalid (see rlexp.data.rollout).
"""

from __future__ import annotations

import difflib
import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import vector as vw

from rlexp.envs.masks import SOURCES as MASK_SOURCES
from rlexp.envs.masks import ActionMasks, provided_source
from rlexp.envs.minigrid import declare_code_bounds, is_minigrid
from rlexp.envs.velocity import mask_velocity, velocity_entries
from rlexp.errors import ConfigError, require
from rlexp.data.observations import encodable

log = logging.getLogger("rlexp")

EXTRAS = {"box2d": "box2d", "mujoco": "mujoco", "minatar": "minatar"}
#: env ids that an optional package registers when imported: (id prefix, module, rlexp extra)
FAMILIES = (("MiniGrid-", "minigrid", "minigrid"), ("BabyAI-", "minigrid", "minigrid"), ("ALE/", "ale_py", "atari"),
            ("MinAtar/", "rlexp.envs.minatar", "minatar"))  # registers the ids; minatar itself is imported by gym.make
BACKENDS = ("gymnasium", "torch")
#: evaluation episodes of envs registered without a time limit end here (env.max_episode_steps
#: overrides): 27,000 steps is ALE's 108,000-frame cap at frame skip 4
EVAL_STEP_LIMIT = 27_000


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
    obs_keys: Optional[list[str]] = None  # Dict observations: the entries to keep (null: all rlexp can encode)
    mask_velocity: bool = False  # leave the velocities out of the observation (rlexp.envs.velocity)
    action_mask: str = "auto"  # where invalid-action masks come from: auto | obs | info | method | none (rlexp.envs.masks)
    info_metrics: Any = None  # info keys logged at episode ends: [key, ...] or {key: mean|sum|max|min} (rlexp.run.info_metrics)

    def __post_init__(self) -> None:
        #: env.info_metrics as {key: reduction}
        self.info_reductions = info_metric_reductions(self.info_metrics)
        require(self.action_mask in MASK_SOURCES, "action_mask", f"must be one of {', '.join(MASK_SOURCES)}, got {self.action_mask!r}")
        #: the mask source in use once an env is made (auto resolved): obs, info, method or none
        self.mask_source = "none" if self.action_mask == "auto" else self.action_mask
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
            require(self.action_mask in ("auto", "none"), "action_mask",
                    "the torch-native envs (classic control) allow every action in every state; set it to auto or none")
            self.mask_source = "none"
            for key in ("normalize_obs", "normalize_reward", "clip_obs", "clip_reward", "mask_velocity"):
                require(not getattr(self, key), key, "is a gymnasium (numpy) wrapper: not available with backend=torch")
            return
        check_env_id(self.id)
        if self.mask_velocity:
            velocity_entries(self.id)  # an env whose velocities rlexp does not know fails here, before any env is made

    def make(
        self, num_envs: Optional[int] = None, training: bool = True, gamma: float = 0.99, device: Any = "cpu"
    ) -> gym.vector.VectorEnv:
        """The wrapped vector env. ``training=False`` (evaluation) leaves rewards raw and
        observation statistics frozen (copy them in with :func:`sync_obs_normalization`).
        ``gamma`` is the discount NormalizeReward scales rewards by: the algorithm's own."""
        kwargs = dict(self.make_kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        elif not training and self.backend == "gymnasium" and registered_step_limit(self.id) is None:
            # evaluation waits for every episode to end: a deterministic policy that loops in an
            # env with no time limit (CliffWalking) would keep it waiting forever
            kwargs["max_episode_steps"] = EVAL_STEP_LIMIT
        if self.backend == "torch":  # state, inputs and outputs stay on ``device``
            from rlexp.envs.torch_native import make_torch_env

            return make_torch_env(self.id, num_envs or self.num_envs, device=device, **kwargs)
        try:
            env = gym.make_vec(self.id, num_envs=num_envs or self.num_envs, vectorization_mode=self.vectorization, **kwargs)
        except gym.error.DependencyNotInstalled as e:
            raise ConfigError("id", f"{self.id} needs an optional dependency: {missing_extra_hint(self.id, e)}") from None
        except (TypeError, ValueError) as e:  # an unknown keyword or a value the env refuses
            raise ConfigError("make_kwargs", f"{self.id} rejected {kwargs}: {e}") from None
        env = vw.RecordEpisodeStatistics(env)
        try:
            env = self.select_entries(env, training)
            if is_minigrid(self.id):
                env = declare_code_bounds(env)
            if self.mask_velocity:
                env = mask_velocity(env, self.id)
            require(not self.normalize_obs or isinstance(env.single_observation_space, gym.spaces.Box), "normalize_obs",
                    f"applies to Box observations only; {self.id}'s are {env.single_observation_space}")
        except ConfigError:
            env.close()
            raise
        if isinstance(env.single_action_space, gym.spaces.Box):
            env = vw.ClipAction(env)
        if self.normalize_obs:
            env = vw.NormalizeObservation(env)
            env.update_running_mean = training
        if self.clip_obs is not None:
            env = vw.TransformObservation(env, lambda obs, c=self.clip_obs: obs.clip(-c, c))
        try:
            env = self.with_action_masks(env, kwargs)
        except ConfigError:
            env.close()
            raise
        if training and self.normalize_reward:
            env = vw.NormalizeReward(env, gamma=gamma)
        if training and self.clip_reward is not None:
            env = vw.ClipReward(env, -self.clip_reward, self.clip_reward)
        return env

    def with_action_masks(self, env: gym.vector.VectorEnv, make_kwargs: dict[str, Any]) -> gym.vector.VectorEnv:
        """The env with its action masks in the observation (rlexp.envs.masks), from the source
        ``action_mask`` names or, for auto, the one the env provides (``mask_source`` says which)."""
        source = self.action_mask
        if source == "auto":  # looked up once: the evaluation envs made later have the same source
            source = self.auto_source = getattr(self, "auto_source", None) or provided_source(self.id.rpartition(":")[2], make_kwargs, env)
        self.mask_source = source
        return env if source == "none" else ActionMasks(env, source, self.id)

    def select_entries(self, env: gym.vector.VectorEnv, training: bool) -> gym.vector.VectorEnv:
        """Keep the Dict observation entries named in ``obs_keys``; without it, leave out the
        entries no encoder reads (MiniGrid's text mission), saying so once."""
        space = env.single_observation_space
        if self.obs_keys is not None:
            require(isinstance(space, gym.spaces.Dict), "obs_keys", f"applies to Dict observations; {self.id}'s are {space}")
            unknown = [k for k in self.obs_keys if k not in space.spaces]
            require(not unknown, "obs_keys", f"{self.id} has no observation entry {', '.join(map(repr, unknown))}; "
                                             f"its entries are: {', '.join(space.spaces)}")
            require(len(self.obs_keys) > 0, "obs_keys", f"name at least one entry: {', '.join(space.spaces)}")
            return vw.FilterObservation(env, list(self.obs_keys))
        if not isinstance(space, gym.spaces.Dict):
            return env
        unusable = [key for key, sub in space.spaces.items() if not encodable(sub)]
        if not unusable:
            return env
        if training:
            log.info("%s: leaving out observation entr%s %s, which rlexp has no encoder for; env.obs_keys=[...] names the entries to keep",
                     self.id, "y" if len(unusable) == 1 else "ies", ", ".join(f"{k} ({type(space.spaces[k]).__name__})" for k in unusable))
        return vw.FilterObservation(env, [key for key in space.spaces if key not in unusable])


#: how env.info_metrics reduces a key's values over the episodes that finished
INFO_REDUCTIONS = {"mean": np.mean, "sum": np.sum, "max": np.max, "min": np.min}


def info_metric_reductions(setting: Any) -> dict[str, str]:
    """``env.info_metrics`` as {key: reduction}: a list of keys (each reduced by its mean), a
    map of key to reduction, or null (none)."""
    if setting is None:
        return {}
    if isinstance(setting, str):
        raise ConfigError("info_metrics", f"must be a list of info keys or a {{key: reduction}} map, got {setting!r}: "
                                          f"write env.info_metrics=[{setting}]")
    pairs = {str(k): str(v) for k, v in setting.items()} if hasattr(setting, "items") else {str(k): "mean" for k in setting}
    for key, reduction in pairs.items():
        require(reduction in INFO_REDUCTIONS, f"info_metrics.{key}", f"unknown reduction {reduction!r}; choose one of {', '.join(INFO_REDUCTIONS)}")
        require(bool(key) and not key.startswith("_") and key != "episode", "info_metrics",
                f"{key!r} is not a value to read from info (rlexp logs each episode's return and length itself)")
    return pairs


def check_env_id(env_id: str) -> None:
    if ":" in env_id:  # "package.module:Env-v0": importing the module registers the env
        module, _, name = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError("id", f"cannot import {module!r} for {env_id!r}: {e}") from None
        env_id = name
    register_family(env_id)
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see gymnasium.pprint_registry() for the list"
    raise ConfigError("id", f"unknown Gymnasium environment {env_id!r}{hint}")


def registered_step_limit(env_id: str) -> Optional[int]:
    spec = gym.registry.get(env_id.rpartition(":")[2])
    return spec.max_episode_steps if spec is not None else None


def reward_threshold(env_id: Optional[str]) -> Optional[float]:
    """Gymnasium's ``reward_threshold`` for the environment (None when it has none)."""
    if not env_id:
        return None
    try:
        threshold = gym.spec(env_id).reward_threshold
    except Exception:  # noqa: BLE001 - an env that is not registered here (e.g. a module to import) has none
        return None
    return None if threshold is None else float(threshold)


def register_family(env_id: str) -> None:
    """Import the package that registers ``env_id`` (MiniGrid, ALE) if it is one of theirs."""
    for prefix, module, extra in FAMILIES:
        if env_id.startswith(prefix) and env_id not in gym.registry:
            try:
                importlib.import_module(module)
            except ImportError:
                raise ConfigError("id", f"{env_id} needs the {module} package: pip install \"rlexp[{extra}]\"") from None


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
    """Policy actions -> what the env takes. Torch-native envs get tensors on the device
    (clipped to a Box's bounds, as ClipAction does for gymnasium envs); gymnasium envs get
    one numpy array per step, in the space's own terms: a Discrete or MultiDiscrete
    ``start`` added back (policies count from 0), MultiDiscrete and MultiBinary actions in
    the space's shape and dtype (policies give flat vectors)."""

    def __init__(self, env: gym.vector.VectorEnv, device: Any):
        self.native = is_torch_env(env)
        space = env.single_action_space
        self.bounds = None
        self.shape = self.offset = self.dtype = None
        if self.native and isinstance(space, gym.spaces.Box):
            import torch

            self.bounds = (torch.as_tensor(space.low, device=device), torch.as_tensor(space.high, device=device))
        if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)) and np.any(space.start != 0):
            self.offset = np.asarray(space.start)
        if isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
            self.shape, self.dtype = tuple(space.shape), space.dtype

    def __call__(self, action: Any) -> Any:
        if self.native:
            return action if self.bounds is None else action.clamp(*self.bounds)
        if hasattr(action, "cpu"):  # a tensor
            action = action.cpu().numpy()
        if self.shape is not None:
            action = action.reshape((-1, *self.shape))
        if self.offset is not None:
            action = action + self.offset
        if self.dtype is not None:
            action = action.astype(self.dtype, copy=False)
        return action

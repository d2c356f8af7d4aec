"""The shared part of the torch-native vector envs: batching, autoreset, time limit,
episode statistics, seeding. Each env module only says how one batched step moves
the state (``dynamics``), what an observation is and how initial states are drawn.

Semantics are those of ``gym.make_vec(id, vectorization_mode="sync")`` wrapped in
``RecordEpisodeStatistics``:

- NEXT_STEP autoreset: the step that ends an episode returns the true final
  observation; the step after it returns the reset observation with reward 0,
  terminated = truncated = False, and ignores that sub-env's action.
- Truncation is Gymnasium's TimeLimit: the ``max_episode_steps``-th step of an
  episode is truncated (it may be terminated as well).
- ``info["episode"] = {"r": returns, "l": lengths}`` and ``info["_episode"]`` (the
  mask of the sub-envs whose episode ended) appear only on steps where one ended.

All state lives in tensors on ``device``; a step is a handful of batched tensor ops
and never loops over sub-envs. Internally the state is stored variables-by-envs,
shape ``(len(state_names), num_envs)``, so that every physical quantity is one
contiguous vector (elementwise ops on strided columns cost several times more on CPU);
:attr:`TorchVectorEnv.state` shows it the usual way round, one row per sub-env.

Observations are float32 (the observation space's dtype); state, rewards and returns
use ``dtype``: float32 by default, float64 to compare with Gymnasium's numpy envs.
On the CPU a step reads two numbers (how many sub-envs reset, whether any episode
ended) to do only the work needed. On CUDA each such read would stall the host until
the GPU catches up, so a step there never reads anything back: it draws initial
states for every sub-env and keeps those of the resetting ones, and it puts
``info["episode"]``/``info["_episode"]`` in every step's info (the mask all false when
no episode ended). Consumers that select with the mask see the same episodes.
"""

from __future__ import annotations

import functools
import numbers
import operator
from typing import Any, ClassVar, Optional, Union

import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlexp.errors import require

DeviceLike = Union[str, torch.device]
DTypeLike = Union[str, torch.dtype]


def resolve_torch_device(device: DeviceLike) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    require(device.type != "cuda" or torch.cuda.is_available(), "device", f"{device} requested but CUDA is not available; use cpu or auto")
    return device


def resolve_dtype(dtype: DTypeLike) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), None)
    require(dtype in (torch.float32, torch.float64), "dtype", f"must be float32 or float64, got {dtype}")
    return dtype


def uniform(generator: torch.Generator, shape: tuple[int, ...], low: Any, high: Any, dtype: torch.dtype) -> torch.Tensor:
    """``low + (high - low) * U[0, 1)``, the form numpy's ``Generator.uniform`` uses.
    Bounds are numbers or tensors; numbers stay Python scalars (no host-to-device copy,
    which on CUDA would wait for the queued work: autoresets draw on every step there)."""
    u = torch.rand(shape, generator=generator, dtype=dtype, device=generator.device)
    if isinstance(low, numbers.Real) and isinstance(high, numbers.Real):
        return float(low) + (float(high) - float(low)) * u
    low = torch.as_tensor(low, dtype=dtype, device=generator.device)
    high = torch.as_tensor(high, dtype=dtype, device=generator.device)
    return low + (high - low) * u


@functools.lru_cache(maxsize=64)
def column(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A ``(len(values), 1)`` tensor on ``device``, made once per distinct bounds."""
    return torch.tensor(values, dtype=dtype, device=device)[:, None]


def uniform_columns(generator: torch.Generator, n: int, low: list[float], high: list[float], dtype: torch.dtype) -> torch.Tensor:
    """``n`` uniform draws of a state vector, shape ``(len(low), n)``: one row per variable."""
    device = generator.device
    return uniform(generator, (len(low), n), column(tuple(map(float, low)), dtype, device), column(tuple(map(float, high)), dtype, device), dtype)


class TorchVectorEnv(VectorEnv):
    """Base class: a batch of ``num_envs`` copies of one classic-control env in tensors.

    Subclasses set the class attributes and the single-env spaces, and implement
    :meth:`sample_initial_state`, :meth:`dynamics` and :meth:`observe`.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    env_id: ClassVar[str]
    state_names: ClassVar[tuple[str, ...]]  # one column of ``state`` each
    default_max_episode_steps: ClassVar[int]  # the registered TimeLimit

    def __init__(
        self,
        num_envs: int = 1,
        device: DeviceLike = "cpu",
        seed: Optional[int] = None,
        max_episode_steps: Optional[int] = None,
        dtype: DTypeLike = torch.float32,
    ):
        require(num_envs >= 1, "num_envs", f"must be >= 1, got {num_envs}")
        if max_episode_steps is None:
            max_episode_steps = self.default_max_episode_steps
        require(max_episode_steps >= 1, "max_episode_steps", f"must be >= 1 or null, got {max_episode_steps}")
        self.num_envs = num_envs
        self.device = resolve_torch_device(device)
        self.dtype = resolve_dtype(dtype)
        self.max_episode_steps = max_episode_steps
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._discrete = isinstance(self.single_action_space, spaces.Discrete)
        # CUDA: no host reads inside step() (see the module docstring)
        self.sync_free = self.device.type != "cpu"

        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

        self._state: Optional[torch.Tensor] = None
        self.elapsed_steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.episode_returns = torch.zeros(num_envs, dtype=self.dtype, device=self.device)
        # sub-envs whose episode ended on the last step: the next step resets them
        self.needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)

    # -- what each env defines --------------------------------------------------------

    def sample_initial_state(self, n: int, options: Optional[dict[str, Any]] = None) -> torch.Tensor:
        """``n`` initial states, shape ``(len(state_names), n)``; ``options`` as in the
        Gymnasium env's ``reset(options=...)`` (autoresets pass None)."""
        raise NotImplementedError

    def dynamics(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for every sub-env: ``(next_state, reward, terminated)``; states are
        ``(len(state_names), num_envs)``, the rest ``(num_envs,)``. Must return a new
        tensor, not modify ``state``."""
        raise NotImplementedError

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        """Observations ``(num_envs, obs_dim)`` of states ``(len(state_names), num_envs)``."""
        raise NotImplementedError

    # -- the vector-env API -------------------------------------------------------------

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset every sub-env (or those in ``options["reset_mask"]``, as SyncVectorEnv
        allows). ``seed`` reseeds the one generator all sub-envs draw from."""
        if seed is not None:
            try:
                seed = operator.index(seed)
            except TypeError:
                raise TypeError(f"seed must be an int (one generator serves the whole batch), got {seed!r}") from None
            self.generator.manual_seed(seed)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None or self._state is None:
            self._state = self.sample_initial_state(self.num_envs, options or None)
            mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        else:
            mask = torch.as_tensor(mask, dtype=torch.bool, device=self.device).reshape(self.num_envs)
            fresh = self.sample_initial_state(int(mask.sum()), options or None)
            self._state = self._state.clone()
            self._state[:, mask] = fresh
        self._restart_episodes(mask)
        return self._observation(), {}

    def step(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() (or set_state()) before step()")
        actions = self._as_actions(actions)
        resetting = self.needs_reset
        state, reward, terminated = self.dynamics(self._state, actions)
        elapsed = self.elapsed_steps + 1
        truncated = elapsed >= self.max_episode_steps
        returns = self.episode_returns + reward
        # NEXT_STEP autoreset: the resetting sub-envs ignore their action and start over
        if self.sync_free:
            state = torch.where(resetting, self.sample_initial_state(self.num_envs), state)
            any_resetting = True  # not known without a sync; the masked updates below are exact either way
        else:
            num_resetting = int(resetting.sum())  # the count says how many states to draw
            any_resetting = num_resetting > 0
            if any_resetting:
                state[:, resetting] = self.sample_initial_state(num_resetting)
        if any_resetting:
            keep = ~resetting
            reward = reward.masked_fill(resetting, 0.0)
            terminated, truncated = terminated & keep, truncated & keep
            elapsed = elapsed.masked_fill(resetting, 0)
            returns = returns.masked_fill(resetting, 0.0)
        self._state, self.elapsed_steps, self.episode_returns = state, elapsed, returns
        self.needs_reset = done = terminated | truncated

        infos: dict[str, Any] = {}
        if self.sync_free or bool(done.any()):
            infos["episode"] = {
                "r": torch.where(done, self.episode_returns, 0.0),
                "l": torch.where(done, self.elapsed_steps, 0),
            }
            infos["_episode"] = done.clone()  # the env keeps `done`; callers may edit theirs
        return self._observation(), reward, terminated, truncated, infos

    # -- direct access (parity tests, curricula) -----------------------------------------

    @property
    def state(self) -> Optional[torch.Tensor]:
        """The physical state, shape ``(num_envs, len(state_names))`` in ``dtype``; the
        same quantities as the Gymnasium env's ``state`` attribute. A view: copy it to keep it."""
        return None if self._state is None else self._state.T

    def set_state(self, state: Any, mask: Optional[Any] = None) -> torch.Tensor:
        """Put sub-envs in the given states as if a reset had drawn them (step counter,
        return and pending autoreset cleared). With ``mask``, only those rows change.
        Returns the observation of the new state."""
        state = torch.as_tensor(state, dtype=self.dtype, device=self.device)
        shape = (self.num_envs, len(self.state_names))
        if state.shape != shape:
            raise ValueError(f"state must have shape {shape} ({', '.join(self.state_names)}), got {tuple(state.shape)}")
        if mask is None or self._state is None:
            mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
            self._state = state.T.contiguous()
        else:
            mask = torch.as_tensor(mask, dtype=torch.bool, device=self.device).reshape(self.num_envs)
            self._state = torch.where(mask, state.T, self._state)
        self._restart_episodes(mask)
        return self._observation()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id}, num_envs={self.num_envs}, device={self.device}, dtype={self.dtype})"

    # -- helpers ----------------------------------------------------------------------

    def _restart_episodes(self, mask: torch.Tensor) -> None:
        self.elapsed_steps = self.elapsed_steps.masked_fill(mask, 0)
        self.episode_returns = self.episode_returns.masked_fill(mask, 0.0)
        self.needs_reset = self.needs_reset & ~mask

    def _observation(self) -> torch.Tensor:
        return self.observe(self._state).to(torch.float32)

    def _as_actions(self, actions: Any) -> torch.Tensor:
        """A flat ``(num_envs,)`` tensor on the env's device: integer for discrete
        actions, ``dtype`` for the (one-dimensional) Box actions."""
        actions = torch.as_tensor(actions, device=self.device)
        if actions.numel() != self.num_envs:
            raise ValueError(f"expected one action per sub-env ({self.action_space.shape}), got shape {tuple(actions.shape)}")
        actions = actions.reshape(self.num_envs)
        return actions if self._discrete else actions.to(self.dtype)

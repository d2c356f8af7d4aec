"""Invalid-action masks: where an env says which actions are allowed, read into the observation.

``env.action_mask`` chooses the source:

- ``obs``: an ``action_mask`` entry of a Dict observation (PettingZoo's classic games);
- ``info``: ``info["action_mask"]`` after every reset and step (gymnasium's Taxi);
- ``method``: an ``action_masks()`` method on the env, as sb3-contrib's ``ActionMasker`` gives
  it, called on every sub-env through the vector env (``VectorEnv.call``; sync and async);
- ``auto`` (the default): whichever of those the env provides, looked up on one probe env;
- ``none``: no mask (an ``action_mask`` entry of the observation is then an ordinary input).

Whatever the source, :class:`ActionMasks` hands the mask on in one form: a bool entry
``action_mask`` of a Dict observation (the env's own observation under ``observation`` when it
was not a Dict), one flag per choice in the policy's own layout (:func:`mask_layout`). So the
rollout stores the mask of every step beside its observation, and the update, a recurrent
policy's sequences, evaluation and videos all see the mask the action was taken under; nothing
downstream asks where it came from.

A state with no allowed action stops the run with a line naming the sub-env and the vector
step, except on the step that ends an episode: the action taken there is Gymnasium's autoreset
step, ignored by the env, so any mask will do and every action is allowed.
"""

from __future__ import annotations

from typing import Any, Optional

import gymnasium as gym
import numpy as np

from rlexp.data.observations import MASK_KEY
from rlexp.errors import ConfigError, TrainingError
#: where the env's own observation goes when it was not a Dict
OBS_KEY = "observation"
SOURCES = ("auto", "obs", "info", "method", "none")


def mask_layout(space: gym.Space) -> Optional[list[int]]:
    """The mask's groups for an action space (one flag per choice, a group per sub-action that
    must keep one choice allowed): Discrete(n) one group of n; MultiDiscrete(nvec) one group per
    entry (the concatenated per-entry masks, as sb3-contrib lays them out); MultiBinary(n) two
    flags per bit (may be 0, may be 1). None for spaces that cannot be masked (Box)."""
    if isinstance(space, gym.spaces.Discrete):
        return [int(space.n)]
    if isinstance(space, gym.spaces.MultiDiscrete):
        return [int(n) for n in np.asarray(space.nvec).reshape(-1)]
    if isinstance(space, gym.spaces.MultiBinary):
        return [2] * int(np.prod(space.shape))
    return None


def provided_source(env_id: str, make_kwargs: dict[str, Any], vector_env: gym.vector.VectorEnv) -> str:
    """``auto``: the source ``env_id`` provides (obs, method or info), or none. An observation
    entry is seen on the vector env; a method and an info entry on one probe env, reset once."""
    space = vector_env.single_observation_space
    if isinstance(space, gym.spaces.Dict) and MASK_KEY in space.spaces:
        return "obs"
    if mask_layout(vector_env.single_action_space) is None:
        return "none"
    probe = gym.make(env_id, **make_kwargs)
    try:
        try:
            probe.get_wrapper_attr("action_masks")
            return "method"
        except AttributeError:
            pass
        _, info = probe.reset(seed=0)
        return "info" if MASK_KEY in info else "none"
    finally:
        probe.close()


class ActionMasks(gym.vector.VectorWrapper):
    """The vector env with each step's action mask in the observation (see the module's doc)."""

    def __init__(self, env: gym.vector.VectorEnv, source: str, env_id: str):
        super().__init__(env)
        if source not in SOURCES[1:4]:
            raise ValueError(f"source must be obs, info or method, got {source!r}")
        self.source, self.env_id = source, env_id
        groups = mask_layout(env.single_action_space)
        if groups is None:
            raise ConfigError("action_mask", f"masks apply to discrete actions (Discrete, MultiDiscrete, MultiBinary); {env_id}'s actions "
                                             f"are {env.single_action_space}; set env.action_mask=none")
        self.groups = groups
        self.length = sum(groups)
        self.starts = np.cumsum([0] + groups[:-1])
        self.n_bits = len(groups) if isinstance(env.single_action_space, gym.spaces.MultiBinary) else None
        inner = env.single_observation_space
        mask_space = gym.spaces.Box(0, 1, (self.length,), dtype=np.bool_)
        if isinstance(inner, gym.spaces.Dict):
            if source == "obs" and MASK_KEY not in inner.spaces:
                raise ConfigError("action_mask", f"obs: {env_id}'s observation has no {MASK_KEY!r} entry (its entries: "
                                                 f"{', '.join(inner.spaces)}); use auto, info or method")
            self.wrapped = False
            entries = dict(inner.spaces)
        else:
            if source == "obs":
                raise ConfigError("action_mask", f"obs: {env_id}'s observation is {inner}, not a Dict with an {MASK_KEY!r} entry; "
                                                 "use auto, info or method")
            self.wrapped = True
            entries = {OBS_KEY: inner}
        entries[MASK_KEY] = mask_space
        self.single_observation_space = gym.spaces.Dict(entries)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)
        self.vector_steps = 0

    # -- the vector env's interface ------------------------------------------------------------------
    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.vector_steps = 0
        return self.with_mask(obs, self.read(obs, info), ended=None), info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.vector_steps += 1
        return self.with_mask(obs, self.read(obs, info), ended=np.logical_or(terminated, truncated)), reward, terminated, truncated, info

    # -- reading and checking ----------------------------------------------------------------------------
    def read(self, obs: Any, info: dict) -> np.ndarray:
        """This step's masks (num_envs, flags) as the source gives them."""
        if self.source == "obs":
            raw = obs[MASK_KEY]
        elif self.source == "info":
            if MASK_KEY not in info:
                raise TrainingError(f"env.action_mask=info: {self.env_id}'s info has no {MASK_KEY!r} entry at vector step "
                                    f"{self.vector_steps} (its entries: {', '.join(k for k in info if not k.startswith('_')) or 'none'})")
            raw = info[MASK_KEY]
            present = info.get("_" + MASK_KEY)
            if present is not None and not np.all(present):
                missing = int(np.flatnonzero(~np.asarray(present))[0])
                raise TrainingError(f"env.action_mask=info: sub-env {missing} of {self.env_id} gave no {MASK_KEY!r} in its info at vector step "
                                    f"{self.vector_steps}")
        else:
            raw = np.stack([np.asarray(m) for m in self.env.unwrapped.call("action_masks")])  # each sub-env's, sync or async
        return self.layout(np.asarray(raw))

    def layout(self, raw: np.ndarray) -> np.ndarray:
        """(num_envs, flags) bool masks in the policy's layout; MultiBinary masks may come with
        one flag per bit (may the bit be 1: 0 stays allowed) or two (may be 0, may be 1)."""
        raw = raw.reshape(raw.shape[0], -1).astype(bool, copy=False)
        if self.n_bits is not None and raw.shape[1] == self.n_bits:
            raw = np.stack([np.ones_like(raw), raw], axis=-1).reshape(raw.shape[0], -1)
        if raw.shape[1] != self.length:
            per_bit = f" (or {self.n_bits}, one per bit)" if self.n_bits is not None else ""
            raise TrainingError(f"env.action_mask={self.source}: {self.env_id}'s mask has {raw.shape[1]} entries; its action space "
                                f"{self.env.single_action_space} takes {self.length}{per_bit}")
        return raw

    def check(self, masks: np.ndarray, ended: Optional[np.ndarray]) -> np.ndarray:
        """``masks`` with every action allowed where an episode just ended (the next action is the
        ignored autoreset step); a sub-env with no allowed choice elsewhere stops the run."""
        allowed = np.add.reduceat(masks, self.starts, axis=1) > 0  # (num_envs, groups)
        ok = allowed.all(axis=1)
        if ok.all():
            return masks
        if ended is not None:
            ended = np.asarray(ended, dtype=bool)
            masks = masks.copy()
            masks[ended & ~ok] = True
            ok = ok | ended
        if not ok.all():
            env_index = int(np.flatnonzero(~ok)[0])
            where = "after reset" if self.vector_steps == 0 else f"at vector step {self.vector_steps}"
            group = int(np.flatnonzero(~allowed[env_index])[0])
            part = f" for action entry {group}" if len(self.groups) > 1 else ""
            raise TrainingError(f"env.action_mask={self.source}: sub-env {env_index} of {self.env_id} allows no action{part} {where} "
                                "in a state that is not terminal; the env must leave at least one action valid")
        return masks

    def with_mask(self, obs: Any, masks: np.ndarray, ended: Optional[np.ndarray]) -> dict:
        masks = self.check(masks, ended)
        out = {OBS_KEY: obs} if self.wrapped else dict(obs)
        out[MASK_KEY] = masks
        return out

    def add_mask(self, obs: Any, masks: Optional[Any], n: int) -> dict:
        """A batch of the env's own ``n`` observations with ``masks`` (num_envs, flags), or every
        action allowed where masks is None (``Agent.predict``)."""
        if masks is None:
            if not self.wrapped and MASK_KEY in obs:
                masks = np.asarray(obs[MASK_KEY])
            else:
                masks = np.ones((n, self.length), dtype=bool)
        masks = self.layout(np.asarray(masks).reshape(n, -1))
        allowed = (np.add.reduceat(masks, self.starts, axis=1) > 0).all(axis=1)
        if not allowed.all():
            raise ValueError(f"action_mask allows no action for observation {int(np.flatnonzero(~allowed)[0])} of the batch")
        out = {OBS_KEY: obs} if self.wrapped else dict(obs)
        out[MASK_KEY] = masks
        return out

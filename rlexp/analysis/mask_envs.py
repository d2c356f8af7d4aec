"""Small envs with invalid actions, for the action-mask tests and benchmark.

An identity task, as sb3-contrib builds its ``InvalidActionEnvDiscrete``: the observation names
a target action, the reward is 1 when the action equals it (an episode of ``ep_length`` steps:
the optimum return is ``ep_length``), and in every state ``n_invalid`` other choices are
forbidden, drawn afresh each step (so the mask changes every step). ``strict`` (the default)
raises on a forbidden action: a run that finishes took none.

Three action spaces (``space``): ``discrete`` (Discrete(n_actions)); ``multidiscrete``
(MultiDiscrete([n_actions, n_actions]): a target per entry, ``n_invalid`` forbidden per entry);
``multibinary`` (MultiBinary(n_bits): target bits; ``n_invalid`` bits whose target is 0 may
not be set, the mask giving one flag per bit, "may be 1").

Three mask sources, one env class each (gym ids, with ``env.id=rlexp.analysis.mask_envs:<id>``):
``RlexpInvalidActions-v0`` (``info["action_mask"]``), ``RlexpInvalidActionsMethod-v0`` (an
``action_masks()`` method) and ``RlexpInvalidActionsObs-v0`` (a Dict observation with an
``action_mask`` entry, as PettingZoo's classic games).

Two faults for the tests: ``empty_at=k`` gives a mask that allows nothing at step k (a broken
env: rlexp must stop with a line naming it), ``empty_at_end`` gives one on the last observation
of an episode (harmless: the action taken on it is Gymnasium's ignored autoreset step).

Every mask the env gives is kept in ``given`` (reset's and each step's, in order), for tests
that compare them with what the rollout stored.
"""

from __future__ import annotations

from typing import Any, Optional

import gymnasium as gym
import numpy as np

SPACES = ("discrete", "multidiscrete", "multibinary")


class InvalidActions(gym.Env):
    """The identity task with invalid actions, its mask in ``info["action_mask"]``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, n_actions: int = 70, n_invalid: int = 55, ep_length: int = 100, space: str = "discrete",
                 n_bits: int = 8, strict: bool = True, keep_masks: bool = False, empty_at: int = -1, empty_at_end: bool = False):
        if space not in SPACES:
            raise ValueError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
        self.kind, self.n_actions, self.n_invalid, self.ep_length = space, n_actions, n_invalid, ep_length
        self.strict, self.keep_masks = strict, keep_masks
        # faults for the tests: a mask that allows nothing at step ``empty_at`` (a broken env), or
        # on the observation an episode ends with (harmless: the next action is the autoreset step)
        self.empty_at, self.empty_at_end = empty_at, empty_at_end
        if space == "discrete":
            if not 0 <= n_invalid < n_actions:
                raise ValueError("n_invalid must leave the target valid: 0 <= n_invalid < n_actions")
            self.action_space = gym.spaces.Discrete(n_actions)
            self.own_observation_space = gym.spaces.Discrete(n_actions)
        elif space == "multidiscrete":
            if not 0 <= n_invalid < n_actions:
                raise ValueError("n_invalid must leave the target valid: 0 <= n_invalid < n_actions")
            self.action_space = gym.spaces.MultiDiscrete([n_actions, n_actions])
            self.own_observation_space = gym.spaces.MultiDiscrete([n_actions, n_actions])
        else:
            self.n_bits = n_bits
            self.action_space = gym.spaces.MultiBinary(n_bits)
            self.own_observation_space = gym.spaces.MultiBinary(n_bits)
        self.observation_space = self.own_observation_space
        self.given: list[np.ndarray] = []
        self.invalid_taken = 0
        self.steps = 0

    # -- the task ---------------------------------------------------------------------------------
    def draw(self) -> None:
        """A new target and a new mask that allows it."""
        rng = self.np_random
        if self.kind == "discrete":
            self.target = int(rng.integers(self.n_actions))
            self.mask = self._entry_mask(self.target)
        elif self.kind == "multidiscrete":
            self.target = rng.integers(self.n_actions, size=2)
            self.mask = np.concatenate([self._entry_mask(int(t)) for t in self.target])
        else:
            self.target = rng.integers(2, size=self.n_bits).astype(np.int8)
            zeros = np.flatnonzero(self.target == 0)
            forbidden = rng.choice(zeros, size=min(self.n_invalid, len(zeros)), replace=False)
            self.mask = np.ones(self.n_bits, dtype=np.int8)  # one flag per bit: may it be 1
            self.mask[forbidden] = 0
        if self.steps == self.empty_at or (self.empty_at_end and self.steps >= self.ep_length):
            self.mask = np.zeros_like(self.mask)
        if self.keep_masks:
            self.given.append(self.mask.copy())

    def _entry_mask(self, target: int) -> np.ndarray:
        others = np.delete(np.arange(self.n_actions), target)
        forbidden = self.np_random.choice(others, size=self.n_invalid, replace=False)
        mask = np.ones(self.n_actions, dtype=np.int8)
        mask[forbidden] = 0
        return mask

    def allowed(self, action: Any) -> bool:
        if self.kind == "discrete":
            return bool(self.mask[int(action)])
        if self.kind == "multidiscrete":
            a = np.asarray(action).reshape(-1)
            return bool(self.mask[int(a[0])] and self.mask[self.n_actions + int(a[1])])
        bits = np.asarray(action).reshape(-1)
        return bool(np.all(self.mask[bits == 1] == 1))

    def correct(self, action: Any) -> bool:
        return bool(np.array_equal(np.asarray(action).reshape(-1), np.asarray(self.target).reshape(-1)))

    def own_observation(self) -> Any:
        return self.target if self.kind == "discrete" else np.asarray(self.target).copy()

    # -- gymnasium's interface ------------------------------------------------------------------------
    def reset(self, *, seed: Optional[int] = None, options: Any = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.steps = 0
        self.draw()
        return self.observe(), self.info()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if not self.allowed(action):
            self.invalid_taken += 1
            if self.strict:
                raise RuntimeError(f"invalid action {action} taken at step {self.steps} (mask {self.mask.tolist()})")
        reward = 1.0 if self.correct(action) else 0.0
        self.steps += 1
        self.draw()
        return self.observe(), reward, False, self.steps >= self.ep_length, self.info()

    def observe(self) -> Any:
        return self.own_observation()

    def info(self) -> dict:
        return {"action_mask": self.mask.copy()}


class InvalidActionsMethod(InvalidActions):
    """The same task, its mask given by ``action_masks()`` (sb3-contrib's ActionMasker convention)."""

    def info(self) -> dict:
        return {}

    def action_masks(self) -> np.ndarray:
        return self.mask.astype(bool)


class InvalidActionsObs(InvalidActions):
    """The same task, its mask an ``action_mask`` entry of a Dict observation (PettingZoo's classic games)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.observation_space = gym.spaces.Dict({
            "observation": self.own_observation_space,
            "action_mask": gym.spaces.Box(0, 1, self.mask_shape(), dtype=np.int8),
        })

    def mask_shape(self) -> tuple[int, ...]:
        return ({"discrete": self.n_actions, "multidiscrete": 2 * self.n_actions}.get(self.kind, getattr(self, "n_bits", 0)),)

    def info(self) -> dict:
        return {}

    def observe(self) -> Any:
        return {"observation": self.own_observation(), "action_mask": self.mask.copy()}


for _name, _cls in (("RlexpInvalidActions-v0", InvalidActions), ("RlexpInvalidActionsMethod-v0", InvalidActionsMethod),
                    ("RlexpInvalidActionsObs-v0", InvalidActionsObs)):
    if _name not in gym.registry:
        gym.register(_name, entry_point=_cls)

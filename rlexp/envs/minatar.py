"""MinAtar (Young and Tian 2019) for gymnasium 1.x: 10x10 miniatures of Asterix, Breakout,
Freeway, Seaquest and Space Invaders, observations 10x10xC booleans (channels last).

Importing this module registers ``MinAtar/<Game>-v0`` (all 6 actions) and ``-v1`` (each
game's minimal action set), the ids MinAtar's own ``minatar.gym`` uses and with its defaults
(sticky actions 0.1, difficulty ramping on, no step limit); rlexp's factory imports it when an
id starts with ``MinAtar/``. The minatar package itself is imported only when an env is made.
``env=minatar`` sets gymnax's settings instead: no sticky actions, and gymnax's episode lengths
(``step_limit="gymnax"``): 1,000 steps, except Freeway, which ends by itself at 2,500 in MinAtar
and in gymnax alike.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import gymnasium as gym
import numpy as np

GAMES = {"Asterix": "asterix", "Breakout": "breakout", "Freeway": "freeway", "Seaquest": "seaquest", "SpaceInvaders": "space_invaders"}
#: gymnax's max_steps_in_episode per game (its EnvParams); None: the game's own end (Freeway: 2,500 steps)
GYMNAX_STEP_LIMIT = {"asterix": 1000, "breakout": 1000, "freeway": None, "seaquest": 1000, "space_invaders": 1000}
#: pixels per cell of a rendered frame (render_mode="rgb_array")
CELL = 16


class MinAtarEnv(gym.Env):
    """One MinAtar game. ``sticky_action_prob``: chance that the previous action repeats.
    ``step_limit``: episodes are truncated after this many steps; ``"gymnax"`` takes gymnax's
    length for the game (:data:`GYMNAX_STEP_LIMIT`), None (MinAtar's own) sets none."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, game: str, minimal_action_set: bool = True, sticky_action_prob: float = 0.1,
                 difficulty_ramping: bool = True, step_limit: Optional[int | str] = None, render_mode: Optional[str] = None):
        try:
            from minatar import Environment
        except ImportError:
            raise gym.error.DependencyNotInstalled('MinAtar needs the minatar package: pip install "rlexp[minatar]"') from None
        if not 0.0 <= sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}")
        if step_limit == "gymnax":
            step_limit = GYMNAX_STEP_LIMIT[game]
        elif step_limit is not None and (isinstance(step_limit, (str, bool)) or int(step_limit) < 1):
            raise ValueError(f"step_limit must be 'gymnax', a number of steps >= 1 or null, got {step_limit!r}")
        self.step_limit, self.steps = step_limit, 0
        self.game = Environment(game, sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)
        self.actions = list(self.game.minimal_action_set()) if minimal_action_set else list(range(self.game.num_actions()))
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(0, 1, shape=tuple(self.game.state_shape()), dtype=np.bool_)
        self.render_mode = render_mode
        self.palette = np.concatenate([[[0, 0, 0]], 55 + 200 * np.random.default_rng(0).random((self.observation_space.shape[2], 3))]).astype(np.uint8)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:  # MinAtar draws from its own RandomState
            self.game.seed(int(self.np_random.integers(2**31 - 1)))
        self.game.reset()
        self.steps = 0
        return self.game.state(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward, terminal = self.game.act(self.actions[int(action)])
        self.steps += 1
        truncated = self.step_limit is not None and self.steps >= self.step_limit and not terminal
        return self.game.state(), float(reward), bool(terminal), truncated, {}

    def render(self) -> Optional[np.ndarray]:
        if self.render_mode != "rgb_array":
            return None
        state = self.game.state()
        # each cell shows its last channel that is set (black where none is)
        index = np.where(state.any(axis=2), state.shape[2] - np.argmax(state[:, :, ::-1], axis=2), 0)
        return np.kron(self.palette[index], np.ones((CELL, CELL, 1), dtype=np.uint8))


def register_minatar() -> None:
    for name, game in GAMES.items():
        for version, minimal in (("v0", False), ("v1", True)):
            env_id = f"MinAtar/{name}-{version}"
            if env_id not in gym.registry:
                gym.register(env_id, entry_point="rlexp.envs.minatar:MinAtarEnv", kwargs={"game": game, "minimal_action_set": minimal})


register_minatar()

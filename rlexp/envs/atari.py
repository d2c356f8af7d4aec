"""Atari (ALE) with the standard preprocessing of the DQN/PPO papers, CleanRL and the RL Zoo.

``env=atari`` builds an :class:`AtariSpec`: up to ``noop_max`` no-op frames at reset, FIRE at
reset in games that need it, the action repeated ``frame_skip`` times with the last two frames
max-pooled, 84x84 grayscale, ``frame_stack`` frames stacked (zeros before the first),
episodes capped at 108,000 frames, no sticky actions unless ``repeat_action_probability`` says
so. Two things apply to training only: a lost life ends the training episode
(``episodic_life``) and rewards are clipped to their sign (``sign_rewards``).

Where episode statistics are taken: RecordEpisodeStatistics wraps the vector env *before* the
two training-only changes, so ``info["episode"]`` (rollout/episode_return, the evaluation)
holds whole games and raw scores, as everyone publishes them. A lost life is read from
``info["lives"]`` and only sets ``terminated`` for the learner: the game goes on, and the
trainer treats the next step as the first of a new episode (it is left out of the loss, as
NEXT_STEP autoreset's reset step is).

``vectorization=ale`` (the default) steps the games in ale-py's own vector env
(``ale_py.vector_env.AtariVectorEnv``: C++ threads, preprocessing in C++); ``sync`` and
``async`` build the reference chain of gymnasium's ``AtariPreprocessing`` and
``FrameStackObservation`` per sub-env (needs opencv). Both give the same frames for the same
actions (tests/test_atari.py); the random no-op count at reset comes from a different random
generator in each, and the reference chain presses FIRE before its no-ops, ale-py after them.
Rendering (``rlexp-eval ... video=true``, ``eval.video``) needs the reference chain, which
the spec picks by itself when ``make_kwargs.render_mode`` is set: the video shows the raw
210x160 colour game.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Optional

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import vector as vw

from rlexp.envs.factory import EnvSpec, check_env_id, info_metric_reductions
from rlexp.errors import ConfigError, require

VECTORIZATIONS = ("ale", "sync", "async")
#: ALE's cap of 108,000 frames (30 minutes of play at 60 Hz), as the v5 ids and the papers use
MAX_FRAMES = 108_000


@dataclass
class AtariSpec(EnvSpec):
    """An :class:`EnvSpec` for ALE games with the standard Atari preprocessing."""

    id: str = "ALE/Pong-v5"
    vectorization: str = "ale"
    noop_max: int = 30
    frame_skip: int = 4
    screen_size: int = 84
    frame_stack: int = 4
    fire_reset: bool = True
    episodic_life: bool = True
    sign_rewards: bool = True
    repeat_action_probability: float = 0.0
    full_action_space: bool = False
    threads: int = 0  # vectorization=ale: ale-py's worker threads (0: ale-py's own choice)

    def __post_init__(self) -> None:
        self.make_kwargs = dict(self.make_kwargs)
        self.info_reductions = info_metric_reductions(self.info_metrics)
        require(self.num_envs >= 1, "num_envs", f"must be >= 1, got {self.num_envs}")
        require(self.backend == "gymnasium", "backend", f"Atari games step on the CPU in ALE; use backend=gymnasium, got {self.backend!r}")
        require(self.vectorization in VECTORIZATIONS, "vectorization",
                f"must be one of {', '.join(VECTORIZATIONS)} for Atari (ale: ale-py's vector env), got {self.vectorization!r}")
        for key in ("normalize_obs", "normalize_reward", "clip_obs", "clip_reward", "mask_velocity"):
            require(not getattr(self, key, None), key, "does not apply to Atari (uint8 frames; rewards are sign-clipped by env.sign_rewards); set it to null/false")
        require(self.action_mask in ("auto", "none"), "action_mask", "Atari games allow every action in every state; set it to auto or none")
        self.mask_source = "none"
        require(self.noop_max >= 0, "noop_max", f"must be >= 0, got {self.noop_max}")
        require(self.frame_skip >= 1, "frame_skip", f"must be >= 1, got {self.frame_skip}")
        require(self.screen_size >= 8, "screen_size", f"must be >= 8, got {self.screen_size}")
        require(self.frame_stack >= 1, "frame_stack", f"must be >= 1, got {self.frame_stack}")
        require(0.0 <= self.repeat_action_probability <= 1.0, "repeat_action_probability",
                f"must be in [0, 1] (0.25 is ALE v5's sticky-action default), got {self.repeat_action_probability}")
        require(self.threads >= 0, "threads", f"must be >= 0 (0: ale-py chooses), got {self.threads}")
        require(self.max_episode_steps is None or self.max_episode_steps >= 1, "max_episode_steps", "must be >= 1 or null")
        check_env_id(self.id)
        require(bool(self.game), "id", f"env=atari needs an ALE game id such as ALE/Breakout-v5, got {self.id!r}")

    @property
    def game(self) -> Optional[str]:
        """The ROM name ale-py knows the game by (``breakout`` for ALE/Breakout-v5)."""
        spec = gym.registry.get(self.id)
        return spec.kwargs.get("game") if spec is not None else None

    @property
    def max_frames(self) -> int:
        return MAX_FRAMES if self.max_episode_steps is None else self.max_episode_steps * self.frame_skip

    def make(self, num_envs: Optional[int] = None, training: bool = True, gamma: float = 0.99, device: Any = "cpu") -> gym.vector.VectorEnv:
        """The preprocessed games; ``training=False`` keeps whole games and raw rewards."""
        n = num_envs or self.num_envs
        rendering = self.make_kwargs.get("render_mode") is not None
        try:
            env = self.make_ale(n) if self.vectorization == "ale" and not rendering else self.make_reference(n)
        except TypeError as e:
            raise ConfigError("make_kwargs", f"{self.id} rejected {self.make_kwargs}: {e}") from None
        env = vw.RecordEpisodeStatistics(env)  # whole games, raw scores: before the training-only changes
        if training and self.episodic_life:
            env = LifeLossEndsEpisode(env)
        if training and self.sign_rewards:
            env = vw.TransformReward(env, lambda reward: np.sign(reward).astype(np.float32))
        return env

    def make_ale(self, num_envs: int) -> gym.vector.VectorEnv:
        return releasing_ale_vector_env()(
            self.game, num_envs, num_threads=self.threads, max_num_frames_per_episode=self.max_frames,
            repeat_action_probability=self.repeat_action_probability, full_action_space=self.full_action_space,
            img_height=self.screen_size, img_width=self.screen_size, grayscale=True, stack_num=self.frame_stack,
            frameskip=self.frame_skip, maxpool=True, noop_max=self.noop_max, use_fire_reset=self.fire_reset,
            episodic_life=False, reward_clipping=False, **self.make_kwargs,
        )

    def make_reference(self, num_envs: int) -> gym.vector.VectorEnv:
        try:
            import cv2  # noqa: F401  (AtariPreprocessing resizes with OpenCV)
        except ImportError:
            raise ConfigError("vectorization", f"{self.vectorization} (gymnasium's AtariPreprocessing, also used for rendering) needs OpenCV: "
                                               'pip install "rlexp[atari]"; or use env.vectorization=ale') from None
        make_one = partial(preprocessed_game, self.id, noop_max=self.noop_max, frame_skip=self.frame_skip,
                           screen_size=self.screen_size, frame_stack=self.frame_stack, fire_reset=self.fire_reset,
                           repeat_action_probability=self.repeat_action_probability, full_action_space=self.full_action_space,
                           max_frames=self.max_frames, **self.make_kwargs)
        vector = gym.vector.AsyncVectorEnv if self.vectorization == "async" else gym.vector.SyncVectorEnv
        return vector([make_one] * num_envs)


@cache
def releasing_ale_vector_env() -> type:
    """ale-py's ``AtariVectorEnv`` whose ``close()`` lets go of its C++ games.

    ale-py's own class has no ``close()``: its ``ALEVectorInterface`` (the games and their
    threads) lives as long as the Python env object does. A run keeps that object referenced
    from objects that live until the interpreter exits (the trainer, the evaluator, objects
    ``gc.freeze()`` moved out of the collector's reach), and nanobind then reports the
    interface, its types and functions as leaked on stderr at exit (about 21 lines). Dropping
    the reference in ``close()`` frees the games when the run closes its envs.
    """
    from ale_py.vector_env import AtariVectorEnv

    class ReleasingAtariVectorEnv(AtariVectorEnv):
        def close_extras(self, **kwargs: Any) -> None:
            super().close_extras(**kwargs)
            self.ale = None  # the only reference to the C++ vector interface

    return ReleasingAtariVectorEnv


def preprocessed_game(env_id: str, *, noop_max: int, frame_skip: int, screen_size: int, frame_stack: int, fire_reset: bool,
                      repeat_action_probability: float, full_action_space: bool, max_frames: int, **make_kwargs: Any) -> gym.Env:
    """One game through gymnasium's reference chain (FIRE at reset is one raw frame, as in ale-py)."""
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    env = gym.make(env_id, frameskip=1, repeat_action_probability=repeat_action_probability, full_action_space=full_action_space,
                   max_num_frames_per_episode=max_frames, **make_kwargs)
    if fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
        env = FireOnReset(env)
    env = AtariPreprocessing(env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size,
                             terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
    return FrameStackObservation(env, frame_stack, padding_type="zero")


class FireOnReset(gym.Wrapper):
    """Press FIRE for one frame after each reset: games such as Breakout wait for it."""

    def reset(self, **kwargs: Any):
        self.env.reset(**kwargs)
        fire = self.env.unwrapped.get_action_meanings().index("FIRE")
        obs, _, terminated, truncated, info = self.env.step(fire)
        if terminated or truncated:
            obs, info = self.env.reset()
        return obs, info


class LifeLossEndsEpisode(gym.vector.VectorWrapper):
    """A lost life ends the episode for the learner (``terminated``), not the game: value
    targets stop at a life's end, as in the DQN paper's training. Reads ``info["lives"]``,
    which both ale-py's vector env and gymnasium's AtariEnv report."""

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.lives = np.asarray(info["lives"]).copy()
        return obs, info

    def step(self, actions: Any):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        lives = np.asarray(info["lives"])
        terminated = terminated | (lives < self.lives)
        self.lives = lives.copy()
        return obs, reward, terminated, truncated, info

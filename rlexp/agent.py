"""A trained run as an object to act with: ``agent = rlexp.load("outputs/runs/<run>")``.

``agent.predict(obs)`` takes one observation or a batch in the env's own format, applies the
run's own observation processing (the saved normalisation statistics and clipping; the
policy's encoders do the image scaling and one-hots) and returns actions in the env's own
format (a Discrete ``start`` added back, Box actions clipped to their bounds).
``agent.evaluate(episodes)`` plays whole episodes as ``rlexp-eval`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch

from rlexp.envs import ActionAdapter, load_normalization_state, normalization_state
from rlexp.envs.masks import ActionMasks
from rlexp.data.observations import lead_shape, to_tensor, tree_map

#: gymnasium's NormalizeObservation adds this to the variance
NORMALIZE_EPSILON = 1e-8


class Agent:
    def __init__(self, policy: torch.nn.Module, env: gym.vector.VectorEnv, cfg: Any, obs_rms: Optional[dict], device: torch.device):
        self.policy, self.cfg, self.device = policy, cfg, device
        # the env's own action space: gymnasium's ClipAction widens a Box to (-inf, inf) above it
        self.observation_space, self.action_space = env.single_observation_space, env.unwrapped.single_action_space
        self.obs_rms = obs_rms
        self.clip_obs = cfg.env.get("clip_obs")
        self._to_env = ActionAdapter(env, device)
        #: the env's action masks (rlexp.envs.masks), when the run was trained with them: predict
        #: takes the env's own observations and adds the mask it is given
        self.masks = find_wrapper(env, ActionMasks)
        self.env_observation_space = self.masks.env.single_observation_space if self.masks is not None else self.observation_space
        env.close()

    def predict(self, obs: Any, deterministic: bool = True, state: Optional[torch.Tensor] = None, episode_start: Any = None,
                action_mask: Any = None) -> Any:
        """Actions for one observation (returns one action) or a batch (returns a batch).

        An agent whose policy carries a state (``network.recurrent``) returns ``(action, state)``:
        pass the state back with the next observation, and ``episode_start=True`` (per observation
        in a batch) where an episode begins; ``state=None`` starts from zeros. Observations are the
        run's env's own (with ``env.mask_velocity``, without the velocities).

        ``action_mask``: for a run trained with action masks (``env.action_mask``), the allowed
        actions of this observation (or one row per observation of a batch), as the env gives
        them; invalid actions are then never chosen. None: the mask the observation carries (an
        ``action_mask`` entry), else every action is allowed."""
        batched = is_batch(obs, self.env_observation_space)
        batch = obs if batched else tree_map(lambda x: np.asarray(x)[None], obs)
        batch = self.process(batch)
        if self.masks is not None:
            n = int(np.shape(next(iter(batch.values())) if isinstance(batch, dict) else batch)[0])
            mask = None if action_mask is None else np.asarray(action_mask).reshape(n, -1)
            batch = self.masks.add_mask(batch, mask, n)
        elif action_mask is not None:
            raise ValueError("action_mask is for runs trained with action masks; this run's env gave none (env.action_mask)")
        obs_t = to_tensor(batch, self.observation_space, self.device)
        stateful = self.stateful
        if not stateful and (state is not None or episode_start is not None):
            raise ValueError("state and episode_start are for recurrent agents; this run's network has no recurrent core")
        n = lead_shape(obs_t, 1)[0]
        with torch.inference_mode():
            state = self.policy.initial_state(n, self.device) if state is None else torch.as_tensor(state, device=self.device)
            starts = np.zeros(n, dtype=bool) if episode_start is None else np.broadcast_to(np.asarray(episode_start, dtype=bool), (n,)).copy()
            action, state = self.policy.predict(obs_t, state, starts, deterministic)
        action = self._to_env(action)
        if isinstance(self.action_space, gym.spaces.Box):
            action = np.clip(action, self.action_space.low, self.action_space.high)
        action = action if batched else action[0]
        return (action, state) if stateful else action

    @property
    def stateful(self) -> bool:
        """Whether the policy carries a state from step to step (a recurrent core): predict then
        takes and returns it."""
        return self.policy.initial_state(1, self.device).numel() > 0

    def process(self, obs: Any) -> Any:
        """The run's observation processing: normalisation with the saved statistics, then clipping."""
        if self.obs_rms is not None:
            mean, var = self.obs_rms["mean"].numpy(), self.obs_rms["var"].numpy()
            obs = ((np.asarray(obs, dtype=np.float64) - mean) / np.sqrt(var + NORMALIZE_EPSILON)).astype(np.float32)
        if self.clip_obs is not None:
            obs = np.clip(obs, -self.clip_obs, self.clip_obs)
        return obs

    def evaluate(self, episodes: int = 10, seed: int = 0, deterministic: Optional[bool] = None) -> np.ndarray:
        """Returns of ``episodes`` whole episodes, one per sub-env, as ``rlexp-eval`` plays them:
        ``deterministic`` None chooses actions as the run's own evaluations did (its
        ``eval.deterministic``; the Atari presets sample), True the most likely, False sampled."""
        from rlexp.builders import build
        from rlexp.run.episodes import play_episodes, run_evaluates_deterministically

        if deterministic is None:
            deterministic = run_evaluates_deterministically(self.cfg)

        env = build("env", self.cfg.env).make(num_envs=episodes, training=False)
        try:
            load_normalization_state(env, {"obs_rms": self.obs_rms})
            # one episode per row: a game of several agents (env=pettingzoo) plays one per agent
            return play_episodes(self.policy, env, env.num_envs, self.device, deterministic, seed=seed)
        finally:
            env.close()


def find_wrapper(env: Any, kind: type) -> Any:
    """The wrapper of type ``kind`` in a vector env's chain of wrappers, or None."""
    while env is not None:
        if isinstance(env, kind):
            return env
        env = getattr(env, "env", None)
    return None


def is_batch(obs: Any, space: gym.Space) -> bool:
    """Whether ``obs`` is a batch of observations of ``space`` rather than one."""
    if isinstance(space, gym.spaces.Dict):
        key = next(iter(space.spaces))
        return is_batch(obs[key], space.spaces[key])
    if isinstance(space, gym.spaces.Tuple):
        return is_batch(obs[0], space.spaces[0])
    shape = () if isinstance(space, gym.spaces.Discrete) else tuple(space.shape)
    return np.ndim(obs) == len(shape) + 1


def load(run: str | Path, checkpoint: str = "last", device: str = "cpu") -> Agent:
    """The agent of a run directory (its ``checkpoint``: last or best) or of a checkpoint file."""
    from rlexp.builders import resolve_device
    from rlexp.run.checkpoint import checkpoint_path
    from rlexp.errors import require
    from rlexp.run.episodes import load_trained

    require(checkpoint in ("last", "best"), "checkpoint", f"must be last or best, got {checkpoint!r}")
    path = checkpoint_path(Path(run).expanduser(), checkpoint)
    target = resolve_device(device)
    policy, env, cfg = load_trained(path, target, num_envs=1)
    obs_rms = normalization_state(env)["obs_rms"]  # the checkpoint's statistics, which load_trained put in
    return Agent(policy, env, cfg, obs_rms, target)

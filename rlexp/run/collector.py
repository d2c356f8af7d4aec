"""The one place where a policy steps an environment.

:class:`Stepper` is a policy acting in a vector env step after step: the env's current
observations, the policy's state per sub-env (empty for a feed-forward policy) and where
episodes start, carried from step to step. Training (:class:`Collector`) and evaluation
(rlexp.run.episodes) both step through it, so the two cannot disagree on how a step goes.

:class:`Collector` fills a rollout with ``n_steps`` vector steps, keeps the episode
statistics, and gives the bootstrap value V(s_T) of the observations the rollout ended on.
It never asks what kind of policy or algorithm it serves: the policy's state and the episode
starts are data it passes along, and how the policy acts (its own ``act``, or a backend
such as PPO's numpy fast path) is chosen once by the trainer and handed in as ``act``.

Gymnasium 1.x autoresets on the NEXT step: the step after an episode ends returns the reset
observation with reward 0. That step is stored as invalid (it reaches no loss), and the
step after it starts the new episode (``starts``: the policy's state is zeroed there).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np
import torch

from rlexp.data.observations import to_tensor
from rlexp.data.rollout import Rollout
from rlexp.envs import ActionAdapter
from rlexp.run.info_metrics import InfoMetrics

#: how a policy acts during collection: (obs, state, starts) -> (obs as stored, action, log_prob, value, new state)
Act = Callable[[Any, torch.Tensor, Any], tuple[Any, Any, Any, Any, torch.Tensor]]


class Stepper:
    """A policy acting in a vector env: the current observations, the policy's state and the
    episode starts of every sub-env."""

    def __init__(self, env: gym.vector.VectorEnv, policy: torch.nn.Module, device: torch.device):
        self.env, self.policy, self.device = env, policy, device
        self.to_env = ActionAdapter(env, device)
        self.obs_space = env.single_observation_space
        self.obs: Any = None

    def reset(self, seed: Optional[int]) -> None:
        """Fresh episodes in every sub-env, and the policy's initial state (on resume too: the
        envs' own state is not checkpointed)."""
        self.obs, info = self.env.reset(seed=seed)
        n = self.env.num_envs
        # torch-native envs report on their device; gymnasium's in numpy
        self.ended = torch.zeros(n, dtype=torch.bool, device=self.device) if self.to_env.native else np.zeros(n, dtype=bool)
        if "_waiting" in info:  # rows with nothing to play yet (an agent not in the game): invalid until they start
            self.ended = np.asarray(info["_waiting"], dtype=bool).copy()
        self.starts = ~self.ended
        self.state = self.policy.initial_state(n, self.device)

    def observation(self) -> Any:
        """The current observations as tensors on the policy's device."""
        return to_tensor(self.obs, self.obs_space, self.device)

    def predict(self, deterministic: bool) -> Any:
        """The policy's actions for the current observations (evaluation); carries its state."""
        action, self.state = self.policy.predict(self.observation(), self.state, self.starts, deterministic)
        return action

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict]:
        """One vector step: (reward, terminated, truncated, valid, info). ``valid`` is False on
        the autoreset step that follows an episode's end."""
        self.obs, reward, terminated, truncated, info = self.env.step(self.to_env(action))
        valid = ~self.ended
        # the step after an ended one was its reset: the next observation is a new episode's first
        self.starts, self.ended = self.ended, terminated | truncated
        return reward, terminated, truncated, valid, info


class Collector:
    """Fills ``rollout`` from ``env`` with ``policy``; keeps the finished episodes' statistics."""

    def __init__(self, env: gym.vector.VectorEnv, policy: torch.nn.Module, rollout: Rollout, device: torch.device,
                 act: Optional[Act] = None, window: int = 100, info_metrics: Optional[InfoMetrics] = None):
        self.env, self.policy, self.rollout, self.device = env, policy, rollout, device
        #: env.info_metrics: the info values of the episodes that end (empty: none asked for)
        self.info_metrics = info_metrics if info_metrics is not None else InfoMetrics({})
        self.stepper = Stepper(env, policy, device)
        self.act: Act = act if act is not None else self.policy_act
        self.episodes = 0
        self.recent_returns: deque[float] = deque(maxlen=window)

    def policy_act(self, obs: Any, state: torch.Tensor, starts: Any) -> tuple[Any, Any, Any, Any, torch.Tensor]:
        """The policy's own ``act`` on the observations as tensors (stored as such)."""
        obs_t = to_tensor(obs, self.stepper.obs_space, self.device)
        action, log_prob, value, state = self.policy.act(obs_t, state, starts)
        return obs_t, action, log_prob, value, state

    def reset(self, seed: int) -> None:
        self.stepper.reset(seed)

    @torch.inference_mode()
    def collect(self) -> list[tuple[float, int]]:
        """Fill the rollout with n_steps vector steps; return the (return, length) of every
        episode that finished in it."""
        rollout, stepper, act = self.rollout, self.stepper, self.act
        finished: list[tuple[float, int]] = []
        on_device: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # torch envs' episode info, read once
        self.policy.reset_noise(self.env.num_envs)  # gSDE: fresh noise for each rollout, as SB3
        for t in range(rollout.n_steps):
            # the state before the step is stored: a policy with a state re-runs sequences from it
            rollout.store_state(t, stepper.state, stepper.starts)
            obs, action, log_prob, value, stepper.state = act(stepper.obs, stepper.state, stepper.starts)
            rollout.store_policy(t, obs, action, log_prob, value)
            reward, terminated, truncated, valid, info = stepper.step(action)
            rollout.store_env(t, reward, terminated, truncated, valid)
            if self.info_metrics and "_episode" in info:
                self.info_metrics.read(info, info["_episode"])
            if "_episode" in info:
                done, episode = info["_episode"], info["episode"]
                if isinstance(done, torch.Tensor):  # no host read per step (on CUDA each is a sync)
                    on_device.append((done, episode["r"], episode["l"]))
                else:
                    finished += zip(episode["r"][done].tolist(), episode["l"][done].tolist())
        if on_device:
            done, returns, lengths = (torch.stack(x) for x in zip(*on_device))
            finished += zip(returns[done].tolist(), lengths[done].tolist())
        self.episodes += len(finished)
        self.recent_returns.extend(r for r, _ in finished)
        return finished

    @torch.inference_mode()
    def bootstrap_value(self) -> torch.Tensor:
        """V of the observations the rollout ended on, from the state it ended in."""
        stepper = self.stepper
        return self.policy.value(stepper.observation(), stepper.state, stepper.starts)

    def rolling_return(self) -> float:
        """Mean return of the last (up to 100) finished episodes; NaN before the first."""
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")

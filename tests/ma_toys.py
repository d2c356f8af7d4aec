"""Toy PettingZoo games with answers worked out by hand, for tests/test_multiagent.py (importable
as ``ma_toys:<name>``: pytest puts tests/ on the path)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from pettingzoo import AECEnv, ParallelEnv


def ended_together(game, obs, rewards, done):
    """A parallel step's return where every agent in the game ends at once (``done``) or none does."""
    results = obs, rewards, {a: done for a in game.agents}, {a: False for a in game.agents}, {a: {} for a in game.agents}
    if done:
        game.agents = []
    return results


class SpeakerListener(ParallelEnv):
    """Two steps. At step 0 the speaker alone sees a random bit b; at step 1 the listener alone
    sees what the speaker did at step 0. Both get reward 1 at step 1 when the listener's action
    equals b, else 0. The best return is 1 per agent (the speaker says b, the listener repeats
    it); without reading each other, 0.5. Observations: [b is 0, b is 1, message 0, message 1, step]."""

    metadata = {"name": "speaker_listener_toy", "render_modes": []}

    def __init__(self):
        self.possible_agents = ["speaker", "listener"]
        self.rng = np.random.default_rng()

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 1.0, (5,), dtype=np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def observe(self):
        speaker, listener = np.zeros(5, np.float32), np.zeros(5, np.float32)
        if self.t == 0:
            speaker[self.bit] = 1.0
        else:
            listener[2 + self.message] = 1.0
            speaker[4] = listener[4] = 1.0
        return {"speaker": speaker, "listener": listener}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t, self.bit, self.message = 0, int(self.rng.integers(2)), 0
        return self.observe(), {a: {} for a in self.agents}

    def step(self, actions):
        if self.t == 0:
            self.message, self.t = int(actions["speaker"]), 1
            rewards = {a: 0.0 for a in self.agents}
            done = False
        else:
            r = float(int(actions["listener"]) == self.bit)
            rewards = {a: r for a in self.agents}
            done = True
        return ended_together(self, self.observe(), rewards, done)


class TwoAgents(ParallelEnv):
    """Two agents with [time, which agent] observations and two actions each (the toys below)."""

    metadata = {"name": "two_agents_toy", "render_modes": []}
    AGENTS: tuple[str, str] = ("first", "second")
    STEPS = 4

    def __init__(self):
        self.possible_agents = list(self.AGENTS)

    def observation_space(self, agent):
        return gym.spaces.Box(0.0, 1.0, (2,), dtype=np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def obs(self):
        return {a: np.array([self.t / self.STEPS, float(a == self.AGENTS[1])], np.float32) for a in self.agents}


class EarlyLeaver(TwoAgents):
    """Two agents: ``stayer`` plays 5 steps and earns 1 per step, ``leaver`` plays 2 steps and earns
    10 per step, then leaves (terminated). Observations: [step / 5, agent is the leaver]."""

    AGENTS, STEPS = ("stayer", "leaver"), 5
    STAY, LEAVE = 5, 2

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return self.obs(), {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), f"actions for {sorted(actions)} while {sorted(self.agents)} play"
        self.t += 1
        rewards = {a: (10.0 if a == "leaver" else 1.0) for a in self.agents}
        terms = {a: self.t >= (self.LEAVE if a == "leaver" else self.STAY) for a in self.agents}
        obs = self.obs()
        truncs = {a: False for a in self.agents}
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not terms[a]]
        return obs, rewards, terms, truncs, infos


class Nim(AECEnv):
    """Two players take 1 or 2 (action 0 or 1) from a pile of ``start`` in turn; whoever takes the
    last one wins (+1, the other -1). With 7 to start, the first player wins by leaving a
    multiple of 3 every time. Observation: one-hot pile size; mask: taking 2 is not allowed from a
    pile of 1."""

    metadata = {"name": "nim_toy", "render_modes": [], "is_parallelizable": False}

    def __init__(self, start: int = 7):
        super().__init__()
        self.start = start
        self.possible_agents = ["player_0", "player_1"]
        self.obs_space = gym.spaces.Dict({
            "observation": gym.spaces.Box(0.0, 1.0, (start + 1,), dtype=np.float32),
            "action_mask": gym.spaces.Box(0, 1, (2,), dtype=np.int8)})

    def observation_space(self, agent):
        return self.obs_space

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def observe(self, agent):
        onehot = np.zeros(self.start + 1, np.float32)
        onehot[self.pile] = 1.0
        mask = np.array([self.pile >= 1, self.pile >= 2], dtype=np.int8)
        return {"observation": onehot, "action_mask": mask}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.pile = self.start
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        self.agent_selection = self.agents[0]

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            return self._was_dead_step(action)
        self._cumulative_rewards[agent] = 0.0
        take = int(action) + 1
        assert take <= self.pile, f"{agent} took {take} from a pile of {self.pile}: the mask forbids it"
        self.pile -= take
        other = self.agents[1 - self.agents.index(agent)]
        self.rewards = {a: 0.0 for a in self.agents}
        if self.pile == 0:
            self.rewards[agent], self.rewards[other] = 1.0, -1.0
            self.terminations = {a: True for a in self.agents}
        self._accumulate_rewards()
        self.agent_selection = other


class LateJoiner(TwoAgents):
    """``early`` plays steps 0-3 (reward 1 each); ``late`` is not in the game at reset, joins with
    the observation step 1 returns, plays steps 2-3 (reward 10 each); both end after step 3."""

    AGENTS, STEPS = ("early", "late"), 4

    def reset(self, seed=None, options=None):
        self.agents, self.t = ["early"], 0
        return self.obs(), {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), f"actions for {sorted(actions)} while {sorted(self.agents)} play"
        rewards = {a: (10.0 if a == "late" else 1.0) for a in self.agents}
        self.t += 1
        if self.t == 2:
            self.agents = ["early", "late"]
        done = self.t >= 4
        return ended_together(self, self.obs(), rewards, done)


def take_one(obs, rng):
    """A scripted Nim player: always takes one stone (action 0)."""
    return np.zeros(len(obs["action_mask"]), dtype=np.int64)

"""Several agents in one environment: PettingZoo games as Gymnasium vector envs (``env=pettingzoo``).

Two ways to put a PettingZoo game into rows of a batch, one per API:

* :class:`ParallelVectorEnv` (the Parallel API: every agent acts at once, as in MPE's
  ``simple_spread``): ``copies`` games of ``A`` agents give ``copies * A`` rows, row
  ``c * A + i`` is agent ``i`` (``possible_agents`` order) of game ``c``. Each row has its own
  reward, termination and truncation. One policy plays every row, so agents must have equal
  spaces; ``agent_id_input`` adds a one-hot of the agent's index to its observation so the
  shared policy can still tell the agents apart.
* :class:`TurnBasedVectorEnv` (the AEC API: one agent moves at a time, as in the classic board
  games): ``copies`` games, one row each. In every game the learner holds one seat (they
  alternate from game to game, so it plays first and second equally often); the other seats
  are played by an opponent chosen per game by an :class:`Opponents` object (random legal
  moves unless the run hands in another: rlexp.run.selfplay's pool of past policies). One
  vector step is the learner's move and then the opponents' replies until the learner is to
  move again or the game is over, so the opponents' moves never reach the rollout.

Agents that leave a parallel game before it ends, and agents that have not joined yet, keep
reporting ``terminated`` on their rows: the collector's autoreset rule then marks those rows
invalid (no loss, no advantage crosses them), and a row whose agent joins (or whose game is
reset) starts a new episode on the step after. A game copy resets on the step after its
last agent left, as Gymnasium's NEXT_STEP autoreset does.

Episode statistics come from here (not RecordEpisodeStatistics, which would count every
terminated row): when a game ends, every row of it reports its agent's return and length,
and ``info`` carries ``return/<agent>`` (that agent's rows only) and ``return/team`` (the
sum over the game's agents) for ``rollout/`` and ``eval/`` (rlexp.run.info_metrics); turn-based
games add ``win``, ``draw`` and ``loss`` (the sign of the learner's return).
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import vector as vw

from rlexp.data.observations import AGENT_ID_KEY as ID_KEY
from rlexp.data.observations import MASK_KEY, POLICY_KEY, STATE_KEY
from rlexp.envs.factory import EnvSpec, info_metric_reductions
from rlexp.envs.masks import ActionMasks
from rlexp.errors import ConfigError, require

log = logging.getLogger("rlexp")

APIS = ("auto", "parallel", "aec")
CRITIC_INPUTS = ("own", "global_state")


# -- building one game ----------------------------------------------------------------------------

def game_factory(game_id: str, api: str, make_kwargs: dict[str, Any]) -> tuple[Callable[[], Any], str]:
    """A function that builds one game of ``game_id``, and the API it speaks (parallel or aec).

    ``game_id`` is a PettingZoo module (``mpe2.simple_spread_v3``,
    ``pettingzoo.classic.connect_four_v3``: its ``parallel_env`` or ``env``) or
    ``package.module:callable`` returning a ParallelEnv or an AECEnv."""
    module_name, _, attr = game_id.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        hint = ' (PettingZoo games: pip install "rlexp[multiagent]")' if module_name.split(".")[0] in ("pettingzoo", "mpe2") else ""
        raise ConfigError("id", f"cannot import {module_name!r}: {e}{hint}") from None
    if attr:
        require(callable(getattr(module, attr, None)), "id", f"{module_name} has no callable {attr!r}")
        make = getattr(module, attr)
    elif api in ("auto", "parallel") and hasattr(module, "parallel_env"):
        make = module.parallel_env
    elif api in ("auto", "aec") and hasattr(module, "env"):
        make = module.env
    else:
        want = {"auto": "parallel_env() or env()", "parallel": "parallel_env()", "aec": "env()"}[api]
        raise ConfigError("id", f"{game_id} has no {want}; give a PettingZoo game module or package.module:callable")

    def one(**extra: Any) -> Any:
        try:
            return make(**{**make_kwargs, **extra})
        except TypeError as e:
            raise ConfigError("make_kwargs", f"{game_id} rejected {make_kwargs}: {e}") from None

    try:
        from pettingzoo.utils.env import AECEnv
    except ImportError:
        raise ConfigError("id", 'PettingZoo games need PettingZoo: pip install "rlexp[multiagent]"') from None
    probe = one()
    kind = "aec" if isinstance(probe, AECEnv) else "parallel"
    probe.close()
    require(api in ("auto", kind), "api", f"{game_id} builds a{'n AEC' if kind == 'aec' else ' Parallel'} env; set env.api={kind} or auto")
    return one, kind


def equal_spaces(game: Any, agents: Sequence[str], what: str, game_id: str) -> gym.Space:
    spaces = [getattr(game, what)(agent) for agent in agents]
    for agent, space in zip(agents[1:], spaces[1:]):
        if space != spaces[0]:
            raise ConfigError("id", f"{game_id}: agents {agents[0]} and {agent} have different {what.replace('_', ' ')}s "
                                    f"({spaces[0]} and {space}); agents with different spaces need separate policies, "
                                    "which one shared policy cannot be")
    return spaces[0]


def parse_policies(setting: Any) -> Optional[dict[str, str]]:
    """``env.policies`` (``["adversary_*:red", "agent_*:blue"]``) as {pattern: policy}; None when empty."""
    if not setting:
        return None
    require(not isinstance(setting, str), "policies", f"must be a list such as [adversary_*:red,agent_*:blue], got {setting!r}")
    out = {}
    for entry in setting:
        pattern, _, name = str(entry).rpartition(":")
        require(bool(pattern) and bool(name), "policies", f"each entry is <agent-name pattern>:<policy name>, got {entry!r}")
        out[pattern] = name
    return out


def policy_groups(agents: Sequence[str], patterns: dict[str, str]) -> dict[str, str]:
    """``env.policies`` ({agent-name pattern: policy name}, fnmatch patterns, the first match wins)
    as {agent: policy}; an agent no pattern matches is refused."""
    out = {}
    for agent in agents:
        match = next((name for pattern, name in patterns.items() if fnmatch.fnmatchcase(agent, pattern)), None)
        require(match is not None, "policies", f"agent {agent} matches none of {', '.join(patterns)}; add a pattern for it ('*' matches all)")
        out[agent] = str(match)
    require(len(set(out.values())) >= 1, "policies", "name at least one policy")
    return out


def with_agent_id(space: gym.Space, n_agents: int) -> gym.Space:
    """The observation space with a one-hot agent index: appended to a 1-D Box, or beside the
    observation as a Dict entry."""
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        low = np.concatenate([np.broadcast_to(space.low, space.shape), np.zeros(n_agents)]).astype(space.dtype)
        high = np.concatenate([np.broadcast_to(space.high, space.shape), np.ones(n_agents)]).astype(space.dtype)
        return gym.spaces.Box(low, high, dtype=space.dtype)
    entries = dict(space.spaces) if isinstance(space, gym.spaces.Dict) else {"observation": space}
    entries[ID_KEY] = gym.spaces.Box(0, 1, (n_agents,), dtype=np.float32)
    return gym.spaces.Dict(entries)


# -- the Parallel API ----------------------------------------------------------------------------

class ParallelVectorEnv(gym.vector.VectorEnv):
    """``copies`` PettingZoo parallel games, one row per (game, agent); see the module's doc."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, make_one: Callable[[], Any], copies: int, game_id: str, agent_id_input: bool, global_state: bool = False,
                 policies: Optional[dict[str, str]] = None):
        self.games = [make_one() for _ in range(copies)]
        self.game_id = game_id
        self.agents: list[str] = list(self.games[0].possible_agents)
        self.n_agents = len(self.agents)
        self.index = {agent: i for i, agent in enumerate(self.agents)}
        self.single_action_space = equal_spaces(self.games[0], self.agents, "action_space", game_id)
        self.agent_id_input = agent_id_input
        #: env.policies: each agent's policy (None: one policy plays every agent)
        self.policy_of = policy_groups(self.agents, policies) if policies else None
        if self.policy_of is not None:
            self.init_policies(agent_id_input)
            self.copies, self.num_envs, self.global_state = copies, copies * self.n_agents, False
            self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
            self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
            self.init_buffers(copies)
            return
        self.agent_space = equal_spaces(self.games[0], self.agents, "observation_space", game_id)
        self.single_observation_space = with_agent_id(self.agent_space, self.n_agents) if agent_id_input else self.agent_space
        #: a centralised critic's input: the game's global state (env.state()) as a Dict entry of every row
        self.global_state = global_state
        if global_state:
            state_space = getattr(self.games[0], "state_space", None)
            require(isinstance(state_space, gym.spaces.Box), "critic_input", f"global_state: {game_id} has no state_space "
                                                                             f"(env.state()) to give the critic; use own")
            entries = dict(self.single_observation_space.spaces) if isinstance(self.single_observation_space, gym.spaces.Dict) \
                else {"observation": self.agent_space, **({ID_KEY: gym.spaces.Box(0, 1, (self.n_agents,), dtype=np.float32)} if agent_id_input else {})}
            entries[STATE_KEY] = state_space
            self.single_observation_space = gym.spaces.Dict(entries)
        self.copies = copies
        self.num_envs = copies * self.n_agents
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.obs = gym.vector.utils.create_empty_array(self.agent_space, self.num_envs)
        self.init_buffers(copies)

    def init_policies(self, agent_id_input: bool) -> None:
        """Several policies: a Dict with each policy's observation under its name (its agents' rows;
        zeros elsewhere) and the one-hot ``policy`` entry saying whose row it is."""
        self.names = sorted(set(self.policy_of.values()))  # the one-hot's order, as PolicyMap reads it
        entries: dict[str, gym.Space] = {}
        self.group_obs: dict[str, Any] = {}
        for name in self.names:
            members = [agent for agent in self.agents if self.policy_of[agent] == name]
            space = equal_spaces(self.games[0], members, "observation_space", self.game_id)
            require(isinstance(space, gym.spaces.Box) and len(space.shape) == 1, "policies",
                    f"separate policies read 1-D Box observations; {name}'s agents see {space}")
            entries[name] = with_agent_id(space, self.n_agents) if agent_id_input else space
            self.group_obs[name] = np.zeros((1, *space.shape), dtype=space.dtype)  # a template: init_buffers sizes it
        entries[POLICY_KEY] = gym.spaces.Box(0, 1, (len(self.names),), dtype=np.float32)
        self.single_observation_space = gym.spaces.Dict(entries)

    def init_buffers(self, copies: int) -> None:
        self.ids = np.tile(np.eye(self.n_agents, dtype=np.float32), (copies, 1))
        if self.policy_of is not None:
            rows = copies * self.n_agents
            self.row_policy = np.array([self.names.index(self.policy_of[a]) for a in self.agents] * copies)
            self.policy_onehot = np.eye(len(self.names), dtype=np.float32)[self.row_policy]
            for name, buffer in self.group_obs.items():
                self.group_obs[name] = np.zeros((rows, *buffer.shape[1:]), dtype=buffer.dtype)
            #: each policy's entry holds the agent index in its own rows only (zeros in the others)
            self.member_ids = {name: self.ids * (self.row_policy == p)[:, None] for p, name in enumerate(self.names)}
        self.needs_reset = np.zeros(copies, dtype=bool)
        self.returns = np.zeros((copies, self.n_agents))
        self.lengths = np.zeros((copies, self.n_agents), dtype=np.int64)
        self.seeded = False

    # rows of game c: c * n_agents ... (c + 1) * n_agents - 1
    def row(self, copy: int, agent: str) -> int:
        return copy * self.n_agents + self.index[agent]

    def put(self, row: int, value: Any) -> None:
        if self.policy_of is not None:
            self.group_obs[self.names[self.row_policy[row]]][row] = value
        elif isinstance(self.obs, dict):
            for key in self.obs:
                self.obs[key][row] = value[key]
        else:
            self.obs[row] = value

    def observations(self) -> Any:
        if self.policy_of is not None:
            out = {name: (np.concatenate([obs, self.member_ids[name].astype(obs.dtype)], axis=1) if self.agent_id_input else obs.copy())
                   for name, obs in self.group_obs.items()}
            out[POLICY_KEY] = self.policy_onehot.copy()
            return out
        obs = {k: v.copy() for k, v in self.obs.items()} if isinstance(self.obs, dict) else self.obs.copy()
        if self.global_state:
            out = obs if isinstance(obs, dict) else {"observation": obs}
            if self.agent_id_input:
                out[ID_KEY] = self.ids.copy()
            out[STATE_KEY] = np.repeat(self.state(), self.n_agents, axis=0)
            return out
        if not self.agent_id_input:
            return obs
        if isinstance(self.single_observation_space, gym.spaces.Box):
            return np.concatenate([obs, self.ids.astype(obs.dtype)], axis=1)
        out = obs if isinstance(obs, dict) else {"observation": obs}
        out[ID_KEY] = self.ids.copy()
        return out

    def reset_game(self, c: int, seed: Optional[int], terminated: np.ndarray) -> None:
        obs, _ = self.games[c].reset(seed=seed)
        present = set(obs)
        for agent in self.agents:
            r = self.row(c, agent)
            if agent in present:
                self.put(r, obs[agent])
            terminated[r] = agent not in present  # not joined yet: the row waits (invalid)
        self.returns[c] = 0.0
        self.lengths[c] = 0
        self.needs_reset[c] = False

    def reset(self, *, seed: Optional[int] = None, options: Any = None) -> tuple[Any, dict]:
        self.terminated_at_reset = np.zeros(self.num_envs, dtype=bool)
        for c in range(self.copies):
            self.reset_game(c, None if seed is None else seed + c, self.terminated_at_reset)
        # agents not in the game yet: their rows wait (the collector stores them invalid)
        return self.observations(), ({"_waiting": self.terminated_at_reset.copy()} if self.terminated_at_reset.any() else {})

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions)
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        ended = np.zeros(n, dtype=bool)  # rows whose game ended at this step (episode statistics)
        for c, game in enumerate(self.games):
            if self.needs_reset[c]:
                self.reset_game(c, None, terminated)
                continue
            live = list(game.agents)
            obs, rewards, terms, truncs, _ = game.step({agent: actions[self.row(c, agent)] for agent in live})
            still = set(game.agents)
            for agent in self.agents:
                r, i = self.row(c, agent), self.index[agent]
                if agent in obs:
                    self.put(r, obs[agent])
                if agent in rewards:
                    reward[r] = rewards[agent]
                    self.returns[c, i] += rewards[agent]
                if agent in live:
                    self.lengths[c, i] += 1
                truncated[r] = bool(truncs.get(agent, False))
                # gone (left now or before, or not joined): terminated, so the row is invalid until it plays again
                terminated[r] = bool(terms.get(agent, False)) or (agent not in still and not truncated[r])
            if not still:
                self.needs_reset[c] = True
                ended[c * self.n_agents:(c + 1) * self.n_agents] = True
        info: dict[str, Any] = {}
        if ended.any():
            info = self.episode_info(ended)
        return self.observations(), reward, terminated, truncated, info

    def episode_info(self, ended: np.ndarray) -> dict[str, Any]:
        """Gymnasium's ``episode`` statistics for every row of the games that ended, and
        ``return/<agent>``, ``return/team`` for env.info_metrics."""
        returns, lengths = self.returns.reshape(-1), self.lengths.reshape(-1)
        team = np.repeat(self.returns.sum(axis=1), self.n_agents)
        info: dict[str, Any] = {"episode": {"r": returns.astype(np.float32), "l": lengths.copy(), "t": np.zeros(self.num_envs)},
                                "_episode": ended.copy(), "return/team": team, "_return/team": ended.copy()}
        for agent, i in self.index.items():
            rows = np.zeros(self.num_envs, dtype=bool)
            rows[i::self.n_agents] = True
            info[f"return/{agent}"], info[f"_return/{agent}"] = returns.copy(), ended & rows
        if self.policy_of is not None:  # the mean return of each policy's agents
            for p, name in enumerate(self.names):
                info[f"return/{name}"], info[f"_return/{name}"] = returns.copy(), ended & (self.row_policy == p)
        return info

    def state(self) -> np.ndarray:
        """Each game's global state (``env.state()``), one per game copy."""
        return np.stack([game.state() for game in self.games])

    def close_extras(self, **kwargs: Any) -> None:
        for game in self.games:
            game.close()


# -- the AEC API: turn-based games against opponents ----------------------------------------------------

class Opponents(Protocol):
    """Who plays the seats the learner does not hold in a turn-based game."""

    #: a name per opponent id (for win rates per opponent)
    def name(self, opponent: int) -> str: ...

    def pick(self, rng: np.random.Generator) -> int:
        """The opponent of a game about to start."""

    def act(self, opponent: int, obs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """Actions of ``opponent`` for a batch of observations (each from the mover's point of view)."""

    def record(self, opponent: int, outcome: int) -> None:
        """A game against ``opponent`` ended: 1 the learner won, 0 a draw, -1 it lost."""


def random_legal(obs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A uniformly random allowed action per row (every action where there is no mask)."""
    mask = np.asarray(obs[MASK_KEY], dtype=bool)
    choices = rng.random(mask.shape) * mask
    return choices.argmax(axis=1)


class FixedOpponents:
    """One scripted opponent in every game (random legal moves by default)."""

    def __init__(self, play: Callable[[dict[str, np.ndarray], np.random.Generator], np.ndarray] = random_legal, label: str = "random"):
        self.play, self.label = play, label

    def name(self, opponent: int) -> str:
        return self.label

    def pick(self, rng: np.random.Generator) -> int:
        return 0

    def act(self, opponent: int, obs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        return self.play(obs, rng)

    def record(self, opponent: int, outcome: int) -> None:
        pass


class TurnBasedVectorEnv(gym.vector.VectorEnv):
    """``copies`` PettingZoo AEC games, one row each: the learner's seat; see the module's doc."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, make_one: Callable[[], Any], copies: int, game_id: str, opponents: Opponents):
        self.games = [make_one() for _ in range(copies)]
        self.game_id = game_id
        self.agents: list[str] = list(self.games[0].possible_agents)
        require(len(self.agents) >= 2, "id", f"{game_id} has {len(self.agents)} agent; a turn-based game needs two or more")
        self.single_observation_space = equal_spaces(self.games[0], self.agents, "observation_space", game_id)
        self.single_action_space = equal_spaces(self.games[0], self.agents, "action_space", game_id)
        require(isinstance(self.single_action_space, gym.spaces.Discrete), "id",
                f"{game_id}'s actions are {self.single_action_space}; turn-based games need Discrete actions")
        self.copies = self.num_envs = copies
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, copies)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, copies)
        self.opponents = opponents
        self.rng = np.random.default_rng()
        self.learner: list[str] = [self.agents[0]] * copies
        self.opponent = np.zeros(copies, dtype=np.int64)
        self.games_played = np.zeros(copies, dtype=np.int64)
        self.needs_reset = np.zeros(copies, dtype=bool)
        self.returns = np.zeros(copies)
        self.lengths = np.zeros(copies, dtype=np.int64)
        #: moves of each game in order (agent, action), kept for the tests and for replays
        self.record_moves = False
        self.moves: list[list[tuple[str, int]]] = [[] for _ in range(copies)]

    def over(self, c: int) -> bool:
        game, learner = self.games[c], self.learner[c]
        return not game.agents or bool(game.terminations.get(learner, True) or game.truncations.get(learner, False))

    def reward(self, c: int) -> float:
        """What the learner earned since it last moved (AEC's cumulative reward of that agent)."""
        return float(self.games[c].unwrapped._cumulative_rewards.get(self.learner[c], 0.0))

    def start_game(self, c: int, seed: Optional[int]) -> None:
        game = self.games[c]
        game.reset(seed=seed)
        # the learner's seat alternates from game to game (and differs between neighbouring copies)
        self.learner[c] = self.agents[(self.games_played[c] + c) % len(self.agents)]
        self.opponent[c] = self.opponents.pick(self.rng)
        self.returns[c], self.lengths[c] = 0.0, 0
        self.needs_reset[c] = False
        self.moves[c] = []

    def reset(self, *, seed: Optional[int] = None, options: Any = None) -> tuple[Any, dict]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        for c in range(self.copies):
            self.start_game(c, None if seed is None else seed + c)
        self.advance(list(range(self.copies)))
        return self.observations(), {}

    def move(self, c: int, action: int) -> None:
        game = self.games[c]
        if self.record_moves:
            self.moves[c].append((game.agent_selection, int(action)))
        game.step(int(action))

    def advance(self, copies: list[int]) -> None:
        """The opponents' moves, batched per opponent, until each game's learner is to move or it is over."""
        waiting = [c for c in copies if not self.over(c) and self.games[c].agent_selection != self.learner[c]]
        while waiting:
            for opponent in np.unique(self.opponent[waiting]):
                group = [c for c in waiting if self.opponent[c] == opponent]
                obs = [self.games[c].observe(self.games[c].agent_selection) for c in group]
                batch = {key: np.stack([o[key] for o in obs]) for key in obs[0]} if isinstance(obs[0], dict) else {"observation": np.stack(obs)}
                for c, action in zip(group, self.opponents.act(int(opponent), batch, self.rng)):
                    self.move(c, int(action))
            waiting = [c for c in waiting if not self.over(c) and self.games[c].agent_selection != self.learner[c]]

    def observations(self) -> Any:
        obs = [self.games[c].observe(self.learner[c]) for c in range(self.copies)]
        if isinstance(obs[0], dict):
            return {key: np.stack([o[key] for o in obs]) for key in obs[0]}
        return np.stack(obs)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions).reshape(-1)
        n = self.copies
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        moved = []
        for c in range(n):
            if self.needs_reset[c]:
                self.games_played[c] += 1
                self.start_game(c, None)
            else:
                self.move(c, actions[c])
                self.lengths[c] += 1
            moved.append(c)
        self.advance(moved)
        ended = np.zeros(n, dtype=bool)
        for c in range(n):
            if self.lengths[c] == 0:  # a game that just started: reward 0 (the autoreset step)
                continue
            reward[c] = self.reward(c)
            self.returns[c] += reward[c]
            if self.over(c):
                game, learner = self.games[c], self.learner[c]
                truncated[c] = bool(game.truncations.get(learner, False)) and not game.terminations.get(learner, False)
                terminated[c] = not truncated[c]
                ended[c] = self.needs_reset[c] = True
                self.opponents.record(int(self.opponent[c]), int(np.sign(self.returns[c])))
        info: dict[str, Any] = {}
        if ended.any():
            outcome = np.sign(self.returns)
            info = {"episode": {"r": self.returns.astype(np.float32), "l": self.lengths.copy(), "t": np.zeros(n)}, "_episode": ended.copy()}
            for key, value in (("win", outcome > 0), ("draw", outcome == 0), ("loss", outcome < 0)):
                info[key], info["_" + key] = value.astype(np.float32), ended.copy()
        return self.observations(), reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        for game in self.games:
            game.close()


# -- the spec ----------------------------------------------------------------------------------------

@dataclass
class PettingZooSpec(EnvSpec):
    """``env=pettingzoo``: a PettingZoo game as rows of a vector env (see the module's doc).
    ``num_envs`` counts game copies; a parallel game of A agents gives ``num_envs * A`` rows."""

    id: str = "mpe2.simple_spread_v3"
    api: str = "auto"  # auto | parallel | aec
    agent_id_input: bool = True  # parallel games: the agent's index as a one-hot input
    critic_input: str = "own"  # parallel games: own (the critic sees what the actor sees) | global_state (MAPPO's env.state())
    policies: Any = None  # parallel games: ["<agent-name pattern>:<policy name>", ...], a network per policy (empty: one shared)
    opponent: str = "random"  # turn-based games without self-play, and evaluation: random | package.module:function

    def __post_init__(self) -> None:
        self.make_kwargs = dict(self.make_kwargs)
        require(self.num_envs >= 1, "num_envs", f"must be >= 1, got {self.num_envs}")
        require(self.api in APIS, "api", f"must be one of {', '.join(APIS)}, got {self.api!r}")
        require(self.critic_input in CRITIC_INPUTS, "critic_input", f"must be one of {', '.join(CRITIC_INPUTS)}, got {self.critic_input!r}")
        require(self.backend == "gymnasium", "backend", f"PettingZoo games step in Python on the CPU; use backend=gymnasium, got {self.backend!r}")
        require(self.vectorization == "sync", "vectorization", "PettingZoo games are stepped in this process; use sync")
        for key in ("mask_velocity", "obs_keys"):
            require(not getattr(self, key), key, "does not apply to PettingZoo games; leave it at its default")
        require(self.max_episode_steps is None, "max_episode_steps", "PettingZoo games take their own limit: set it in env.make_kwargs (max_cycles=...)")
        self.make_one, self.kind = game_factory(self.id, self.api, self.make_kwargs)
        probe = self.make_one()
        self.agents = list(probe.possible_agents)
        probe.close()
        self.policies = parse_policies(self.policies)
        if self.policies is not None:
            require(self.kind == "parallel", "policies", "applies to parallel games; turn-based games play the learner against opponents")
            require(self.critic_input == "own", "critic_input", "a centralised critic with separate policies (env.policies) is not built yet")
            require(not self.normalize_obs and self.clip_obs is None, "normalize_obs" if self.normalize_obs else "clip_obs",
                    "does not apply with env.policies (a Dict of the policies' observations)")
            groups = policy_groups(self.agents, self.policies)
        reductions = info_metric_reductions(self.info_metrics)
        own = {f"return/{agent}": "mean" for agent in self.agents} if self.kind == "parallel" else {"win": "mean", "draw": "mean", "loss": "mean"}
        if self.kind == "parallel":
            own["return/team"] = "mean"
            own.update({f"return/{name}": "mean" for name in dict.fromkeys(groups.values())} if self.policies else {})
            require(self.opponent == "random", "opponent", "applies to turn-based (AEC) games only")
            require(not (self.normalize_obs and self.critic_input == "global_state"), "normalize_obs",
                    "applies to Box observations; with critic_input=global_state they are a Dict")
        else:
            require(self.critic_input == "own", "critic_input", "global_state applies to parallel games")
            require(self.action_mask in ("auto", "obs", "none"), "action_mask", "turn-based games give their mask in the observation: auto, obs or none")
            for key in ("normalize_obs", "normalize_reward", "clip_obs"):
                require(not getattr(self, key), key, "does not apply to turn-based games (Dict board observations)")
        #: the info values logged at game ends: the ones asked for, then per agent / win-draw-loss
        self.info_reductions = {**own, **reductions}
        self.mask_source = "none"
        #: who plays the learner's opponents (rlexp.run.selfplay hands in its pool); None: ``opponent``
        self.opponents: Optional[Opponents] = None
        self.eval_opponents: Optional[Opponents] = None

    @property
    def opponent_is_run(self) -> bool:
        """Whether ``env.opponent`` names a trained run (a directory or checkpoint), which the run's
        side builds (rlexp.run.selfplay.opponent_from_setting); random and functions are built here."""
        return self.opponent != "random" and ":" not in self.opponent

    def fixed_opponent(self) -> Opponents:
        """``env.opponent`` as an :class:`Opponents`: random, or a scripted ``package.module:function``
        taking (observations, rng) and giving actions. (A run directory: random until the run's
        side hands in that policy.)"""
        if self.opponent == "random" or self.opponent_is_run:
            return FixedOpponents()
        return FixedOpponents(load_function(self.opponent, "opponent"), self.opponent.rpartition(":")[2])

    def make(self, num_envs: Optional[int] = None, training: bool = True, gamma: float = 0.99, device: Any = "cpu") -> gym.vector.VectorEnv:
        copies = num_envs or self.num_envs
        if self.kind == "parallel":
            env: gym.vector.VectorEnv = ParallelVectorEnv(self.make_one, copies, self.id, self.agent_id_input,
                                                         self.critic_input == "global_state", self.policies)
        else:
            opponents = (self.opponents if training else self.eval_opponents) or self.fixed_opponent()
            env = TurnBasedVectorEnv(self.make_one, copies, self.id, opponents)
        if isinstance(env.single_action_space, gym.spaces.Box):
            env = vw.ClipAction(env)
        if self.normalize_obs:
            require(isinstance(env.single_observation_space, gym.spaces.Box), "normalize_obs", "applies to Box observations only")
            env = vw.NormalizeObservation(env)
            env.update_running_mean = training
        if self.clip_obs is not None:
            env = vw.TransformObservation(env, lambda obs, c=self.clip_obs: obs.clip(-c, c))
        space = env.single_observation_space
        if self.action_mask != "none" and isinstance(space, gym.spaces.Dict) and MASK_KEY in space.spaces:
            env = ActionMasks(env, "obs", self.id)
            self.mask_source = "obs"
        if training and self.normalize_reward:
            env = vw.NormalizeReward(env, gamma=gamma)
        if training and self.clip_reward is not None:
            env = vw.ClipReward(env, -self.clip_reward, self.clip_reward)
        return env

    @property
    def rows_per_copy(self) -> int:
        return len(self.agents) if self.kind == "parallel" else 1


def load_function(path: str, key: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    require(bool(attr), key, f"name a function as package.module:function, got {path!r}")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(key, f"cannot load {path!r}: {e}") from None
    require(callable(function), key, f"{path} is not callable")
    return function


# -- a scripted connect-four player ----------------------------------------------------------------------

def connect_four_lookahead(obs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One-step lookahead for PettingZoo's connect_four: win if a move wins, else block the
    opponent's winning move, else a random legal move (ties broken at random). ``obs["observation"]``
    is (N, 6, 7, 2): plane 0 the mover's pieces, plane 1 the opponent's; row 0 is the top."""
    boards = np.asarray(obs["observation"]).astype(bool)
    mask = np.asarray(obs[MASK_KEY], dtype=bool)
    noise = rng.random(mask.shape)
    actions = (noise * mask).argmax(axis=1)
    filled = boards.any(axis=3)  # (N, 6, 7)
    for plane in (1, 0):  # a win of our own overrides a block
        hits = winning_columns(boards[..., plane], filled) & mask
        has = hits.any(axis=1)
        actions[has] = (noise * hits).argmax(axis=1)[has]
    return actions


def winning_columns(pieces: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """(N, 7) bools: whether dropping a piece of ``pieces``' owner (N, 6, 7) in each column makes
    four in a row, given the cells ``filled`` (N, 6, 7) by either player."""
    n = pieces.shape[0]
    empty = ~filled
    landing = np.where(empty.any(axis=1), 5 - np.argmax(empty[:, ::-1, :], axis=1), -1)  # (N, 7) lowest empty row
    trial = np.repeat(pieces[:, None], 7, axis=1)  # (N, 7 columns tried, 6, 7)
    rows, cols = np.nonzero(landing >= 0)
    trial[rows, cols, landing[rows, cols], cols] = True
    four = np.zeros((n, 7), dtype=bool)
    for window in (trial[..., :, 0:4] & trial[..., :, 1:5] & trial[..., :, 2:6] & trial[..., :, 3:7],  # across
                   trial[..., 0:3, :] & trial[..., 1:4, :] & trial[..., 2:5, :] & trial[..., 3:6, :],  # down
                   trial[..., 0:3, 0:4] & trial[..., 1:4, 1:5] & trial[..., 2:5, 2:6] & trial[..., 3:6, 3:7],  # diagonal
                   trial[..., 3:6, 0:4] & trial[..., 2:5, 1:5] & trial[..., 1:4, 2:6] & trial[..., 0:3, 3:7]):  # anti-diagonal
        four |= window.any(axis=(2, 3))
    return four & (landing >= 0)

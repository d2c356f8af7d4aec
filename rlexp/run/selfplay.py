"""Self-play: the learner against frozen copies of itself in turn-based games.

:class:`SelfPlay` is the :class:`rlexp.envs.multiagent.Opponents` of a training run on a
turn-based (AEC) game. Each game's opponent is drawn per game: ``selfplay.latest_share`` of
the games against the latest policy, the rest shared equally among ``selfplay.opponents``
(a kind named twice gets twice the share):

* ``latest``: a frozen copy of the current policy, refreshed after every update;
* ``pool``: one of the last ``pool_size`` snapshots, taken every ``snapshot_every`` updates,
  drawn uniformly (the latest policy while the pool is still empty);
* ``random``: a random allowed move;
* ``package.module:function``: a scripted player, ``function(observations, rng) -> actions``
  (rlexp.envs.multiagent:connect_four_lookahead);
* a run directory or checkpoint: that trained policy.

Opponents act in the env (rlexp.envs.multiagent.TurnBasedVectorEnv), between the learner's
moves, so none of their moves reaches the rollout or the loss. Policies sample their moves,
so games differ. Every game's outcome is recorded: win, draw and loss rates per opponent kind
(``selfplay/win_rate/<kind>``...) after each rollout, and an Elo rating (K = ``selfplay.elo_k``,
the usual logistic curve with 400 points per factor of 10) of the learner against its
snapshots: every snapshot joins the pool with the learner's rating at that moment, and each
game against it moves both ratings (``selfplay/elo``). The pool, the ratings and the
generator's state are part of the checkpoint (:meth:`state_dict`), so a resumed run plays
against the same past selves.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np
import torch

from rlexp.data.observations import MASK_KEY, to_tensor
from rlexp.envs.multiagent import load_function, random_legal
from rlexp.errors import ConfigError, require

log = logging.getLogger("rlexp")

FIXED = ("latest", "pool", "random")
START_ELO = 1000.0


class SelfPlay:
    def __init__(self, latest_share: float, opponents: list[str], snapshot_every: int, pool_size: int, elo_k: float = 16.0,
                 seed: int = 0):
        require(snapshot_every >= 1, "selfplay.snapshot_every", f"must be >= 1, got {snapshot_every}")
        require(pool_size >= 1, "selfplay.pool_size", f"must be >= 1, got {pool_size}")
        require(0.0 <= latest_share <= 1.0, "selfplay.latest_share", f"must be in [0, 1], got {latest_share}")
        require(elo_k > 0, "selfplay.elo_k", f"must be > 0 (Elo's K: 16 or 32 are usual), got {elo_k}")
        opponents = [str(kind) for kind in opponents]
        require(latest_share == 1.0 or bool(opponents), "selfplay.opponents",
                "name who plays the games not against the latest policy: [pool], [pool, random], ... (or selfplay.latest_share=1)")
        shares: dict[str, float] = {"latest": latest_share}
        for kind in opponents:
            shares[kind] = shares.get(kind, 0.0) + (1.0 - latest_share) / len(opponents)
        self.kinds = [kind for kind, share in shares.items() if share > 0]
        self.shares = np.array([shares[k] for k in self.kinds]) / sum(shares[k] for k in self.kinds)
        self.snapshot_every, self.pool_size, self.elo_k = int(snapshot_every), int(pool_size), float(elo_k)
        self.scripted: dict[str, Callable[..., np.ndarray]] = {}
        self.runs: dict[str, torch.nn.Module] = {}
        for kind in self.kinds:
            if kind in FIXED:
                continue
            if ":" in kind and not Path(kind).exists():
                self.scripted[kind] = load_function(kind, "selfplay.opponents")
            elif not Path(kind).exists():
                raise ConfigError("selfplay.opponents", f"{kind!r} is neither latest, pool, random, package.module:function nor a run directory")
        self.policy: Optional[torch.nn.Module] = None
        self.latest: Optional[torch.nn.Module] = None
        #: past policies: (network, rating, update it was taken at)
        self.pool: list[dict[str, Any]] = []
        self.elo = START_ELO
        self.rng = np.random.default_rng(seed)
        self.results: dict[str, list[int]] = {}

    # -- wiring ------------------------------------------------------------------------------------------
    def attach(self, policy: torch.nn.Module, observation_space: gym.Space, device: torch.device) -> None:
        """The learner (after the env is built: its spaces shape the network)."""
        self.policy, self.space, self.device = policy, observation_space, device
        self.latest = self.frozen_copy()
        for kind in self.kinds:
            if kind not in FIXED and kind not in self.scripted:
                self.runs[kind] = self.trained_policy(kind)

    def frozen_copy(self) -> torch.nn.Module:
        net = copy.deepcopy(self.policy).eval()
        for param in net.parameters():
            param.requires_grad_(False)
        return net

    def trained_policy(self, path: str) -> torch.nn.Module:
        from rlexp.run.checkpoint import checkpoint_path, load_checkpoint

        state = load_checkpoint(checkpoint_path(path), key=f"selfplay.opponents.{path}")
        net = self.frozen_copy()
        try:
            net.load_state_dict(state["policy"])
        except RuntimeError as e:
            raise ConfigError(f"selfplay.opponents.{path}", f"its weights do not fit this run's network ({str(e).splitlines()[0][:160]})") from None
        return net

    # -- the Opponents protocol ---------------------------------------------------------------------------
    # ids: 0 .. len(kinds)-1 the kinds; len(kinds) + j the pool's snapshot j
    def name(self, opponent: int) -> str:
        return self.kinds[opponent] if opponent < len(self.kinds) else "pool"

    def pick(self, rng: np.random.Generator) -> int:
        kind = int(self.rng.choice(len(self.kinds), p=self.shares))
        if self.kinds[kind] == "pool" and self.pool:
            return len(self.kinds) + int(self.rng.integers(len(self.pool)))
        return kind

    def network(self, opponent: int) -> Optional[torch.nn.Module]:
        if opponent >= len(self.kinds):
            return self.pool[opponent - len(self.kinds)]["net"]
        kind = self.kinds[opponent]
        if kind in ("latest", "pool"):  # pool while it is empty: the latest policy
            return self.latest
        return self.runs.get(kind)

    @torch.inference_mode()
    def act(self, opponent: int, obs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        kind = self.name(opponent)
        if kind == "random":
            return random_legal(obs, self.rng)
        if kind in self.scripted:
            return np.asarray(self.scripted[kind](obs, self.rng))
        net = self.network(opponent)
        batch = dict(obs)
        if MASK_KEY in batch:
            batch[MASK_KEY] = np.asarray(batch[MASK_KEY], dtype=bool)
        n = len(batch[MASK_KEY]) if MASK_KEY in batch else len(next(iter(batch.values())))
        action, _ = net.predict(to_tensor(batch, self.space, self.device), net.initial_state(n, self.device),
                                np.ones(n, dtype=bool), False)
        return action.cpu().numpy()

    def record(self, opponent: int, outcome: int) -> None:
        self.results.setdefault(self.name(opponent), []).append(outcome)
        if opponent >= len(self.kinds):  # Elo against the snapshot
            entry = self.pool[opponent - len(self.kinds)]
            expected = 1.0 / (1.0 + 10 ** ((entry["elo"] - self.elo) / 400.0))
            change = self.elo_k * ((outcome + 1) / 2.0 - expected)
            self.elo += change
            entry["elo"] -= change

    # -- after each update ---------------------------------------------------------------------------------
    def after_update(self, updates: int) -> None:
        """Refresh the latest copy; every snapshot_every updates add a snapshot (the oldest leaves a full pool)."""
        self.latest.load_state_dict(self.policy.state_dict())
        if updates % self.snapshot_every == 0:
            self.pool.append({"net": self.frozen_copy(), "elo": self.elo, "update": updates})
            del self.pool[:-self.pool_size]

    def metrics(self) -> dict[str, float]:
        """Win, draw and loss rates per opponent kind over the games since the last call; the Elo rating."""
        out = {"selfplay/elo": self.elo, "selfplay/pool_size": float(len(self.pool))}
        for kind, outcomes in self.results.items():
            if outcomes:
                o = np.asarray(outcomes)
                key = kind.rpartition(":")[2] if ":" in kind else Path(kind).name if kind not in FIXED else kind
                out[f"selfplay/win_rate/{key}"] = float((o > 0).mean())
                out[f"selfplay/draw_rate/{key}"] = float((o == 0).mean())
                out[f"selfplay/loss_rate/{key}"] = float((o < 0).mean())
        self.results = {}
        return out

    # -- checkpoints -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"elo": self.elo, "rng": self.rng.bit_generator.state,
                "pool": [{"policy": entry["net"].state_dict(), "elo": entry["elo"], "update": entry["update"]} for entry in self.pool]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.elo = float(state["elo"])
        self.rng.bit_generator.state = state["rng"]
        self.pool = []
        for entry in state["pool"]:
            net = self.frozen_copy()
            net.load_state_dict(entry["policy"])
            self.pool.append({"net": net, "elo": float(entry["elo"]), "update": int(entry["update"])})
        self.latest.load_state_dict(self.policy.state_dict())


def opponent_from_setting(spec: Any, policy: torch.nn.Module, observation_space: gym.Space, device: torch.device) -> Any:
    """The :class:`Opponents` ``env.opponent`` names for evaluation: random or a scripted function
    (the spec builds those), or a trained run's directory or checkpoint, whose policy plays in a
    copy of ``policy``'s network."""
    if not spec.opponent_is_run:
        return spec.fixed_opponent()
    require(Path(spec.opponent).exists(), "env.opponent", f"{spec.opponent!r} is neither random, package.module:function nor a run directory")
    opponents = SelfPlay(0.0, [spec.opponent], snapshot_every=1, pool_size=1)
    opponents.attach(policy, observation_space, device)
    return opponents

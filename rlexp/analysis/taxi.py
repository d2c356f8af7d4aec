"""Taxi's optimum, computed from the env's own transition table, and what a trained policy is worth.

Taxi (gymnasium's ``Taxi-v4``) is a deterministic MDP of 500 states and 6 actions whose table
``env.unwrapped.P`` lists, per state and action, ``(probability, next state, reward,
terminated)``. An episode starts in one of 300 states (the taxi anywhere, the passenger at one
of the four stands, the destination another stand: ``env.unwrapped.initial_state_distrib``,
uniform over them) and pays -1 a move, -10 for a pickup or drop-off where there is none to
make, and +20 for the drop-off at the destination, which ends it; 200 steps at most.

- :func:`optimal_values`: value iteration without discounting (gamma 1), run as backward
  induction over the steps left. It stops at the first fixed point, which must come within
  the episode's 200 steps: the values are then both the best returns with 200 steps left and
  the uncapped optimum (the cap never binds on an optimal path, which is at most ~20 moves).
  On Taxi the optimal value of a state is 20 minus the moves and pickup still to make.
- :func:`optimum`: the best expected return over the initial-state distribution: 7.93
  (= 2379 / 300) on Taxi-v4. The mask (``env.unwrapped.action_mask``) only forbids moves
  into a wall and pickups or drop-offs with nothing to do, none of them ever optimal, so
  the optimum is the same with or without it (:func:`optimal_values` with ``masked=True``).
- :func:`start_states`, :func:`episode_optimum`: the first states of evaluation episodes
  reset with given seeds, and the best return on exactly those (rlexp's evaluation seeds
  its sub-env i with ``seed + 10000 + i``, so every evaluation of a run plays the same
  episodes). 100 episodes sample the 300 start states, whose optimal values spread from 3
  to 15 (std 2.6): a perfect policy scores 7.93 +/- 0.26 on 100 of them, not 7.93.
- :func:`policy_values`, :func:`greedy_policy`: the exact return of a deterministic
  policy, one action per state, within the 200-step limit (a policy that walks in circles
  is worth -1 a step until the cap); the greedy actions of a trained run.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Sequence

import gymnasium as gym
import numpy as np

TAXI_ID = "Taxi-v4"
EVAL_SEED_OFFSET = 10_000  # rlexp's evaluation seeds: seed + 10000 + i for sub-env i (rlexp/run/trainer.py)


@dataclass
class Table:
    """An env's transition table as arrays (S states, A actions, K outcomes at most per pair):
    ``prob``, ``reward``, ``terminated`` and ``next`` of shape (S, A, K) (outcomes padded with
    probability 0); ``initial`` the initial-state distribution (S,); ``limit`` the episode's
    step limit; ``mask`` (S, A) the actions the env's ``action_mask(state)`` allows."""

    prob: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    next: np.ndarray
    initial: np.ndarray
    limit: int
    mask: np.ndarray

    @property
    def num_states(self) -> int:
        return self.prob.shape[0]

    @property
    def num_actions(self) -> int:
        return self.prob.shape[1]


def taxi_table(env_id: str = TAXI_ID, **make_kwargs: Any) -> Table:
    """The table of ``gym.make(env_id, **make_kwargs)`` (Taxi or another toy-text env with
    ``P`` and ``initial_state_distrib``; ``mask`` is all True where it has no ``action_mask``)."""
    env = gym.make(env_id, **make_kwargs)
    try:
        core = env.unwrapped
        table = core.P
        states, actions = len(table), len(table[0])
        outcomes = max(len(table[s][a]) for s in range(states) for a in range(actions))
        prob = np.zeros((states, actions, outcomes))
        reward = np.zeros((states, actions, outcomes))
        terminated = np.zeros((states, actions, outcomes), dtype=bool)
        nxt = np.zeros((states, actions, outcomes), dtype=np.int64)
        for s in range(states):
            for a in range(actions):
                for k, (p, s_next, r, done) in enumerate(table[s][a]):
                    prob[s, a, k], nxt[s, a, k], reward[s, a, k], terminated[s, a, k] = p, s_next, r, done
        if hasattr(core, "action_mask"):
            mask = np.stack([np.asarray(core.action_mask(s), dtype=bool) for s in range(states)])
        else:
            mask = np.ones((states, actions), dtype=bool)
        limit = env.spec.max_episode_steps if env.spec is not None else None
        return Table(prob, reward, terminated, nxt, np.asarray(core.initial_state_distrib, dtype=float),
                     int(limit) if limit else 0, mask)
    finally:
        env.close()


def backup(table: Table, value: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Q (S, A): the expected reward of each action plus ``gamma`` times the value of where it
    leads (nothing after a terminating step)."""
    future = np.where(table.terminated, 0.0, value[table.next])
    return (table.prob * (table.reward + gamma * future)).sum(axis=2)


def optimal_values(table: Table, masked: bool = False, gamma: float = 1.0) -> tuple[np.ndarray, int]:
    """(V*, iterations): value iteration from zero, one iteration per step left, to the first
    exact fixed point; ``masked``: over the actions the mask allows only. Raises if no fixed
    point comes within the episode's step limit (the cap would then matter)."""
    value = np.zeros(table.num_states)
    for iteration in range(1, table.limit + 1):
        q = backup(table, value, gamma)
        if masked:
            q = np.where(table.mask, q, -np.inf)
        new = q.max(axis=1)
        if np.array_equal(new, value):
            return value, iteration - 1
        value = new
    raise ValueError(f"value iteration found no fixed point within the {table.limit}-step limit")


def optimum(table: Optional[Table] = None, masked: bool = False) -> float:
    """The best expected return from the initial-state distribution (7.93 on Taxi-v4)."""
    table = table if table is not None else taxi_table()
    return float(table.initial @ optimal_values(table, masked)[0])


def optimum_fraction(table: Optional[Table] = None) -> Fraction:
    """The optimum as an exact fraction, for a uniform initial distribution and integer values
    (Taxi's): the sum of the start states' optimal values over their number."""
    table = table if table is not None else taxi_table()
    value = optimal_values(table)[0]
    starts = table.initial > 0
    assert np.allclose(table.initial[starts], 1 / starts.sum()) and np.array_equal(value, np.round(value))
    return Fraction(int(value[starts].sum()), int(starts.sum()))


def policy_values(table: Table, policy: Sequence[int], steps: Optional[int] = None) -> np.ndarray:
    """The expected return of the deterministic ``policy`` (an action per state) from every
    state with ``steps`` steps left (default: the episode's limit), by backward induction."""
    policy = np.asarray(policy, dtype=np.int64)
    rows = np.arange(table.num_states)
    value = np.zeros(table.num_states)
    for _ in range(table.limit if steps is None else steps):
        value = backup(table, value)[rows, policy]
    return value


def start_states(seeds: Sequence[int], env_id: str = TAXI_ID, **make_kwargs: Any) -> list[int]:
    """The first state of an episode reset with each seed."""
    env = gym.make(env_id, **make_kwargs)
    try:
        return [int(env.reset(seed=int(seed))[0]) for seed in seeds]
    finally:
        env.close()


def eval_seeds(run_seed: int, episodes: int) -> list[int]:
    """The seeds of a run's evaluation episodes (sub-env i: seed + 10000 + i)."""
    return [run_seed + EVAL_SEED_OFFSET + i for i in range(episodes)]


def episode_optimum(seeds: Sequence[int], table: Optional[Table] = None, env_id: str = TAXI_ID) -> float:
    """The best mean return over the episodes reset with ``seeds``."""
    table = table if table is not None else taxi_table(env_id)
    value = optimal_values(table)[0]
    return float(np.mean(value[start_states(seeds, env_id)]))


def greedy_policy(run: str | Path, table: Optional[Table] = None, checkpoint: str = "last") -> np.ndarray:
    """The deterministic action a trained run's policy takes in every state (given the state's
    mask, when the run was trained with masks)."""
    import rlexp

    table = table if table is not None else taxi_table()
    agent = rlexp.load(run, checkpoint=checkpoint)
    states = np.arange(table.num_states)
    mask = table.mask.astype(np.int8) if agent.masks is not None else None
    return np.asarray(agent.predict(states, deterministic=True, action_mask=mask), dtype=np.int64)


# -- a trained run against the optimum -----------------------------------------------------------

#: a run has reached the optimum at its first evaluation within this much of the best mean
#: return on the same evaluation episodes (0.3 over 100 episodes: 30 reward points in all,
#: e.g. one needless pickup and 19 extra moves; an episode that loops to the cap costs ~210)
GAP = 0.3


@dataclass
class RunReport:
    path: Path
    seed: int
    masked: bool
    steps: int
    episodes: int
    final_mean: float
    final_std: float
    episode_optimum: float  # the best mean return on this run's evaluation episodes
    steps_to_threshold: Optional[float]  # first evaluation within GAP of episode_optimum (None: never)
    wall_to_threshold: Optional[float]  # seconds from the run's start, evaluation included (None: never; nan: no TensorBoard events)
    steps_to_optimum: Optional[float]  # first evaluation at episode_optimum (every episode optimal)
    train_time: float
    sps: float
    policy_return: float  # exact expected return of the final greedy policy over Taxi's start states
    optimal_starts: int  # start states (of 300) where that policy's return is the best one


def report_run(path: str | Path, table: Optional[Table] = None, gap: float = GAP) -> RunReport:
    """What a finished run directory (rlexp-train's, or a multirun's job) reached: its
    evaluations against the best return on the same episodes, and its final greedy policy
    against the optimum over every start state."""
    from rlexp.analysis.results import load_job

    table = table if table is not None else taxi_table()
    job = load_job(Path(path))
    if not job.ok:
        raise ValueError(f"{path}: {job.problem}")
    cfg, summary = job.config, job.summary
    if cfg["env"]["id"] != TAXI_ID:
        raise ValueError(f"{path}: a run of {cfg['env']['id']}, not {TAXI_ID}")
    if not cfg["eval"].get("deterministic", True):
        raise ValueError(f"{path}: evaluated with sampled actions; the optimum is a deterministic policy's")
    episodes = int(cfg["eval"]["episodes"])
    best = episode_optimum(eval_seeds(int(cfg["seed"]), episodes), table)
    curve = job.eval_curve()

    def first(at_least: float) -> tuple[Optional[float], Optional[float]]:
        # the means are of integer returns over `episodes`: compare with a hair of slack for float sums
        hits = np.nonzero(curve.values >= at_least - 1e-6)[0] if curve is not None else []
        if not len(hits):
            return None, None
        return float(curve.steps[hits[0]]), float(curve.wall[hits[0]])

    steps_hit, wall_hit = first(best - gap)
    steps_opt, _ = first(best)
    value = policy_values(table, greedy_policy(path, table))
    starts = table.initial > 0
    best_values = optimal_values(table)[0]
    return RunReport(
        path=Path(path), seed=int(cfg["seed"]), masked=str(cfg["env"].get("action_mask", "auto")) != "none",
        steps=int(summary["steps"]), episodes=episodes,
        final_mean=float(summary["eval_return_mean"]), final_std=float(summary["eval_return_std"]),
        episode_optimum=best, steps_to_threshold=steps_hit, wall_to_threshold=wall_hit, steps_to_optimum=steps_opt,
        train_time=float(summary["train_time_s"]), sps=float(summary["sps"]),
        policy_return=float(table.initial @ value), optimal_starts=int((value[starts] == best_values[starts]).sum()),
    )


def report_table(reports: Sequence[RunReport], gap: float = GAP) -> str:
    """A markdown table, one row per run, then the mean ± std over seeds (ddof=0) per setting."""
    def num(x: Optional[float], fmt: str = "{:,.0f}") -> str:
        return "never" if x is None else "-" if np.isnan(x) else fmt.format(x)

    header = ["mask", "seed", "steps", f"final eval return ({reports[0].episodes if reports else '-'} episodes)",
              "best on those episodes", f"steps to within {gap:g} of it", "wall time to it (s)",
              "steps to every episode optimal", "final greedy policy, exact (all 300 starts)",
              "optimal starts", "training time (s)", "steps/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in reports:
        lines.append("| " + " | ".join([
            "info" if r.masked else "none", str(r.seed), f"{r.steps:,}", f"{r.final_mean:.2f} ± {r.final_std:.2f}",
            f"{r.episode_optimum:.2f}", num(r.steps_to_threshold), num(r.wall_to_threshold, "{:.0f}"),
            num(r.steps_to_optimum), f"{r.policy_return:.3f}", f"{r.optimal_starts}/300",
            f"{r.train_time:.0f}", f"{r.sps:,.0f}"]) + " |")
    summary = []
    for masked in (True, False):
        group = [r for r in reports if r.masked == masked]
        if not group:
            continue
        finals = np.array([r.final_mean for r in group])
        reached = [r.steps_to_threshold for r in group if r.steps_to_threshold is not None]
        exact = np.array([r.policy_return for r in group])
        summary.append(
            f"- mask {'info' if masked else 'none'}, seeds {', '.join(str(r.seed) for r in group)}: final eval return "
            f"{finals.mean():.2f} ± {finals.std():.2f}; within {gap:g} of the best on {len(reached)} of {len(group)} seeds"
            + (f" (steps to it {np.mean(reached):,.0f} ± {np.std(reached):,.0f})" if reached else "")
            + f"; final greedy policies {exact.mean():.3f} ± {exact.std():.3f} against the optimum {optimum():.3f}")
    return "\n".join(lines + [""] + summary)

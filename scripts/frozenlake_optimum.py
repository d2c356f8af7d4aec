"""FrozenLake's optimum within its step limit, from the env's own transition table.

    python scripts/frozenlake_optimum.py                 # the slippery 4x4 lake, as Gymnasium registers it
    python scripts/frozenlake_optimum.py --not-slippery  # the plain lake (hparams=ppo_frozenlake)

Prints three figures for an episode of at most ``--steps`` moves (Gymnasium's limit, 100):

- the best stationary policy (one action per square; the optimum without a step limit, found by
  value iteration with gamma 1) and its exact chance of reaching the goal within the limit;
- the best chance any policy has within the limit (one that may also look at the steps left):
  an upper bound for a policy that, like rlexp's, sees only its square;
- the best stationary policy's mean success over the first ``--episodes`` evaluation episodes
  of runs with seeds ``--seeds`` (rlexp seeds evaluation episode i of a run with ``seed + 10000 +
  i``), played with the env: what a perfect policy would score on those very episodes.
"""

from __future__ import annotations

import argparse
from typing import Optional

import gymnasium as gym
import numpy as np

EVAL_SEED_OFFSET = 10_000  # rlexp's evaluation seeds: seed + 10000 + i for sub-env i


def transitions(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """``P[s, a, s']`` and the chance ``G[s, a]`` that the move from s with a reaches the goal;
    the episode ends on a hole or the goal (absorbing, worth nothing more)."""
    table = env.unwrapped.P
    n_states, n_actions = len(table), len(table[0])
    moves, goal = np.zeros((n_states, n_actions, n_states)), np.zeros((n_states, n_actions))
    for s in range(n_states):
        for a in range(n_actions):
            for prob, nxt, reward, terminated in table[s][a]:
                if terminated:
                    goal[s, a] += prob * reward  # the goal pays 1, a hole 0; both end the episode
                else:
                    moves[s, a, nxt] += prob
    return moves, goal


def best_stationary_policy(moves: np.ndarray, goal: np.ndarray, gamma: float = 1 - 1e-6,
                           tol: float = 1e-13) -> np.ndarray:
    """Value iteration until the values stop moving: the greedy action per square. A gamma a hair
    below 1 breaks the ties of gamma 1 (on the plain lake every square but a hole is worth 1,
    walking into a wall included) in favour of the shorter way, and changes no other choice."""
    values = np.zeros(moves.shape[0])
    while True:
        q = goal + gamma * (moves @ values)
        new = q.max(axis=1)
        if np.abs(new - values).max() < tol:
            return q.argmax(axis=1)
        values = new


def success_within(moves: np.ndarray, goal: np.ndarray, steps: int, policy: Optional[np.ndarray] = None) -> np.ndarray:
    """Chance of reaching the goal within ``steps`` moves from each square: of ``policy``, or of the
    best policy that knows the steps left (backward induction)."""
    values = np.zeros(moves.shape[0])
    index = np.arange(moves.shape[0])
    for _ in range(steps):
        q = goal + moves @ values
        values = q.max(axis=1) if policy is None else q[index, policy]
    return values


def played(env_id: str, make_kwargs: dict, policy: np.ndarray, seed: int, episodes: int) -> float:
    """Mean success of ``policy`` over evaluation episodes 0..episodes-1 of a run with ``seed``."""
    env = gym.make(env_id, **make_kwargs)
    wins = 0.0
    for i in range(episodes):
        state, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + i)
        done = False
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            done = terminated or truncated
        wins += reward
    env.close()
    return wins / episodes


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--not-slippery", action="store_true", help="the plain lake (is_slippery=False)")
    parser.add_argument("--steps", type=int, default=None, help="the episode's step limit (default: the env's, 100)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args(argv)
    env_id, make_kwargs = "FrozenLake-v1", {"is_slippery": not args.not_slippery}
    env = gym.make(env_id, **make_kwargs)
    steps = args.steps or env.spec.max_episode_steps
    moves, goal = transitions(env)
    start = int(np.argmax(env.unwrapped.initial_state_distrib))
    env.close()
    policy = best_stationary_policy(moves, goal)
    print(f"{env_id} {make_kwargs}, {steps} steps at most, from square {start}:")
    print(f"  best stationary policy, no step limit: {success_within(moves, goal, 100_000, policy)[start]:.4f}")
    print(f"  best stationary policy, within {steps} steps: {success_within(moves, goal, steps, policy)[start]:.4f}")
    print(f"  best policy that knows the steps left, within {steps} steps: {success_within(moves, goal, steps)[start]:.4f}")
    for seed in args.seeds:
        print(f"  best stationary policy on run seed {seed}'s first {args.episodes} evaluation episodes: "
              f"{played(env_id, make_kwargs, policy, seed, args.episodes):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

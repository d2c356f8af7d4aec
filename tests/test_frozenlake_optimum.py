"""scripts/frozenlake_optimum.py: FrozenLake's optimum within its step limit, the figure the
results page gives for the slippery lake, checked on cases worked out by hand."""

import importlib.util

import gymnasium as gym
import pytest
from conftest import ROOT

SPEC = importlib.util.spec_from_file_location("frozenlake_optimum", ROOT / "scripts" / "frozenlake_optimum.py")
optimum = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(optimum)


def table(slippery):
    env = gym.make("FrozenLake-v1", is_slippery=slippery)
    moves, goal = optimum.transitions(env)
    env.close()
    return moves, goal


def test_the_plain_lake_takes_six_moves_from_start_to_goal():
    moves, goal = table(False)
    assert optimum.success_within(moves, goal, 5)[0] == 0.0  # 3 right and 3 down, no fewer
    assert optimum.success_within(moves, goal, 6)[0] == 1.0
    policy = optimum.best_stationary_policy(moves, goal)
    assert optimum.success_within(moves, goal, 6, policy)[0] == 1.0  # the stationary policy takes the short way
    assert optimum.played("FrozenLake-v1", {"is_slippery": False}, policy, seed=0, episodes=5) == 1.0


def test_one_slippery_move_next_to_the_goal_reaches_it_one_time_in_three():
    moves, goal = table(True)
    # square 14 is left of the goal (15): moving right goes right, up or down a third of the time
    # each; down hits the edge and stays, up goes to 10; moving down can slide right too
    assert optimum.success_within(moves, goal, 1)[14] == pytest.approx(1 / 3)
    assert optimum.success_within(moves, goal, 1)[0] == 0.0


def test_the_slippery_optimum_within_the_limit_sits_below_the_unlimited_one():
    moves, goal = table(True)
    policy = optimum.best_stationary_policy(moves, goal)
    limited = optimum.success_within(moves, goal, 100, policy)[0]
    knows_steps_left = optimum.success_within(moves, goal, 100)[0]
    unlimited = optimum.success_within(moves, goal, 100_000, policy)[0]
    assert limited <= knows_steps_left + 1e-12 and limited < unlimited
    assert optimum.success_within(moves, goal, 50, policy)[0] < limited  # more steps, more chances
    assert unlimited == pytest.approx(optimum.success_within(moves, goal, 100_000)[0])  # gamma 1's optimum

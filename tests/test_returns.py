"""GAE and Monte Carlo returns against values worked out by hand."""

import pytest
import torch

from rlexp.data.returns import discounted_returns, explained_variance, finished_mask, gae

GAMMA, LAM = 0.9, 0.5
# one environment per column: 0 = no episode end, 1 = terminated at t=1, 2 = truncated at t=1
REWARDS = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]])
VALUES = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [1.5, 1.5, 1.5]])
# V(s_{t+1}); at t=1 columns 1 and 2 hold the value of the episode's final observation (1.5)
NEXT_VALUES = torch.tensor([[1.0, 1.0, 1.0], [1.5, 1.5, 1.5], [2.0, 2.0, 2.0]])
TERMINATED = torch.tensor([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
EPISODE_END = torch.tensor([[0, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)


def test_gae_by_hand_no_end_terminated_truncated():
    adv = gae(REWARDS, VALUES, NEXT_VALUES, TERMINATED, EPISODE_END, GAMMA, LAM)
    # deltas without an end: 1 + .9*1 - .5 = 1.4 ; 2 + .9*1.5 - 1 = 2.35 ; 3 + .9*2 - 1.5 = 3.3
    # column 0: A2 = 3.3, A1 = 2.35 + .45*3.3 = 3.835, A0 = 1.4 + .45*3.835 = 3.12575
    assert adv[:, 0].tolist() == pytest.approx([3.12575, 3.835, 3.3])
    # column 1, terminated at t=1: no bootstrap, delta1 = 2 - 1 = 1.0, recursion cut
    # A1 = 1.0, A0 = 1.4 + .45*1.0 = 1.85
    assert adv[:, 1].tolist() == pytest.approx([1.85, 1.0, 3.3])
    # column 2, truncated at t=1: bootstraps from V(final obs) = 1.5, delta1 = 2.35, recursion cut
    # A1 = 2.35, A0 = 1.4 + .45*2.35 = 2.4575
    assert adv[:, 2].tolist() == pytest.approx([2.4575, 2.35, 3.3])


def test_gae_lambda_extremes():
    td = gae(REWARDS, VALUES, NEXT_VALUES, TERMINATED, EPISODE_END, GAMMA, 0.0)
    assert td[:, 0].tolist() == pytest.approx([1.4, 2.35, 3.3])  # lambda=0: one-step TD errors
    mc = gae(REWARDS, VALUES, NEXT_VALUES, TERMINATED, EPISODE_END, GAMMA, 1.0)
    # lambda=1 without ends: A0 + V0 = 1 + .9*2 + .81*3 + .729*2.0 (bootstrap) = 6.688
    assert (mc[0, 0] + VALUES[0, 0]).item() == pytest.approx(6.688)


def test_discounted_returns_and_finished_mask():
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    ends = torch.tensor([[False], [True], [False], [False]])
    returns = discounted_returns(rewards, ends, 0.9)
    # episode 1 ends at t=1: G1 = 2, G0 = 1 + .9*2 = 2.8; t=2,3 are an unfinished tail (partial sums)
    assert returns[:, 0].tolist() == pytest.approx([2.8, 2.0, 3 + 0.9 * 4, 4.0])
    assert finished_mask(ends)[:, 0].tolist() == [True, True, False, False]


def test_explained_variance():
    targets = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(targets, targets) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), targets) == pytest.approx(0.0)

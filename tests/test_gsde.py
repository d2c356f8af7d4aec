"""gSDE (state-dependent exploration): the distribution it trains on, the noise it samples,
and how long a noise matrix is kept."""

from __future__ import annotations

import copy
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import run_cli, run_cli_in_process
from rlexp.networks.heads import StateDependentNoiseHead
from rlexp.networks.actor_critic import ActorCritic


def make_head(sample_freq: int = -1) -> StateDependentNoiseHead:
    head = StateDependentNoiseHead(in_features=2, action_dim=1, sample_freq=sample_freq)
    with torch.no_grad():
        head.mean.weight.copy_(torch.tensor([[1.0, -1.0]]))
        head.mean.bias.fill_(0.5)
        head.log_std.copy_(torch.log(torch.tensor([[0.5], [2.0]])))
    return head


def test_log_prob_and_entropy_by_hand():
    head = make_head()
    z = torch.tensor([[1.0, 2.0]])
    dist = head(z)
    # mean = 1*1 - 1*2 + 0.5 = -0.5; variance = 1^2 * 0.5^2 + 2^2 * 2^2 = 16.25 (+1e-6)
    var = 16.25 + 1e-6
    a = torch.tensor([[1.5]])
    expected_log_prob = -0.5 * (1.5 - (-0.5)) ** 2 / var - 0.5 * math.log(2 * math.pi * var)
    assert head.log_prob(dist, a).item() == pytest.approx(expected_log_prob, rel=1e-6)
    assert head.entropy(dist).item() == pytest.approx(0.5 * math.log(2 * math.pi * math.e * var), rel=1e-6)
    assert head.mode(dist).item() == pytest.approx(-0.5)


def test_std_learns_through_log_prob_and_features_only_through_the_mean():
    head = make_head()
    z = torch.tensor([[1.0, 2.0]], requires_grad=True)
    dist = head(z)
    head.log_prob(dist, torch.tensor([[1.5]])).sum().backward()
    assert head.log_std.grad is not None and torch.all(head.log_std.grad != 0)
    # d log p / d z only through the mean (weight row [1, -1]): the std uses z detached, as in SB3
    mean_grad = (1.5 - (-0.5)) / (16.25 + 1e-6)
    assert z.grad[0].tolist() == pytest.approx([mean_grad, -mean_grad], rel=1e-5)


def test_sampled_noise_has_the_distribution_the_loss_assumes():
    torch.manual_seed(0)
    head = make_head()
    z = torch.tensor([[1.0, 2.0]]).expand(20_000, 2)  # one state, 20k independent noise matrices
    dist = head(z)
    actions = head.sample(dist)
    assert actions.mean().item() == pytest.approx(-0.5, abs=0.1)
    assert actions.var().item() == pytest.approx(16.25, rel=0.05)


def test_noise_is_held_for_sample_freq_steps_then_redrawn():
    torch.manual_seed(0)
    head = make_head(sample_freq=3)
    z = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    draws = [head.sample(head(z)) for _ in range(7)]
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[1], draws[2])
    assert not torch.equal(draws[2], draws[3])
    assert torch.equal(draws[3], draws[4]) and torch.equal(draws[4], draws[5])
    assert not torch.equal(draws[5], draws[6])
    # the same noise matrix in a nearby state gives a nearby action: z @ E is linear in z
    head.reset_noise(1)
    a1 = head.sample(head(torch.tensor([[1.0, 2.0]])))
    a2 = head.sample(head(torch.tensor([[1.01, 2.0]])))
    assert (a2 - a1).abs().item() < 0.1


def test_noise_moves_with_the_policy_and_is_not_saved():
    """The noise matrices are a non-persistent buffer: a copy of the policy moved with .to()
    (the CPU evaluation copy of a GPU run) takes them along instead of mixing devices, and
    checkpoints do not hold them. (No second device here: .to(dtype) goes through the same
    module machinery as .to(device).)"""
    head = make_head(sample_freq=-1)
    z = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    action = head.sample(head(z))
    assert "noise" in dict(head.named_buffers()) and "noise" not in head.state_dict()
    moved = copy.deepcopy(head).to(torch.float64)
    assert moved.noise.dtype == torch.float64 and moved.noise.data_ptr() != head.noise.data_ptr()
    torch.testing.assert_close(moved.noise, head.noise.double())
    again = moved.sample(moved(z.double()))  # the same matrices: the same action
    assert again.shape == (2, 1) and torch.isfinite(again).all()
    torch.testing.assert_close(again, action.double())


def test_once_per_rollout_noise_changes_only_on_reset():
    torch.manual_seed(0)
    policy = ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,)), use_sde=True, sde_sample_freq=-1)
    obs = torch.randn(4, 3)
    policy.reset_noise(4)
    with torch.no_grad():
        first = [policy.act(obs, policy.initial_state(len(obs)), None)[0] for _ in range(5)]
        policy.reset_noise(4)
        after_reset = policy.act(obs, policy.initial_state(len(obs)), None)[0]
    assert all(torch.equal(first[0], a) for a in first)
    assert not torch.equal(first[0], after_reset)
    # four envs, four different noise matrices
    assert len({round(x, 6) for x in (first[0] - policy.predict(obs, policy.initial_state(len(obs)), None)[0]).flatten().tolist()}) == 4


def test_gsde_run_trains_resumes_and_evaluates(tmp_path):
    run_dir = tmp_path / "run"
    common = ["env=pendulum", "network.use_sde=true", "network.sde_sample_freq=4", "eval.episodes=2", "progress=false", "logger=none"]
    result = run_cli_in_process(*common, "total_steps=4096", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["policy"]["action_head.log_std"].shape == (64, 1)  # one std per (feature, action)
    result = run_cli_in_process(f"resume={run_dir}", "total_steps=8192")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] >= 8192 and np.isfinite(summary["eval_return_mean"])

"""The policy-gradient theorem on a problem small enough to solve by hand.

A 3-armed bandit with a softmax policy pi = softmax(theta) and Gaussian rewards of
mean mu_a. The objective J(theta) = sum_a pi_a mu_a has the exact gradient

    dJ/dtheta_k = pi_k (mu_k - J)

REINFORCE's loss, differentiated by autograd, must be an unbiased estimate of minus
that gradient; REINFORCE with a baseline b must be unbiased too (E[grad log pi] = 0)
and, with b near J, have a much smaller variance. Each check uses the repo's own
``loss(batch)`` on many independent batches, so the sample mean of the estimates is
compared with the exact gradient within a few standard errors.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Categorical

from rlexp.algos import REINFORCE, REINFORCEWithBaseline
from rlexp.data.rollout import Batch

THETA = [0.4, -0.3, 0.1]
MU = [10.0, 11.0, 12.5]  # a large common offset: the case a baseline is for
REWARD_STD = 1.0
N_BATCHES, BATCH_SIZE = 2000, 32
Z = 4.0  # tolerance in standard errors (a two-sided 4-sigma band: ~6e-5 false alarms per check)


@pytest.fixture(autouse=True)
def one_thread():
    """Thousands of tiny ops: with a second thread on a busy 2-core machine each op can
    wait milliseconds for it (the trainer runs with torch_threads=1 for the same reason)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SoftmaxBandit(nn.Module):
    """One state; pi = softmax(theta); the 'value' is a constant baseline b."""

    def __init__(self, baseline: float = 0.0):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(THETA))
        self.b = nn.Parameter(torch.tensor(baseline))

    def evaluate_actions(self, obs, actions, seq=None):
        dist = Categorical(logits=self.theta.repeat(len(actions), 1))
        return dist.log_prob(actions), dist.entropy(), self.b.expand(len(actions))


def exact_gradient() -> torch.Tensor:
    pi = torch.softmax(torch.tensor(THETA), 0)
    mu = torch.tensor(MU)
    by_hand = pi * (mu - (pi * mu).sum())
    # the same by autograd on J(theta) itself
    theta = torch.tensor(THETA, requires_grad=True)
    (torch.softmax(theta, 0) * mu).sum().backward()
    torch.testing.assert_close(by_hand, theta.grad)
    return by_hand


def gradient_estimates(algo, policy: SoftmaxBandit, seed: int) -> torch.Tensor:
    """[N_BATCHES, 3]: -d loss/policy / d theta on independent batches of bandit pulls."""
    generator = torch.Generator().manual_seed(seed)
    pi = torch.softmax(torch.tensor(THETA), 0)
    mu = torch.tensor(MU)
    estimates = torch.empty(N_BATCHES, len(THETA))
    for i in range(N_BATCHES):
        actions = torch.multinomial(pi, BATCH_SIZE, replacement=True, generator=generator)
        rewards = mu[actions] + REWARD_STD * torch.randn(BATCH_SIZE, generator=generator)
        # one-step episodes: the Monte Carlo return is the reward
        batch = Batch(torch.zeros(BATCH_SIZE, 1), actions, pi.log()[actions], torch.zeros(BATCH_SIZE), rewards, rewards)
        (grad,) = torch.autograd.grad(algo.loss(batch)["loss/policy"], policy.theta)
        estimates[i] = -grad
    return estimates


def make(cls, policy, **kwargs):
    return cls(policy=policy, learning_rate=1e-3, n_steps=1, gamma=1.0, ent_coef=0.0, **kwargs)


def within(estimates: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = estimates.mean(0)
    standard_error = estimates.std(0) / N_BATCHES**0.5
    return (mean - target).abs(), Z * standard_error


def test_reinforce_gradient_is_unbiased():
    true = exact_gradient()
    policy = SoftmaxBandit()
    estimates = gradient_estimates(make(REINFORCE, policy, normalize_returns=False), policy, seed=0)
    error, tolerance = within(estimates, true)
    assert torch.all(error <= tolerance), f"mean {estimates.mean(0)} vs exact {true} (tolerance {tolerance})"
    # the test has teeth: the band is much narrower than the gradient it checks
    assert tolerance.norm() < 0.25 * true.norm(), f"tolerance {tolerance} too loose for {true}"


def test_baseline_keeps_the_mean_and_lowers_the_variance():
    true = exact_gradient()
    j = float((torch.softmax(torch.tensor(THETA), 0) * torch.tensor(MU)).sum())
    plain_policy, baseline_policy = SoftmaxBandit(), SoftmaxBandit(baseline=j)
    plain = gradient_estimates(make(REINFORCE, plain_policy, normalize_returns=False), plain_policy, seed=1)
    # the same seed: both estimators see the same pulls, so their difference isolates the baseline's effect
    with_baseline = gradient_estimates(
        make(REINFORCEWithBaseline, baseline_policy, normalize_advantage=False), baseline_policy, seed=1
    )

    error, tolerance = within(with_baseline, true)
    assert torch.all(error <= tolerance), f"mean {with_baseline.mean(0)} vs exact {true} (tolerance {tolerance})"
    assert tolerance.norm() < 0.05 * true.norm()
    # the baseline's contribution, b * mean(grad log pi), averages to zero
    error, tolerance = within(plain - with_baseline, torch.zeros(3))
    assert torch.all(error <= tolerance), f"baseline moved the mean by {(plain - with_baseline).mean(0)}"
    # and it removes most of the variance (the rewards' common offset of ~11)
    ratio = with_baseline.var(0).sum() / plain.var(0).sum()
    assert ratio < 0.05, f"variance ratio with/without baseline {ratio:.3f}"

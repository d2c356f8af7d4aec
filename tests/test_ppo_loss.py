"""PPO's loss terms and diagnostics on a batch computed by hand."""

import math

import pytest
import torch
from torch import nn

from rlexp.algos.ppo import PPO
from rlexp.data.rollout import Batch

RATIOS = [1.5, 0.5, 1.1, 0.9]
ADVANTAGES = [1.0, 1.0, -1.0, -1.0]


class FixedOutputs(nn.Module):
    """A 'policy' whose log-probs, values and entropy are parameters we set by hand."""

    def __init__(self, log_probs, values, entropy):
        super().__init__()
        self.log_probs = nn.Parameter(torch.tensor(log_probs))
        self.values = nn.Parameter(torch.tensor(values))
        self.entropy = torch.tensor(entropy)

    def evaluate_actions(self, obs, actions, seq=None):
        return self.log_probs, self.entropy, self.values


def make(clip_range_vf=None, normalize_advantage=False):
    policy = FixedOutputs([math.log(r) for r in RATIOS], [1.0, 2.0, 3.0, 4.0], [0.6] * 4)
    algo = PPO(
        policy=policy, learning_rate=1e-3, n_steps=4, gamma=0.99, gae_lambda=0.95, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, normalize_advantage=normalize_advantage, clip_range=0.2, clip_range_vf=clip_range_vf, batch_size=4,
    )
    batch = Batch(
        obs=torch.zeros(4, 1), actions=torch.zeros(4), log_probs=torch.zeros(4),  # old log-probs: ratio = exp(new)
        values=torch.ones(4), advantages=torch.tensor(ADVANTAGES), returns=torch.tensor([1.5, 2.0, 2.0, 5.0]),
    )
    return policy, algo, batch


def test_ppo_loss_terms_by_hand():
    _, algo, batch = make()
    out = algo.loss(batch)
    # min(r*A, clip(r, .8, 1.2)*A): 1.2, 0.5, -1.1, -0.9 -> mean -0.075 -> loss 0.075
    assert out["loss/policy"].item() == pytest.approx(0.075)
    # vf_coef * mean((V - R)^2) = 0.5 * (0.25 + 0 + 1 + 1) / 4
    assert out["loss/value"].item() == pytest.approx(0.28125)
    assert out["loss/entropy"].item() == pytest.approx(-0.01 * 0.6)
    # |r - 1| > 0.2 for the first two samples only
    assert out["train/clip_fraction"].item() == pytest.approx(0.5)
    # mean((r - 1) - log r)
    kl = sum((r - 1) - math.log(r) for r in RATIOS) / 4
    assert out["train/approx_kl"].item() == pytest.approx(kl)
    assert kl == pytest.approx(0.0744331, abs=1e-6)


def test_ppo_clipped_samples_get_no_policy_gradient():
    policy, algo, batch = make()
    algo.loss(batch)["loss/policy"].backward()
    # d(-mean(min(rA, clip(r)A)))/d log r = -r*A/4 where the unclipped term is the minimum, else 0
    expected = [0.0, -0.5 * 1 / 4, 1.1 / 4, 0.9 / 4]
    assert policy.log_probs.grad.tolist() == pytest.approx(expected)


def test_ppo_value_clipping_takes_larger_error():
    _, algo, batch = make(clip_range_vf=0.5)
    # clipped V = 1 + clamp(V - 1, -.5, .5) = 1, 1.5, 1.5, 1.5; errors max(unclipped, clipped):
    # max(.25,.25), max(0,.25), max(1,.25), max(1,12.25) -> mean 3.4375
    assert algo.loss(batch)["loss/value"].item() == pytest.approx(0.5 * 3.4375)


def test_advantage_normalisation():
    _, algo, batch = make(normalize_advantage=True)
    normed = algo.normalized(batch.advantages)
    # mean 0, sample std sqrt(4/3): +-1 / 1.1547 = +-0.8660
    assert normed.tolist() == pytest.approx([0.8660254] * 2 + [-0.8660254] * 2, abs=1e-6)


def test_gradient_step_sums_terms_and_clips_norm():
    policy, algo, batch = make()
    out = algo.gradient_step(algo.loss(batch))
    assert out["loss/total"].item() == pytest.approx(0.075 + 0.28125 - 0.006)
    assert out["train/grad_norm"].item() > 0.5  # pre-clip norm is reported ...
    assert policy.log_probs.grad is not None  # ... and the step used the clipped gradient
    total_after = torch.cat([p.grad.flatten() for p in policy.parameters()]).norm().item()
    assert total_after == pytest.approx(0.5, rel=1e-4)


def test_target_kl_stops_the_epoch_loop():
    import gymnasium as gym

    from rlexp.networks.actor_critic import ActorCritic
    from rlexp.data.rollout import Rollout

    torch.manual_seed(0)
    policy = ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))
    rollout = Rollout(16, 4, (3,), (), torch.int64, torch.device("cpu"))
    with torch.no_grad():
        for t in range(16):
            obs = torch.randn(4, 3)
            action, log_prob, value, _ = policy.act(obs, policy.initial_state(4), None)
            rollout.store_policy(t, obs, action, log_prob, value)
    rollout.rewards_env.normal_()  # PPO computes its GAE advantages and targets from these

    def run(target_kl):
        algo = PPO(policy=policy, learning_rate=0.05, n_steps=16, gamma=0.99, batch_size=16, n_epochs=20, target_kl=target_kl)
        return algo.update(rollout, torch.zeros(4), progress_remaining=1.0)

    free = run(None)
    assert free["train/epochs_stopped_early"] == 0.0
    stopped = run(1e-6)  # a huge learning rate moves the policy past any tiny KL budget at once
    assert stopped["train/epochs_stopped_early"] == 1.0

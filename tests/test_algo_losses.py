"""REINFORCE, REINFORCE with baseline and A2C: their loss terms on hand-computed batches,
and REINFORCE's rule that only steps of finished episodes are learnt from."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Categorical

from rlexp.algos import A2C, REINFORCE, REINFORCEWithBaseline
from rlexp.errors import ConfigError
from rlexp.data.rollout import Batch, Rollout

LN = math.log


class TablePolicy(nn.Module):
    """pi(a|s) = softmax(logits[s]) and V(s) = values[s]; the observation is the state index."""

    def __init__(self, logits, values):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits, dtype=torch.float32))
        self.values = nn.Parameter(torch.tensor(values, dtype=torch.float32))

    def evaluate_actions(self, obs, actions, seq=None):
        s = obs[:, 0].long()
        dist = Categorical(logits=self.logits[s])
        return dist.log_prob(actions), dist.entropy(), self.values[s]


# state 0: logits (0, ln 3) -> pi = (1/4, 3/4);  state 1: logits (0, 0) -> pi = (1/2, 1/2)
LOGITS = [[0.0, LN(3)], [0.0, 0.0]]
VALUES = [2.0, -1.0]
# three transitions (s, a): (0, 1), (0, 0), (1, 1)  ->  log pi = ln 3/4, ln 1/4, ln 1/2
OBS = torch.tensor([[0.0], [0.0], [1.0]])
ACTIONS = torch.tensor([1, 0, 1])
LOG_PI = [LN(3 / 4), LN(1 / 4), LN(1 / 2)]
V = [2.0, 2.0, -1.0]
H0 = -(1 / 4 * LN(1 / 4) + 3 / 4 * LN(3 / 4))  # entropy in state 0, about 0.5623
H1 = LN(2)
MEAN_ENTROPY = (2 * H0 + H1) / 3


def make_batch(returns, advantages=None, old_log_probs=LOG_PI) -> Batch:
    returns = torch.tensor(returns, dtype=torch.float32)
    advantages = returns if advantages is None else torch.tensor(advantages, dtype=torch.float32)
    return Batch(OBS, ACTIONS, torch.tensor(old_log_probs, dtype=torch.float32), torch.tensor(V), advantages, returns)


def make(cls, policy=None, **kwargs):
    kwargs = {"learning_rate": 1e-3, "n_steps": 4, "gamma": 0.99, **kwargs}
    return cls(policy=policy or TablePolicy(LOGITS, VALUES), **kwargs)


def value(terms, key):
    return pytest.approx(float(terms[key].detach()), abs=1e-5)


def test_hand_computed_log_probs_and_entropy():
    log_prob, entropy, v = TablePolicy(LOGITS, VALUES).evaluate_actions(OBS, ACTIONS)
    torch.testing.assert_close(log_prob, torch.tensor(LOG_PI))
    torch.testing.assert_close(entropy, torch.tensor([H0, H0, H1]))
    torch.testing.assert_close(v, torch.tensor(V))


def test_reinforce_loss_terms():
    algo = make(REINFORCE, normalize_returns=False, ent_coef=0.01)
    terms = algo.loss(make_batch(returns=[3.0, 1.0, 2.0]))
    # -(1/3) * (3 ln 3/4 + 1 ln 1/4 + 2 ln 1/2)
    assert value(terms, "loss/policy") == -(3 * LN(3 / 4) + LN(1 / 4) + 2 * LN(1 / 2)) / 3
    assert value(terms, "loss/entropy") == -0.01 * MEAN_ENTROPY
    assert value(terms, "train/entropy") == MEAN_ENTROPY
    assert value(terms, "train/approx_kl") == 0.0  # the batch's log-probs are the policy's own
    assert "loss/value" not in terms and "train/clip_fraction" not in terms


def test_reinforce_normalized_returns():
    # returns (3, 1, 2): mean 2, std 1 -> weights (1, -1, 0)
    terms = make(REINFORCE, normalize_returns=True).loss(make_batch(returns=[3.0, 1.0, 2.0]))
    assert value(terms, "loss/policy") == -(LN(3 / 4) - LN(1 / 4)) / 3  # = -ln(3)/3


def test_baseline_loss_terms_and_detached_advantage():
    policy = TablePolicy(LOGITS, VALUES)
    algo = make(REINFORCEWithBaseline, policy=policy, normalize_advantage=False, vf_coef=0.5, ent_coef=0.01)
    terms = algo.loss(make_batch(returns=[3.0, 1.0, 2.0]))
    # G - V = (3 - 2, 1 - 2, 2 - (-1)) = (1, -1, 3)
    assert value(terms, "loss/policy") == -(LN(3 / 4) - LN(1 / 4) + 3 * LN(1 / 2)) / 3
    # 0.5 * mean((2 - 3)^2, (2 - 1)^2, (-1 - 2)^2) = 0.5 * 11/3
    assert value(terms, "loss/value") == 0.5 * 11 / 3
    assert value(terms, "loss/entropy") == -0.01 * MEAN_ENTROPY
    # the policy term must not train the baseline
    (grad_v,) = torch.autograd.grad(terms["loss/policy"], policy.values, allow_unused=True)
    assert grad_v is None or torch.all(grad_v == 0)


def test_baseline_with_normalized_returns_regresses_on_them():
    algo = make(REINFORCEWithBaseline, normalize_returns=True, normalize_advantage=False, vf_coef=0.5)
    terms = algo.loss(make_batch(returns=[3.0, 1.0, 2.0]))
    # standardised returns (1, -1, 0); minus V = (2, 2, -1): weights (-1, -3, 1)
    assert value(terms, "loss/policy") == -(-LN(3 / 4) - 3 * LN(1 / 4) + LN(1 / 2)) / 3
    # 0.5 * mean((2 - 1)^2, (2 + 1)^2, (-1 - 0)^2) = 0.5 * 11/3
    assert value(terms, "loss/value") == 0.5 * 11 / 3


def test_a2c_loss_terms():
    algo = make(A2C, vf_coef=0.5, ent_coef=0.01, normalize_advantage=False)
    terms = algo.loss(make_batch(returns=[3.0, 0.0, 1.0], advantages=[1.0, -2.0, 0.5]))
    assert value(terms, "loss/policy") == -(1.0 * LN(3 / 4) - 2.0 * LN(1 / 4) + 0.5 * LN(1 / 2)) / 3
    # 0.5 * mean((2 - 3)^2, (2 - 0)^2, (-1 - 1)^2) = 0.5 * 9/3
    assert value(terms, "loss/value") == 1.5
    assert value(terms, "loss/entropy") == -0.01 * MEAN_ENTROPY
    assert "train/clip_fraction" not in terms


def test_approx_kl_against_a_different_behaviour_policy():
    # old pi = 1/2 everywhere: ratios (3/2, 1/2, 1); k3 = (r - 1) - ln r
    terms = make(A2C).loss(make_batch(returns=[0.0] * 3, advantages=[0.0] * 3, old_log_probs=[LN(1 / 2)] * 3))
    expected = ((0.5 - LN(1.5)) + (-0.5 - LN(0.5)) + 0.0) / 3
    assert value(terms, "train/approx_kl") == expected


# -- REINFORCE learns only from finished episodes ---------------------------------------------
GAMMA = 0.9


def hand_made_rollout() -> tuple[Rollout, list[tuple[int, int, float]]]:
    """Two envs, six steps. Returns the rollout and, for every step REINFORCE may use,
    (t, env, G_t) worked out by hand with gamma = 0.9.

    env 0: r=1, r=1 [terminated] | autoreset step | r=1, r=1 [terminated] | autoreset step
    env 1: r=1, r=2, r=3 [truncated] | autoreset step | r=5, r=100 (still running)
    """
    rollout = Rollout(6, 2, (1,), (), torch.int64, torch.device("cpu"))
    rewards = [[1, 1], [1, 2], [0, 3], [1, 0], [1, 5], [0, 100]]
    terminated = [[0, 0], [1, 0], [0, 0], [0, 0], [1, 0], [0, 0]]
    truncated = [[0, 0], [0, 0], [0, 1], [0, 0], [0, 0], [0, 0]]
    valid = [[1, 1], [1, 1], [0, 1], [1, 0], [1, 1], [0, 1]]
    for t in range(6):
        obs = torch.tensor([[t % 2], [(t + 1) % 2]], dtype=torch.float32)
        actions = torch.tensor([t % 2, 1 - t % 2])
        with torch.no_grad():
            log_prob, _, v = TablePolicy(LOGITS, VALUES).evaluate_actions(obs, actions)
        rollout.store_policy(t, obs, actions, log_prob, v)
        rollout.store_env(t, np.array(rewards[t], np.float32), np.array(terminated[t], bool), np.array(truncated[t], bool), np.array(valid[t], bool))
    finished = [
        (0, 0, 1 + GAMMA * 1), (1, 0, 1.0), (3, 0, 1 + GAMMA * 1), (4, 0, 1.0),
        (0, 1, 1 + GAMMA * 2 + GAMMA**2 * 3), (1, 1, 2 + GAMMA * 3), (2, 1, 3.0),
    ]  # env 0's autoreset steps (t=2, 5) and env 1's unfinished tail (t=4, 5) are absent
    return rollout, finished


def sgd_reinforce(policy: nn.Module) -> REINFORCE:
    return REINFORCE(
        policy=policy, learning_rate=0.1, n_steps=6, gamma=GAMMA, normalize_returns=False,
        max_grad_norm=None, optimizer=partial(torch.optim.SGD),
    )


def test_reinforce_never_learns_from_an_unfinished_episode():
    rollout, finished = hand_made_rollout()

    # the gradient of -(1/7) sum over the finished steps only of log pi(a_t|s_t) * G_t
    reference = TablePolicy(LOGITS, VALUES)
    t_idx, e_idx, g = (list(col) for col in zip(*finished))
    log_prob, _, _ = reference.evaluate_actions(rollout.obs[t_idx, e_idx], rollout.actions[t_idx, e_idx])
    (-(log_prob * torch.tensor(g)).mean()).backward()

    policy = TablePolicy(LOGITS, VALUES)
    metrics = sgd_reinforce(policy).update(rollout, torch.zeros(2), progress_remaining=1.0)

    # one SGD step with lr 0.1: delta theta = -0.1 * grad
    torch.testing.assert_close(policy.logits.detach() - torch.tensor(LOGITS), -0.1 * reference.logits.grad)
    assert metrics["train/finished_fraction"] == pytest.approx(7 / 9)  # 7 usable of 9 valid steps
    assert metrics["train/skipped_update"] == 0.0
    assert metrics["train/approx_kl"] > 0  # measured after the step: the policy moved


def test_reinforce_monte_carlo_batch_holds_exactly_the_finished_steps():
    rollout, finished = hand_made_rollout()
    batch, n_valid = sgd_reinforce(TablePolicy(LOGITS, VALUES)).monte_carlo_batch(rollout)
    assert int(n_valid) == 9
    expected = sorted((t, e) for t, e, _ in finished)  # time-major, like the batch
    assert len(batch) == len(expected)
    torch.testing.assert_close(batch.returns, torch.tensor([g for _, _, g in sorted(finished)]), rtol=0, atol=1e-6)
    torch.testing.assert_close(batch.obs, rollout.obs[[t for t, _ in expected], [e for _, e in expected]])


def test_reinforce_skips_a_rollout_without_a_finished_episode():
    rollout = Rollout(3, 2, (1,), (), torch.int64, torch.device("cpu"))
    for t in range(3):
        rollout.store_env(t, np.ones(2, np.float32), np.zeros(2, bool), np.zeros(2, bool), np.ones(2, bool))
    policy = TablePolicy(LOGITS, VALUES)
    before = policy.logits.detach().clone()
    metrics = sgd_reinforce(policy).update(rollout, torch.zeros(2), progress_remaining=1.0)
    assert metrics["train/skipped_update"] == 1.0 and metrics["train/finished_fraction"] == 0.0
    torch.testing.assert_close(policy.logits.detach(), before)


def test_a2c_update_is_one_step_on_the_whole_batch():
    rollout, _ = hand_made_rollout()
    policy = TablePolicy(LOGITS, VALUES)
    reference = TablePolicy(LOGITS, VALUES)
    settings = dict(learning_rate=0.1, n_steps=6, gamma=GAMMA, max_grad_norm=None, normalize_advantage=False, ent_coef=0.01)
    algo = A2C(policy=policy, optimizer=partial(torch.optim.SGD), **settings)
    reference_algo = A2C(policy=reference, **settings)
    reference_algo.compute_targets(rollout, torch.zeros(2))  # the algorithm's own GAE, bootstrapped from V = 0
    terms = reference_algo.loss(rollout.batch())
    sum(v for k, v in terms.items() if k.startswith("loss/")).backward()
    metrics = algo.update(rollout, torch.zeros(2), progress_remaining=1.0)
    torch.testing.assert_close(policy.logits.detach() - torch.tensor(LOGITS), -0.1 * reference.logits.grad)
    torch.testing.assert_close(policy.values.detach() - torch.tensor(VALUES), -0.1 * reference.values.grad)
    assert {"loss/policy", "loss/value", "loss/entropy", "loss/total", "train/approx_kl", "train/entropy"} <= set(metrics)


@pytest.mark.parametrize(
    "cls, key, value",
    [(REINFORCE, "learning_rate", -1.0), (REINFORCE, "gamma", 1.5), (REINFORCEWithBaseline, "vf_coef", -0.1),
     (A2C, "gae_lambda", 2.0), (A2C, "max_grad_norm", 0.0), (REINFORCE, "lr_schedule", "cosine"), (A2C, "lr_warmup", 1.0)],
)
def test_bad_values_name_their_key(cls, key, value):
    with pytest.raises(ConfigError) as error:
        make(cls, **{key: value})
    assert error.value.key == key


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [0.0, 0.5e-3, 1e-3, 1e-3, 1e-3]),                 # warm-up over the first 20%, then flat
    ("linear", [0.0, 0.5e-3 * 0.9, 1e-3 * 0.8, 1e-3 * 0.5, 1e-3 * 0.1]),  # warm-up times the linear decay
])
def test_lr_warmup_ramps_the_learning_rate_from_zero(schedule, expected):
    algo = make(A2C, learning_rate=1e-3, lr_schedule=schedule, lr_warmup=0.2)
    seen = []
    for progress_remaining in (1.0, 0.9, 0.8, 0.5, 0.1):
        algo.set_progress(progress_remaining)
        seen.append(algo.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx(expected)


def test_finish_update_names_the_first_non_finite_step_and_trusts_only_per_step_checks():
    """The once-per-update finiteness check looks at every step, not at the means: two
    finite but huge losses whose float32 mean would overflow are not an error, and a NaN in
    the second of three steps is reported as that step, naming the term."""
    from rlexp.errors import TrainingError

    algo = make(A2C)
    batch = make_batch([1.0, 2.0, 3.0])

    def step(value_loss, grad_norm=1.0):
        return {"loss/policy": torch.tensor(0.5), "loss/value": torch.tensor(value_loss),
                "loss/total": torch.tensor(0.5 + value_loss), "train/grad_norm": torch.tensor(grad_norm)}

    metrics = algo.finish_update([step(3e38), step(3e38)], batch)
    assert metrics["loss/value"] == pytest.approx(3e38, rel=1e-6)  # averaged in float64: no overflow
    with pytest.raises(TrainingError, match=r"^loss/value is nan at gradient step 2$"):
        algo.finish_update([step(1.0), step(float("nan")), step(float("inf"))], batch)
    with pytest.raises(TrainingError, match=r"^train/grad_norm is inf at gradient step 1$"):
        algo.finish_update([step(1.0, grad_norm=float("inf"))], batch)
    assert algo.finish_update([], batch)["train/learning_rate"] == pytest.approx(1e-3)  # no step (target_kl stop at once)

"""rlexp.algos.ppo_fast_cpu against its specification, the autograd path (PPO.loss + gradient_step):
the same losses, gradients, clipped Adam steps, samples and checkpoints."""

from __future__ import annotations

import copy
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal

from rlexp.algos import ppo_fast_cpu as fast_cpu
from rlexp.algos import A2C
from rlexp.algos.ppo import PPO
from rlexp.config import compose_config
from rlexp.errors import ConfigError
from rlexp.algos.ppo_fast_cpu import STEP_KEYS, FastActorCritic
from rlexp.networks.actor_critic import ActorCritic
from rlexp.data.rollout import Batch
from rlexp.run.trainer import Trainer

OBS = gym.spaces.Box(-np.inf, np.inf, (5,))
DISCRETE = gym.spaces.Discrete(3)
BOX = gym.spaces.Box(-1.0, 1.0, (2,))


def make(action_space, *, activation="tanh", fused=False, seed=0, use_sde=False, **algo_kwargs):
    torch.manual_seed(seed)
    policy = ActorCritic(OBS, action_space, hidden_sizes=(32, 16), activation=activation, log_std_init=-0.5 if action_space is BOX else None,
                         use_sde=use_sde, sde_sample_freq=4)
    settings = dict(learning_rate=3e-4, n_steps=8, gamma=0.99, gae_lambda=0.95, batch_size=64, n_epochs=2, clip_range=0.2,
                    ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5)
    settings.update(algo_kwargs)
    algo = PPO(policy=policy, optimizer=partial(torch.optim.Adam, eps=1e-5, fused=fused), **settings)
    return policy, algo


def make_batch(policy, n=64, seed=1):
    """A batch whose old log-probs are off by up to +-0.4: some ratios clip, some do not."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, OBS.shape[0], generator=g)
    with torch.no_grad():
        actions, log_probs, values = policy.act(obs, policy.initial_state(n), None)[:3]
    log_probs = log_probs + (torch.rand(n, generator=g) - 0.5) * 0.8
    values = values + torch.randn(n, generator=g) * 0.1
    return Batch(obs, actions, log_probs, values, torch.randn(n, generator=g), torch.randn(n, generator=g))


def fast_step(fast, algo, batch, lr=None, kl_limit=None):
    return fast.ppo_step(
        tuple(f.numpy() for f in batch.flat_fields()), clip_range=algo.clip_range, clip_range_vf=algo.clip_range_vf, ent_coef=algo.ent_coef,
        vf_coef=algo.vf_coef, normalize_advantage=algo.normalize_advantage, max_grad_norm=algo.max_grad_norm,
        lr=algo.learning_rate if lr is None else lr, kl_limit=kl_limit,
    )


CASES = {
    "categorical-tanh": (DISCRETE, dict()),
    "categorical-relu-vf-clip": (DISCRETE, dict(activation="relu", clip_range_vf=0.05, ent_coef=0.1)),
    "categorical-no-adv-norm": (DISCRETE, dict(normalize_advantage=False, ent_coef=0.0)),
    "gaussian-tanh": (BOX, dict()),
    "gaussian-relu-vf-clip": (BOX, dict(activation="relu", clip_range_vf=0.05, ent_coef=0.05)),
    "gsde-tanh": (BOX, dict(use_sde=True)),
    "gsde-relu-entropy": (BOX, dict(use_sde=True, activation="relu", ent_coef=0.1)),
}


@pytest.mark.parametrize("case", CASES)
def test_losses_and_gradients_match_autograd(case):
    space, kwargs = CASES[case]
    ref_policy, ref = make(space, max_grad_norm=None, **kwargs)
    policy, algo = make(space, max_grad_norm=None, **kwargs)
    batch = make_batch(ref_policy)
    terms = ref.loss(batch)
    total = sum(v for k, v in terms.items() if k.startswith("loss/"))
    total.backward()
    expected = {**{k: v.item() for k, v in terms.items()}, "loss/total": total.item()}
    expected_grad = torch.cat([p.grad.reshape(-1) for p in ref_policy.parameters()]).numpy()

    fast = FastActorCritic(policy, algo.optimizer)
    row = fast_step(fast, algo, batch, lr=0.0)  # lr 0: look at the gradient, leave the weights
    got = dict(zip(STEP_KEYS, row))
    for key in STEP_KEYS[:-1]:
        assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    assert got["train/grad_norm"] == pytest.approx(float(np.linalg.norm(expected_grad)), rel=1e-4)
    assert 0 < got["train/clip_fraction"] < 1  # the batch exercises both branches of the clip
    np.testing.assert_allclose(fast.grad, expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("space, sde", [(DISCRETE, False), (BOX, False), (BOX, True)], ids=["categorical", "gaussian", "gsde"])
@pytest.mark.parametrize("fused", [False, True], ids=["adam", "fused-adam"])
def test_clipped_adam_steps_match_torch(space, sde, fused):
    """Five steps of gradient clipping (the norm is well above 0.5 here) and Adam."""
    ref_policy, ref = make(space, fused=fused, learning_rate=1e-3, use_sde=sde)
    policy, algo = make(space, fused=fused, learning_rate=1e-3, use_sde=sde)
    fast = FastActorCritic(policy, algo.optimizer)
    for i in range(5):
        batch = make_batch(ref_policy, seed=10 + i)
        step = ref.gradient_step(ref.loss(batch))
        row = fast_step(fast, algo, batch)
        assert row[STEP_KEYS.index("train/grad_norm")] == pytest.approx(step["train/grad_norm"].item(), rel=1e-4)
        assert step["train/grad_norm"].item() > 0.5
    for (name, want), got in zip(ref_policy.named_parameters(), policy.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-6, msg=name)
    fast.sync_step_count()
    for want, got in zip(ref.optimizer.state_dict()["state"].values(), algo.optimizer.state_dict()["state"].values()):
        assert float(got["step"]) == float(want["step"]) == 5
        torch.testing.assert_close(got["exp_avg"], want["exp_avg"], rtol=1e-3, atol=1e-7)
        torch.testing.assert_close(got["exp_avg_sq"], want["exp_avg_sq"], rtol=1e-3, atol=1e-9)


def test_weights_are_the_modules_own_and_adam_state_survives_a_reload():
    """numpy writes into the nn.Module's parameters; a state_dict taken after fast steps
    continues on the autograd path exactly as the fast path would have gone on."""
    policy, algo = make(DISCRETE)
    fast = FastActorCritic(policy, algo.optimizer)
    obs = make_batch(policy).obs
    before = policy.value(obs, None, None).detach().clone()
    for i in range(3):
        fast_step(fast, algo, make_batch(policy, seed=20 + i))
    fast.sync_step_count()
    assert not torch.allclose(policy.value(obs, None, None), before)
    np.testing.assert_allclose(fast.values(obs.numpy()), policy.value(obs, None, None).detach().numpy(), rtol=1e-5, atol=1e-6)
    # copies, as a checkpoint file gives (state_dict() returns the live tensors)
    saved_policy, saved_optimizer = copy.deepcopy(policy.state_dict()), copy.deepcopy(algo.optimizer.state_dict())

    other_policy, other = make(DISCRETE, seed=99)  # fresh weights, replaced by the checkpoint
    other_policy.load_state_dict(saved_policy)
    other.optimizer.load_state_dict(copy.deepcopy(saved_optimizer))  # loading keeps the very tensors
    batch = make_batch(policy, seed=30)
    other.gradient_step(other.loss(batch))
    fast_step(fast, algo, batch)
    for want, got in zip(other_policy.parameters(), policy.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-6)

    # and the other way round: a fresh fast path takes over loaded Adam state
    third_policy, third = make(DISCRETE, seed=7)
    third_policy.load_state_dict(saved_policy)
    third.optimizer.load_state_dict(copy.deepcopy(saved_optimizer))
    third_fast = FastActorCritic(third_policy, third.optimizer)
    assert third_fast.step_count == 3
    fast_step(third_fast, third, batch)
    for want, got in zip(other_policy.parameters(), third_policy.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-6)


def test_kl_limit_skips_the_step():
    policy, algo = make(DISCRETE)
    fast = FastActorCritic(policy, algo.optimizer)
    before = [p.detach().clone() for p in policy.parameters()]
    assert fast_step(fast, algo, make_batch(policy), kl_limit=1e-6) is None
    assert fast.step_count == 0
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_categorical_samples_follow_the_policy():
    policy, algo = make(DISCRETE)
    with torch.no_grad():  # a policy far from uniform
        policy.action_head.logits.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    fast = FastActorCritic(policy, algo.optimizer)
    obs = np.tile(np.linspace(-1, 1, 5, dtype=np.float32), (20000, 1))
    torch.manual_seed(0)
    action, log_prob, value = fast.act(obs)
    dist = Categorical(logits=policy.action_head.logits(policy.actor_body(torch.from_numpy(obs[:1]))))
    freq = np.bincount(action, minlength=3) / len(action)
    np.testing.assert_allclose(freq, dist.probs[0].detach().numpy(), atol=0.015)
    np.testing.assert_allclose(log_prob, dist.log_prob(torch.from_numpy(action)).detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(value, policy.value(torch.from_numpy(obs), None, None).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_gaussian_samples_follow_the_policy():
    policy, algo = make(BOX)
    fast = FastActorCritic(policy, algo.optimizer)
    obs = np.tile(np.linspace(-1, 1, 5, dtype=np.float32), (20000, 1))
    action, log_prob, _ = fast.act(obs)
    mean = policy.action_head.mean(policy.actor_body(torch.from_numpy(obs[:1]))).detach()
    std = policy.action_head.log_std.exp().detach()
    np.testing.assert_allclose(action.mean(axis=0), mean[0].numpy(), atol=0.02)
    np.testing.assert_allclose(action.std(axis=0), std.numpy(), rtol=0.03)
    want = Normal(mean, std).log_prob(torch.from_numpy(action)).sum(-1)
    np.testing.assert_allclose(log_prob, want.numpy(), rtol=1e-4, atol=1e-5)


def test_gsde_samples_follow_the_head_and_its_noise_schedule():
    """Actions as StateDependentNoiseHead.sample draws them (the same noise matrices,
    renewed every sde_sample_freq=4 samples), log-probs as its distribution gives them."""
    policy, algo = make(BOX, use_sde=True)
    fast = FastActorCritic(policy, algo.optimizer)
    obs = torch.randn(6, OBS.shape[0])
    policy.reset_noise(6)
    first = policy.action_head.noise.clone()
    for i in range(5):
        noise = policy.action_head.noise.clone() if i < 4 else None
        action, log_prob, _ = fast.act(obs.numpy())
        if i < 4:  # the same matrices for 4 samples: the action is what the head's own sample gives
            assert torch.equal(policy.action_head.noise, first)
            features = policy.actor_body(obs)
            dist = policy.action_head(features)
            want = dist.mean + torch.bmm(features.unsqueeze(1), noise).squeeze(1)
            np.testing.assert_allclose(action, want.detach().numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(log_prob, dist.log_prob(torch.from_numpy(action)).sum(-1).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert not torch.equal(policy.action_head.noise, first)  # the 5th sample renewed them


def test_select_falls_back_or_says_why():
    cpu = torch.device("cpu")
    policy, algo = make(DISCRETE)
    assert algo.enable_fast_cpu("false", cpu, compiled=False) is None
    assert algo.enable_fast_cpu("auto", cpu, compiled=True) is None
    with pytest.raises(ConfigError, match="compile=true"):
        algo.enable_fast_cpu("true", cpu, compiled=True)
    with pytest.raises(ConfigError, match="must be auto, true or false"):
        algo.enable_fast_cpu("fast", cpu, compiled=False)

    sde = ActorCritic(OBS, BOX, use_sde=True)
    a2c = A2C(policy=sde, learning_rate=1e-3, n_steps=5, gamma=0.99)
    assert a2c.enable_fast_cpu("auto", cpu, compiled=False) is None
    with pytest.raises(ConfigError, match="it implements PPO only \\(algo is A2C\\)"):
        a2c.enable_fast_cpu("true", cpu, compiled=False)

    class MyPPO(PPO):  # a subclass may change the loss that the backend writes out by hand
        pass

    with pytest.raises(ConfigError, match="PPO only \\(algo is MyPPO\\)"):
        MyPPO(policy=sde, learning_rate=1e-3, n_steps=8, gamma=0.99).enable_fast_cpu("true", cpu, compiled=False)
    sde_ppo = PPO(policy=sde, learning_rate=1e-3, n_steps=8, gamma=0.99)
    assert fast_cpu.unsupported_reason(sde, sde_ppo.optimizer, cpu, False) is None
    shared = ActorCritic(OBS, DISCRETE, shared=True)
    ppo_shared = PPO(policy=shared, learning_rate=1e-3, n_steps=8, gamma=0.99)
    with pytest.raises(ConfigError, match="network.shared"):
        ppo_shared.enable_fast_cpu("true", cpu, compiled=False)
    elu = ActorCritic(OBS, DISCRETE, activation="elu")
    assert "tanh or relu" in fast_cpu.unsupported_reason(elu, PPO(policy=elu, learning_rate=1e-3, n_steps=8, gamma=0.99).optimizer, cpu, False)
    rms = PPO(policy=policy, learning_rate=1e-3, n_steps=8, gamma=0.99, optimizer=torch.optim.RMSprop)
    assert "Adam only" in fast_cpu.unsupported_reason(policy, rms.optimizer, cpu, False)
    assert algo.fast is None
    backend = algo.enable_fast_cpu("true", cpu, compiled=False)
    assert isinstance(backend, FastActorCritic) and algo.fast is backend


def test_trainer_uses_it_and_a_fast_checkpoint_resumes_on_autograd(tmp_path):
    base = ["hparams=ppo_cartpole", "logger=none", "progress=false", "eval.every_steps=0", "eval.episodes=2", "total_steps=2048", "seed=3"]
    trainer = Trainer(compose_config(base), tmp_path / "fast")
    assert trainer.backend is not None and trainer.algo.fast is trainer.backend
    summary = trainer.fit()
    assert summary["status"] == "finished" and summary["steps"] == 2048
    assert (tmp_path / "fast" / "checkpoints" / "last.pt").is_file()
    # 8 updates of 20 steps: Adam's step count reached the checkpoint
    state = torch.load(tmp_path / "fast" / "checkpoints" / "last.pt", weights_only=False)
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {160.0}

    resumed = Trainer(compose_config(base + ["total_steps=4096", "fast_cpu=false", f"resume={tmp_path / 'fast'}"]), tmp_path / "slow")
    assert resumed.backend is None and resumed.global_step == 2048
    for want, got in zip(trainer.policy.parameters(), resumed.policy.parameters()):
        torch.testing.assert_close(got, want)
    assert resumed.fit()["steps"] == 4096

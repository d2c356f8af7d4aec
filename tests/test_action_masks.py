"""Invalid-action masks (env.action_mask): the maths of the masked heads by hand, no invalid
action over 10,000 steps for every mask source, action space and policy kind, the mask the
update uses is the one stored at collection, predict and the exported files obey a mask, and
the one-line errors."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlexp
from rlexp.analysis import mask_envs  # noqa: F401  (registers the test envs)
from rlexp.config import compose_config
from rlexp.data.observations import MASK_KEY
from rlexp.envs import EnvSpec
from rlexp.errors import ConfigError, TrainingError
from rlexp.networks.heads import BernoulliHead, CategoricalHead, MultiCategoricalHead
from rlexp.run.trainer import Trainer

ENV = "rlexp.analysis.mask_envs:RlexpInvalidActions-v0"
IDS = {"info": ENV, "method": "rlexp.analysis.mask_envs:RlexpInvalidActionsMethod-v0",
       "obs": "rlexp.analysis.mask_envs:RlexpInvalidActionsObs-v0"}
#: small, cheap runs: the tests are about masks, not learning
SMALL = ["network.hidden_sizes=[16]", "algo.n_epochs=1", "eval.every_steps=1000000", "eval.episodes=2",
         "progress=false", "checkpoint.every_updates=1000000", "diagnostics=off"]


def rollout(num_envs: int, n_steps: int) -> list[str]:
    """``num_envs`` envs, ``n_steps`` each per rollout, one minibatch of the whole rollout."""
    return [f"env.num_envs={num_envs}", f"algo.n_steps={n_steps}", f"algo.batch_size={num_envs * n_steps}"]


def head_with_logits(head: torch.nn.Module, logits: list[float]) -> torch.Tensor:
    """Features of 1 that make ``head``'s linear layer output ``logits`` (weights 0, bias the logits)."""
    with torch.no_grad():
        head.logits.weight.zero_()
        head.logits.bias.copy_(torch.tensor(logits))
    return torch.ones(1, head.logits.in_features)


# -- the maths, by hand --------------------------------------------------------------------------------
def test_masked_categorical_by_hand():
    head = CategoricalHead(3, 4)
    features = head_with_logits(head, [1.0, 2.0, 3.0, 4.0])
    mask = torch.tensor([[True, False, True, False]])
    dist = head(features, mask)
    # allowed: actions 0 and 2, logits 1 and 3: p = e^1 / (e^1 + e^3), e^3 / (e^1 + e^3)
    z = math.exp(1) + math.exp(3)
    p0, p2 = math.exp(1) / z, math.exp(3) / z
    assert dist.probs[0].tolist() == pytest.approx([p0, 0.0, p2, 0.0], abs=1e-7)
    assert dist.probs[0, 1].item() == 0.0 and dist.probs[0, 3].item() == 0.0  # exactly 0
    assert head.log_prob(dist, torch.tensor([2])).item() == pytest.approx(3 - math.log(z), abs=1e-6)
    assert head.entropy(dist).item() == pytest.approx(-(p0 * math.log(p0) + p2 * math.log(p2)), abs=1e-6)
    assert head.mode(dist).item() == 2  # 4 is the largest logit, but masked
    samples = head.sample(head(features.expand(20_000, 3), mask.expand(20_000, 4)))
    assert set(samples.unique().tolist()) == {0, 2}
    # the gradient is finite and the masked logits get none
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    from rlexp.networks.heads import masked_logits

    d = torch.distributions.Categorical(logits=masked_logits(logits, mask))
    (d.entropy() + d.log_prob(torch.tensor([0]))).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1].item() == 0.0 and logits.grad[0, 3].item() == 0.0


def test_masked_multicategorical_by_hand():
    head = MultiCategoricalHead(2, [2, 3])
    features = head_with_logits(head, [0.0, 5.0, 1.0, 1.0, 7.0])
    mask = torch.tensor([[True, False, True, True, False]])  # entry 0: only 0; entry 1: 0 or 1
    dist = head(features, mask)
    # entry 0 is forced (log 1 = 0, no entropy); entry 1: two equal logits, p = 1/2 each
    assert head.log_prob(dist, torch.tensor([[0, 1]])).item() == pytest.approx(math.log(0.5), abs=1e-6)
    assert head.entropy(dist).item() == pytest.approx(math.log(2), abs=1e-6)
    assert head.mode(dist)[0, 0].item() == 0 and head.mode(dist)[0, 1].item() in (0, 1)
    samples = head.sample(head(features.expand(5000, 2), mask.expand(5000, 5)))
    assert (samples[:, 0] == 0).all() and set(samples[:, 1].unique().tolist()) == {0, 1}


def test_masked_multibinary_by_hand():
    head = BernoulliHead(2, 3)
    features = head_with_logits(head, [2.0, -3.0, 0.0])
    # per bit (may be 0, may be 1): bit 0 must be 0, bit 1 must be 1, bit 2 free
    mask = torch.tensor([[True, False, False, True, True, True]])
    dist = head(features, mask)
    assert head.mode(dist)[0].tolist() == [0.0, 1.0, 0.0]
    # only bit 2 is random, p(1) = sigmoid(0) = 1/2
    assert head.log_prob(dist, torch.tensor([[0.0, 1.0, 1.0]])).item() == pytest.approx(math.log(0.5), abs=1e-6)
    assert head.entropy(dist).item() == pytest.approx(math.log(2), abs=1e-6)
    samples = head.sample(head(features.expand(5000, 2), mask.expand(5000, 6)))
    assert (samples[:, 0] == 0).all() and (samples[:, 1] == 1).all() and set(samples[:, 2].unique().tolist()) == {0.0, 1.0}


# -- no invalid action, anywhere -------------------------------------------------------------------------
#: every source with every action space, feed-forward and recurrent, in the slow suite (-m slow). The
#: default suite keeps two Latin squares, one per policy kind: each source and each space once per kind,
#: and each source with two of the spaces (the source only says where the mask is read, the space how
#: the head applies it). Feed-forward (info, discrete) also runs in test_mask_learning.py's masked
#: PPO (2,048 steps on the strict env).
DEFAULT_COMBINATIONS = {
    None: {("info", "multidiscrete"), ("method", "multibinary"), ("obs", "discrete")},
    "lstm": {("info", "discrete"), ("method", "multidiscrete"), ("obs", "multibinary")},
}
COMBINATIONS = [
    pytest.param(source, space, recurrent, marks=() if (source, space) in DEFAULT_COMBINATIONS[recurrent] else pytest.mark.slow)
    for recurrent in (None, "lstm") for source in ("info", "method", "obs") for space in ("discrete", "multidiscrete", "multibinary")
]


@pytest.mark.parametrize("source, space, recurrent", COMBINATIONS)
def test_ten_thousand_steps_without_an_invalid_action(tmp_path, source, space, recurrent):
    """The env raises on an invalid action (strict): 10,000 training steps and an evaluation
    finish, with the mask changing every step and 55 of 70 choices (per entry; 3 of 8 bits for
    MultiBinary) forbidden."""
    overrides = [f"env.id={IDS[source]}", f"+env.make_kwargs.space={space}", f"+env.make_kwargs.n_invalid={55 if space != 'multibinary' else 3}",
                 *rollout(8, 64), "total_steps=10000", *SMALL]
    if recurrent:
        overrides += [f"network.recurrent={recurrent}", "network.recurrent_size=16", "algo.sequence_length=16"]
    result = rlexp.train(overrides, run_dir=tmp_path / "run")
    assert result["status"] == "finished" and result["steps"] >= 10_000
    assert np.isfinite(result["eval_return_mean"])


def test_the_unmasked_policy_does_take_invalid_actions(tmp_path):
    """The check above can fail: without the mask the same strict env stops the run."""
    with pytest.raises(RuntimeError, match="invalid action"):
        rlexp.train([f"env.id={ENV}", "env.action_mask=none", *rollout(2, 64), "total_steps=1000", *SMALL],
                    run_dir=tmp_path / "run")


# -- what the update uses ----------------------------------------------------------------------------------
@pytest.mark.parametrize("recurrent", [None, "gru"])
def test_the_update_uses_the_mask_stored_at_collection(tmp_path, recurrent):
    overrides = [f"env.id={ENV}", "+env.make_kwargs.keep_masks=true", *rollout(3, 50), *SMALL]
    if recurrent:
        overrides += [f"network.recurrent={recurrent}", "network.recurrent_size=16"]
    trainer = Trainer(compose_config(overrides), tmp_path)
    try:
        trainer.collector.reset(seed=0)
        trainer.collector.collect()
        stored = trainer.rollout.obs[MASK_KEY]  # (n_steps, envs, 70)
        subs = [e.unwrapped for e in find_sync_envs(trainer.env)]
        for i, sub in enumerate(subs):  # the env's masks, from reset on: step t acted under the t-th
            given = torch.as_tensor(np.stack(sub.given[:50])).bool()
            assert torch.equal(stored[:, i], given)
        assert (stored.sum(-1) == 15).all()  # 55 of 70 forbidden, every step
        batch = trainer.rollout.batch()
        with torch.no_grad():
            log_probs, _, _ = batch.evaluate_actions(trainer.policy)
        # the policy has not changed since collection: the update's log-probs are the collection's
        assert torch.allclose(log_probs, batch.log_probs, atol=1e-5)
        # ...which they would not be with another step's mask (what a stale mask would give)
        shifted = {**batch.obs, MASK_KEY: batch.obs[MASK_KEY].roll(1, dims=0)}
        seq = batch.seq._replace(obs={**batch.seq.obs, MASK_KEY: batch.seq.obs[MASK_KEY].roll(1, dims=0)}) if batch.seq else None
        with torch.no_grad():
            wrong, _, _ = trainer.policy.evaluate_actions(shifted, batch.actions, seq)
        assert not torch.allclose(wrong, batch.log_probs, atol=1e-3)
        metrics = trainer.algo.update(trainer.rollout, trainer.collector.bootstrap_value(), progress_remaining=1.0)
        assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    finally:
        trainer.close()


def find_sync_envs(env):
    while not hasattr(env, "envs"):
        env = env.env
    return env.envs


def test_valid_action_fraction_is_logged(tmp_path):
    trainer = Trainer(compose_config([f"env.id={ENV}", *rollout(2, 128), *SMALL]), tmp_path)
    try:
        trainer.collector.reset(seed=0)
        metrics = trainer.train_one_rollout(progress_remaining=1.0)
    finally:
        trainer.close()
    # 15 of 70 actions allowed in every state (autoreset steps are left out)
    assert metrics["rollout/valid_action_fraction"] == pytest.approx(15 / 70, abs=1e-6)


# -- where the mask comes from --------------------------------------------------------------------------
@pytest.mark.parametrize("env_id, expected", [(IDS["info"], "info"), (IDS["method"], "method"), (IDS["obs"], "obs"),
                                              ("CartPole-v1", "none"), ("Pendulum-v1", "none")])
def test_auto_finds_the_source_the_env_provides(env_id, expected):
    spec = EnvSpec(id=env_id, num_envs=2)
    env = spec.make()
    try:
        assert spec.mask_source == expected
        assert (MASK_KEY in env.single_observation_space.spaces) == (expected != "none") if isinstance(
            env.single_observation_space, gym.spaces.Dict) else expected == "none"
    finally:
        env.close()


def test_the_start_line_says_where_the_masks_come_from(tmp_path, caplog):
    with caplog.at_level("INFO", logger="rlexp"):
        rlexp.train([f"env.id={IDS['method']}", *rollout(2, 32), "total_steps=64", *SMALL], run_dir=tmp_path / "run")
    start = next(r.getMessage() for r in caplog.records if " on rlexp.analysis" in r.getMessage())
    assert "action masks from the env's action_masks()" in start
    assert "the numpy fast path has no action masks" in start


def test_mask_none_gives_an_ordinary_input():
    spec = EnvSpec(id=IDS["info"], num_envs=2, action_mask="none", make_kwargs={"strict": False})
    env = spec.make()
    try:
        assert isinstance(env.single_observation_space, gym.spaces.Discrete)
    finally:
        env.close()


# -- acting with a trained run ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def masked_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("masked") / "run"
    rlexp.train([f"env.id={ENV}", *rollout(4, 64), "total_steps=512", *SMALL], run_dir=run)
    return run


def random_masks(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = rng.random((n, 70)) < 0.2
    masks[np.arange(n), rng.integers(70, size=n)] = True  # at least one allowed
    return masks


def test_predict_obeys_the_mask_it_is_given(masked_run):
    agent = rlexp.load(masked_run)
    obs = np.arange(70)
    masks = random_masks(70, seed=0)
    for deterministic in (True, False):
        actions = agent.predict(obs, deterministic=deterministic, action_mask=masks)
        assert masks[np.arange(70), actions].all()
    # one observation, one mask
    only = np.zeros(70, dtype=bool)
    only[41] = True
    assert agent.predict(5, action_mask=only) == 41
    # no mask: every action allowed (the policy's own choice)
    assert 0 <= agent.predict(5) < 70
    with pytest.raises(ValueError, match="allows no action"):
        agent.predict(5, action_mask=np.zeros(70, dtype=bool))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_exported_policy_takes_the_mask(masked_run, tmp_path, fmt):
    pytest.importorskip("onnx") if fmt == "onnx" else None
    from rlexp.cli.export import export, run_file

    path, checked = export(masked_run, fmt=fmt, output=tmp_path / f"policy.{fmt}")
    if fmt == "onnx" and not checked:
        pytest.skip("onnxruntime is not installed")
    agent = rlexp.load(masked_run)
    masks = random_masks(70, seed=1)
    actions = run_file(path, fmt, {"observation": np.arange(70), MASK_KEY: masks}, agent.observation_space)
    assert masks[np.arange(70), actions.reshape(-1)].all()
    assert np.array_equal(actions.reshape(-1), agent.predict(np.arange(70), action_mask=masks))


def test_evaluation_obeys_the_mask(masked_run):
    # the strict env raises on an invalid action; sampled and deterministic episodes finish
    agent = rlexp.load(masked_run)
    for deterministic in (True, False):
        returns = agent.evaluate(episodes=2, deterministic=deterministic)
        assert returns.shape == (2,) and np.isfinite(returns).all()


# -- one-line errors ----------------------------------------------------------------------------------------------
def test_a_state_with_no_allowed_action_names_the_step(tmp_path):
    with pytest.raises(TrainingError, match=r"sub-env \d of .*RlexpInvalidActions-v0 allows no action at vector step 7"):
        rlexp.train([f"env.id={ENV}", "+env.make_kwargs.empty_at=7", *rollout(2, 32), "total_steps=64", *SMALL],
                    run_dir=tmp_path / "run")


def test_an_empty_mask_on_the_last_observation_is_harmless(tmp_path):
    result = rlexp.train([f"env.id={ENV}", "+env.make_kwargs.empty_at_end=true", "+env.make_kwargs.ep_length=10", *rollout(2, 32),
                          "total_steps=128", *SMALL], run_dir=tmp_path / "run")
    assert result["status"] == "finished"


@pytest.mark.parametrize("overrides, key, words", [
    (["env=pendulum", "env.action_mask=info"], "env.action_mask", "discrete actions"),
    (["env.id=CartPole-v1", "env.action_mask=obs"], "env.action_mask", "not a Dict"),
    (["env.id=CartPole-v1", "env.action_mask=sometimes"], "env.action_mask", "must be one of auto, obs, info, method, none"),
])
def test_bad_mask_settings_get_one_line(tmp_path, overrides, key, words):
    with pytest.raises(ConfigError) as error:
        rlexp.train([*overrides, "total_steps=64", *SMALL], run_dir=tmp_path / "run")
    assert str(error.value).startswith(key) and words in str(error.value) and "\n" not in str(error.value)


def test_a_missing_info_mask_is_one_line(tmp_path):
    with pytest.raises(TrainingError, match=r"env.action_mask=info: CartPole-v1's info has no 'action_mask' entry"):
        rlexp.train(["env.id=CartPole-v1", "env.action_mask=info", "total_steps=64", *rollout(8, 8), *SMALL], run_dir=tmp_path / "run")


# -- every algorithm, and the async vector env ------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["a2c", "reinforce", "reinforce_baseline"])
def test_every_algorithm_acts_and_learns_under_the_mask(tmp_path, algo):
    # the strict env raises on an invalid action; the losses stay finite
    no_ppo_keys = [s for s in SMALL if not s.startswith("algo.")]
    result = rlexp.train([f"algo={algo}", f"env.id={ENV}", "env.num_envs=4", "algo.n_steps=100", "total_steps=2000", *no_ppo_keys],
                         run_dir=tmp_path / "run")
    assert result["status"] == "finished" and np.isfinite(result["eval_return_mean"])


def test_the_method_source_through_the_async_vector_env(tmp_path):
    # action_masks() is called in each worker process
    result = rlexp.train([f"env.id={IDS['method']}", "env.vectorization=async", *rollout(2, 64), "total_steps=512", *SMALL],
                         run_dir=tmp_path / "run")
    assert result["status"] == "finished"

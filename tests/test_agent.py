"""rlexp.load: a trained run as an agent that acts in the env's own terms, with the run's own
observation processing."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlexp
from conftest import ROOT, run_cli_in_process
from rlexp.errors import ConfigError


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    """env=pendulum normalises and clips observations (and rewards): the agent must use the saved statistics."""
    run_dir = tmp_path_factory.mktemp("agent") / "run"
    result = run_cli_in_process("env=pendulum", "total_steps=8192", "eval.every_steps=0", "eval.episodes=2", "progress=false", "logger=none",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


def test_evaluate_gives_the_return_rlexp_eval_measures(pendulum_run):
    agent = rlexp.load(pendulum_run)
    returns = agent.evaluate(episodes=3, seed=5)
    cli = run_cli_in_process(str(pendulum_run), "episodes=3", "seed=5", module="rlexp.cli.evaluate")  # rlexp-eval's main()
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith(f"Pendulum-v1: return {returns.mean():.2f} +/- {returns.std():.2f} over 3 deterministic episodes")


def test_predict_uses_the_saved_normalisation_and_the_env_format(pendulum_run):
    agent = rlexp.load(pendulum_run)
    state = torch.load(pendulum_run / "checkpoints" / "last.pt", weights_only=True)
    mean, var = state["obs_rms"]["mean"].numpy(), state["obs_rms"]["var"].numpy()
    assert not np.allclose(var, 1.0)  # statistics were really learnt
    batch = np.array([[1.0, 0.0, 0.5], [-0.3, 0.95, -6.0], [0.0, -1.0, 8.0]], dtype=np.float32)
    by_hand = np.clip((batch - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)  # env=pendulum: clip_obs 10
    with torch.no_grad():
        expected = agent.policy.predict(torch.as_tensor(by_hand), agent.policy.initial_state(len(by_hand)), None)[0].numpy().clip(-2.0, 2.0)
    actions = agent.predict(batch)
    assert actions.shape == (3, 1) and actions.dtype == np.float32
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)
    one = agent.predict(batch[1])  # one observation in, one action out
    assert one.shape == (1,) and np.allclose(one, expected[1], atol=1e-6)
    many = np.repeat(batch, 200, axis=0)  # enough samples that some fall outside [-2, 2] before clipping
    torch.manual_seed(0)
    with torch.no_grad():
        raw = agent.policy.predict(torch.as_tensor(agent.process(many)), agent.policy.initial_state(len(many)), None, deterministic=False)[0].numpy()
    assert np.abs(raw).max() > 2.0
    torch.manual_seed(0)
    sampled = agent.predict(many, deterministic=False)
    assert np.all(np.abs(sampled) <= 2.0) and np.array_equal(sampled, raw.clip(-2.0, 2.0))  # clipped to the Box's bounds
    assert agent.action_space == gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def test_discrete_observations_and_actions_in_the_env_own_terms(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli_in_process("hparams=ppo_frozenlake", "total_steps=8192", "eval.episodes=1", "progress=false", "logger=none", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    agent = rlexp.load(run_dir, checkpoint="best")
    action = agent.predict(0)  # the start cell, as FrozenLake gives it
    assert isinstance(agent.action_space, gym.spaces.Discrete) and agent.action_space.contains(int(action))
    assert agent.predict(np.array([0, 1, 2])).shape == (3,)
    # the greedy policy walks from the start to the goal (the preset learns the lake by 4,096 steps)
    env = gym.make("FrozenLake-v1", is_slippery=False)
    obs, _ = env.reset(seed=0)
    total = 0.0
    for _ in range(20):
        obs, reward, terminated, truncated, _ = env.step(int(agent.predict(obs)))
        total += reward
        if terminated or truncated:
            break
    assert total == 1.0


def test_load_names_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="^checkpoint: no checkpoint at"):
        rlexp.load(tmp_path)
    with pytest.raises(ConfigError, match="^checkpoint: must be last or best"):
        rlexp.load(tmp_path, checkpoint="first")


def test_import_rlexp_stays_light():
    out = subprocess.run([sys.executable, "-c", "import sys, rlexp; print('torch' in sys.modules, 'hydra' in sys.modules)"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]

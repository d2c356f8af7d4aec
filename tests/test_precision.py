"""network.precision=bf16: the encoders and torsos run in bfloat16 autocast, the heads, the
weights, the gradients and the optimizer stay float32, and a bf16 run trains, checkpoints and
evaluates like any other."""

from __future__ import annotations

import importlib.util
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import pong_game_points, record_rewards, run_cli, run_cli_in_process
from rlexp.algos import PPO
from rlexp.errors import ConfigError
from rlexp.networks import ActorCritic

FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
NATURE = dict(hidden_sizes=[], activation="relu", shared=True, encoder="cnn")  # conf/network/cnn.yaml


def twins(**kwargs):
    """A float32 network and a bf16 one with the same weights (the state dicts share their keys)."""
    torch.manual_seed(0)
    fp32 = ActorCritic(FRAMES, gym.spaces.Discrete(6), **kwargs)
    bf16 = ActorCritic(FRAMES, gym.spaces.Discrete(6), precision="bf16", **kwargs)
    bf16.load_state_dict(fp32.state_dict())
    return fp32, bf16


def encoder_dtypes(policy: ActorCritic) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    policy.actor_encoder.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    return seen


def frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_bf16_encodes_in_bfloat16_and_hands_float32_to_the_heads():
    fp32, bf16 = twins(**NATURE)
    obs, actions = frames(32), torch.arange(32) % 6
    seen32, seen16 = encoder_dtypes(fp32), encoder_dtypes(bf16)
    log_prob32, entropy32, value32 = fp32.evaluate_actions(obs, actions)
    log_prob16, entropy16, value16 = bf16.evaluate_actions(obs, actions)
    assert seen32 == [torch.float32] and seen16 == [torch.bfloat16]
    assert {t.dtype for t in (log_prob16, entropy16, value16)} == {torch.float32}
    # the same network in another precision: close, not equal. bfloat16 keeps 8 bits of
    # mantissa (relative step 2^-8), and the CNN's sums carry that into the outputs
    assert not torch.equal(value16, value32)
    scale = value32.abs().max().item()
    assert torch.allclose(value16, value32, atol=0.03 * scale)
    assert torch.allclose(log_prob16, log_prob32, atol=1e-3)  # near-uniform initial policy: log(1/6) +- tiny
    assert torch.allclose(entropy16, entropy32, atol=1e-4)


def test_bf16_gradients_are_float32_and_point_where_the_float32_ones_do():
    fp32, bf16 = twins(**NATURE)
    obs, actions = frames(64, seed=1), torch.arange(64) % 6
    grads = []
    for policy in (fp32, bf16):
        log_prob, _, value = policy.evaluate_actions(obs, actions)
        (value.square().mean() - log_prob.mean()).backward()
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in policy.parameters())
        grads.append(policy.actor_encoder.convs[0].weight.grad.flatten())  # the first convolution's, the furthest from the loss
    assert not torch.equal(grads[0], grads[1])
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0).item() > 0.99


def test_bf16_mlp_torso_and_recurrent_core():
    obs_space, n = gym.spaces.Box(-1, 1, (8,), np.float32), 5
    obs = torch.rand(n, 8) * 2 - 1
    mlp = ActorCritic(obs_space, gym.spaces.Discrete(3), hidden_sizes=[64, 64], precision="bf16")
    torso_out: list[torch.dtype] = []
    mlp.actor_body.register_forward_hook(lambda module, args, out: torso_out.append(out.dtype))
    action, log_prob, value = mlp.act(obs, mlp.initial_state(len(obs)), None)[:3]
    assert torso_out == [torch.bfloat16] and log_prob.dtype == value.dtype == torch.float32

    # a recurrent policy: the encoder in bfloat16, the core, its state and the torso in float32
    lstm = ActorCritic(FRAMES, gym.spaces.Discrete(6), recurrent="lstm", recurrent_size=32, precision="bf16", **NATURE)
    seen = encoder_dtypes(lstm)
    state = lstm.initial_state(n)
    action, log_prob, value, state = lstm.act(frames(n), state, torch.ones(n, dtype=torch.bool))
    assert seen == [torch.bfloat16] and state.dtype == log_prob.dtype == value.dtype == torch.float32


def test_unknown_precision_names_the_key_and_fast_cpu_steps_aside():
    with pytest.raises(ConfigError, match="precision.*fp32, bf16.*'fp16'"):
        ActorCritic(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2), precision="fp16")
    cpu = torch.device("cpu")
    policy = ActorCritic(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2), precision="bf16")
    algo = PPO(policy=policy, learning_rate=3e-4, n_steps=8, batch_size=8, gamma=0.99)
    assert algo.enable_fast_cpu("auto", cpu, compiled=False) is None  # the numpy path computes in float32
    with pytest.raises(ConfigError, match="fast_cpu.*network.precision=bf16"):
        algo.enable_fast_cpu("true", cpu, compiled=False)


@pytest.mark.slow  # 16 s: a whole bf16 Atari run; bf16 numerics and export are tested on the layers above and below
def test_a_bf16_atari_run_checkpoints_and_evaluates_in_bf16(tmp_path):
    """ppo_atari with network.precision=bf16 for one update; rlexp-eval rebuilds the bf16 network
    from the run's config and plays a game of Pong with it."""
    run = tmp_path / "run"
    result = run_cli_in_process("hparams=ppo_atari", "network.precision=bf16", "total_steps=1024", "eval.episodes=1", "logger=none",
                     "progress=false", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    # one game of Pong, raw score: a whole number, never a draw (a game ends at 21 points)
    score = summary["eval_return_mean"]
    assert summary["steps"] == 1024 and score == round(score) and 1 <= abs(score) <= 21, summary["eval_history"]

    from rlexp.run.episodes import play_episodes, load_trained

    policy, env, cfg = load_trained(run, torch.device("cpu"), num_envs=1)
    assert cfg.network.precision == "bf16" and policy.precision == "bf16"
    seen = encoder_dtypes(policy)
    rewards = record_rewards(env)
    returns = play_episodes(policy, env, 1, torch.device("cpu"), deterministic=False, seed=0)
    assert seen and set(seen) == {torch.bfloat16}
    # the return is the whole game: its points add up to it, and one side reached 21
    won, lost = pong_game_points([r[0] for r in rewards])
    assert max(won, lost) == 21 and returns[0] == won - lost, (returns, won, lost)
    env.close()


@pytest.mark.slow
def test_bf16_solves_cartpole(tmp_path):
    """The default experiment in mixed precision (autograd: the numpy fast path steps aside):
    measured 500.0 at 100k steps, seed 0, about 30 s on 2 cores. Opt in with -m slow."""
    result = run_cli("network.precision=bf16", "seed=0", "progress=false", "logger=none", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["eval_return_mean"] >= 475, summary["eval_history"]


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None, reason="needs the onnx extra"))])
def test_a_bf16_policy_exports_as_its_float32_self(tmp_path, fmt):
    """The exported file computes in float32 (ONNX Runtime has no bfloat16 matrix products on
    the CPU): its actions are the bf16 agent's weights acting without the autocast."""
    import rlexp
    from rlexp.cli.export import export

    run = tmp_path / "run"
    result = run_cli_in_process("env=pendulum", "network.precision=bf16", "total_steps=2048", "logger=none", "progress=false",
                     f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    path, checked = export(run, fmt, output=tmp_path / f"policy.{fmt}")
    assert checked and path.stat().st_size > 0
    agent = rlexp.load(run)
    assert agent.policy.precision == "bf16"
    obs = np.random.default_rng(3).uniform(-1, 1, (16, 3)).astype(np.float32)
    if fmt == "torchscript":
        got = torch.jit.load(str(path))(torch.from_numpy(obs)).numpy()
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"obs": obs})[0]
    bf16_actions = agent.predict(obs, deterministic=True)
    agent.policy.precision = "fp32"
    fp32_actions = agent.predict(obs, deterministic=True)
    np.testing.assert_allclose(got, fp32_actions, rtol=0, atol=1e-5)
    assert not np.allclose(got, bf16_actions, rtol=0, atol=1e-5)  # the file is not the autocast network

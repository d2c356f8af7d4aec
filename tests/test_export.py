"""rlexp-export: a policy file with the run's observation processing that acts as
``agent.predict(obs, deterministic=True)`` does, loaded with torch (or onnxruntime) alone."""

import importlib.util
import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ROOT, run_cli_in_process
from omegaconf import OmegaConf

import rlexp
from rlexp.agent import Agent
from rlexp.cli.export import export, write_policy
from rlexp.networks import ActorCritic

QUICK = ["logger=none", "eval.every_steps=0", "eval.episodes=1", "progress=false"]
RUNS = {
    "cartpole": ["total_steps=2048"],
    "pendulum": ["env=pendulum", "total_steps=4096"],  # normalize_obs and clip_obs: the saved statistics must be inside
    "minigrid": ["env.id=MiniGrid-Empty-5x5-v0", "total_steps=256", "algo.n_steps=32", "algo.batch_size=64"],  # Dict: uint8 image + direction
}
# torch 2.13 marks torch.jit deprecated; loading TorchScript files is what this checks
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
HAS_ONNX = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return {name: rlexp.train([*overrides, *QUICK], run_dir=root / name).run_dir for name, overrides in RUNS.items()}


def batch_of(space: gym.Space, n: int, seed: int):
    """``n`` observations of ``space`` stacked as a vector env gives them."""
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, gym.spaces.Dict):
        return {key: np.stack([s[key] for s in samples]) for key in space.spaces}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(np.stack([s[i] for s in samples]) for i in range(len(space.spaces)))
    return np.stack(samples)


def as_tensors(obs):
    if isinstance(obs, dict):
        return {key: torch.as_tensor(value) for key, value in obs.items()}
    if isinstance(obs, tuple):
        return tuple(torch.as_tensor(value) for value in obs)
    return torch.as_tensor(obs)


def assert_actions_follow_the_observations(actions: np.ndarray, act, obs) -> None:
    """The actions differ from one observation to another (a file that ignores its input and
    gives one action fails), and each is its own observation's: a shuffled batch gives the
    same actions, shuffled alike. (Measured: 2 actions in proportions of about 30/34 on
    CartPole, 3 or 4 on MiniGrid, 64 distinct on Pendulum, for 64 observations.)"""
    n = len(actions)
    assert len(np.unique(actions.reshape(n, -1), axis=0)) >= 2, f"one action for {n} different observations: {actions[:8]}"
    order = np.random.default_rng(0).permutation(n)
    shuffled = {k: v[order] for k, v in obs.items()} if isinstance(obs, dict) else obs[order]
    np.testing.assert_allclose(act(shuffled), actions[order], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(RUNS))
def test_torchscript_acts_as_predict_without_rlexp(runs, name, tmp_path):
    path, checked = export(runs[name], "torchscript", output=tmp_path / "policy.pt")
    assert checked and path.is_file()
    agent = rlexp.load(runs[name])
    obs = batch_of(agent.observation_space, 64, seed=7)
    np.savez(tmp_path / "obs.npz", **(obs if isinstance(obs, dict) else {"obs": obs}))
    # a fresh interpreter where importing rlexp fails: the file needs torch only
    code = (
        "import sys, numpy as np, torch\n"
        "sys.modules['rlexp'] = None\n"
        f"data = dict(np.load({str(tmp_path / 'obs.npz')!r}))\n"
        "obs = {k: torch.as_tensor(v) for k, v in data.items()}\n"
        "policy = torch.jit.load(sys.argv[1])\n"
        "action = policy(obs if len(obs) > 1 or 'obs' not in obs else obs['obs'])\n"
        "np.save(sys.argv[2], action.numpy())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "actions.npy")], check=False, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    exported = np.load(tmp_path / "actions.npy")
    expected = agent.predict(obs, deterministic=True)
    assert exported.dtype == expected.dtype and exported.shape == expected.shape
    np.testing.assert_allclose(exported, expected, rtol=0, atol=1e-5)
    assert_actions_follow_the_observations(exported, lambda o: torch.jit.load(str(path))(as_tensors(o)).numpy(), obs)
    extra = {"rlexp.json": ""}
    torch.jit.load(str(path), _extra_files=extra)  # the file says what it takes and gives
    info = json.loads(extra["rlexp.json"])
    assert info["action_space"] == str(agent.action_space) and info["observation_space"] == str(agent.observation_space)


def test_pendulum_file_normalises_with_the_saved_statistics(runs, tmp_path):
    path, _ = export(runs["pendulum"], "torchscript", output=tmp_path / "policy.pt")
    agent = rlexp.load(runs["pendulum"])
    assert not np.allclose(agent.obs_rms["var"].numpy(), 1.0)
    obs = batch_of(agent.observation_space, 64, seed=3)
    with torch.no_grad():
        exported = torch.jit.load(str(path))(torch.as_tensor(obs)).numpy()
        unnormalised = agent.policy.predict(torch.as_tensor(obs), agent.policy.initial_state(len(obs)), None)[0].numpy().clip(-2.0, 2.0)
    np.testing.assert_allclose(exported, agent.predict(obs), rtol=0, atol=1e-5)
    assert np.abs(exported - unnormalised).max() > 1e-3  # the file did not skip the statistics
    assert np.all(np.abs(exported) <= 2.0)  # clipped to the Box's bounds
    # float64 observations, as numpy makes them by default, give the same actions
    with torch.no_grad():
        from_double = torch.jit.load(str(path))(torch.as_tensor(obs, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(from_double, exported, rtol=0, atol=1e-5)


@pytest.mark.skipif(not HAS_ONNX, reason='ONNX export needs the onnx extra: pip install "rlexp[onnx]"')
@pytest.mark.parametrize("name", list(RUNS))
def test_onnx_acts_as_predict(runs, name, tmp_path):
    import onnxruntime

    path, checked = export(runs[name], "onnx", output=tmp_path / "policy.onnx")
    assert checked
    agent = rlexp.load(runs[name])
    obs = batch_of(agent.observation_space, 64, seed=11)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if isinstance(obs, dict):
        assert names == [f"obs.{key}" for key in obs]
        feed = {f"obs.{key}": value for key, value in obs.items()}
    else:
        assert names == ["obs"]
        feed = {"obs": obs.astype(np.float32) if obs.dtype == np.float64 else obs}
    exported = session.run(["action"], feed)[0]
    np.testing.assert_allclose(exported, agent.predict(obs, deterministic=True), rtol=0, atol=1e-5)
    names_of = (lambda o: {f"obs.{k}": v for k, v in o.items()}) if isinstance(obs, dict) else (lambda o: {"obs": o.astype(np.float32)})
    assert_actions_follow_the_observations(exported, lambda o: session.run(["action"], names_of(o))[0], obs)


class SpacesEnv(gym.Env):
    """Tuple observations, MultiDiscrete or MultiBinary actions: no training needed to export."""

    def __init__(self, action_space):
        self.observation_space = gym.spaces.Tuple((gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(4, start=2)))
        self.action_space = action_space

    def reset(self, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.mark.parametrize("action_space", [
    gym.spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[1, 1], [0, -2]], dtype=np.int32),
    gym.spaces.MultiBinary(3),
])
@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.skipif(not HAS_ONNX, reason="needs onnx"))])
def test_multi_actions_and_tuple_observations(action_space, fmt, tmp_path):
    env = gym.vector.SyncVectorEnv([lambda: SpacesEnv(action_space)])
    torch.manual_seed(0)
    policy = ActorCritic(env.single_observation_space, env.single_action_space)
    torch.nn.init.normal_(policy.action_head.output_layer.weight)  # not a near-uniform policy: actions differ by state
    agent = Agent(policy.eval(), env, OmegaConf.create({"env": {"clip_obs": None}}), None, torch.device("cpu"))
    assert write_policy(agent, fmt, tmp_path / "policy") is True  # checked against predict while writing
    obs = batch_of(agent.observation_space, 32, seed=5)
    expected = agent.predict(obs)
    assert len(np.unique(expected.reshape(32, -1), axis=0)) > 1
    if fmt == "torchscript":
        with torch.no_grad():
            exported = torch.jit.load(str(tmp_path / "policy"))(as_tensors(obs)).numpy()
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp_path / "policy"), providers=["CPUExecutionProvider"])
        exported = session.run(["action"], {"obs.0": obs[0], "obs.1": obs[1]})[0]
    assert exported.dtype == expected.dtype and exported.shape == expected.shape == (32, *action_space.shape)
    np.testing.assert_array_equal(exported, expected)
    assert all(action_space.contains(a) for a in exported)


def rlexp_export(*args):
    return subprocess.run([sys.executable, "-m", "rlexp.cli.export", *map(str, args)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)


def rlexp_export_in_process(*args):
    """rlexp-export's main() in this process (conftest.run_cli_in_process: the same code from main() on)."""
    return run_cli_in_process(*map(str, args), module="rlexp.cli.export")


def test_the_command_and_its_bad_input(runs, tmp_path):
    out = rlexp_export(runs["cartpole"], "--checkpoint", "best")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{runs['cartpole'] / 'policy_best.pt'} (torchscript; actions checked against the agent's)"
    for args, status, start in (
        ([tmp_path], 1, f"rlexp-export: error: checkpoint: no checkpoint at {tmp_path}"),
        ([runs["cartpole"], "--format", "tflite"], 2, "rlexp-export: error: argument --format: invalid choice: 'tflite'"),
        ([], 2, "rlexp-export: error: the following arguments are required: run"),
    ):
        out = rlexp_export_in_process(*args)
        assert out.returncode == status
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith(start), out.stderr
    assert not list(tmp_path.iterdir())  # nothing written for a failed export


def test_a_recurrent_policy_is_refused_in_one_line(tmp_path):
    run_dir = rlexp.train(["network.recurrent=lstm", "network.recurrent_size=16", "total_steps=256", "algo.n_steps=32",
                           "algo.batch_size=64", *QUICK], run_dir=tmp_path / "lstm").run_dir
    out = rlexp_export_in_process(run_dir)
    refusal = ("rlexp-export: error: network.recurrent: recurrent policies cannot be exported yet "
               "(the file would need the recurrent state as an input and an output)")
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [refusal]
    assert not list(run_dir.glob("policy*"))

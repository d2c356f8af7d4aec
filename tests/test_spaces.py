"""Encoders by observation space, heads by action space, and the plumbing between: values
computed by hand, not by the code under test."""

import math
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import ROOT, run_cli, run_cli_in_process
from rlexp.envs import ActionAdapter
from rlexp.errors import ConfigError
from rlexp.networks import ActorCritic
from rlexp.networks.encoders import CnnEncoder, CnnSpec, DictEncoder, image_layout, make_encoder
from rlexp.networks.heads import BernoulliHead, MultiCategorical, MultiCategoricalHead, action_storage, make_action_head
from rlexp.data.observations import empty, to_tensor
from rlexp.data.rollout import Rollout


# -- encoders -------------------------------------------------------------------------------

def test_one_hot_of_a_discrete_with_a_start():
    encoder = make_encoder(gym.spaces.Discrete(4, start=-2))
    out = encoder(torch.tensor([-2, 1, 0]))
    assert out.tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    assert out.dtype == torch.float32 and encoder.out_features == 4


def test_multi_one_hot_concatenates_one_block_per_entry():
    encoder = make_encoder(gym.spaces.MultiDiscrete([3, 2, 4], start=[0, 1, -1]))
    out = encoder(torch.tensor([[2, 1, -1], [0, 2, 2]]))
    # blocks of 3, 2 and 4: entry values minus their start pick the hot index in each block
    assert out.tolist() == [[0, 0, 1, 1, 0, 1, 0, 0, 0], [1, 0, 0, 0, 1, 0, 0, 0, 1]]


def test_multi_binary_is_floats():
    encoder = make_encoder(gym.spaces.MultiBinary([2, 2]))
    assert encoder(torch.tensor([[[1, 0], [0, 1]]], dtype=torch.uint8)).tolist() == [[1.0, 0.0, 0.0, 1.0]]


@pytest.mark.parametrize("space, layout", [
    (gym.spaces.Box(0, 255, (84, 84, 3), np.uint8), "HWC"),
    (gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), "CHW"),
    (gym.spaces.Box(0, 255, (84, 84), np.uint8), "HW"),
    (gym.spaces.Box(0, 1, (10, 10, 10), np.bool_), "HWC"),  # MinAtar: a tie reads as channels last
    (gym.spaces.Box(0.0, 1.0, (3, 32, 32), np.float32), "CHW"),
    (gym.spaces.Box(0.0, 1.0, (7, 7, 3), np.float64), "HWC"),
    (gym.spaces.Box(-1.0, 1.0, (84, 84, 3), np.float32), None),  # floats outside [0, 1]: not pixels
    (gym.spaces.Box(-np.inf, np.inf, (8,), np.float32), None),
    (gym.spaces.Box(0, 255, (3, 3), np.uint8), None),  # too small to be an image
    (gym.spaces.Box(0, 10, (84, 84, 3), np.int32), None),
])
def test_image_detection(space, layout):
    assert image_layout(space) == layout


def test_uint8_is_scaled_by_1_over_255_on_the_device():
    spec = CnnSpec(channels=[4], kernels=[3], strides=[1], features=8)
    pixels = CnnEncoder(gym.spaces.Box(0, 255, (6, 6, 2), np.uint8), "HWC", spec)
    floats = CnnEncoder(gym.spaces.Box(0.0, 1.0, (6, 6, 2), np.float32), "HWC", spec)
    floats.load_state_dict(pixels.state_dict())
    frame = torch.randint(0, 256, (3, 6, 6, 2), dtype=torch.uint8)
    torch.testing.assert_close(pixels(frame), floats(frame.float() / 255), rtol=1e-5, atol=1e-6)
    # HWC is read as CHW after a permute: the same numbers laid out channels-first give the same features
    chw = CnnEncoder(gym.spaces.Box(0, 255, (2, 6, 6), np.uint8), "CHW", spec)
    chw.load_state_dict(pixels.state_dict())
    torch.testing.assert_close(chw(frame.permute(0, 3, 1, 2)), pixels(frame))


def test_the_cnn_leaves_its_input_as_it_was():
    """The cast to float32 and the 1/255 scaling work in place on a copy: never on the rollout's
    own observations (a float32 HWC batch is channels-last already, so .to() hands back the same
    memory; a uint8 one is copied)."""
    spec = CnnSpec(channels=[4], kernels=[3], strides=[1], features=8)
    for space, obs in [(gym.spaces.Box(0, 255, (6, 6, 2), np.uint8), torch.randint(0, 256, (3, 6, 6, 2), dtype=torch.uint8)),
                       (gym.spaces.Box(0, 255, (2, 6, 6), np.uint8), torch.randint(0, 256, (3, 2, 6, 6), dtype=torch.uint8)),
                       (gym.spaces.Box(0.0, 1.0, (6, 6, 2), np.float32), torch.rand(3, 6, 6, 2))]:
        layout = image_layout(space)
        before = obs.clone()
        CnnEncoder(space, layout, spec)(obs)
        assert torch.equal(obs, before), layout


def test_uint8_codes_with_smaller_declared_bounds_are_scaled_per_channel():
    """MiniGrid's codes, once rlexp.envs.minigrid declares their bounds (10, 5, 2): each channel
    reaches the CNN in [0, 1], not as 0..0.04."""
    spec = CnnSpec(channels=[2], kernels=[1], strides=[1], features=4)
    high = np.broadcast_to(np.array([10, 5, 2], np.uint8), (5, 5, 3))
    codes = CnnEncoder(gym.spaces.Box(0, high, dtype=np.uint8), "HWC", spec)
    floats = CnnEncoder(gym.spaces.Box(0.0, 1.0, (5, 5, 3), np.float32), "HWC", spec)
    floats.load_state_dict(codes.state_dict())
    obs = torch.tensor(np.broadcast_to(np.array([10, 5, 1], np.uint8), (1, 5, 5, 3)).copy())
    expected = torch.tensor(np.broadcast_to(np.array([1.0, 1.0, 0.5], np.float32), (1, 5, 5, 3)).copy())
    torch.testing.assert_close(codes(obs), floats(expected))


def test_minigrid_image_codes_are_declared_with_their_bounds():
    from rlexp.envs import EnvSpec

    env = EnvSpec(id="MiniGrid-Empty-5x5-v0", num_envs=2).make()
    image = env.single_observation_space["image"]
    assert image.high[0, 0].tolist() == [10, 5, 2] and image.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (2, 7, 7, 3) and all(image.contains(o) for o in obs["image"])
    env.close()


def test_nature_cnn_from_36_pixels_and_a_small_one_below():
    assert CnnSpec().layers(84, 84) == [(32, 8, 4, 0), (64, 4, 2, 0), (64, 3, 1, 0)]
    assert CnnSpec().layers(10, 10) == [(16, 3, 1, 1), (32, 3, 1, 1)]
    encoder = make_encoder(gym.spaces.Box(0, 1, (10, 10, 4), np.bool_))
    assert encoder(torch.zeros(2, 10, 10, 4, dtype=torch.bool)).shape == (2, 512)
    with pytest.raises(ConfigError, match="do not fit a 10x10 image"):
        make_encoder(gym.spaces.Box(0, 255, (10, 10, 3), np.uint8), "cnn", CnnSpec(channels=[8], kernels=[12], strides=[1]))


def test_dict_and_tuple_features_concatenate_in_the_space_order():
    space = gym.spaces.Dict({
        "b": gym.spaces.Discrete(3),
        "a": gym.spaces.Box(-5, 5, (2,), np.float32),
        "c": gym.spaces.Tuple((gym.spaces.MultiBinary(2), gym.spaces.Discrete(2, start=1))),
    })
    assert list(space.spaces) == ["a", "b", "c"]  # gymnasium sorts a dict's keys
    encoder = make_encoder(space)
    assert isinstance(encoder, DictEncoder) and encoder.out_features == 2 + 3 + 2 + 2
    obs = {"a": torch.tensor([[0.5, -4.0]]), "b": torch.tensor([2]),
           "c": (torch.tensor([[1, 0]], dtype=torch.uint8), torch.tensor([2]))}
    assert encoder(obs).tolist() == [[0.5, -4.0, 0, 0, 1, 1, 0, 0, 1]]


def test_an_encoder_per_dict_entry():
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), "pixels": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})
    encoder = make_encoder(space, {"image": "flatten"})
    assert [type(part).__name__ for part in encoder.parts.values()] == ["FlattenEncoder", "CnnEncoder"]  # pixels: auto
    assert encoder.out_features == 8 * 8 * 3 + 512
    with pytest.raises(ConfigError, match="^encoder: no observation entry colour; the entries are: image, pixels"):
        make_encoder(space, {"colour": "cnn"})
    with pytest.raises(ConfigError, match="^encoder: must be one of auto, flatten, cnn per entry, got 'rnn'"):
        make_encoder(space, {"image": "rnn"})
    with pytest.raises(ConfigError, match="^encoder: a choice per entry needs Dict observations"):
        make_encoder(gym.spaces.Discrete(3), {"image": "cnn"})


def test_text_entry_is_named_with_the_key_to_change():
    space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Text(8)))
    with pytest.raises(ConfigError, match=r"^env.id: observation entry '\[1\]' Text\(.*leave it out with env.obs_keys"):
        make_encoder(space)


# -- heads ------------------------------------------------------------------------------------

def test_multi_categorical_log_prob_entropy_and_mode_by_hand():
    head = MultiCategoricalHead(1, [3, 2])
    logits = torch.tensor([[math.log(1), math.log(2), math.log(1), math.log(3), math.log(1)]])
    dist = MultiCategorical(logits, [3, 2])
    # entry 1: probabilities 1/4, 2/4, 1/4; entry 2: 3/4, 1/4
    action = torch.tensor([[1, 1]])
    assert head.log_prob(dist, action).item() == pytest.approx(math.log(0.5) + math.log(0.25))
    h1 = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    h2 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert head.entropy(dist).item() == pytest.approx(h1 + h2)
    assert head.mode(dist).tolist() == [[1, 0]]


def test_bernoulli_log_prob_entropy_and_mode_by_hand():
    head = BernoulliHead(1, 2)
    with torch.no_grad():
        head.logits.weight.zero_()
        head.logits.bias.copy_(torch.tensor([math.log(3.0), -math.log(3.0)]))  # p = 0.75, 0.25
    dist = head(torch.zeros(1, 1))
    assert head.log_prob(dist, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(math.log(0.75) + math.log(0.25))
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert head.entropy(dist).item() == pytest.approx(2 * h)
    assert head.mode(dist).tolist() == [[1.0, 0.0]]
    assert head.sample(dist).shape == (1, 2)


def test_action_storage_and_unsupported_action_spaces():
    assert action_storage(gym.spaces.MultiDiscrete([[2, 3], [4, 5]])) == ((4,), torch.int64)
    assert action_storage(gym.spaces.MultiBinary(3)) == ((3,), torch.float32)
    with pytest.raises(ConfigError, match=r"^env.id: action space Tuple\(Discrete\(2\), Discrete\(3\)\) is not supported"):
        make_action_head(gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))), 4)
    with pytest.raises(ConfigError, match="^use_sde: applies to continuous"):
        make_action_head(gym.spaces.MultiBinary(3), 4, use_sde=True)


# -- through the env and the rollout --------------------------------------------------------

class ShiftedSpaces(gym.Env):
    """Discrete observations and actions that start at -1 and 5; records what it is given."""

    observation_space = gym.spaces.Discrete(3, start=5)
    action_space = gym.spaces.Discrete(3, start=-1)

    def __init__(self):
        self.received = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 5, {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.received.append(int(action))
        return 5 + int(action) + 1, 0.0, len(self.received) >= 3, False, {}


def test_discrete_start_round_trips_through_the_env():
    env = gym.vector.SyncVectorEnv([ShiftedSpaces, ShiftedSpaces])
    to_env = ActionAdapter(env, torch.device("cpu"))
    obs, _ = env.reset(seed=0)
    policy_actions = torch.tensor([0, 2])  # policies count from 0
    obs, *_ = env.step(to_env(policy_actions))
    assert [e.received for e in env.envs] == [[-1], [1]]
    assert obs.tolist() == [5, 7]
    # and the observation's start comes off again in the one-hot
    policy = ActorCritic(env.single_observation_space, env.single_action_space)
    features = policy.actor_encoder(to_tensor(obs, env.single_observation_space, torch.device("cpu")))
    assert features.tolist() == [[1, 0, 0], [0, 0, 1]]


def test_multidiscrete_actions_go_back_in_the_space_shape_and_dtype():
    space = gym.spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[1, 1], [0, 0]], dtype=np.int32)
    env = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")])
    env.single_action_space = space
    action = ActionAdapter(env, torch.device("cpu"))(torch.tensor([[1, 2, 3, 4]]))
    assert action.dtype == np.int32 and action.tolist() == [[[2, 3], [3, 4]]]
    assert space.contains(action[0])


def test_dict_observations_keep_their_dtypes_and_autoreset_steps_never_reach_a_loss():
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (6, 6, 1), np.uint8), "pos": gym.spaces.Discrete(4)})
    rollout = Rollout(3, 2, space, (), torch.int64, torch.device("cpu"))
    assert rollout.obs["image"].dtype == torch.uint8 and rollout.obs["pos"].dtype == torch.int64
    valid = [np.array([True, True]), np.array([False, True]), np.array([True, False])]  # autoreset steps
    for t in range(3):
        obs = to_tensor({"image": np.full((2, 6, 6, 1), 10 * t + np.arange(2)[:, None, None, None], np.uint8),
                         "pos": np.array([t, 3 - t])}, space, torch.device("cpu"))
        rollout.store_policy(t, obs, torch.tensor([t, t]), torch.zeros(2), torch.zeros(2))
        rollout.store_env(t, np.ones(2, np.float32), np.zeros(2, bool), np.zeros(2, bool), valid[t])
    batch = rollout.batch()
    # rows are (t, env) in order; (1, 0) and (2, 1) are autoreset steps
    assert batch.obs["image"][:, 0, 0, 0].tolist() == [0, 1, 11, 20]
    assert batch.obs["pos"].tolist() == [0, 3, 2, 2]
    assert len(batch) == 4 and len(batch.select(torch.tensor([3]))) == 1
    assert batch.select(torch.tensor([3])).obs["pos"].tolist() == [2]


def test_empty_observation_tree_shapes():
    space = gym.spaces.Tuple((gym.spaces.MultiBinary(3), gym.spaces.Box(0, 1, (2,), np.float64)))
    tree = empty(space, (4, 2), torch.device("cpu"))
    assert [t.shape for t in tree] == [(4, 2, 3), (4, 2, 2)] and [t.dtype for t in tree] == [torch.uint8, torch.float32]


# -- the command line -------------------------------------------------------------------------

def test_unknown_obs_keys_entry_lists_the_valid_ones(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli_in_process("env.id=MiniGrid-Empty-5x5-v0", "env.obs_keys=[image,colour]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ["rlexp-train: error: env.obs_keys: MiniGrid-Empty-5x5-v0 has no observation entry 'colour'; "
                     "its entries are: direction, image, mission"]
    assert not run_dir.exists()  # nothing half-written


def test_obs_keys_on_a_box_env_names_the_key(tmp_path):
    result = run_cli_in_process("env.obs_keys=[x]", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlexp-train: error: env.obs_keys: applies to Dict observations; CartPole-v1's are Box(")


def test_a_dict_observation_run_checkpoints_resumes_and_evaluates(tmp_path):
    """MiniGrid: uint8 image + Discrete direction (+ text mission, left out) through training,
    resume, rlexp-eval and its video."""
    run_dir = tmp_path / "run"
    common = ["progress=false", "eval.episodes=2", "algo.n_steps=32", "algo.batch_size=64", "algo.n_epochs=2"]
    first = run_cli_in_process("env.id=MiniGrid-Empty-5x5-v0", "env.num_envs=4", "total_steps=256", *common, f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr
    assert "leaving out observation entry mission (MissionSpace)" in (run_dir / "train.log").read_text()
    resumed = run_cli_in_process(f"resume={run_dir}", "total_steps=512", "progress=false")
    assert resumed.returncode == 0, resumed.stderr
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["global_step"] == 512 and "actor_encoder.parts.image.convs.0.weight" in state["policy"]
    assert (run_dir / "tb").is_dir()
    evaluated = subprocess.run([sys.executable, "-m", "rlexp.cli.evaluate", str(run_dir), "episodes=2", "video=true"], cwd=ROOT,
                               capture_output=True, text=True, timeout=300, env={**os.environ, "SDL_VIDEODRIVER": "dummy"})
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.startswith("MiniGrid-Empty-5x5-v0: return ")
    assert list((run_dir / "videos").glob("*.mp4"))

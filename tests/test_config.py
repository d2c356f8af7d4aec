"""Every group file and preset composes, and every combination instantiates."""

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF, group_options
from rlexp.errors import ConfigError
from rlexp.builders import build
from rlexp.data.observations import to_tensor, tree_map

ALGOS, ENVS = group_options("algo"), group_options("env")
PIXEL_NETWORKS = ["cnn"]  # need image observations: tested on image spaces below
NETWORKS = [n for n in group_options("network") if n not in PIXEL_NETWORKS]


def spaces_of(spec):
    """The spaces the trainer sees: through rlexp's own env factory (which leaves out a Dict
    observation's text entries, for one)."""
    try:
        env = spec.make(num_envs=1)
    except ConfigError as e:
        if "optional dependency" not in str(e) and "package" not in str(e):
            raise
        pytest.skip(f"{spec.id}: optional dependency missing ({e})")
    env.close()
    return env.single_observation_space, env.single_action_space


#: every pair of choices (algo and env, env and network, algo and network) in the default suite:
#: the i-th algo on the j-th env takes the (i + j)-th network, cycling (56 of the 168 combinations);
#: the rest of the product is slow (opt in with -m slow)
PAIRWISE = {(algo, env, NETWORKS[(i + j) % len(NETWORKS)]) for i, algo in enumerate(ALGOS) for j, env in enumerate(ENVS)}
COMBINATIONS = [c if c in PAIRWISE else pytest.param(*c, marks=pytest.mark.slow) for c in itertools.product(ALGOS, ENVS, NETWORKS)]


def test_the_default_combinations_hold_every_pair():
    for first, second in itertools.combinations(range(3), 2):
        pairs = {(c[first], c[second]) for c in PAIRWISE}
        assert pairs == set(itertools.product(*[(ALGOS, ENVS, NETWORKS)[k] for k in (first, second)])), (first, second)


@pytest.mark.parametrize("algo,env,network", COMBINATIONS)
def test_every_combination_composes_and_instantiates(compose_cfg, algo, env, network):
    cfg = compose_cfg(f"algo={algo}", f"env={env}", f"network={network}")
    spec = build("env", cfg.env)
    assert spec.id == cfg.env.id
    obs_space, action_space = spaces_of(spec)
    policy = build("network", cfg.network, observation_space=obs_space, action_space=action_space)
    algorithm = build("algo", cfg.algo, policy=policy)
    obs = to_tensor(tree_map(lambda x: np.asarray(x)[None], obs_space.sample()), obs_space, torch.device("cpu"))
    action, log_prob, value = policy.act(obs, policy.initial_state(1), None)[:3]
    assert log_prob.shape == value.shape == (1,)
    assert algorithm.n_steps == cfg.algo.n_steps


@pytest.mark.parametrize("network", PIXEL_NETWORKS)
@pytest.mark.parametrize("shape", [(84, 84, 3), (4, 84, 84), (84, 84)])
def test_pixel_networks_build_on_images_and_name_the_key_elsewhere(compose_cfg, network, shape):
    cfg = compose_cfg(f"network={network}")
    image = gym.spaces.Box(0, 255, shape, dtype="uint8")
    policy = build("network", cfg.network, observation_space=image, action_space=gym.spaces.Discrete(4))
    action, log_prob, value = policy.act(torch.as_tensor(image.sample()).unsqueeze(0), policy.initial_state(1), None)[:3]
    assert action.shape == log_prob.shape == value.shape == (1,)
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(ConfigError, match=r"^network\.encoder: cnn needs an image"):
        build("network", cfg.network, observation_space=cartpole.observation_space, action_space=cartpole.action_space)


@pytest.mark.parametrize("preset", group_options("hparams"))
def test_every_preset_composes(compose_cfg, preset):
    cfg = compose_cfg(f"hparams={preset}")
    OmegaConf.resolve(cfg)
    build("env", cfg.env)
    # the preset's own values win over config.yaml's run-level defaults (its budget, say)
    raw = OmegaConf.load(CONF / "hparams" / f"{preset}.yaml")
    for key in ("total_steps", "seed"):
        if key in raw:
            assert cfg[key] == raw[key], f"{preset} sets {key}={raw[key]} but the run gets {cfg[key]}"


@pytest.mark.parametrize("logger", group_options("logger"))
def test_every_logger_instantiates(compose_cfg, logger, tmp_path):
    """Each logger option is its own node (logger.<option>), builds as the class its config names
    and does what it is for: TensorBoard writes the scalars it is given, at their steps, under
    <run dir>/<subdir>; none writes nothing. (MLflow and W&B are read back with their own readers
    in tests/test_trackers.py.)"""
    from hydra.utils import get_class

    from rlexp.run.logger import NullLogger, TensorBoardLogger, logger_nodes, make_logger

    cfg = compose_cfg(f"logger={logger}")
    nodes = logger_nodes(cfg.logger)
    if logger in ("mlflow", "wandb"):  # their packages are optional extras: built in tests/test_trackers.py
        assert [key for key, _ in nodes] == [f"logger.{logger}"]
        assert issubclass(get_class(nodes[0][1]._target_), NullLogger)
        return
    sink = make_logger(cfg, tmp_path)
    sink.log({"x": 1.0, "loss/total": -2.5}, 1)
    sink.log({"x": 3.0}, 7)
    sink.close()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    if logger == "none":
        assert nodes == [] and type(sink) is NullLogger and written == [], written
    elif logger == "tensorboard":
        from tensorboard.backend.event_processing import event_accumulator

        node = cfg.logger.tensorboard
        assert [key for key, _ in nodes] == ["logger.tensorboard"]
        assert f"{type(sink).__module__}.{type(sink).__qualname__}" == node._target_
        assert isinstance(sink, TensorBoardLogger) and sink.histogram_every == node.histogram_every
        assert written and all(w.startswith(f"{node.subdir}/events.out.tfevents.") for w in written), written
        acc = event_accumulator.EventAccumulator(str(tmp_path / node.subdir))
        acc.Reload()
        assert sorted(acc.Tags()["scalars"]) == ["loss/total", "x"]
        assert [(e.step, e.value) for e in acc.Scalars("x")] == [(1, 1.0), (7, 3.0)]
        assert [(e.step, e.value) for e in acc.Scalars("loss/total")] == [(1, -2.5)]
    else:
        pytest.fail(f"conf/logger/{logger}.yaml is new: say here what it must write")


def test_schema_rejects_wrong_type_and_unknown_key(compose_cfg):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose_cfg("algo.n_epochs=abc")
    with pytest.raises(ConfigCompositionException):
        compose_cfg("algo.clip_rnge=0.1")


@pytest.mark.parametrize(
    "override,key",
    [("env.num_envs=0", "env.num_envs"), ("algo.clip_range=-1", "algo.clip_range"), ("algo.gamma=1.5", "algo.gamma"),
     ("algo.learning_rate=-0.1", "algo.learning_rate"), ("network.activation=swish", "network.activation"),
     ("env.id=CartPoel-v1", "env.id")],
)
def test_out_of_range_values_name_their_key(compose_cfg, override, key):
    cfg = compose_cfg(override)
    with pytest.raises(ConfigError) as info:
        spec = build("env", cfg.env)
        obs_space, action_space = spaces_of(spec)
        policy = build("network", cfg.network, observation_space=obs_space, action_space=action_space)
        build("algo", cfg.algo, policy=policy)
    assert info.value.key == key

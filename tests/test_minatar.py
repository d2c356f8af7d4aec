"""MinAtar (env=minatar, rlexp/envs/minatar.py): the ids registered for gymnasium 1.x, boolean
channels-last frames, gymnax's episode lengths, sticky actions, seeding, and one PPO update."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("minatar")

import rlexp.envs.minatar  # noqa: F401  (registers the ids)
from rlexp.envs import EnvSpec

#: (channels, minimal action set size) per game
GAMES = {"Asterix": (4, 5), "Breakout": (4, 3), "Freeway": (7, 3), "Seaquest": (10, 6), "SpaceInvaders": (6, 4)}


@pytest.mark.filterwarnings("ignore:.*is out of date.*:DeprecationWarning")  # gymnasium on making a -v0 beside -v1
@pytest.mark.parametrize("game", sorted(GAMES))
def test_every_game_is_registered_with_boolean_channels_last_frames(game):
    channels, actions = GAMES[game]
    env = gym.make(f"MinAtar/{game}-v1")
    obs, _ = env.reset(seed=0)
    assert env.observation_space == gym.spaces.Box(0, 1, (10, 10, channels), np.bool_)
    assert obs.dtype == np.bool_ and obs.shape == (10, 10, channels) and obs.any()
    assert env.action_space == gym.spaces.Discrete(actions)
    assert gym.make(f"MinAtar/{game}-v0").action_space == gym.spaces.Discrete(6)
    env.close()


def test_env_minatar_episodes_are_as_long_as_gymnax_s(compose_cfg):
    """env=minatar: Freeway ends by itself after 2,500 steps (terminated, as in MinAtar and
    gymnax); the other games are truncated at gymnax's 1,000 (a chicken that never moves lives
    forever, so Freeway with step_limit=1000 shows the truncation)."""
    from rlexp.builders import build

    def episode_end(*overrides):
        cfg = compose_cfg("env=minatar", "env.id=MinAtar/Freeway-v1", "env.num_envs=1", *overrides)
        env = build("env", cfg.env).make(training=False)
        env.reset(seed=0)
        for step in range(1, 3001):
            _, _, terminated, truncated, info = env.step(np.array([0]))
            if terminated[0] or truncated[0]:
                break
        env.close()
        return step, bool(terminated[0]), bool(truncated[0]), int(info["episode"]["l"][0])

    assert episode_end() == (2501, True, False, 2501)
    assert episode_end("env.make_kwargs.step_limit=1000") == (1000, False, True, 1000)
    limits = {game: gym.make(f"MinAtar/{game}-v1", step_limit="gymnax").unwrapped.step_limit for game in GAMES}
    assert limits == {"Asterix": 1000, "Breakout": 1000, "Freeway": None, "Seaquest": 1000, "SpaceInvaders": 1000}
    with pytest.raises(ValueError, match="step_limit must be 'gymnax', a number of steps >= 1 or null, got 'gymax'"):
        gym.make("MinAtar/Breakout-v1", step_limit="gymax")


def test_env_minatar_pgx_is_pgx_s_setting_under_a_preset(compose_cfg):
    """env=minatar_pgx on the command line beats the preset's own env=minatar: sticky actions 0.1
    and no episode cap in every env; the rest stays the preset's."""
    from rlexp.builders import build

    cfg = compose_cfg("hparams=ppo_minatar_mlp", "env=minatar_pgx", "env.id=MinAtar/SpaceInvaders-v1", "env.num_envs=2")
    assert cfg.env.make_kwargs == {"sticky_action_prob": 0.1, "difficulty_ramping": True, "step_limit": None}
    assert (cfg.env.num_envs, cfg.network.hidden_sizes, cfg.algo.gamma) == (2, [256, 256], 0.999)
    env = build("env", cfg.env).make(training=False)
    games = [e.unwrapped for e in env.unwrapped.envs]
    assert [(g.step_limit, g.game.sticky_action_prob) for g in games] == [(None, 0.1), (None, 0.1)]
    env.close()
    assert compose_cfg("hparams=ppo_minatar_mlp").env.make_kwargs.sticky_action_prob == 0.0


def test_a_value_the_env_refuses_names_make_kwargs():
    from rlexp.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        EnvSpec(id="MinAtar/Breakout-v1", num_envs=1, make_kwargs={"step_limit": 0}).make()
    assert error.value.key == "make_kwargs" and "step_limit must be 'gymnax'" in str(error.value)


@pytest.mark.parametrize("sticky, moves", [(0.0, True), (1.0, False)])
def test_sticky_actions(sticky, moves):
    """With sticky_action_prob=1 the first action (no-op) repeats forever: the paddle never moves."""
    env = gym.make("MinAtar/Breakout-v1", sticky_action_prob=sticky)
    obs, _ = env.reset(seed=0)
    start = obs[9, :, 0].argmax()
    for _ in range(3):
        obs, *_ = env.step(1)  # left
    assert (obs[9, :, 0].argmax() != start) == moves


def test_seeded_episodes_repeat():
    def trajectory(seed: int) -> np.ndarray:
        env = gym.make("MinAtar/Asterix-v1", sticky_action_prob=0.1)
        frames = [env.reset(seed=seed)[0]]
        frames += [env.step(a)[0] for a in np.random.default_rng(0).integers(0, 5, 60)]
        return np.stack(frames)

    a, b, c = trajectory(3), trajectory(3), trajectory(4)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_a_mistyped_id_gets_suggestions():
    from rlexp.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean MinAtar/Breakout-v1"):
        EnvSpec(id="MinAtar/Breakot-v1")


def test_rendered_frames_are_uint8_pictures():
    env = gym.make("MinAtar/Breakout-v1", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (160, 160, 3) and frame.dtype == np.uint8 and len(np.unique(frame.reshape(-1, 3), axis=0)) >= 3


def test_ppo_minatar_one_update(compose_cfg, tmp_path):
    from rlexp.networks.encoders import CnnEncoder
    from rlexp.run.trainer import Trainer

    cfg = compose_cfg("hparams=ppo_minatar", "env.num_envs=8", "algo.n_steps=128", "total_steps=1024", "logger=none",
                      "progress=false", "eval.episodes=2")
    trainer = Trainer(cfg, tmp_path)
    encoder = trainer.policy.actor_encoder
    assert isinstance(encoder, CnnEncoder) and encoder.layout == "HWC" and encoder.out_features == 128
    assert trainer.rollout.obs.dtype.is_floating_point is False
    summary = trainer.fit()
    assert summary["steps"] == 1024 and trainer.updates == 1 and math.isfinite(summary["eval_return_mean"])


def test_ppo_minatar_mlp_is_gymnax_blines_network_and_schedule(compose_cfg, tmp_path):
    """hparams=ppo_minatar_mlp: two separate 400-256-256 ReLU MLPs on the flattened 10x10x4
    Breakout frames, the learning rate at 5e-4 from the first update on (no warm-up, as
    gymnax-blines in effect), value clipping at 0.2; everything else is ppo_minatar's."""
    from torch import nn

    from rlexp.run.trainer import Trainer

    cfg = compose_cfg("hparams=ppo_minatar_mlp", "env.num_envs=8", "algo.n_steps=16", "algo.batch_size=64",
                      "total_steps=2560", "logger=none", "progress=false", "eval.episodes=1")
    assert (cfg.algo.gamma, cfg.algo.n_epochs, cfg.algo.learning_rate) == (0.999, 4, 5e-4)
    trainer = Trainer(cfg, tmp_path)
    policy = trainer.policy
    assert policy.actor_encoder is not policy.critic_encoder
    linears = [m for m in policy.actor_body.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(400, 256), (256, 256)]
    assert any(isinstance(m, nn.ReLU) for m in policy.actor_body.modules())
    assert trainer.algo.clip_range_vf == 0.2
    lrs = []
    for progress_remaining in (1.0, 0.975, 0.95, 0.5):
        trainer.algo.set_progress(progress_remaining)
        lrs.append(trainer.algo.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([5e-4, 5e-4, 5e-4, 5e-4])

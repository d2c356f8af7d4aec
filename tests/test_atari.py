"""Atari (env=atari, rlexp/envs/atari.py): the frames equal gymnasium's reference chain, whole
games and raw scores are what gets reported while the learner sees life-long episodes and
sign-clipped rewards, and the presets train for an update."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ale_py")

from conftest import pong_game_points, record_rewards
from rlexp.envs.atari import AtariSpec, FireOnReset
from rlexp.errors import ConfigError


def play(env: gym.vector.VectorEnv, actions: np.ndarray, seed: int) -> list[tuple]:
    obs, info = env.reset(seed=seed)
    out = [(obs.copy(), None, None, None, info)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs.copy(), np.asarray(reward).copy(), terminated.copy(), truncated.copy(), info))
    return out


def gymnasium_reference(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """gymnasium's own AtariPreprocessing + FrameStackObservation (zero padding), no no-ops."""
    pytest.importorskip("cv2")
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    def one() -> gym.Env:
        env = FireOnReset(gym.make(env_id, frameskip=1, repeat_action_probability=0.0))
        env = AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False, grayscale_obs=True)
        return FrameStackObservation(env, 4, padding_type="zero")

    return gym.vector.SyncVectorEnv([one] * num_envs)


def test_ale_frames_equal_the_gymnasium_reference_chain():
    """Same seed, same actions, no no-ops (their count is random, from another generator in
    each): ale-py's vector env and gymnasium's chain give the same frames, raw rewards and
    episode ends, across whole games and the autoresets after them."""
    ours = AtariSpec(id="ALE/Breakout-v5", num_envs=2, noop_max=0).make(training=False)
    reference = gymnasium_reference("ALE/Breakout-v5", 2)
    actions = np.random.default_rng(0).integers(0, 4, size=(700, 2))
    a, b = play(ours, actions, seed=3), play(reference, actions, seed=3)
    assert ours.single_observation_space == reference.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    games = 0
    for t, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(x[0], y[0], err_msg=f"frames differ at step {t}")
        if t:
            np.testing.assert_array_equal(x[1], y[1])
            np.testing.assert_array_equal(x[2], y[2])
            np.testing.assert_array_equal(x[3], y[3])
            games += int(x[2].sum())
    assert games >= 2  # whole games ended (and reset) on the way
    assert a[0][0][:, :3].max() == 0 and a[0][0][:, 3].max() > 0  # zeros stacked before the first frame
    ours.close(), reference.close()


def test_reference_vectorization_gives_the_same_games():
    ale = AtariSpec(id="ALE/Breakout-v5", num_envs=2, noop_max=0).make(training=False)
    sync = AtariSpec(id="ALE/Breakout-v5", num_envs=2, noop_max=0, vectorization="sync").make(training=False)
    actions = np.random.default_rng(1).integers(0, 4, size=(200, 2))
    for x, y in zip(play(ale, actions, seed=5), play(sync, actions, seed=5)):
        np.testing.assert_array_equal(x[0], y[0])


def test_noop_reset_is_random_per_env_and_seeded():
    spec = AtariSpec(id="ALE/Breakout-v5", num_envs=8, noop_max=30)
    env = spec.make(training=False)
    obs1, info1 = env.reset(seed=11)
    obs2, info2 = env.reset(seed=11)
    frames = np.asarray(info1["episode_frame_number"])
    assert np.all((frames >= 1) & (frames <= 30)), frames  # up to 30 no-op frames (FIRE among them)
    assert len(set(frames.tolist())) > 1
    np.testing.assert_array_equal(obs1, obs2)
    np.testing.assert_array_equal(frames, info2["episode_frame_number"])
    env.close()


def test_life_loss_ends_the_training_episode_and_rewards_are_clipped_for_training_only():
    """Space Invaders: 3 lives, invaders worth 5 to 30 points. The training env and the
    evaluation env play the same game; the learner sees an episode end at each lost life and
    rewards of +1, while both report one whole game with its raw score."""
    actions = np.random.default_rng(2).integers(0, 6, size=(3000, 1))
    spec = AtariSpec(id="ALE/SpaceInvaders-v5", num_envs=1)
    train, raw = spec.make(training=True), spec.make(training=False)
    t_steps, r_steps = play(train, actions, seed=7), play(raw, actions, seed=7)
    game_over = next(t for t in range(1, len(r_steps)) if r_steps[t][2][0] or r_steps[t][3][0])
    t_rewards = np.array([s[1][0] for s in t_steps[1:game_over + 1]])
    r_rewards = np.array([s[1][0] for s in r_steps[1:game_over + 1]])
    assert r_rewards.max() > 1 and set(np.unique(r_rewards)) - {0} <= {5, 10, 15, 20, 25, 30, 200}
    np.testing.assert_array_equal(t_rewards, np.sign(r_rewards))
    # the learner: an episode end at every lost life, the last one with the game
    ends = [t for t in range(1, game_over + 1) if t_steps[t][2][0]]
    lives = [int(t_steps[t][4]["lives"][0]) for t in ends]
    assert lives == [2, 1, 0] and ends[-1] == game_over
    assert not any(r_steps[t][2][0] for t in ends[:-1])  # the game went on
    # what is reported: one episode, the whole game, the raw score, in both envs
    reported = [(t, s[4]["episode"]["r"][0], s[4]["episode"]["l"][0]) for t, s in enumerate(t_steps) if s[4].get("_episode", [False])[0]]
    assert reported[0] == (game_over, r_rewards.sum(), game_over)
    assert r_steps[game_over][4]["episode"]["r"][0] == r_rewards.sum()
    train.close(), raw.close()


def test_the_trainer_reports_raw_whole_game_scores(compose_cfg, tmp_path):
    from rlexp.run.trainer import Trainer

    cfg = compose_cfg("hparams=ppo_atari", "env.id=ALE/SpaceInvaders-v5", "env.num_envs=2", "algo.n_steps=256",
                      "algo.batch_size=256", "logger=none", "progress=false", "total_steps=2048", "eval.every_steps=0")
    trainer = Trainer(cfg, tmp_path)
    trainer.collector.reset(seed=0)
    finished, rewards = [], []
    for _ in range(8):
        done = trainer.collector.collect()
        finished += done
        rewards.append(trainer.rollout.rewards_env.clone())
        if finished:
            break
    assert finished, "no Space Invaders game ended in 4,096 steps"
    assert all(r % 5 == 0 and r >= 0 for r, _ in finished) and max(r for r, _ in finished) > 1
    assert set(np.unique(np.concatenate([r.numpy().ravel() for r in rewards])).tolist()) <= {0.0, 1.0}
    trainer.env.close()


def test_ppo_atari_one_update(compose_cfg, tmp_path):
    """The preset end to end for one update (8 envs x 128 steps) and one evaluation game of Pong."""
    from rlexp.networks.encoders import CnnEncoder
    from rlexp.run.trainer import Trainer

    cfg = compose_cfg("hparams=ppo_atari", "total_steps=1024", "logger=none", "progress=false", "eval.episodes=1")
    trainer = Trainer(cfg, tmp_path)
    encoder = trainer.policy.actor_encoder
    assert isinstance(encoder, CnnEncoder) and trainer.policy.critic_encoder is encoder and encoder.out_features == 512
    assert [m.kernel_size[0] for m in encoder.convs if hasattr(m, "kernel_size")] == [8, 4, 3]
    assert trainer.rollout.obs.dtype.is_floating_point is False and tuple(trainer.rollout.obs.shape) == (128, 8, 4, 84, 84)
    evaluator = trainer.evaluator  # its env made here, so that its rewards can be watched
    evaluator.env = evaluator.spec.make(num_envs=1, training=False, device=evaluator.eval_device)
    rewards = record_rewards(evaluator.env)
    summary = trainer.fit()
    assert summary["steps"] == 1024 and trainer.updates == 1 and len(summary["eval_history"]) == 1
    # the evaluation played a whole game: its raw points add up to the return, and one side reached 21
    won, lost = pong_game_points([r[0] for r in rewards])
    assert max(won, lost) == 21 and summary["eval_return_mean"] == won - lost, (summary["eval_return_mean"], won, lost)


def test_rendering_shows_the_raw_game():
    env = AtariSpec(id="ALE/Breakout-v5", num_envs=1, make_kwargs={"render_mode": "rgb_array"}).make(training=False)
    env.reset(seed=0)
    env.step(np.array([1]))
    frame = env.render()[0]
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8
    assert env.single_observation_space.shape == (4, 84, 84)
    env.close()


@pytest.mark.parametrize("override, key", [
    ("env.vectorization=gpu", "env.vectorization"),
    ("env.id=CartPole-v1", "env.id"),
    ("env.repeat_action_probability=1.5", "env.repeat_action_probability"),
    ("env.normalize_reward=true", "env.normalize_reward"),
])
def test_bad_atari_settings_name_the_key(compose_cfg, tmp_path, override, key):
    from rlexp.run.trainer import Trainer

    cfg = compose_cfg("hparams=ppo_atari", override, "logger=none")
    with pytest.raises(ConfigError) as error:
        Trainer(cfg, tmp_path)
    assert error.value.key == key and "\n" not in str(error.value)

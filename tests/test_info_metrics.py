"""env.info_metrics: values from the env's info, read where episodes end, logged as
rollout/<key> and eval/<key>, in summary.json and the HParams metrics; checked against counts
made another way (FrozenLake succeeds exactly when the episode's return is 1; ALE's frame
counter at a game's end is frame_skip times the game's length in steps)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rlexp
from rlexp.errors import ConfigError

QUIET = ["progress=false", "checkpoint.every_updates=1000000", "diagnostics=off"]


def scalars(run_dir) -> dict[str, dict[int, float]]:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_frozenlake_success_is_read_at_episode_ends(tmp_path, vectorization):
    run = tmp_path / "run"
    result = rlexp.train(["hparams=ppo_frozenlake", "env.id=info_envs:RlexpFrozenLakeSuccess-v0", f"env.vectorization={vectorization}",
                          "env.info_metrics=[is_success]", "total_steps=8192", "eval.every_steps=2048", *QUIET], run_dir=run)
    tags = scalars(run)
    success, returns = tags["rollout/is_success"], tags["rollout/episode_return"]
    # the same episodes: the share that reached the goal is their mean return (1 at the goal, else 0)
    assert set(success) == set(returns) and len(success) >= 4
    for step in success:
        assert success[step] == pytest.approx(returns[step], abs=1e-6)
    assert max(success.values()) > 0  # it learnt to reach the goal: the values are not all 0
    assert min(success.values()) < 1  # ...and it did not from the start
    eval_success, eval_returns = tags["eval/is_success"], tags["eval/return_mean"]
    assert set(eval_success) == set(eval_returns)
    for step in eval_success:
        assert eval_success[step] == pytest.approx(eval_returns[step], abs=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["info_metrics"]["eval/is_success"] == pytest.approx(summary["eval_return_mean"], abs=1e-6)
    assert tags["hparams/eval_is_success"][result["steps"]] == pytest.approx(summary["eval_return_mean"], abs=1e-6)


def test_reductions_by_map(tmp_path):
    run = tmp_path / "run"
    rlexp.train(["hparams=ppo_frozenlake", "env.id=info_envs:RlexpFrozenLakeSuccess-v0", "env.info_metrics={is_success: sum}",
                 "total_steps=2048", "eval.every_steps=2048", "env.num_envs=4", *QUIET], run_dir=run)
    tags = scalars(run)
    # sum over the evaluation's 10 episodes = 10 x the mean return (success rate)
    for step, value in tags["eval/is_success"].items():
        assert value == pytest.approx(10 * tags["eval/return_mean"][step], abs=1e-5)


@pytest.mark.slow  # 15 s: whole Atari games; the info path itself is tested on FrozenLake above
def test_ale_frame_counter_at_game_end(tmp_path):
    pytest.importorskip("ale_py")
    run = tmp_path / "run"
    rlexp.train(["hparams=ppo_atari", "env.id=ALE/Breakout-v5", "env.vectorization=ale", "env.noop_max=0", "env.fire_reset=false",
                 "env.num_envs=4", "algo.n_steps=128", "algo.batch_size=256", "algo.n_epochs=1", "total_steps=3072",
                 # one evaluation game (the test reads the rollouts' games; each Breakout game its final
                 # evaluation plays without FIRE at reset costs ~6 s here)
                 "eval.every_steps=1000000", "eval.episodes=1", "env.info_metrics=[episode_frame_number]", *QUIET], run_dir=run)
    tags = scalars(run)
    frames, lengths = tags["rollout/episode_frame_number"], tags["rollout/episode_length"]
    assert len(frames) >= 2 and set(frames) == set(lengths)
    for step in frames:
        # 4 frames per step (frame_skip), no no-op or FIRE frames at reset; the game can end inside
        # its last step's 4 frames: 4 (L - 1) < frames <= 4 L, for each game and so for their means
        assert 4 * (lengths[step] - 1) < frames[step] <= 4 * lengths[step] + 1e-6


def test_a_key_the_env_never_reports_gets_one_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="rlexp"):
        rlexp.train(["env.id=info_envs:RlexpFrozenLakeSuccess-v0", "env.info_metrics=[is_sucess]", "total_steps=1024",
                     "eval.every_steps=512", "eval.episodes=2", *QUIET], run_dir=tmp_path / "run")
    warnings = [r.getMessage() for r in caplog.records if "env.info_metrics" in r.getMessage()]
    assert len(warnings) == 1
    assert "is_sucess never appeared" in warnings[0] and "is_success" in warnings[0] and "prob" in warnings[0]


@pytest.mark.parametrize("setting, key, words", [
    ("env.info_metrics=is_success", "env.info_metrics", "write env.info_metrics=[is_success]"),
    ("env.info_metrics={is_success: median}", "env.info_metrics.is_success", "unknown reduction 'median'"),
    ("env.info_metrics=[episode]", "env.info_metrics", "return and length itself"),
])
def test_bad_settings_are_one_line(tmp_path, setting, key, words):
    with pytest.raises(ConfigError) as error:
        rlexp.train([setting, "total_steps=64", *QUIET], run_dir=tmp_path / "run")
    assert str(error.value).startswith(key) and words in str(error.value)

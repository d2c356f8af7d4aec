"""rlexp-eval on a run trained here: returns, and video through gymnasium's RecordVideo.

The run trains through rlexp-train's main() in this process, and the checks of env settings
run rlexp-eval's main() in this process (conftest.run_cli_in_process: the same code from main()
on, without 2-3 s of interpreter, torch and Hydra start-up); returns and video come from the
command started as a user does."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli, run_cli_in_process


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    result = run_cli_in_process("total_steps=30000", "progress=false", "logger=none", "eval.every_steps=10000", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


def rlexp_eval(*args):
    return subprocess.run([sys.executable, "-m", "rlexp.cli.evaluate", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SDL_VIDEODRIVER": "dummy"})


def rlexp_eval_in_process(*args):
    return run_cli_in_process(*map(str, args), module="rlexp.cli.evaluate")


def test_eval_prints_mean_and_std(trained):
    result = rlexp_eval(trained, "episodes=5", "checkpoint=best")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("CartPole-v1: return") and "over 5 deterministic episodes" in line
    mean = float(line.split("return ")[1].split(" +/-")[0])
    assert mean >= 200  # best.pt of a 30k-step PPO run balances the pole for a long time


VIDEO_OK = importlib.util.find_spec("moviepy") is not None and importlib.util.find_spec("pygame") is not None


@pytest.mark.skipif(not VIDEO_OK, reason="video needs the 'video' extra (pygame + moviepy) for rendering and MP4 encoding")
def test_eval_writes_video(trained):
    # the trained policy balances for 500 steps: episodes cut at 50 steps (an env setting for this
    # evaluation, test_eval_changes_env_settings_for_this_evaluation_only) keep the rendering short
    result = rlexp_eval(trained / "checkpoints" / "last.pt", "episodes=2", "video=true", "video_episodes=2", "env.max_episode_steps=50")
    assert result.returncode == 0, result.stderr
    videos = sorted((trained / "videos").glob("*.mp4"))
    assert len(videos) == 2
    assert all(v.stat().st_size > 1000 for v in videos)
    assert videos[0].read_bytes()[4:8] == b"ftyp"  # an MP4 container


def test_eval_changes_env_settings_for_this_evaluation_only(trained):
    """env.<key>=<value> evaluates the run under other env settings: CartPole cut at 5 steps
    scores exactly 5 (the pole cannot fall in 5 steps from its start); the run's own config is
    left as it was."""
    before = (trained / ".hydra" / "config.yaml").read_text()
    result = rlexp_eval_in_process(trained, "episodes=3", "env.max_episode_steps=5")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert "return 5.00 +/- 0.00 over 3 deterministic episodes" in line and line.endswith("with env.max_episode_steps=5)")
    assert (trained / ".hydra" / "config.yaml").read_text() == before


@pytest.mark.parametrize("arg, message", [
    ("env.nonsense=1", "env.nonsense: the run's env config has no 'nonsense'"),
    ("env.max_episode_steps=abc", "env.max_episode_steps: Value 'abc'"),
    ("env.id=Acrobot-v1", "env: env.id=Acrobot-v1 changes the observation or action space"),
])
def test_eval_refuses_env_settings_that_do_not_fit_in_one_line(trained, arg, message):
    result = rlexp_eval_in_process(trained, "episodes=1", arg)
    assert result.returncode == 1
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]  # one line
    assert result.stderr.startswith(f"rlexp-eval: error: {message}"), result.stderr


def test_env_overrides_are_typed_as_training_types_them():
    from rlexp.config import compose_config
    from rlexp.errors import ConfigError
    from rlexp.run.episodes import with_env_overrides

    env = compose_config(["hparams=ppo_atari"]).env
    changed = with_env_overrides(env, ["env.repeat_action_probability=0.25", "env.make_kwargs.mode=1"])
    assert changed.repeat_action_probability == 0.25 and isinstance(changed.repeat_action_probability, float)
    assert changed.make_kwargs.mode == 1 and changed.frame_skip == env.frame_skip and env.repeat_action_probability == 0.0
    with pytest.raises(ConfigError, match="env.frame_skip"):
        with_env_overrides(env, ["env.frame_skip=four"])

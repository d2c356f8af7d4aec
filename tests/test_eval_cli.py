"""rlexp-eval on a run trained here: returns, and video through gymnasium's RecordVideo."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    result = run_cli("total_steps=30000", "progress=false", "logger=none", "eval.every_steps=10000", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


def rlexp_eval(*args):
    return subprocess.run([sys.executable, "-m", "rlexp.evaluate", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SDL_VIDEODRIVER": "dummy"})


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
    result = rlexp_eval(trained / "checkpoints" / "last.pt", "episodes=2", "video=true", "video_episodes=2")
    assert result.returncode == 0, result.stderr
    videos = sorted((trained / "videos").glob("*.mp4"))
    assert len(videos) == 2
    assert all(v.stat().st_size > 1000 for v in videos)
    assert videos[0].read_bytes()[4:8] == b"ftyp"  # an MP4 container

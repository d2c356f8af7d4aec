"""More of what a newcomer trips over (issue #35): an Atari run that ends with nanobind's leak
report on stderr, sweep jobs whose console lines cannot be told apart, third-party start-up
noise in an Optuna sweep, and README examples that do not run as pasted."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli

# the cheapest Atari run that trains, evaluates and checkpoints: 2 games x 128 steps, one update
ATARI_TINY = ["hparams=ppo_atari", "env.num_envs=2", "algo.n_steps=128", "algo.batch_size=128", "algo.n_epochs=1",
              "total_steps=256", "progress=false", "logger=none", "eval.episodes=1", "env.max_episode_steps=200"]


def test_atari_train_and_eval_exit_without_nanobind_leak_reports(tmp_path):
    """ale-py's vector env holds its C++ games until the Python object goes; a run's envs must
    let go of them when closed, or nanobind lists them as leaked on stderr at exit."""
    pytest.importorskip("ale_py")
    run_dir = tmp_path / "run"
    train = run_cli(*ATARI_TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    assert "eval return" in train.stdout  # the run did evaluate (an evaluation env was made)
    assert "leaked" not in train.stderr, train.stderr[-2000:]
    evaluate = subprocess.run([sys.executable, "-m", "rlexp.cli.evaluate", str(run_dir), "episodes=1", "env.max_episode_steps=200"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    assert "leaked" not in evaluate.stderr, evaluate.stderr[-2000:]

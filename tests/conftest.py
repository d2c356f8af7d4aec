"""Shared fixtures: compose configs the way rlexp-train does, and run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import rlexp.config  # noqa: F401  (registers the schemas)

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def opt_in_to_slow(request):
    """Tests marked ``slow`` (long learning runs) run only when a ``-m`` expression selects them
    (``-m slow``, ``-m "slow or not slow"``, ...); without ``-m`` they are skipped.

    pytest itself deselects the tests a ``-m`` expression does not match, so a slow test
    that reaches this fixture with ``-m`` given was selected by it and runs.
    """
    if request.node.get_closest_marker("slow") is None:
        return
    if not (request.config.getoption("-m") or "").strip():
        pytest.skip("learning test: opt in with -m slow")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture
def compose_cfg():
    """compose_cfg(*overrides) -> DictConfig, with Hydra's own config nodes available."""

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            return compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m rlexp.cli.train *args`` in a subprocess (what a user's shell runs)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "RLEXP_FULL_ERROR", "RLEXP_DEBUG")}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "rlexp.cli.train", *args],
        cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def record_rewards(env) -> list:
    """Make ``env.step`` (a vector env) keep each step's rewards, as float arrays, in the list returned."""
    import numpy as np
    import torch

    seen: list = []
    step = env.step

    def recording_step(action):
        out = step(action)
        reward = out[1]
        seen.append(np.array(reward.cpu() if isinstance(reward, torch.Tensor) else reward, dtype=float))
        return out

    env.step = recording_step
    return seen


def pong_game_points(rewards) -> tuple[int, int]:
    """(points won, points lost) in one sub-env's raw Pong rewards, checking each is -1, 0 or 1."""
    import numpy as np

    rewards = np.asarray(rewards, dtype=float)
    assert set(np.unique(rewards).tolist()) <= {-1.0, 0.0, 1.0}, f"raw Pong rewards are -1, 0 or 1: {np.unique(rewards)}"
    return int((rewards == 1).sum()), int((rewards == -1).sum())

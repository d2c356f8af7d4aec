"""Every algorithm beside PPO trains end to end from the command line, on a discrete
and a continuous environment, and leaves its summary.json.

The command's main() runs in this process (conftest.run_cli_in_process: the same code from
main() on, without 2-3 s of interpreter, torch and Hydra start-up a run), but for one case
started as a command of its own."""

from __future__ import annotations

import json
import math

import pytest

from conftest import run_cli, run_cli_in_process


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
@pytest.mark.parametrize("algo", ["reinforce", "reinforce_baseline", "a2c"])
def test_algo_trains_from_the_cli(algo, env, tmp_path):
    run = run_cli if (algo, env) == ("reinforce", "cartpole") else run_cli_in_process
    result = run(
        f"algo={algo}", f"env={env}", "total_steps=4000", "eval.episodes=2",
        f"hydra.run.dir={tmp_path}", "progress=false", "logger=none",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["steps"] >= 4000
    assert math.isfinite(summary["eval_return_mean"])

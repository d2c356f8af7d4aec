"""Learning tests (slow; opt in with ``-m slow``): with its defaults and a fixed seed,
each algorithm solves CartPole-v1 within the budget below on CPU. The final
deterministic evaluation (10 episodes) must reach the threshold, not just a peak.

Measured on 2 CPU cores (torch_threads=1), 200k steps, seeds 0-5: final eval >= 361
(REINFORCE), >= 457 (with baseline), 500 (A2C); about 10 s (REINFORCE) to 20 s (A2C) a run. See
docs/compare_algos.md for the full comparison.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow  # skipped unless -m slow (conftest.py)


@pytest.mark.parametrize(
    "algo, total_steps, threshold",
    [("reinforce", 200_000, 195), ("reinforce_baseline", 200_000, 195), ("a2c", 200_000, 475)],
)
def test_solves_cartpole(algo, total_steps, threshold, tmp_path):
    result = run_cli(
        f"algo={algo}", "env=cartpole", "seed=0", f"total_steps={total_steps}",
        f"hydra.run.dir={tmp_path}", "progress=false", "logger=none", timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    history = [round(mean) for _, mean, _ in summary["eval_history"]]
    assert summary["eval_return_mean"] >= threshold, f"{algo}: final eval {summary['eval_return_mean']:.1f}; history {history}"

"""scripts/profile_update.py: the phase table and the operator profile of real updates."""

import re

import pytest

from rlexp.analysis.profiling import profile


@pytest.mark.parametrize("fast_cpu, path", [("auto", "fast_cpu"), ("false", "autograd")])
def test_profile_reports_phases_and_operators(fast_cpu, path):
    text = profile(["seed=0", f"fast_cpu={fast_cpu}"], rollouts=2, warmup=1, top=5)
    # the RL Zoo CartPole preset: 8 envs x 32 steps, 20 epochs of one minibatch
    assert "2 rollouts of 256 env steps, 20 gradient steps each" in text
    assert f"update path: {path}" in text
    for phase in ("collection", "bootstrap value", "update", "total"):
        assert re.search(rf"^\| {phase} \| [0-9.]+ \|", text, re.M), phase
    ms = float(re.search(r"([0-9.]+) ms per gradient step", text).group(1))
    assert ms > 0
    assert "aten::" in text  # torch.profiler's operator table

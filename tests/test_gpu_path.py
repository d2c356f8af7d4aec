"""The GPU path, checked on the CPU: episode statistics read once per rollout, the
sync-free env step, eval.stop_at, and the GPU preset learning at a CPU-sized scale."""

import json

import pytest
import torch

from conftest import run_cli, run_cli_in_process
from rlexp.run.trainer import Trainer


@pytest.mark.parametrize("sync_free", [False, True])
def test_episode_statistics_of_a_rollout_match_its_episode_ends(compose_cfg, tmp_path, sync_free):
    """Torch envs' episode info is kept on the device and read once per rollout: every
    episode that ended in the rollout is reported once, with return == length (CartPole)."""
    cfg = compose_cfg("env.backend=torch", "env.num_envs=32", "algo.n_steps=200", "device=cpu", "logger=none", "progress=false")
    trainer = Trainer(cfg, tmp_path)
    trainer.env.sync_free = sync_free
    trainer.collector.reset(seed=0)
    finished = trainer.collector.collect()
    ends = trainer.rollout.terminated_env | trainer.rollout.truncated_env
    assert len(finished) == int(ends.sum()) > 32  # an untrained policy ends many short episodes
    assert all(ret == length for ret, length in finished)
    # in time order, env by env within a step: the first reported is the first to end
    t, env = [int(i) for i in ends.nonzero()[0]]
    assert finished[0][1] == t + 1  # no episode of that env ended before step t


def test_stop_at_ends_the_run_at_the_first_evaluation_that_reaches_it(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli_in_process("eval.stop_at=200", "eval.every_steps=2048", "eval.episodes=5", "progress=false", "logger=none",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    reached = [mean >= 200 for _, mean, _ in summary["eval_history"]]
    assert summary["status"] == "finished" and summary["reached_stop_at"]
    assert reached[-1] and not any(reached[:-1])  # stopped at the first one
    assert summary["steps"] == summary["eval_history"][-1][0] < 100_000
    assert (run_dir / "checkpoints" / "last.pt").exists() and "reached eval.stop_at=200" in result.stdout + result.stderr


@pytest.mark.slow
def test_gpu_preset_learns_on_cpu(tmp_path):
    """hparams=ppo_cartpole_gpu's code path (torch-native envs, big batches) end to end,
    at a CPU-sized scale, stopping at the first evaluation that reaches 475.

    Slow (opt in with ``-m slow``; 10-95 s): test_benchmark_gpu_script_runs_on_cpu below runs the same
    preset at the same scale (256 envs, batches of 2,048, an evaluation every 16,384 steps,
    eval.stop_at=475) to a solved run in the default suite, and
    test_stop_at_ends_the_run_at_the_first_evaluation_that_reaches_it checks eval.stop_at
    through the command line and summary.json."""
    run_dir = tmp_path / "run"
    result = run_cli("hparams=ppo_cartpole_gpu", "device=cpu", "env.num_envs=256", "algo.batch_size=2048", "torch_threads=2",
                     "eval.every_steps=16384", "eval.stop_at=475", "total_steps=600000", "progress=false", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["reached_stop_at"] and summary["eval_return_mean"] >= 475 and summary["steps"] < 600_000


@pytest.mark.slow  # 15 s: the GPU benchmark script's CPU path; the GPU path's mechanics are tested above
def test_benchmark_gpu_script_runs_on_cpu(tmp_path):
    """scripts/benchmark_gpu.py end to end on its CPU-sized variant: one worker process,
    a markdown table and the raw results."""
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "gpu.md"
    result = subprocess.run([sys.executable, "scripts/benchmark_gpu.py", "--device", "cpu", "--variants", "small", "--seeds", "1",
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = [line for line in out.read_text().splitlines() if line.startswith("| small |")]
    assert "| 1/1 |" in row  # solved
    (run,) = json.loads(out.with_suffix(".json").read_text())
    assert run["solved"] and run["device"] == "cpu" and run["sps"] > 0 and run["process_s"] > run["setup_s"] > 0
    assert run["evals"][-1][3] >= 475 and run["steps_to_solve"] == run["evals"][-1][0]


@pytest.mark.parametrize("backend", ["gymnasium", "torch"])
def test_evaluation_on_another_device_uses_a_fresh_copy_of_the_policy(compose_cfg, tmp_path, backend):
    """eval.device other than the training device: evaluation runs a copy of the policy
    there, refreshed from the current weights at every evaluation, and gives the returns
    the policy itself gives. ("cpu:0" is a device other than "cpu" to the trainer, so this
    runs the path a GPU run takes to evaluate on the CPU.)"""
    common = ("device=cpu", f"env.backend={backend}", "env.num_envs=4", "algo.n_steps=64", "eval.episodes=3", "logger=none", "progress=false")
    same = Trainer(compose_cfg(*common, "eval.device=same"), tmp_path / "same")
    other = Trainer(compose_cfg(*common, "eval.device=cpu:0"), tmp_path / "other")
    assert same.evaluator.eval_device == same.device and other.evaluator.eval_device != other.device
    other.policy.load_state_dict(same.policy.state_dict())
    for _ in range(2):  # the copy follows the weights from one evaluation to the next
        assert same.evaluator.returns().tolist() == other.evaluator.returns().tolist()
        assert same.evaluator.policy_on_eval_device() is same.policy
        copy = other.evaluator.policy_on_eval_device()
        assert copy is not other.policy and copy is other.evaluator.copy
        assert all(torch.equal(a, b) for a, b in zip(copy.parameters(), other.policy.parameters()))
        assert {p.data_ptr() for p in copy.parameters()}.isdisjoint(p.data_ptr() for p in other.policy.parameters())
        with torch.no_grad():
            for trainer in (same, other):
                for param in trainer.policy.parameters():
                    param.mul_(1.5)


def test_bad_eval_device_is_named(compose_cfg, tmp_path):
    from rlexp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^eval\.device: unknown device 'gpu'"):
        Trainer(compose_cfg("eval.device=gpu", "logger=none"), tmp_path)

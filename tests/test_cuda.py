"""The update runs on the configured device (skipped without CUDA)."""

import json

import pytest
import torch

from conftest import run_cli

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_trainer_puts_policy_and_rollout_on_cuda(compose_cfg, tmp_path):
    from rlexp.run.trainer import Trainer

    trainer = Trainer(compose_cfg("device=cuda", "total_steps=2048", "logger=none", "progress=false", "eval.episodes=2"), tmp_path)
    assert next(trainer.policy.parameters()).device.type == "cuda"
    assert trainer.rollout.obs.device.type == "cuda" and trainer.rollout.advantages.device.type == "cuda"
    summary = trainer.fit()
    assert summary["device"].startswith("cuda") and summary["steps"] == 2048


def test_default_experiment_on_cuda_solves_cartpole(tmp_path):
    result = run_cli("device=cuda", "progress=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["eval_return_mean"] >= 475


def test_training_on_cuda_evaluates_on_a_cpu_copy(compose_cfg, tmp_path):
    """eval.device=cpu (the default) while training on CUDA: the evaluation copy lives on
    the CPU and gives the returns that evaluating on the GPU gives (gymnasium envs: the
    same episodes either way; torch-native envs draw from each device's own generator)."""
    from rlexp.run.trainer import Trainer

    common = ("device=cuda", "total_steps=4096", "eval.episodes=4", "logger=none", "progress=false")
    on_cpu = Trainer(compose_cfg(*common), tmp_path / "cpu")
    on_gpu = Trainer(compose_cfg(*common, "eval.device=same"), tmp_path / "gpu")
    on_gpu.policy.load_state_dict(on_cpu.policy.state_dict())
    assert on_cpu.evaluator.returns().tolist() == on_gpu.evaluator.returns().tolist()
    assert next(on_cpu.evaluator.copy.parameters()).device.type == "cpu" and on_gpu.evaluator.copy is None
    native = Trainer(compose_cfg(*common, "env.backend=torch"), tmp_path / "native")
    summary = native.fit()
    assert summary["steps"] == 4096 and next(native.policy.parameters()).device.type == "cuda"
    assert next(native.eval_policy.parameters()).device.type == "cpu" and len(summary["eval_history"]) >= 1

"""The update runs on the configured device (skipped without CUDA)."""

import json

import pytest
import torch

from conftest import run_cli

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_trainer_puts_policy_and_rollout_on_cuda(compose_cfg, tmp_path):
    from rlexp.trainer import Trainer

    trainer = Trainer(compose_cfg("device=cuda", "total_steps=2048", "logger=none", "progress=false", "eval.episodes=2"), tmp_path)
    assert next(trainer.policy.parameters()).device.type == "cuda"
    assert trainer.rollout.obs.device.type == "cuda" and trainer.rollout.advantages.device.type == "cuda"
    summary = trainer.fit()
    assert summary["device"].startswith("cuda") and summary["steps"] == 2048


def test_default_experiment_on_cuda_solves_cartpole(tmp_path):
    result = run_cli("device=cuda", "progress=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["eval_return_mean"] >= 475

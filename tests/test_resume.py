"""Runs users can trust: stop (SIGTERM, SIGKILL), resume, divergence, reproducibility."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, run_cli, run_cli_in_process
from rlexp.run.checkpoint import load_checkpoint

ROLLOUT = 8 * 128  # default num_envs * n_steps
TOTAL = 48 * ROLLOUT
COMMON = [f"total_steps={TOTAL}", "checkpoint.every_updates=4", "eval.every_steps=8192", "eval.episodes=2", "progress=false"]


def start(run_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "rlexp.cli.train", *COMMON, f"hydra.run.dir={run_dir}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_checkpoint(run_dir: Path, min_step: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"training ended before the checkpoint: {proc.communicate()}"
        if last.exists():
            try:
                step = load_checkpoint(last)["global_step"]
                if step >= min_step:
                    return step
            except Exception:  # noqa: BLE001 - being renamed into place
                pass
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def assert_continuous_curves(run_dir: Path) -> None:
    steps = scalar_steps(run_dir, "loss/total")
    assert steps == [ROLLOUT * k for k in range(1, TOTAL // ROLLOUT + 1)], "curve has gaps or duplicated steps"


# SIGINT takes SIGTERM's path (rlexp.run.stopping.StopRequest handles both), and SIGTERM's checkpoint
# is the one SIGKILL must find intact: the default suite keeps SIGKILL, the others are -m slow (16 s each)
@pytest.mark.parametrize("sig,at_step", [pytest.param(signal.SIGTERM, 4 * ROLLOUT, marks=pytest.mark.slow), (signal.SIGKILL, 8 * ROLLOUT),
                                         pytest.param(signal.SIGINT, 12 * ROLLOUT, marks=pytest.mark.slow)])
def test_stop_and_resume(tmp_path, sig, at_step):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    try:
        wait_for_checkpoint(run_dir, at_step, proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # intact whatever the moment
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        # a clean stop: exit code 128 + signal, how to resume, a checkpoint of the last update
        assert proc.returncode == 128 + sig
        assert "resume=" in stderr and "Traceback" not in stderr
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        assert summary["steps"] == state["global_step"] < TOTAL

    # a command of its own, as a user's: a resume in this process within the second the stopped run
    # started would name its event file with the same time and a smaller pid, and TensorBoard reads
    # the files in name order
    result = run_cli(f"resume={run_dir}", "progress=false")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == TOTAL
    final = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert final["global_step"] == TOTAL
    # the warning signs carry on from what they saw before the stop: the run's first entropy,
    # its returns so far, and one explained variance per update of the whole run
    before, after = state["diagnostics"], final["diagnostics"]
    assert after["first_entropy"] == before["first_entropy"] > 0
    assert after["returns"][:len(before["returns"])] == before["returns"] and len(after["returns"]) > len(before["returns"])
    assert len(after["explained"]) == TOTAL // ROLLOUT
    assert_continuous_curves(run_dir)


def test_resume_refuses_other_network_shape(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli_in_process("total_steps=2048", "progress=false", "eval.episodes=2", f"hydra.run.dir={run_dir}").returncode == 0
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    result = run_cli_in_process(f"resume={run_dir}", "network.hidden_sizes=[32]", "total_steps=4096")
    assert result.returncode == 1
    assert result.stderr.startswith("rlexp-train: error: resume:") and len(result.stderr.strip().splitlines()) == 1
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before, "a refused resume must not touch the checkpoint"


def test_nan_stops_the_run_with_an_intact_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli_in_process(
        "env.id=nan_env:NanCartPole-v0", "total_steps=20000", "checkpoint.every_updates=1", "eval.every_steps=0",
        "progress=false", f"hydra.run.dir={run_dir}", env={"PYTHONPATH": str(Path(__file__).parent)},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "non-finite reward" in lines[0] and "Traceback" not in result.stderr
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    # every sub-env turns NaN after 300 of its steps: the third rollout (128 steps per env) is the first bad one
    assert state["global_step"] == 2 * ROLLOUT
    assert all(bool(p.isfinite().all()) for p in state["policy"].values())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def test_nan_in_a_loss_is_named(compose_cfg, tmp_path):
    import torch

    from rlexp.errors import TrainingError
    from rlexp.run.trainer import Trainer

    cfg = compose_cfg("total_steps=8192", "checkpoint.every_updates=1", "eval.every_steps=0", "progress=false", "logger=none", "fast_cpu=false")
    trainer = Trainer(cfg, tmp_path)
    real_loss, calls = trainer.algo.loss, {"n": 0}

    def poisoned(batch):
        terms = real_loss(batch)
        calls["n"] += 1
        if calls["n"] > 3 * trainer.algo.n_epochs * 4:  # 4 minibatches per epoch: the 4th update goes bad
            terms["loss/value"] = terms["loss/value"] * torch.tensor(float("nan"))
        return terms

    trainer.algo.loss = poisoned
    with pytest.raises(TrainingError, match="loss/value is nan"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["global_step"] == 3 * ROLLOUT
    assert all(bool(p.isfinite().all()) for p in state["policy"].values())


def test_nan_in_a_fast_cpu_loss_is_named(compose_cfg, tmp_path):
    """The same on the numpy fast path: a NaN value target in the 4th update's second
    gradient step stops the run, names term and step, and saves nothing from that update."""
    import numpy as np

    from rlexp.errors import TrainingError
    from rlexp.run.trainer import Trainer

    cfg = compose_cfg("total_steps=8192", "checkpoint.every_updates=1", "eval.every_steps=0", "progress=false", "logger=none", "fast_cpu=true")
    trainer = Trainer(cfg, tmp_path)
    real_step, calls = trainer.backend.ppo_step, {"n": 0}

    def poisoned(batch, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3 * trainer.algo.n_epochs * 4 + 2:  # 4 minibatches per epoch: the 4th update's 2nd step
            batch = batch[:5] + (np.full_like(batch[5], np.nan),)
        return real_step(batch, **kwargs)

    trainer.backend.ppo_step = poisoned
    with pytest.raises(TrainingError, match=r"^loss/value is nan at gradient step 2 in the update ending at step 4096$"):
        trainer.fit()
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["global_step"] == 3 * ROLLOUT
    assert all(bool(p.isfinite().all()) for p in state["policy"].values())


def test_same_seed_same_metrics(tmp_path):
    runs = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        result = run_cli("total_steps=8192", "eval.every_steps=4096", "eval.episodes=3", "progress=false", "seed=7", f"hydra.run.dir={run_dir}")
        assert result.returncode == 0, result.stderr[-2000:]
        acc = EventAccumulator(str(run_dir / "tb"))
        acc.Reload()
        curves = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
                  if not tag.startswith("time/") and tag != "hparams/sps"}  # wall-clock figures differ
        summary = json.loads((run_dir / "summary.json").read_text())
        runs.append((curves, summary["eval_history"], summary["episodes"]))
    assert runs[0] == runs[1]
    assert len(runs[0][0]["loss/total"]) == 8 and not any(math.isnan(v) for _, v in runs[0][0]["loss/total"])

"""The command line as a user types it: bad input fails in one line, good input runs.

The bad overrides not in FRESH_PROCESS and the CUDA message run the command's main() in this
process (conftest.run_cli_in_process: the same code from main() on, without the interpreter's
start-up); the overrides in it and the traceback on request start the command as a user does."""

import pytest
import torch

from conftest import run_cli, run_cli_in_process

BAD_OVERRIDES = [
    ("algo=nope", "algo=nope"),
    ("env.num_envs=0", "env.num_envs"),
    ("algo.clip_range=-1", "algo.clip_range"),
    ("algo.n_epochs=abc", "algo.n_epochs"),
    ("algo.clip_rnge=0.1", "algo.clip_rnge"),
    ("env.id=CartPoel-v1", "CartPole-v1"),  # suggests the close match
    ("algo.gamma=1.5", "algo.gamma"),
    ("algo.batch_size=100000", "algo.batch_size"),
    ("network.activation=swish", "network.activation"),
    ("total_steps=0", "total_steps"),
]


#: started as a command of their own: a group option Hydra cannot compose, a value the trainer's
#: checks refuse
FRESH_PROCESS = {"algo=nope", "algo.batch_size=100000"}


@pytest.mark.parametrize("override,named", BAD_OVERRIDES)
def test_bad_override_fails_in_one_line(override, named, tmp_path):
    run_dir = tmp_path / "run"
    if override in FRESH_PROCESS:
        result = run_cli(override, f"hydra.run.dir={run_dir}", timeout=120)
    else:
        result = run_cli_in_process(override, f"hydra.run.dir={run_dir}")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rlexp-train: error:")
    assert named in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not run_dir.exists(), "a run that never started must leave no directory behind"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_cuda_requested_without_gpu(tmp_path):
    result = run_cli_in_process("device=cuda", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("rlexp-train: error: device:")


def test_full_traceback_on_request(tmp_path):
    result = run_cli("env.num_envs=0", f"hydra.run.dir={tmp_path / 'run'}", env={"HYDRA_FULL_ERROR": "1"}, timeout=120)
    assert result.returncode != 0
    assert "Traceback" in result.stderr

"""A table of bad inputs: each fails with one line naming the problem, no traceback,
a non-zero exit, and nothing half-written left in place of good files.

Most cases run the command's own main() in this process (conftest.run_cli_in_process: the same
code from main() on, without 2-3 s of interpreter, torch and Hydra start-up each); the cases in
FRESH_PROCESS_CASES (a mistake Hydra's composition reports, and one the trainer's checks report
after the env packages are imported) and one evaluation case also run as a command of their own."""

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from conftest import ROOT, run_cli, run_cli_in_process

try:
    gym.make("LunarLander-v3").close()
    HAVE_BOX2D = True
except gym.error.DependencyNotInstalled:
    HAVE_BOX2D = False


def run_eval(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "rlexp.cli.evaluate", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def run_eval_in_process(*args: str) -> subprocess.CompletedProcess:
    return run_cli_in_process(*args, module="rlexp.cli.evaluate")


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("good") / "run"
    result = run_cli_in_process("total_steps=2048", "eval.episodes=2", "progress=false", "logger=none", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


def assert_one_line_error(result: subprocess.CompletedProcess, *named: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "error" in lines[0]
    for text in named:
        assert text in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


TRAIN_CASES = [
    (["algo=ppoo"], ["algo=ppoo", "ppo"]),                         # unknown option lists the valid ones
    (["env=cartpol"], ["env=cartpol", "cartpole"]),
    (["algo.n_epochs=abc"], ["algo.n_epochs"]),                    # wrong type
    (["seed=1.5"], ["seed"]),
    (["algo.learning_rate=-1e-3"], ["algo.learning_rate"]),        # out of range
    (["algo.gamma=0"], ["algo.gamma"]),
    (["algo.clip_range=0"], ["algo.clip_range"]),
    (["env.num_envs=0"], ["env.num_envs"]),
    (["algo.batch_size=4096"], ["algo.batch_size", "n_steps * num_envs"]),
    (["env.id=CartPoel-v1"], ["env.id", "CartPole-v1"]),          # unknown env id, close match suggested
    (["network.hidden_sizes=[64,0]"], ["network.hidden_sizes"]),        # [] is fine (heads read the encoder), 0 is not
    (["network.encoder=rnn"], ["network.encoder", "auto, flatten, cnn"]),
    (["eval.video_frames=0"], ["eval.video_frames", ">= 1"]),
    (["diagnostics.max_approx_kl=-1"], ["diagnostics.max_approx_kl", "> 0"]),
    (["diagnostics.early_fraction=2"], ["diagnostics.early_fraction", "[0, 1]"]),
    (["diagnostics.max_best_explained_variance=3"], ["diagnostics.max_best_explained_variance", "[-1, 1]"]),
    (["callbacks=5"], ["callbacks", "must be a list"]),
    (["logger.tensorboard.histogram_every=-1"], ["logger.tensorboard.histogram_every", ">= 0"]),
    (["network=cnn"], ["network.encoder", "cnn needs an image"]),
    (["env.id=FrozenLake-v1", "env.normalize_obs=true"], ["env.normalize_obs", "Box observations only"]),
    (["network.log_std_init=-0.5"], ["network.log_std_init", "continuous"]),  # a continuous-only setting on CartPole
    (["network.use_sde=true"], ["network.use_sde", "continuous"]),             # gSDE on CartPole
    (["env=pendulum", "network.use_sde=true", "network.sde_sample_freq=0"], ["network.sde_sample_freq", "-1"]),
    (["device=tpu"], ["device"]),
    (["resume=/nonexistent/run"], ["resume", "does not exist"]),
    (["algo.gamma=[1"], ["[1"]),                                   # unparsable override
    (["algo.learning_rate=${foo}"], ["algo.learning_rate", "'foo' not found"]),   # broken interpolations name their key
    (["env.num_envs=${algo.nope}"], ["env.num_envs", "'algo.nope'"]),
    (["algo.gamma=${oc.env:RLEXP_NO_SUCH_VAR}"], ["algo.gamma", "RLEXP_NO_SUCH_VAR"]),
]


#: also run as a command of their own: a mistake Hydra's composition reports (before the heavy
#: imports) and one the trainer's checks report (after them)
FRESH_PROCESS_CASES = {"algo=ppoo", "algo.batch_size=4096"}


@pytest.mark.parametrize("args,named", TRAIN_CASES, ids=[" ".join(a) for a, _ in TRAIN_CASES])
def test_bad_train_input(tmp_path, args, named):
    run_dir = tmp_path / "run"
    if " ".join(args) in FRESH_PROCESS_CASES:
        result = run_cli(*args, f"hydra.run.dir={run_dir}", timeout=120)
    else:
        result = run_cli_in_process(*args, f"hydra.run.dir={run_dir}")
    assert_one_line_error(result, *named)
    assert not run_dir.exists()


@pytest.mark.skipif(HAVE_BOX2D, reason="checks the message shown when Box2D is missing")
def test_missing_optional_dependency_names_the_extra(tmp_path):
    assert_one_line_error(run_cli("env=lunarlander", f"hydra.run.dir={tmp_path / 'r'}"), "env.id", 'pip install "rlexp[box2d]"')


def test_broken_yaml_names_the_file(tmp_path):
    conf = tmp_path / "conf"
    (conf / "hparams").mkdir(parents=True)
    (conf / "hparams" / "broken.yaml").write_text("# @package _global_\nalgo:\n  learning_rate: [1e-3\n")
    result = run_cli_in_process(f"--config-dir={conf}", "hparams=broken", f"hydra.run.dir={tmp_path / 'r'}")
    assert_one_line_error(result, "broken")


def test_resume_from_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli_in_process(f"resume={tmp_path / 'empty'}"), "resume", "not an rlexp run directory")


def test_resume_from_truncated_checkpoint_leaves_it_alone(good_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:2000])
    truncated = last.read_bytes()
    result = run_cli(f"resume={run_dir}", "total_steps=4096")
    assert_one_line_error(result, "resume", "not a readable rlexp checkpoint: the file is truncated or damaged")
    assert last.read_bytes() == truncated
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_eval_of_truncated_checkpoint(good_run, tmp_path):
    broken = tmp_path / "last.pt"
    broken.write_bytes((good_run / "checkpoints" / "last.pt").read_bytes()[:5000])
    assert_one_line_error(run_eval(str(broken)), "not a readable rlexp checkpoint")


class RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["RLEXP_TAMPER_MARKER"]),))


def test_tampered_checkpoint_cannot_run_code(good_run, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("RLEXP_TAMPER_MARKER", str(marker))
    state = torch.load(good_run / "checkpoints" / "last.pt", weights_only=True)
    state["payload"] = RunsCode()
    tampered = tmp_path / "tampered.pt"
    torch.save(state, tampered)
    result = run_eval_in_process(str(tampered))
    assert_one_line_error(result, "not a readable rlexp checkpoint: it holds Python objects", "do not load it")
    assert "weights_only" not in result.stderr  # torch's hint to load it unsafely is never passed on
    assert not marker.exists(), "loading a checkpoint executed code from it"


def test_eval_of_a_file_that_is_not_a_checkpoint(tmp_path):
    other = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, other)
    assert_one_line_error(run_eval_in_process(str(other)), "not an rlexp checkpoint")


@pytest.mark.parametrize("args,named", [(["/nonexistent/run"], ["no checkpoint"]), (["{run}", "episodes=0"], ["episodes"]),
                                        (["{run}", "episodes=many"], ["episodes"]), (["{run}", "checkpoint=first"], ["checkpoint"])])
def test_bad_eval_arguments(good_run, args, named):
    assert_one_line_error(run_eval_in_process(*[a.format(run=good_run) for a in args]), *named)

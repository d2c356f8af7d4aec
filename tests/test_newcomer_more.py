"""More of what a newcomer trips over (issue #35): an Atari run that ends with nanobind's leak
report on stderr, sweep jobs whose console lines cannot be told apart, third-party start-up
noise in an Optuna sweep, and README examples that do not run as pasted."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli, run_cli_in_process

# the cheapest Atari run that trains, evaluates and checkpoints: 2 games x 128 steps, one update
ATARI_TINY = ["hparams=ppo_atari", "env.num_envs=2", "algo.n_steps=128", "algo.batch_size=128", "algo.n_epochs=1",
              "total_steps=256", "progress=false", "logger=none", "eval.episodes=1", "env.max_episode_steps=200"]


def test_atari_train_and_eval_exit_without_nanobind_leak_reports(tmp_path):
    """ale-py's vector env holds its C++ games until the Python object goes; a run's envs must
    let go of them when closed, or nanobind lists them as leaked on stderr at exit."""
    pytest.importorskip("ale_py")
    run_dir = tmp_path / "run"
    train = run_cli(*ATARI_TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    assert "eval return" in train.stdout  # the run did evaluate (an evaluation env was made)
    assert "leaked" not in train.stderr, train.stderr[-2000:]
    evaluate = subprocess.run([sys.executable, "-m", "rlexp.cli.evaluate", str(run_dir), "episodes=1", "env.max_episode_steps=200"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    assert "leaked" not in evaluate.stderr, evaluate.stderr[-2000:]


SWEEP_TINY = ["total_steps=1024", "logger=none", "progress=false", "eval.every_steps=0", "eval.episodes=2"]


def test_joblib_sweep_console_lines_name_their_job(tmp_path):
    """Two jobs in parallel: each of their console lines starts with its hydra.job.num; the
    jobs' train.log files keep Hydra's format."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SWEEP_TINY,
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    job_lines = [line for line in result.stdout.splitlines() if "[rlexp]" in line]
    assert job_lines, result.stdout
    for line in job_lines:
        assert re.match(r"\[job [01]\] \[", line), line
    for number in (0, 1):
        done = [line for line in job_lines if line.startswith(f"[job {number}] ") and "done:" in line]
        assert len(done) == 1, job_lines
        (log,) = sweep.glob(f"{number}_*/train.log")
        assert log.read_text().startswith("[20"), log.read_text()[:200]  # no prefix in the file


def test_optuna_sweep_console_has_no_third_party_start_up_noise(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = run_cli("-m", "+sweep=ppo_optuna", "hydra.sweeper.n_trials=2", *SWEEP_TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    console = result.stdout + result.stderr
    assert "Best value" in console and "[job 1] " in console  # the sweep ran both trials and reported
    assert "alembic" not in console, console[:2000]
    assert "\x1b[" not in console, repr(console[:2000])  # Optuna's own colour handler
    assert "A new study created" not in console  # Optuna's INFO (the sweeper's "Study name:" line says it)


def readme_block_after(heading: str) -> str:
    """The first ```python block of the README after ``heading``."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_from_python_example_runs_as_pasted(tmp_path):
    """The block runs unchanged (its own small budget), defines everything it uses, and leaves
    its run under the working directory."""
    code = readme_block_after("## From Python")
    assert "total_steps=" in code  # the block states its budget: nothing is patched in here
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "RLEXP_FULL_ERROR", "RLEXP_DEBUG")}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(tmp_path / "outputs" / "runs") in result.stdout, result.stdout[-2000:]


def test_readme_shared_torso_example_keeps_its_torso_responsive(tmp_path):
    """The README's shared-torso Acrobot example. Acrobot pays -1 a step, so the critic's targets
    near -100 (-1/(1-gamma)); with raw rewards the critic drives the shared tanh torso into
    saturation within a few updates (the features stop depending on the observation, and the
    policy stays uniform: -500 at every evaluation). The example scales the rewards. Checked
    on the torso after 10k steps of the README's own command line (its main() in this process:
    conftest.run_cli_in_process)."""
    torch = pytest.importorskip("torch")
    import gymnasium as gym
    import numpy as np

    import rlexp

    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("rlexp-train env=acrobot network=shared_mlp"))
    args = line.split("#")[0].split()[1:]
    run_dir = tmp_path / "run"
    result = run_cli_in_process(*args, "total_steps=10240", "logger=none", "progress=false", "eval.every_steps=0", "eval.episodes=1",
                                f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    env, observations = gym.make("Acrobot-v1"), []
    obs, _ = env.reset(seed=0)
    for _ in range(500):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
    policy = rlexp.load(run_dir).policy
    assert policy.shared
    with torch.no_grad():
        features = policy.actor_body(policy.actor_encoder(torch.as_tensor(np.array(observations), dtype=torch.float32)))
    saturated = (features.abs() > 0.99).float().mean().item()
    assert saturated < 0.5, f"{saturated:.0%} of the shared torso's units saturated"


def test_readme_gru_example_says_how_long_it_takes():
    """The GRU example trains at a few hundred steps/s: its line and the text below say so."""
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("rlexp-train") and "network.recurrent=gru" in x)
    assert "total_steps=" in line or re.search(r"#.*\bmin\b", line), line
    after = readme[readme.index(line):][:1500]
    assert re.search(r"\d+ (to \d+ )?minutes", after), after

"""End to end through the CLI: PPO solves CartPole, a run leaves its files, a sweep runs.

The default run starts the command as a user does; the shorter runs and the sweep run its main()
in this process (conftest.run_cli_in_process), but for the async vectorization."""

import json

import pytest

from conftest import run_cli, run_cli_in_process


def test_default_run_solves_cartpole_and_leaves_its_files(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(f"hydra.run.dir={run_dir}", "progress=false", "seed=1")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_id"] == "CartPole-v1" and summary["algo"] == "PPO"
    assert summary["status"] == "finished"
    assert 100_000 <= summary["steps"] <= 100_000 + 8 * 128
    assert summary["eval_return_mean"] >= 475, summary
    assert summary["diagnostics"] == {}  # a healthy run shows none of the warning signs
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert (run_dir / "checkpoints" / "last.pt").stat().st_size > 0
    assert (run_dir / "checkpoints" / "best.pt").stat().st_size > 0
    log = (run_dir / "train.log").read_text()
    assert "eval return" in log and "done:" in log


def test_checkpoint_loads_safely_and_holds_the_trained_policy(tmp_path):
    from rlexp.run.checkpoint import load_checkpoint

    run_dir = tmp_path / "run"
    result = run_cli_in_process(f"hydra.run.dir={run_dir}", "progress=false", "total_steps=2048", "eval.every_steps=0", "logger=none")
    assert result.returncode == 0, result.stderr[-2000:]
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # weights_only=True
    assert state["global_step"] == 2048
    assert state["config"]["env"]["id"] == "CartPole-v1"
    assert any(k.startswith("actor_body") for k in state["policy"])


def test_multirun_basic_launcher_one_directory_per_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli_in_process(  # the command's main() in this process: the basic launcher runs the jobs here too
        "-m", "seed=0,1", "algo.clip_range=0.1,0.2", "total_steps=2048", "eval.episodes=2", "progress=false",
        "logger=none", f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.split("_")[0].isdigit())
    assert [p.name for p in jobs] == [f"{n}_ppo_cartpole-v1" for n in range(4)]  # <job number>_<algo>_<env id>
    seen = set()
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        seen.add((summary["seed"], "clip_range=0.1" in overrides))
        assert summary["steps"] == 2048
    assert seen == {(0, True), (0, False), (1, True), (1, False)}


@pytest.mark.parametrize("overrides", [["env=pendulum"], ["env=acrobot", "network=shared_mlp"], ["hparams=ppo_cartpole"],
                                       ["env.backend=torch", "env.num_envs=64"], ["env.vectorization=async", "env.num_envs=2"],
                                       ["env=pendulum", "env.backend=torch", "env.normalize_obs=false", "env.normalize_reward=false", "env.clip_obs=null"]])
def test_other_envs_and_networks_run(tmp_path, overrides):
    """The command's main() in this process (conftest.run_cli_in_process), but for the async
    vectorization, whose env workers start from a command of its own as a user's do."""
    run_dir = tmp_path / "run"
    run = run_cli if "env.vectorization=async" in overrides else run_cli_in_process
    result = run(*overrides, f"hydra.run.dir={run_dir}", "progress=false", "total_steps=3000", "eval.episodes=2", "logger=none")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] >= 3000


@pytest.mark.slow
def test_torch_backend_solves_cartpole(tmp_path):
    """Same trainer, torch-native CartPole: state, actions and rewards never leave torch.

    Slow (opt in with ``-m slow``): in the default suite test_gpu_path.py's
    test_benchmark_gpu_script_runs_on_cpu trains on the torch-native CartPole (hparams=ppo_cartpole_gpu
    at a CPU scale) to an evaluation >= 475, and test_torch_envs.py checks the envs against Gymnasium's."""
    run_dir = tmp_path / "run"
    result = run_cli("env.backend=torch", f"hydra.run.dir={run_dir}", "progress=false", "logger=none", "seed=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["eval_return_mean"] >= 475


@pytest.mark.slow
def test_autograd_path_solves_cartpole(tmp_path):
    """The default run again with fast_cpu=false: PPO's autograd loss, the specification the
    numpy fast path is checked against, must learn on its own too.

    Slow (opt in with ``-m slow``): in the default suite PPO learns through autograd wherever the
    fast path steps aside (test_mask_learning.py's masked PPO, test_spaces_learning.py's FrozenLake
    one-hot and MultiDiscrete runs), and test_fast_cpu.py checks the fast path's losses, gradients
    and Adam steps equal autograd's, the fast path solving CartPole in
    test_default_run_solves_cartpole_and_leaves_its_files."""
    run_dir = tmp_path / "run"
    result = run_cli("fast_cpu=false", f"hydra.run.dir={run_dir}", "progress=false", "logger=none", "seed=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["eval_return_mean"] >= 475

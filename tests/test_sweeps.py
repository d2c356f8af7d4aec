"""Sweeps through Hydra's own launchers and sweepers, and the report on a multirun.

Basic and joblib launchers, an Optuna search, the report (rlexp/analysis/report.py) checked against
the jobs' own summary.json, failed and missing jobs, the one-line error when a plugin is not
installed. The Ray tests are opt-in (``python -m pytest -m ray``; pip install -e ".[ray]").

The sweeps on the basic launcher (the Optuna search's too) and most reports run the command's
main() in this process (conftest.run_cli_in_process: the same code from main() on, without the
start-up); the joblib sweep and its report, the first report error and the missing plugins start
the commands as a user does.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, run_cli, run_cli_in_process

# small jobs: ~3 updates each, an evaluation every 1000 steps (curves for the report)
SMALL = ["total_steps=3000", "eval.every_steps=1000", "eval.episodes=2", "progress=false", "logger=tensorboard"]
THRESHOLD = 30.0  # low enough that some of these short runs reach it


def opt_in(request, marker: str) -> None:
    expression = request.config.getoption("-m") or ""
    if marker not in expression or f"not {marker}" in expression:
        pytest.skip(f"opt in with -m {marker}")


# -- reading a sweep back ------------------------------------------------------------------------
def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))  # <job number>[_<algo>_<env id>]


def summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def overrides(job: Path) -> dict[str, str]:
    return dict(o.lstrip("+").split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))


def first_step_at(history: list, threshold: float):
    return next((step for step, mean, _ in history if mean >= threshold), None)


def mean_std(values):
    return (float(np.mean(values)), float(np.std(values))) if values else (None, None)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(cell: str):
    return None if cell == "" else float(cell)


def make_report(sweep_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), str(sweep_dir), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def make_report_in_process(sweep_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """scripts/report.py's main() (rlexp.analysis.report.main, which the script exits with) in this
    process (conftest.run_cli_in_process), without 4-5 s of start-up (matplotlib) a call."""
    return run_cli_in_process(str(sweep_dir), *args, module="rlexp.analysis.report")


def check_two_by_two(sweep_dir: Path, launcher: str, report=make_report_in_process) -> None:
    """seed=0,1 x algo=a2c,ppo: four finished runs, and a report whose numbers are theirs."""
    jobs = job_dirs(sweep_dir)
    assert [p.name for p in jobs] == [f"{n}_{overrides(p)['algo']}_cartpole-v1" for n, p in enumerate(jobs)]  # <job number>_<algo>_<env id>
    for job in jobs:
        assert launcher in yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["launcher"]["_target_"]
        assert list((job / "tb").glob("events.out.tfevents.*")) and (job / "train.log").is_file()
        s = summary(job)
        assert s["status"] == "finished" and s["steps"] >= 3000
        assert s["algo"] == {"a2c": "A2C", "ppo": "PPO"}[overrides(job)["algo"]]
        assert s["seed"] == int(overrides(job)["seed"])
    assert {(overrides(j)["algo"], summary(j)["seed"]) for j in jobs} == {(a, s) for a in ("a2c", "ppo") for s in (0, 1)}

    result = report(sweep_dir, "--threshold", str(THRESHOLD))
    assert result.returncode == 0, result.stderr
    rows = read_csv(sweep_dir / "report.csv")
    assert [row["algo"] for row in rows] == ["a2c", "ppo"]  # grouped by the swept key, seed averaged out
    for row in rows:
        group = [summary(j) for j in jobs if overrides(j)["algo"] == row["algo"]]
        assert row["jobs"] == "2" and row["seeds"] == "2" and row["env_id"] == "CartPole-v1"
        assert sorted(row["runs"].split()) == sorted(j.name for j in jobs if overrides(j)["algo"] == row["algo"])
        for column, key in [("final_eval_return", "eval_return_mean"), ("train_time_s", "train_time_s"), ("sps", "sps")]:
            mean, std = mean_std([s[key] for s in group])
            assert number(row[f"{column}_mean"]) == pytest.approx(mean, rel=1e-9), column
            assert number(row[f"{column}_std"]) == pytest.approx(std, rel=1e-9, abs=1e-9), column
        reached = [step for step in (first_step_at(s["eval_history"], THRESHOLD) for s in group) if step is not None]
        assert number(row["threshold"]) == THRESHOLD and int(row["reached"]) == len(reached)
        mean, std = mean_std(reached)
        assert number(row["steps_to_threshold_mean"]) == mean and number(row["steps_to_threshold_std"]) == std
    md = (sweep_dir / "report.md").read_text()
    assert "| algo | seeds | final eval return | steps to 30 |" in md and "| a2c | 2/2 |" in md and "| ppo | 2/2 |" in md
    assert "Failed or missing" not in md
    assert (sweep_dir / "learning_curves.png").stat().st_size > 10_000
    assert md in result.stdout


# -- launchers -------------------------------------------------------------------------------------
def test_basic_launcher_sweep_and_report(tmp_path):
    pytest.importorskip("matplotlib")
    sweep_dir = tmp_path / "sweep"
    result = run_cli_in_process("-m", "seed=0,1", "algo=a2c,ppo", *SMALL, f"hydra.sweep.dir={sweep_dir}")  # jobs in this process
    assert result.returncode == 0, result.stderr[-2000:]
    check_two_by_two(sweep_dir, "BasicLauncher")


def test_joblib_launcher_sweep_and_report(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    pytest.importorskip("matplotlib")
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=joblib", "seed=0,1", "algo=a2c,ppo", *SMALL, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Joblib.Parallel" in result.stdout + result.stderr  # the plugin's own "Launching jobs" line
    check_two_by_two(sweep_dir, "JoblibLauncher", report=make_report)  # scripts/report.py started as a user does


def test_report_lists_failed_and_missing_jobs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli_in_process("-m", "seed=0,1,2", "algo.clip_range=0.2,-1", "total_steps=2048", "eval.episodes=2", "progress=false",
                                "logger=none", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 1  # the basic sweeper runs every job, then reports the first failure
    assert "algo.clip_range: must be > 0, got -1.0" in result.stderr
    by_setting = {(overrides(j)["seed"], overrides(j)["algo.clip_range"]): j for j in job_dirs(sweep_dir)}
    assert len(by_setting) == 6
    assert all(not (by_setting[s, "-1"] / "summary.json").exists() for s in "012")
    interrupted = by_setting["1", "0.2"] / "summary.json"
    interrupted.write_text(json.dumps({**summary(by_setting["1", "0.2"]), "status": "interrupted"}))
    shutil.rmtree(by_setting["2", "0.2"])  # this job "never ran"

    report = make_report_in_process(sweep_dir)
    assert report.returncode == 0, report.stderr
    rows = {row["algo.clip_range"]: row for row in read_csv(sweep_dir / "report.csv")}
    assert set(rows) == {"0.2", "-1"}
    assert (rows["0.2"]["jobs"], rows["0.2"]["seeds"]) == ("2", "1")
    assert number(rows["0.2"]["final_eval_return_mean"]) == summary(by_setting["0", "0.2"])["eval_return_mean"]
    assert (rows["-1"]["jobs"], rows["-1"]["seeds"], rows["-1"]["final_eval_return_mean"]) == ("3", "0", "")
    md = (sweep_dir / "report.md").read_text()
    problems = md.split("## Failed or missing jobs")[1]
    for s in "012":
        assert f"- {by_setting[s, '-1'].name} (" in problems and "no summary.json" in problems
    assert f"- {by_setting['1', '0.2'].name} (" in problems and "status 'interrupted'" in problems
    assert "seed=2 algo.clip_range=0.2" in problems and "never ran" in problems
    assert "| 0.2 | 1/2 |" in md and "| -1 | 0/3 | - |" in md


def test_report_on_a_directory_without_jobs(tmp_path):
    result = make_report(tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("report.py: error:") and len(result.stderr.splitlines()) == 1
    result = make_report_in_process(tmp_path / "nope")
    assert result.returncode == 1 and "no such directory" in result.stderr


def test_threshold_defaults_to_the_environments_own():
    from rlexp.envs import reward_threshold as env_threshold

    assert env_threshold("CartPole-v1") == 475.0
    assert env_threshold("Acrobot-v1") == -100.0
    assert env_threshold("Pendulum-v1") is None
    assert env_threshold("NoSuchEnv-v0") is None


# -- Optuna ----------------------------------------------------------------------------------------
SEARCH_SPACE = {  # conf/sweep/ppo_optuna.yaml
    "learning_rate": (1e-4, 3e-3), "n_epochs": (3, 20), "gae_lambda": (0.8, 0.99), "ent_coef": (0.0, 0.01),
}


def test_optuna_search_maximises_the_final_eval_return(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "search"
    # clip_range drawn from {0.2, -1}: the seeded sampler's second trial gets -1, a config error
    result = run_cli_in_process("-m", "+sweep=ppo_optuna", "hydra.sweeper.n_trials=4", "algo.clip_range=choice(0.2,-1.0)",
                                *SMALL, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-2000:]  # a failed trial does not end the study

    jobs = job_dirs(sweep_dir)
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    configs = [yaml.safe_load((job / ".hydra" / "config.yaml").read_text()) for job in jobs]
    proposed = {tuple(c["algo"][k] for k in (*SEARCH_SPACE, "clip_range")) for c in configs}
    assert len(proposed) == 4  # every trial got its own hyperparameters
    for c in configs:
        assert c["env"]["id"] == "CartPole-v1" and c["algo"]["_target_"].endswith("PPO") and c["total_steps"] == 3000
        for key, (low, high) in SEARCH_SPACE.items():
            assert low <= c["algo"][key] <= high, key
        assert isinstance(c["algo"]["n_epochs"], int)
    finished = [job for job in jobs if (job / "summary.json").exists()]
    assert 1 <= len(finished) < 4
    assert all(overrides(job)["algo.clip_range"] == "-1.0" for job in jobs if job not in finished)

    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best_return = max(summary(job)["eval_return_mean"] for job in finished)
    assert results["best_value"] == best_return
    best = [job for job in finished if summary(job)["eval_return_mean"] == best_return]
    assert any(all(math.isclose(float(overrides(job)[k]), float(v)) for k, v in results["best_params"].items()) for job in best)

    report = make_report_in_process(sweep_dir)
    assert report.returncode == 0, report.stderr
    md = (sweep_dir / "report.md").read_text()
    assert f"Best value: {best_return}" in md and "algo.learning_rate=" in md.split("## Optuna search")[1]
    rows = read_csv(sweep_dir / "report.csv")
    assert len(rows) == 4 and number(rows[0]["final_eval_return_mean"]) == best_return  # best first
    assert "## Failed or missing jobs" in md


def test_optuna_sweep_config_composes(compose_cfg):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from conftest import CONF

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=["+sweep=ppo_optuna"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and str(sweeper.direction) in ("maximize", "Direction.maximize")
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
    assert sweeper.n_trials <= 20 and sweeper.max_failure_rate == 1.0
    assert set(sweeper.params) == {f"algo.{k}" for k in (*SEARCH_SPACE, "clip_range")}
    job = compose_cfg("+sweep=ppo_optuna", "algo.learning_rate=0.001", "algo.n_epochs=5")  # a trial composes
    assert job.algo.n_epochs == 5 and job.env.id == "CartPole-v1"


# -- a missing plugin: one line saying what to install -------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["hydra/launcher=joblib", "seed=0,1"],
     'hydra/launcher=joblib: the Hydra plugin hydra-joblib-launcher is not installed; pip install -e ".[sweep]"'),
    (["+sweep=ppo_optuna"],
     'hydra/sweeper=optuna: the Hydra plugin hydra-optuna-sweeper is not installed; pip install -e ".[sweep]"'),
    (["hydra/launcher=ray_local", "seed=0,1"],
     'hydra/launcher=ray: the Hydra plugin hydra-ray-launcher is not installed; pip install -e ".[ray]"'),
    (["hydra/launcher=submitit_slurm", "seed=0,1"],
     "hydra/launcher=submitit_slurm: the Hydra plugin hydra-submitit-launcher is not installed; pip install hydra-submitit-launcher"),
])
def test_missing_plugin_says_what_to_install(tmp_path, args, message):
    # an empty regular package named hydra_plugins hides every installed plugin from Hydra
    (tmp_path / "hydra_plugins").mkdir()
    (tmp_path / "hydra_plugins" / "__init__.py").write_text("")
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", *args, "total_steps=100", f"hydra.sweep.dir={sweep_dir}", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip() == f"rlexp-train: error: {message}"
    assert not sweep_dir.exists()


# -- Ray (opt in: python -m pytest -m ray) --------------------------------------------------------------
@pytest.mark.ray
def test_ray_local_launcher_sweep_on_loopback(request, tmp_path):
    opt_in(request, "ray")
    pytest.importorskip("ray")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    pytest.importorskip("matplotlib")
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2", "seed=0,1", "algo=a2c,ppo",
                     *SMALL, f"hydra.sweep.dir={sweep_dir}", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Started a local Ray instance" in result.stderr
    check_two_by_two(sweep_dir, "RayLauncher")
    for job in job_dirs(sweep_dir):  # every job ran on a Ray node whose address is loopback
        assert "Ray node address 127.0.0.1 (loopback only)" in (job / "train.log").read_text()


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ray
def test_ray_cluster_launcher_connects_to_an_existing_cluster(request, tmp_path):
    opt_in(request, "ray")
    pytest.importorskip("ray")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    pytest.importorskip("matplotlib")
    # a one-node "cluster" of our own, on loopback only; stopped through its own process below
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    port = free_loopback_port()
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", "--block"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _listening("127.0.0.1", port):
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(0.5)
        sweep_dir = tmp_path / "sweep"
        # ray start (2.60) turns on token authentication; a client sends its token only when told to
        result = run_cli("-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
                         "seed=0,1", "algo=a2c,ppo", *SMALL, f"hydra.sweep.dir={sweep_dir}",
                         env={"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Connected to Ray cluster" in result.stderr
        check_two_by_two(sweep_dir, "RayLauncher")
    finally:
        head.send_signal(signal.SIGTERM)  # --block: stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def test_ray_cluster_needs_an_address(tmp_path):
    """No address: an error before Ray starts, not a Ray instance started here by surprise."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HYDRA_FULL_ERROR", "RLEXP_FULL_ERROR", "RLEXP_DEBUG")}
    sweep_dir = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "-m", "rlexp.cli.train", "-m", "hydra/launcher=ray_cluster", "seed=0,1",
                             f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Environment variable 'RAY_ADDRESS' not found" in result.stderr and "Ray" not in result.stdout
    assert not sweep_dir.exists()

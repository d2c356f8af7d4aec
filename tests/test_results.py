"""The algorithm-comparison sweep and reading a multirun back (rlexp/analysis/results.py, scripts/plot.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import CONF, ROOT
from rlexp.analysis.results import (EVAL_TAG, Curve, Job, expected_jobs, first_step_at, group_by_setting, load_multirun,
                                    mean_std_curve, plot_learning_curves, resample)


def test_compare_algos_sweep_launches_every_algorithm_on_three_seeds(tmp_path, compose_cfg):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="config", overrides=["+sweep=compare_algos"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    OmegaConf.save(cfg, tmp_path / "multirun.yaml")  # what Hydra saves at the top of a multirun

    jobs = expected_jobs(tmp_path)
    assert len(jobs) == 12
    assert {tuple(sorted(o for o in job if o.split("=")[0] in ("algo", "seed"))) for job in jobs} == {
        (f"algo={a}", f"seed={s}") for a in ("reinforce", "reinforce_baseline", "a2c", "ppo") for s in (0, 1, 2)
    }
    for job in jobs[::3]:  # one seed of each algorithm composes as the job would
        job_cfg = compose_cfg(*job)
        assert job_cfg.env.id == "CartPole-v1"
        assert job_cfg.algo._target_.rsplit(".", 1)[1] in ("REINFORCE", "REINFORCEWithBaseline", "A2C", "PPO")


def test_first_step_at_and_resampling():
    curve = Curve(np.array([10.0, 20.0, 30.0]), np.array([1.0, 2.0, 3.0]), np.array([100.0, 195.0, 150.0]))
    assert first_step_at(curve, 195) == 20.0
    assert first_step_at(curve, 196) is None
    # a sparse series is interpolated, a dense one averaged within grid cells
    np.testing.assert_allclose(resample(np.array([0.0, 10.0]), np.array([0.0, 10.0]), np.array([0.0, 5.0, 10.0])), [0, 5, 10])
    x = np.arange(100.0)
    np.testing.assert_allclose(resample(x, np.where(x % 2 == 0, 1.0, 3.0), np.array([0.0, 50.0, 99.0])), [2, 2, 2], atol=0.1)
    grid, mean, std = mean_std_curve([curve, Curve(curve.steps, curve.wall, curve.values + 10)], "steps", points=3)
    np.testing.assert_allclose(mean, [105, 200, 155])
    np.testing.assert_allclose(std, [5, 5, 5])


def test_a_wall_time_panel_says_how_many_seeds_it_averages(tmp_path, monkeypatch):
    """A resumed run's record has no wall times: the wall-time panels average the other seeds
    and their legend says how many, where the steps panel counts them all."""
    import matplotlib.figure

    steps = np.array([10.0, 20.0, 30.0])
    timed = Curve(steps, np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    resumed = Curve(steps, np.full(3, np.nan), np.array([2.0, 3.0, 4.0]))
    jobs = [Job(tmp_path / str(i), i, [], "ppo", i, curves={EVAL_TAG: c}) for i, c in enumerate((timed, timed, resumed))]
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    plot_learning_curves({"row": jobs}, tmp_path / "row.png")
    steps_ax, wall_ax = saved[0].axes[:2]
    legend = lambda ax: [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
    assert legend(steps_ax) == ["row (n=3)"]
    assert legend(wall_ax) == ["row (n=2)"]
    np.testing.assert_allclose(wall_ax.lines[0].get_ydata()[[0, -1]], [1.0, 3.0])  # the two timed seeds only


# -- a synthetic multirun -------------------------------------------------------------------
EVAL = {  # (algo, seed) -> eval returns at steps 10k, 20k, 30k
    ("fast", 0): [100, 200, 480], ("fast", 1): [150, 300, 500],
    ("slow", 0): [200, 150, 190], ("slow", 1): [50, 60, 70],
}


def write_job(root, num, algo, seed, finished=True):
    from torch.utils.tensorboard import SummaryWriter

    job = root / f"{num}_{algo}_seed{seed}"
    (job / ".hydra").mkdir(parents=True)
    overrides = [f"algo={algo}", f"seed={seed}", "+sweep=test"]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}, "runtime": {"choices": {"algo": algo}}}}))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "algo": {"_target_": algo}}))
    if not finished:
        return
    writer = SummaryWriter(log_dir=str(job / "tb"))
    for i, value in enumerate(EVAL[algo, seed]):
        for k in range(10):  # ten training episodes per eval period
            writer.add_scalar("rollout/episode_return", value / 2, global_step=i * 10_000 + 1000 * k)
        writer.add_scalar("eval/return_mean", value, global_step=(i + 1) * 10_000)
    writer.close()
    summary = {"status": "finished", "env_id": "CartPole-v1", "eval_return_mean": EVAL[algo, seed][-1],
               "train_time_s": 10.0 + seed, "sps": 3000.0, "eval_history": []}
    (job / "summary.json").write_text(json.dumps(summary))


def test_plot_script_on_a_multirun_with_a_failed_and_a_missing_job(tmp_path):
    pytest.importorskip("matplotlib")
    root = tmp_path / "multirun"
    root.mkdir()
    sweep = {"hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                                   "params": {"algo": "fast,slow", "seed": "0,1,2"}},
                       "overrides": {"task": ["+sweep=test"]}}}
    (root / "multirun.yaml").write_text(yaml.safe_dump(sweep))
    for num, (algo, seed) in enumerate([("fast", 0), ("fast", 1), ("fast", 2), ("slow", 0), ("slow", 1)]):
        write_job(root, num, algo, seed, finished=(algo, seed) in EVAL)  # fast seed 2 "crashed"; slow seed 2 never ran

    run = load_multirun(root)
    assert [job.path.name for job in run.finished()] == ["0_fast_seed0", "1_fast_seed1", "3_slow_seed0", "4_slow_seed1"]
    assert list(group_by_setting(run.jobs)) == ["fast", "slow"]
    assert run.missing == ["algo=slow seed=2 +sweep=test"]

    png, md = tmp_path / "curves.png", tmp_path / "table.md"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "plot.py"), str(root), "--png", str(png), "--md", str(md)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert png.stat().st_size > 10_000
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md.read_text().splitlines()
            if line.startswith("| fast") or line.startswith("| slow")}
    # seeds, final eval, steps to 195, steps to 475, train time, steps/s
    assert rows["fast"][:4] == ["2/3", "490.0 ± 10.0", "20,000 ± 0", "30,000 ± 0"]
    assert rows["slow"][:4] == ["2/2", "130.0 ± 60.0", "10,000 ± 0 (1/2 reached)", "never"]
    assert rows["fast"][4] == "10.5 ± 0.5"
    assert "2_fast_seed2" in md.read_text() and "no summary.json" in md.read_text()
    assert "algo=slow seed=2" in md.read_text()


def write_game_run(path, env_id, seed, history):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"env_id": env_id, "seed": seed, "eval_history": [[s, r, 0.0] for s, r in history]}))


def test_plot_per_game_draws_one_panel_per_env_and_averages_the_seeds_that_evaluated(tmp_path):
    pytest.importorskip("matplotlib")
    import importlib.util

    spec = importlib.util.spec_from_file_location("plot_per_game", ROOT / "scripts" / "plot_per_game.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_game_run(tmp_path / "runs" / "a_seed0", "Game/A-v1", 0, [(100, 1.0), (200, 3.0), (300, 5.0)])
    write_game_run(tmp_path / "runs" / "a_seed1", "Game/A-v1", 1, [(100, 2.0), (200, 6.0)])  # stopped early
    write_game_run(tmp_path / "runs" / "b_seed0", "Game/B-v1", 0, [(100, 10.0)])
    (tmp_path / "runs" / "c_seed0").mkdir()  # no summary.json: left out
    runs = module.load(str(tmp_path / "runs" / "a_seed?"))
    assert module.mean_curve(runs) == ([100, 200, 300], [1.5, 4.5, 5.0])

    script = [sys.executable, str(ROOT / "scripts" / "plot_per_game.py")]
    png = tmp_path / "games.png"
    ok = subprocess.run([*script, "--out", str(png), "--group", "preset", str(tmp_path / "runs" / "*"), "--ref", "Game/A-v1=4",
                         "--ref", "Game/B-v1=100:9", "--ref", "Game/B-v1=200:12"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "(2 environments)" in ok.stdout and png.stat().st_size > 10_000
    bad_ref = subprocess.run([*script, "--out", str(tmp_path / "x.png"), "--group", "p", str(tmp_path / "runs" / "*"), "--ref", "Game/A-v1"],
                             capture_output=True, text=True, timeout=120)
    assert bad_ref.returncode == 2 and "--ref 'Game/A-v1' must be ENV_ID=SCORE or ENV_ID=STEP:SCORE" in bad_ref.stderr
    none = subprocess.run([*script, "--out", str(tmp_path / "y.png"), "--group", "p", str(tmp_path / "nothing*")],
                          capture_output=True, text=True, timeout=120)
    assert none.returncode == 1 and "no run with an evaluation history" in none.stderr
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()

"""Optuna searches that prune (hydra/sweeper=optuna_pruning: rlexp/cli/optuna_sweeper.py, the
trial's side rlexp/cli/optuna_trial.py), read back from the study's SQLite storage with Optuna's
own API: a pruner's decision stops the run and the study records the trial PRUNED with what it
reported; the last evaluation is never pruned; a small search on the joblib launcher leaves
every trial in the storage, each with its job's evaluations; the presets compose.

The pruner here is tests/optuna_pruners.py's PruneFrom, whose decisions are known in advance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli

optuna = pytest.importorskip("optuna")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

from hydra.core.utils import JobReturn, JobStatus  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from optuna_pruners import PruneFrom  # noqa: E402

from rlexp.cli.optuna_sweeper import tell_trial  # noqa: E402
from rlexp.cli.optuna_trial import PRUNED_AT, OptunaPruning, load_trial, storage_url  # noqa: E402

# rollouts of 4 envs x 32 steps = 128 env steps; an evaluation every 256 (after every 2nd update)
SMALL = ["env.num_envs=4", "algo.n_steps=32", "algo.batch_size=64", "algo.n_epochs=2", "eval.every_steps=256",
         "eval.episodes=2", "progress=false", "diagnostics=off"]


def reported(summary: dict) -> dict[int, float]:
    """What a run's evaluations were, as the intermediate values its trial should hold."""
    return {step: mean for step, mean, _ in summary["eval_history"]}


def job_return(value) -> JobReturn:
    ret = JobReturn()
    ret.status, ret.return_value = JobStatus.COMPLETED, value
    return ret


def trial_run(tmp_path: Path, pruner, total_steps: int):
    """Ask a study in SQLite for a trial (the sweeper's side), train a run reporting to it from
    the trial as a job finds it in the storage, and tell the study the job's end."""
    import rlexp

    url = storage_url("sqlite:///study.db", tmp_path)
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    number = study.ask().number
    callback = OptunaPruning(load_trial(url, "s", number, pruner))
    result = rlexp.train([*SMALL, f"total_steps={total_steps}"], callbacks=[callback], run_dir=tmp_path / "run")
    assert tell_trial(optuna.load_study(study_name="s", storage=url), number, job_return(result["eval_return_mean"])) is None
    (trial,) = optuna.load_study(study_name="s", storage=url).trials  # a reader of its own
    return result, trial


def test_the_storage_is_a_file_every_trial_reaches(tmp_path):
    url = storage_url("sqlite:///sub/study.db", tmp_path)
    assert url == f"sqlite:///{tmp_path.resolve()}/sub/study.db" and (tmp_path / "sub").is_dir()
    assert storage_url(f"sqlite:///{tmp_path}/a.db", "/elsewhere") == f"sqlite:///{tmp_path}/a.db"
    assert storage_url("postgresql://user:pw@db:5432/optuna", tmp_path) == "postgresql://user:pw@db:5432/optuna"
    for shared_by_none in (None, "", "sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ValueError, match="hydra.sweeper.storage"):
            storage_url(shared_by_none, tmp_path)


def test_a_pruned_trial_stops_its_run_and_the_study_records_it_pruned(tmp_path):
    result, trial = trial_run(tmp_path, PruneFrom(512), total_steps=2048)
    summary = result.summary
    assert summary["steps"] == 512 and summary["stopped_by"] == "OptunaPruning"  # of 2048
    assert [step for step, _, _ in summary["eval_history"]] == [256, 512]
    assert trial.state is TrialState.PRUNED
    assert trial.intermediate_values == reported(summary)
    assert trial.user_attrs[PRUNED_AT] == 512
    assert trial.value == summary["eval_history"][-1][1]  # Optuna keeps a pruned trial's last report
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 512


def test_the_last_evaluation_is_reported_but_never_pruned(tmp_path):
    result, trial = trial_run(tmp_path, PruneFrom(256), total_steps=256)  # its one evaluation is its last
    assert result.summary["steps"] == 256 and "stopped_by" not in result.summary
    assert trial.state is TrialState.COMPLETE and PRUNED_AT not in trial.user_attrs
    assert trial.intermediate_values == reported(result.summary) == {256: trial.value}
    assert trial.value == result["eval_return_mean"]


def test_a_pruned_run_ends_with_status_pruned(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    result, _ = trial_run(tmp_path, PruneFrom(512), total_steps=2048)
    assert result["status"] == "pruned"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "pruned"
    acc = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    # TensorBoard's HParams has no status for it: no session end, shown UNKNOWN, apart from the
    # finished (SUCCESS) and failed (FAILURE) runs
    assert "_hparams_/session_start_info" in tags and "_hparams_/session_end_info" not in tags
    assert [e.step for e in acc.Scalars("hparams/final_eval_return")] == [512]


@pytest.fixture(scope="module")
def small_search(tmp_path_factory):
    """A 4-trial search on the joblib launcher: trials 1 and 3 are pruned at their evaluation at
    step 512; 0 and 2 run their 1024 steps. Its sweep directory and its study's storage."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    tmp_path = tmp_path_factory.mktemp("search")
    sweep_dir, db = tmp_path / "search", tmp_path / "study.db"
    result = run_cli("-m", "+sweep=ppo_optuna_pruning", "hydra.sweeper.n_trials=4", *SMALL, "total_steps=1024",
                     f"hydra.sweeper.storage=sqlite:///{db}", f"hydra.sweep.dir={sweep_dir}",
                     "hydra/sweeper/pruner=none", "hydra.sweeper.pruner._target_=optuna_pruners.PruneFrom",
                     "+hydra.sweeper.pruner.step=512", "+hydra.sweeper.pruner.trials=[1,3]",
                     env={"PYTHONPATH": str(ROOT / "tests")})  # TensorBoard on: the records read it
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir, db


def test_a_small_search_on_joblib_keeps_every_trial_in_its_storage(small_search):
    sweep_dir, db = small_search
    study = optuna.load_study(study_name="ppo_cartpole_pruned", storage=f"sqlite:///{db}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE, TrialState.PRUNED]
    for trial in trials:
        job = sweep_dir / str(trial.number)  # a fresh study: trial n is job n
        hydra_cfg = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["job"]["env_set"]["RLEXP_OPTUNA_TRIAL"] == str(trial.number)
        assert hydra_cfg["launcher"]["_target_"].endswith("JoblibLauncher")
        summary = json.loads((job / "summary.json").read_text())
        job_overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        assert {k: float(job_overrides[k]) for k in trial.params} == trial.params  # the trial's own hyperparameters ran
        assert trial.intermediate_values == reported(summary)  # every evaluation, from the job's process
        if trial.state is TrialState.PRUNED:
            assert summary["steps"] == trial.user_attrs[PRUNED_AT] == 512 and summary["stopped_by"] == "OptunaPruning"
            assert trial.value == summary["eval_history"][-1][1]
        else:
            assert summary["steps"] == 1024 and PRUNED_AT not in trial.user_attrs
            assert trial.value == summary["eval_return_mean"]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"] == {"complete": 2, "pruned": 2, "fail": 0}
    best = max((t for t in trials if t.state is TrialState.COMPLETE), key=lambda t: t.value)
    assert results["best_value"] == best.value and results["best_params"] == best.params
    assert math.isfinite(results["best_value"])


def test_the_pruning_presets_compose():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from conftest import CONF

    def sweeper(*overrides: str):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONF), version_base=None):
                cfg = compose(config_name="config", overrides=["+sweep=ppo_optuna_pruning", *overrides], return_hydra_config=True)
        finally:
            GlobalHydra.instance().clear()
        return cfg, cfg.hydra.sweeper

    cfg, s = sweeper()
    assert s._target_ == "hydra_plugins.rlexp_optuna_pruning.optuna_pruning_sweeper.OptunaPruningSweeper"
    assert s.pruner._target_ == "optuna.pruners.SuccessiveHalvingPruner" and s.pruner.min_resource == cfg.eval.every_steps
    assert s.sampler._target_ == "optuna.samplers.TPESampler" and s.sampler.seed == 0
    assert s.storage == "sqlite:///outputs/optuna.db" and s.n_trials == 16 and s.direction == "maximize"
    assert set(s.params) == {"algo.learning_rate", "algo.ent_coef"}
    assert cfg.total_steps == 100_000 and cfg.algo.n_epochs == 20 and cfg.env.num_envs == 8  # hparams=ppo_cartpole
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert sweeper("hydra/sweeper/pruner=median")[1].pruner._target_ == "optuna.pruners.MedianPruner"
    assert sweeper("hydra/sweeper/pruner=none")[1].pruner._target_ == "optuna.pruners.NopPruner"
    assert sweeper("hydra/launcher=basic")[0].hydra.launcher._target_.endswith("BasicLauncher")


def test_a_search_becomes_one_record_per_trial_and_a_row_of_the_results_page(small_search, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_page", ROOT / "scripts" / "results_page.py")
    results_page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_page)
    sweep_dir, _ = small_search
    paths = results_page.record_multirun(sweep_dir, "optuna", tmp_path / "data", name="small")
    assert sorted(p.name for p in paths) == ["trial0.json", "trial1.json", "trial2.json", "trial3.json"]
    records = {json.loads(p.read_text())["trial"]: json.loads(p.read_text()) for p in paths}
    assert [records[n]["status"] for n in range(4)] == ["finished", "pruned", "finished", "pruned"]
    assert [records[n]["steps"] for n in range(4)] == [1024, 512, 1024, 512]
    for n, record in records.items():
        overrides = dict(o.split("=", 1) for o in record["overrides"])
        assert float(overrides["algo.learning_rate"]) == record["config"]["algo"]["learning_rate"]
        assert record["started_at"] > 1.7e9 and record["wall_time_s"] > 0  # Unix seconds; seconds since its start
        command = record["command"].split()  # the search's command line, not one trial's
        assert command[:3] == ["python", "-m", "rlexp.cli.train"] and "+sweep=ppo_optuna_pruning" in command
        assert "total_steps=1024" in command and "hydra.sweeper.n_trials=4" in command
        assert not [arg for arg in command if "learning_rate" in arg or "RLEXP_OPTUNA_TRIAL" in arg or "MULTIRUN" in arg]

    groups = results_page.load_records(tmp_path / "data")
    (row,) = results_page.optuna_table(groups, {})[2:]
    cells = [c.strip() for c in row.strip("|").split("|")]
    best = max((0, 2), key=lambda n: records[n]["final_eval"]["mean"])
    assert cells[1] == "2 / 2" and cells[2] == "3,072 (100.0% of the most)"
    assert cells[3].startswith(f"{records[best]['final_eval']['mean']:.1f} (trial {best}: ")
    assert "learning_rate=" in cells[3] and "ent_coef=" in cells[3]
    first = min(r["started_at"] for r in records.values())
    last = max(r["started_at"] + r["wall_time_s"] for r in records.values())
    assert cells[4] == f"{last - first:,.0f} s"
    trials = results_page.optuna_trials_table(groups, {}, "small")[2:]
    assert [line.split("|")[1].strip() for line in trials] == ["0", "1", "2", "3"]
    assert trials[1].rstrip(" |").endswith(f"pruned: {records[1]['final_eval']['mean']:.1f} at 512")
    assert trials[2].rstrip(" |").endswith(f"{records[2]['final_eval']['mean']:.1f} at 1,024")

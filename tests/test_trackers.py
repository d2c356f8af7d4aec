"""Several loggers at once (issue #33): logger=[tensorboard,mlflow,wandb]. An MLflow run, read back
with mlflow's MlflowClient, and an offline W&B run, read back from its .wandb file with W&B's own
record schema (tests/wandb_records.py), hold the scalars TensorBoard holds, at the same steps, with
the run's config and final metrics; resume continues the same MLflow and W&B run."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_cli
from rlexp import Callback
from rlexp.config import compose_config
from rlexp.run import records
from rlexp.run.logger import Loggers, NullLogger, logger_nodes, make_logger
from rlexp.run.trainer import Trainer

STEPS_PER_UPDATE = 128  # 2 envs x 64 steps
TINY = ["env.num_envs=2", "algo.n_steps=64", "algo.batch_size=64", "total_steps=512", "eval.every_steps=256", "eval.episodes=2",
        "progress=false", "checkpoint.every_updates=2"]
STEPS = [STEPS_PER_UPDATE * k for k in range(1, 5)]


# -- the config layout and the interface (no extras needed) -------------------------------------
def test_each_chosen_logger_is_its_own_node(compose_cfg):
    def chosen(*overrides):
        return [key for key, _ in logger_nodes(compose_cfg(*overrides).logger)]

    assert chosen() == ["logger.tensorboard"]
    assert chosen("logger=tensorboard") == ["logger.tensorboard"]
    assert chosen("logger=none") == []
    assert chosen("logger=[tensorboard,mlflow,wandb]") == ["logger.tensorboard", "logger.mlflow", "logger.wandb"]
    assert chosen("logger=[mlflow]", "logger.mlflow.experiment=x") == ["logger.mlflow"]
    cfg = compose_cfg("logger=[tensorboard,wandb]", "logger.tensorboard.histogram_every=3", "logger.wandb.histogram_every=5")
    assert (cfg.logger.tensorboard.histogram_every, cfg.logger.wandb.histogram_every) == (3, 5)
    # a run saved before several loggers existed: one node with its _target_ still builds
    old = OmegaConf.create({"_target_": "rlexp.run.logger.TensorBoardLogger", "subdir": "tb", "flush_secs": 10, "histogram_every": 10})
    assert [key for key, _ in logger_nodes(old)] == ["logger"]
    with pytest.raises(Exception, match=r"^logger\.mlflow: must be a logger's config with a _target_"):
        logger_nodes(OmegaConf.create({"mlflow": {"tracking_uri": "x"}}))


def test_a_saved_single_node_config_builds_its_logger(compose_cfg, tmp_path):
    cfg = compose_cfg()
    tensorboard = OmegaConf.to_container(cfg.logger.tensorboard)
    OmegaConf.set_struct(cfg, False)
    cfg.logger = {**tensorboard, "_target_": "rlexp.logger.TensorBoardLogger"}  # the layout and target of rlexp 0.1
    sink = make_logger(cfg, tmp_path)
    sink.log({"x": 1.0}, 1)
    sink.close()
    assert type(sink).__name__ == "TensorBoardLogger" and any((tmp_path / "tb").iterdir())


class Recording(NullLogger):
    def __init__(self, histogram_every=0, fail_close=False):
        super().__init__()
        self.histogram_every, self.fail_close, self.calls = histogram_every, fail_close, []

    def log_config(self, config):
        self.calls.append(("config", dict(config)))

    def log(self, metrics, step):
        self.calls.append(("log", dict(metrics), step))

    def histograms(self, values, step):
        self.calls.append(("histograms", step))

    def end_hparams(self, status, metrics, step):
        self.calls.append(("end", status, step))

    def close(self):
        self.calls.append(("close",))
        if self.fail_close:
            raise RuntimeError("close failed")


def test_loggers_forward_every_call_and_close_all():
    first, second, third = Recording(histogram_every=0, fail_close=True), Recording(histogram_every=5), Recording(histogram_every=2)
    both = Loggers([first, second, third])
    assert both.histogram_every == 2  # the smallest of those that write distributions
    both.log_config({"seed": 1})
    both.log({"x": 1.0}, 3)
    both.histograms({"w": [1.0]}, 3)
    both.end_hparams("finished", {}, 3)
    with pytest.raises(RuntimeError, match="close failed"):
        both.close()
    for sink in (second, third):
        assert sink.calls == [("config", {"seed": 1}), ("log", {"x": 1.0}, 3), ("histograms", 3), ("end", "finished", 3), ("close",)]
    assert first.calls == [("config", {"seed": 1}), ("log", {"x": 1.0}, 3), ("end", "finished", 3), ("close",)]
    assert Loggers([]).histogram_every == 0


@pytest.mark.parametrize("package,logger", [("mlflow", "MLflowLogger"), ("wandb", "WandbLogger")])
def test_a_missing_package_names_the_extra(compose_cfg, monkeypatch, tmp_path, package, logger):
    from rlexp.errors import ConfigError

    monkeypatch.setitem(sys.modules, package, None)  # import mlflow / import wandb raise ImportError
    with pytest.raises(ConfigError) as error:
        make_logger(compose_cfg(f"logger=[tensorboard,{package}]"), tmp_path)
    assert str(error.value) == f'logger.{package}._target_: {logger} needs the {package} package: pip install "rlexp[{package}]"'


def test_rlexp_train_says_so_in_one_line_and_exits_1(tmp_path):
    blocker = tmp_path / "blocked" / "mlflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('mlflow is blocked for this test')\n")
    result = run_cli("logger=[tensorboard,mlflow]", *TINY, f"hydra.run.dir={tmp_path / 'run'}",
                     env={"PYTHONPATH": str(tmp_path / "blocked")}, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ['rlexp-train: error: logger.mlflow._target_: MLflowLogger needs the mlflow package: pip install "rlexp[mlflow]"']


# -- runs, and what they wrote -----------------------------------------------------------------
class StopAfter(Callback):
    """Stops the run after update ``n`` as rlexp-train's SIGTERM handler does (interrupted)."""

    def __init__(self, n):
        self.n = n

    def on_update_end(self, trainer, metrics):
        if trainer.updates == self.n:
            trainer.stop.signum = signal.SIGTERM


class CrashAfter(Callback):
    """A run that dies after update ``n`` (a bug, a kill): what it logged past its last checkpoint stays."""

    def __init__(self, n):
        self.n, self.logged = n, {}

    def on_update_end(self, trainer, metrics):
        self.logged[trainer.global_step] = metrics["loss/total"]
        if trainer.updates == self.n:
            raise RuntimeError("crashed")


def train(run_dir: Path, overrides, callbacks=()) -> dict:
    return Trainer(compose_config([*TINY, *overrides]), run_dir, callbacks=callbacks).fit()


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tensorboard_histogram_steps(run_dir: Path) -> dict[str, list[int]]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"histograms": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Histograms(tag)] for tag in acc.Tags()["histograms"]}


def in_the_next_second() -> None:
    """Wait for the next second before resuming in this process. TensorBoard names an event
    file by the second it was opened and then by a count of this process's writers, and reads
    a folder's files in name order: a resume in the same second as the first run, once the
    count passed 9 (".10" < ".9"), was read before it. A real resume starts in a later second."""
    time.sleep(1.01 - time.time() % 1.0)


def assert_same_points(expected, got, what):
    assert [step for step, _ in got] == [step for step, _ in expected], what
    for (step, want), (_, value) in zip(expected, got):  # TensorBoard keeps float32
        assert value == pytest.approx(want, rel=1e-6, abs=1e-6), f"{what} at step {step}"


def the_group(run_dir: Path, overrides) -> str:
    return records.group_name(records.run_hparams(compose_config([*TINY, *overrides]), records.read_overrides(run_dir)))


# -- MLflow --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> str:
    """One SQLite store for the module's runs (making a store's tables takes MLflow ~15 s)."""
    pytest.importorskip("mlflow")
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def mlflow_settings(store: str, experiment: str) -> list[str]:
    return ["logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={store}", f"logger.mlflow.experiment={experiment}"]


def mlflow_history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_an_mlflow_run_holds_what_tensorboard_holds(mlflow_store, tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    overrides = [*mlflow_settings(mlflow_store, "readback"), "eval.video=true", "eval.video_frames=8"]
    summary = train(run_dir, overrides)
    saved = json.loads((run_dir / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=saved["tracking_uri"])
    experiment = client.get_experiment_by_name("readback")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == saved["run_id"] and run.info.run_name == "run"
    assert run.info.status == "FINISHED" and run.data.tags["rlexp.status"] == "finished"
    assert run.data.tags["rlexp.group"] == the_group(run_dir, overrides)

    scalars = tensorboard_scalars(run_dir)
    assert {"loss/total", "eval/return_mean", "time/sps", "hparams/final_eval_return"} <= set(scalars)
    assert set(run.data.metrics) == set(scalars)
    for tag, points in scalars.items():
        assert_same_points(points, mlflow_history(client, run.info.run_id, tag), tag)
    assert [step for step, _ in scalars["loss/total"]] == STEPS
    assert run.data.metrics["hparams/final_eval_return"] == pytest.approx(summary["eval_return_mean"])

    config = OmegaConf.to_container(compose_config([*TINY, *overrides]), resolve=True)
    params = run.data.params
    assert params["algo.learning_rate"] == json.dumps(config["algo"]["learning_rate"]) and params["env.id"] == "CartPole-v1"
    assert params["seed"] == "1" and params["total_steps"] == "512" and params["algo"] == "PPO"  # the class: a hyperparameter
    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts")))
    assert OmegaConf.to_container(OmegaConf.load(artifacts / "config.yaml")) == config
    assert json.loads((artifacts / "summary.json").read_text()) == json.loads((run_dir / "summary.json").read_text())
    assert (artifacts / "checkpoints" / "last.pt").read_bytes() == (run_dir / "checkpoints" / "last.pt").read_bytes()
    assert (artifacts / "text" / "config" / "step_0.md").read_text() == records.config_markdown(compose_config([*TINY, *overrides]))
    assert sorted(p.name for p in (artifacts / "videos" / "eval" / "video").iterdir()) == [f"step_{s}.gif" for s in (256, 512)]
    assert (artifacts / "videos" / "eval" / "video" / "step_512.gif").read_bytes()[:6] == b"GIF89a"


def test_resume_appends_to_the_same_mlflow_run(mlflow_store, tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    overrides = mlflow_settings(mlflow_store, "resumed")
    assert train(run_dir, overrides, [StopAfter(2)])["status"] == "interrupted"
    saved = json.loads((run_dir / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=saved["tracking_uri"])
    assert client.get_run(saved["run_id"]).info.status == "KILLED"
    assert mlflow_history(client, saved["run_id"], "loss/total")[-1][0] == 2 * STEPS_PER_UPDATE

    in_the_next_second()
    assert train(run_dir, [*overrides, f"resume={run_dir}"])["status"] == "finished"
    assert json.loads((run_dir / "mlflow_run.json").read_text()) == saved
    [run] = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    assert run.info.run_id == saved["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["rlexp.resumed_at_step"] == str(2 * STEPS_PER_UPDATE)
    scalars = tensorboard_scalars(run_dir)
    for tag in ("loss/total", "eval/return_mean", "time/sps"):
        assert_same_points(scalars[tag], mlflow_history(client, run.info.run_id, tag), tag)
    assert [step for step, _ in mlflow_history(client, run.info.run_id, "loss/total")] == STEPS  # no gap, no duplicate


def test_after_a_crash_the_resumed_mlflow_run_skips_the_steps_it_holds(mlflow_store, tmp_path):
    """The crashed run logged update 3 after its checkpoint at update 2. TensorBoard hides that
    point on resume; MLflow cannot delete it, so the resumed run does not log step 3 again."""
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    overrides = mlflow_settings(mlflow_store, "crashed")
    crash = CrashAfter(3)
    with pytest.raises(RuntimeError, match="crashed"):
        train(run_dir, overrides, [crash])
    saved = json.loads((run_dir / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=saved["tracking_uri"])
    assert client.get_run(saved["run_id"]).info.status == "FAILED"

    in_the_next_second()
    assert train(run_dir, [*overrides, f"resume={run_dir}"])["status"] == "finished"
    history = mlflow_history(client, saved["run_id"], "loss/total")
    assert [step for step, _ in history] == STEPS
    tensorboard = dict(tensorboard_scalars(run_dir)["loss/total"])
    stale = 3 * STEPS_PER_UPDATE
    assert dict(history)[stale] == pytest.approx(crash.logged[stale])  # the crashed run's point stays
    for step, value in history:
        if step != stale:
            assert value == pytest.approx(tensorboard[step], rel=1e-6), step
    assert client.get_run(saved["run_id"]).info.status == "FINISHED"


def test_a_sweep_is_one_mlflow_experiment_of_tagged_runs(mlflow_store, tmp_path, monkeypatch):
    """The jobs of a sweep (rlexp-train -m seed=1,2; job numbers as Hydra's multirun gives them)
    share one experiment named after the sweep directory; each run is tagged with its job number
    and the group of runs that differ only by seed."""
    from mlflow.tracking import MlflowClient

    from rlexp.run import trackers

    sweep_dir = tmp_path / "sweep"
    settings = ["logger=[mlflow]", f"logger.mlflow.tracking_uri={mlflow_store}"]  # experiment: null
    for job, seed in enumerate((1, 2)):
        monkeypatch.setattr(trackers, "job_number", lambda job=job: job)
        train(sweep_dir / f"{job}_ppo_cartpole-v1", [*settings, f"seed={seed}"])
    client = MlflowClient(tracking_uri=mlflow_store)
    experiment = client.get_experiment_by_name(str(sweep_dir))
    runs = sorted(client.search_runs([experiment.experiment_id]), key=lambda r: int(r.data.tags["rlexp.job"]))
    assert [r.data.tags["rlexp.job"] for r in runs] == ["0", "1"] and [r.data.params["seed"] for r in runs] == ["1", "2"]
    assert len({r.data.tags["rlexp.group"] for r in runs}) == 1
    assert all(r.data.tags["rlexp.sweep_dir"] == str(sweep_dir) and r.info.status == "FINISHED" for r in runs)
    monkeypatch.setattr(trackers, "job_number", lambda: None)
    train(tmp_path / "single", settings)
    assert client.search_runs([client.get_experiment_by_name("rlexp").experiment_id])[0].info.run_name == "single"


# -- Weights & Biases ---------------------------------------------------------------------------
WANDB = ["logger=[tensorboard,wandb]", "logger.wandb.mode=offline", "logger.tensorboard.histogram_every=2", "logger.wandb.histogram_every=2"]


def wandb_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))


def wandb_points(history, tag) -> list[tuple[int, float]]:
    return [(row["_step"], row[tag]) for row in history if isinstance(row.get(tag), (int, float))]


def test_an_offline_wandb_run_holds_what_tensorboard_holds(tmp_path):
    pytest.importorskip("wandb")
    from wandb_records import read_finished_run

    run_dir = tmp_path / "run"
    overrides = [*WANDB, "eval.video=true", "eval.video_frames=8"]
    summary = train(run_dir, overrides)
    [path] = wandb_files(run_dir)
    wandb_run = read_finished_run(path)
    assert wandb_run["run"].run_id == json.loads((run_dir / "wandb_run.json").read_text())["id"]
    assert wandb_run["run"].display_name == "run" and wandb_run["run"].project == "rlexp"
    assert wandb_run["run"].run_group == the_group(run_dir, overrides)
    config = OmegaConf.to_container(compose_config([*TINY, *overrides]), resolve=True)
    assert {key: value for key, value in wandb_run["config"].items() if key != "_wandb"} == config

    scalars = tensorboard_scalars(run_dir)
    for tag, points in scalars.items():
        assert_same_points(points, wandb_points(wandb_run["history"], tag), tag)
    assert [step for step, _ in scalars["loss/total"]] == STEPS
    histograms = tensorboard_histogram_steps(run_dir)
    assert "weights/actor_body.0.weight" in histograms
    for tag, steps in histograms.items():
        assert [row["_step"] for row in wandb_run["history"] if f"{tag}/values" in row] == steps, tag

    final = wandb_run["summary"]
    for tag in ("hparams/final_eval_return", "hparams/best_eval_return", "hparams/sps"):
        assert final[tag] == pytest.approx(scalars[tag][-1][1], rel=1e-6)
    assert final["status"] == "finished" and final["eval_return_mean"] == pytest.approx(summary["eval_return_mean"])
    assert wandb_run["exit_code"] == 0
    assert {"summary.json", "checkpoints/last.pt"} <= set(wandb_run["files"])
    videos = [(row["_step"], row["eval/video/path"]) for row in wandb_run["history"] if "eval/video/path" in row]
    assert [step for step, _ in videos] == [256, 512]
    assert all((path.parent / "files" / video).read_bytes()[:6] == b"GIF89a" for _, video in videos)


def test_resume_continues_the_same_wandb_run(tmp_path):
    pytest.importorskip("wandb")
    from wandb_records import read_finished_run

    run_dir = tmp_path / "run"
    assert train(run_dir, WANDB, [StopAfter(2)])["status"] == "interrupted"
    run_id = json.loads((run_dir / "wandb_run.json").read_text())["id"]
    in_the_next_second()
    assert train(run_dir, [*WANDB, f"resume={run_dir}"])["status"] == "finished"
    assert json.loads((run_dir / "wandb_run.json").read_text())["id"] == run_id
    first, second = (read_finished_run(path) for path in wandb_files(run_dir))  # offline: one file per process, one run id
    assert first["run"].run_id == second["run"].run_id == run_id
    assert first["preempting"] and first["summary"]["status"] == "interrupted" and second["summary"]["status"] == "finished"
    steps = [step for step, _ in wandb_points(first["history"] + second["history"], "loss/total")]
    assert steps == STEPS  # the resumed file starts after the first one's last step
    assert_same_points(tensorboard_scalars(run_dir)["loss/total"], wandb_points(first["history"] + second["history"], "loss/total"),
                       "loss/total")

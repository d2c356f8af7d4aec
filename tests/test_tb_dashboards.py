"""TensorBoard dashboards to compare sweeps in: HParams, Distributions/Histograms, Text.

One 2x2 joblib sweep (seed=0,1 x algo.learning_rate=1e-3,3e-4) and, beside it, a run that
diverges (algo.learning_rate=1e30: a TrainingError in its first update) are read back

1. through a real ``tensorboard`` server's HParams plugin over HTTP (the requests its
   dashboard sends): one session per job with the job's hyperparameters, the final
   metrics and the real status, seeds of one setting in one group;
2. with TensorBoard's own event reader: weight histograms and per-layer gradient norms,
   the rollout's advantages and value targets, the action distribution, the config text.

The pure functions behind the records (rlexp.run.records) are checked on their own first.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT  # tests/ is on sys.path (pytest rootdir conftest, no package)

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is not installed"
)
from test_tensorboard import HTTP_TIMEOUT_S, _no_proxy_opener, _start_tensorboard, _stop  # noqa: E402

from rlexp.run import records as tb_records  # noqa: E402
from rlexp.envs import reward_threshold  # noqa: E402

TOTAL_STEPS = 4096  # 4 updates of 128 steps x 8 envs (PPO on CartPole, the defaults)
HISTOGRAM_EVERY = 2  # distributions after updates 2 and 4
COMMON = ["total_steps=4096", "eval.every_steps=2048", "progress=false", f"logger.tensorboard.histogram_every={HISTOGRAM_EVERY}"]
LEARNING_RATES = ("1e-3", "3e-4")
DIVERGING_LR = "1e30"
RUN_TIMEOUT_S = 300
SERVER_DATA_TIMEOUT_S = 60
ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
#: what the HParams dashboard must offer as columns: the main values and the sweep's overridden keys
EXPECTED_HPARAMS = {"algo", "algo.learning_rate", "algo.n_steps", "env.id", "env.num_envs", "network.hidden_sizes", "network.activation",
                    "network.shared", "seed", "total_steps", "eval.every_steps"}


# -- the pure functions ---------------------------------------------------------------------
def test_hparams_take_the_main_values_and_the_overridden_keys(compose_cfg):
    cfg = compose_cfg("algo=a2c", "algo.learning_rate=3e-4", "seed=3", "+env.make_kwargs.foo=1", "progress=false")
    overrides = ["algo=a2c", "algo.learning_rate=3e-4", "seed=3", "+env.make_kwargs.foo=1", "progress=false",
                 "logger.tensorboard.histogram_every=2", "~eval.stop_at", "hparams=ppo_cartpole"]
    hp = tb_records.run_hparams(cfg, overrides)
    assert hp["algo"] == "A2C"  # the class, not the group choice "a2c"
    assert hp["algo.learning_rate"] == 3e-4 and hp["algo.n_steps"] == float(cfg.algo.n_steps)
    assert hp["algo.normalize_advantage"] is cfg.algo.normalize_advantage is False  # bools stay bools
    assert "algo.max_grad_norm" in hp and "algo.optimizer" not in hp and "algo._target_" not in hp
    assert (hp["env.id"], hp["env.num_envs"], hp["seed"], hp["total_steps"]) == ("CartPole-v1", 8.0, 3.0, float(cfg.total_steps))
    assert (hp["network.hidden_sizes"], hp["network.activation"], hp["network.shared"]) == ("[64, 64]", "tanh", False)
    assert hp["env.make_kwargs.foo"] == 1.0  # an added key, with its resolved type
    assert hp["hparams"] == "ppo_cartpole"  # a group choice the config does not hold as a value
    assert not any(k.startswith(("progress", "logger", "eval.stop_at")) for k in hp)
    assert all(isinstance(v, (bool, float, str)) for v in hp.values())


def test_group_name_ignores_the_seed_only():
    a = {"algo": "PPO", "env.id": "CartPole-v1", "algo.learning_rate": 1e-3, "seed": 0.0}
    assert tb_records.group_name(a) == tb_records.group_name({**a, "seed": 1.0})
    assert tb_records.group_name(a) != tb_records.group_name({**a, "algo.learning_rate": 3e-4})
    assert tb_records.group_name(a).startswith("PPO CartPole-v1 ")


def test_final_metrics_and_statuses():
    summary = {"eval_history": [[2048, 100.0, 1.0], [4096, 480.0, 2.0], [6144, 500.0, 0.0]],
               "eval_return_mean": 500.0, "best_eval_return": 500.0, "sps": 1234.5, "train_time_s": 5.0}
    assert tb_records.final_metrics(summary, 475.0) == {
        "hparams/final_eval_return": 500.0, "hparams/best_eval_return": 500.0, "hparams/steps_to_threshold": 4096.0, "hparams/sps": 1234.5}
    assert "hparams/steps_to_threshold" not in tb_records.final_metrics(summary, 600.0)
    assert "hparams/steps_to_threshold" not in tb_records.final_metrics(summary, None)
    failed_at_once = {"eval_history": [], "eval_return_mean": math.nan, "best_eval_return": None, "sps": 1e12, "train_time_s": 0.0}
    assert tb_records.final_metrics(failed_at_once, 475.0) == {}
    assert reward_threshold("CartPole-v1") == 475.0 and reward_threshold("Pendulum-v1") is None

    from tensorboard.plugins.hparams import api_pb2, metadata

    def status(name):
        content = tb_records.session_end_summary(name).value[0].metadata.plugin_data.content
        return metadata.parse_session_end_info_plugin_data(content).status

    assert status("finished") == api_pb2.STATUS_SUCCESS and status("failed") == api_pb2.STATUS_FAILURE
    # TensorBoard's Status has no ABORTED; no end record shows as UNKNOWN and leaves room for a resumed run's
    assert tb_records.session_end_summary("interrupted") is None


def test_histogram_every_is_checked_and_the_null_logger_writes_nothing(compose_cfg, tmp_path):
    from rlexp.errors import ConfigError
    from rlexp.run.logger import NullLogger, make_logger

    with pytest.raises(ConfigError, match=r"^logger\.tensorboard\.histogram_every: must be >= 0"):
        make_logger(compose_cfg("logger.tensorboard.histogram_every=-1"), tmp_path)
    null = NullLogger(tmp_path)
    assert null.histogram_every == 0
    null.start_hparams({"seed": 1.0}, "g")
    null.end_hparams("finished", {"hparams/sps": 1.0}, 1)
    null.histograms({"weights/x": [1.0]}, 1)
    null.counts("actions/histogram", [1, 2], 1)
    assert list(tmp_path.iterdir()) == []


# -- the sweep and the diverging run ---------------------------------------------------------
def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "RLEXP_FULL_ERROR", "RLEXP_DEBUG")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rlexp.cli.train", *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _interrupted_then_resumed(run_dir: Path) -> None:
    """In this process: a run stopped (as by SIGTERM) after its 2nd update, then resumed to the end."""
    from rlexp.config import compose_config
    from rlexp.run.trainer import Trainer

    settings = ["total_steps=4096", "eval.every_steps=2048", "eval.episodes=2", "progress=false", "logger.tensorboard.histogram_every=0"]
    # the overrides as rlexp-train's Hydra saves them: every run then records the same hyperparameter names. (The
    # dashboard's columns come from the first run's experiment record TensorBoard reads, in no fixed order.)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in settings))
    from rlexp import Callback

    class SigtermAfterTwo(Callback):
        def on_update_end(self, trainer, metrics):
            if trainer.updates == 2:
                trainer.stop.signum = signal.SIGTERM  # what the SIGTERM handler does

    trainer = Trainer(compose_config(settings), run_dir, callbacks=[SigtermAfterTwo()])
    assert trainer.fit()["status"] == "interrupted"
    assert Trainer(compose_config([*settings, f"resume={run_dir}"]), run_dir).fit()["status"] == "finished"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """<root>/sweep/{0,1,2,3} (the joblib sweep), <root>/failed (the diverging run) and
    <root>/resumed (interrupted, then resumed to the end)."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    root = tmp_path_factory.mktemp("dashboards")
    # all at once: the two short runs fill the gaps the sweep's process starts leave
    procs = {
        "sweep": _cli("-m", "hydra/launcher=joblib", "seed=0,1", f"algo.learning_rate={','.join(LEARNING_RATES)}", *COMMON,
                      f"hydra.sweep.dir={root / 'sweep'}"),
        "failed": _cli(f"algo.learning_rate={DIVERGING_LR}", "seed=0", *COMMON, f"hydra.run.dir={root / 'failed'}"),
    }
    try:
        _interrupted_then_resumed(root / "resumed")
        results = {name: (proc.communicate(timeout=RUN_TIMEOUT_S), proc.returncode) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    (_, sweep_err), sweep_rc = results["sweep"]
    assert sweep_rc == 0, sweep_err[-3000:]
    (_, failed_err), failed_rc = results["failed"]
    assert failed_rc == 1 and "rlexp-train: error:" in failed_err, failed_err[-3000:]
    assert json.loads((root / "failed" / "summary.json").read_text())["status"] == "failed"
    return root


def jobs(root: Path) -> list[Path]:
    return sorted((p for p in (root / "sweep").iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))  # <job number>_<algo>_<env id>


def overrides(job: Path) -> dict[str, str]:
    return dict(o.lstrip("+").split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))


def summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


# -- 1. the HParams dashboard, through a real TensorBoard server --------------------------------
def _post_json(opener, base_url: str, path: str, body: dict):
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with opener.open(request, timeout=HTTP_TIMEOUT_S) as response:
        assert response.status == 200, f"POST {path}: HTTP {response.status}"
        return json.loads(response.read().decode("utf-8"))


@pytest.fixture(scope="module")
def hparams_served(runs, tmp_path_factory):
    """(experiment, session groups) as the HParams dashboard requests them, once the server has
    read every run's session end."""
    proc, base_url = _start_tensorboard(runs, tmp_path_factory.mktemp("tensorboard"))
    opener = _no_proxy_opener()
    request = {"experimentName": "", "allowedStatuses": ALL_STATUSES, "colParams": [], "startIndex": 0, "sliceSize": 100,
               "includeMetrics": True}
    try:
        deadline = time.monotonic() + SERVER_DATA_TIMEOUT_S
        while True:  # the server answers before it has read every event file: poll, bounded
            groups = _post_json(opener, base_url, "/data/plugin/hparams/session_groups", request)
            sessions = [s for g in groups.get("sessionGroups", []) for s in g["sessions"]]
            loaded = len(sessions) == 6 and all(s.get("status") for s in sessions) and all(
                any(m["name"]["tag"] == "hparams/final_eval_return" for m in s.get("metricValues", [])) for s in sessions
                if s["name"] != "failed/tb")  # the server reads event files in its own time: wait for the last records too
            if loaded or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        experiment = _post_json(opener, base_url, "/data/plugin/hparams/experiment", {"experimentName": "", "includeMetrics": True})
    finally:
        _stop(proc)
    assert loaded, f"after {SERVER_DATA_TIMEOUT_S}s the HParams plugin serves {len(sessions)} sessions, not the 6 runs' finished ones: {groups}"
    return experiment, groups


def test_hparams_dashboard_shows_one_session_per_job(runs, hparams_served):
    experiment, served = hparams_served
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert EXPECTED_HPARAMS <= names, names
    assert not any(n.startswith(("logger", "progress")) for n in names)
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == list(tb_records.METRICS)

    groups = served["sessionGroups"]
    by_session = {s["name"]: (g, s) for g in groups for s in g["sessions"]}
    sweep_jobs = jobs(runs)
    assert sorted(by_session) == sorted([f"sweep/{j.name}/tb" for j in sweep_jobs] + ["failed/tb", "resumed/tb"]), sorted(by_session)
    assert served["totalSize"] == len(groups) == len(LEARNING_RATES) + 2

    threshold = reward_threshold("CartPole-v1")
    for job in sweep_jobs:
        group, session = by_session[f"sweep/{job.name}/tb"]
        o, s = overrides(job), summary(job)
        assert session["status"] == "STATUS_SUCCESS", session
        assert group["hparams"]["algo.learning_rate"] == pytest.approx(float(o["algo.learning_rate"]))
        assert group["hparams"]["algo"] == "PPO" and group["hparams"]["env.id"] == "CartPole-v1"
        assert group["hparams"]["network.hidden_sizes"] == "[64, 64]" and group["hparams"]["total_steps"] == TOTAL_STEPS
        # the seeds of one setting share the group, which holds exactly them
        assert sorted(overrides(runs / "sweep" / n.split("/")[1])["seed"] for n in (x["name"] for x in group["sessions"])) == ["0", "1"]
        assert all(overrides(runs / "sweep" / x["name"].split("/")[1])["algo.learning_rate"] == o["algo.learning_rate"]
                   for x in group["sessions"])
        metrics = {m["name"]["tag"]: m for m in session["metricValues"]}
        assert metrics["hparams/final_eval_return"]["value"] == pytest.approx(s["eval_return_mean"], rel=1e-6)
        assert metrics["hparams/best_eval_return"]["value"] == pytest.approx(s["best_eval_return"], rel=1e-6)
        assert metrics["hparams/sps"]["value"] == pytest.approx(s["sps"], rel=1e-6)
        assert all(int(m["trainingStep"]) == s["steps"] for m in metrics.values())  # at the last step
        reached = next((step for step, mean, _ in s["eval_history"] if mean >= threshold), None)
        if reached is None:
            assert "hparams/steps_to_threshold" not in metrics
        else:
            assert metrics["hparams/steps_to_threshold"]["value"] == reached
    for group in groups:  # what TensorBoard averages over the seeds
        if len(group["sessions"]) == 2:
            def final(metric_values):
                return next(m["value"] for m in metric_values if m["name"]["tag"] == "hparams/final_eval_return")

            assert final(group["metricValues"]) == pytest.approx(sum(final(s["metricValues"]) for s in group["sessions"]) / 2, rel=1e-6)


def test_hparams_dashboard_shows_the_diverged_run_as_failed(runs, hparams_served):
    _, served = hparams_served
    group, session = next((g, s) for g in served["sessionGroups"] for s in g["sessions"] if s["name"] == "failed/tb")
    assert session["status"] == "STATUS_FAILURE", session
    assert len(group["sessions"]) == 1 and group["hparams"]["algo.learning_rate"] == pytest.approx(float(DIVERGING_LR))
    assert "hparams/sps" not in {m["name"]["tag"] for m in session.get("metricValues", [])}  # no training time: no speed


def test_hparams_dashboard_shows_the_resumed_run_as_finished(runs, hparams_served):
    """The interrupted part wrote no session end (TensorBoard keeps a tag's first record): the
    resumed run's success is what shows, with the final metrics at its last step."""
    _, served = hparams_served
    session = next(s for g in served["sessionGroups"] for s in g["sessions"] if s["name"] == "resumed/tb")
    assert session["status"] == "STATUS_SUCCESS", session
    s = json.loads((runs / "resumed" / "summary.json").read_text())
    metrics = {m["name"]["tag"]: m for m in session["metricValues"]}
    assert int(metrics["hparams/final_eval_return"]["trainingStep"]) == s["steps"] == TOTAL_STEPS
    assert metrics["hparams/final_eval_return"]["value"] == pytest.approx(s["eval_return_mean"], rel=1e-6)


# -- 2. distributions and the config text, through TensorBoard's event reader -------------------
@pytest.fixture(scope="module")
def events(runs):
    job = jobs(runs)[0]
    acc = event_accumulator.EventAccumulator(
        str(job / "tb"), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0, event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    return job, acc


def test_distributions_every_histogram_every_updates(events):
    job, acc = events
    tags = acc.Tags()
    s = summary(job)
    steps_per_update = s["steps"] // s["updates"]
    expected_steps = [steps_per_update * k for k in range(HISTOGRAM_EVERY, s["updates"] + 1, HISTOGRAM_EVERY)]
    assert expected_steps == [2048, 4096]

    weights = sorted(t for t in tags["histograms"] if t.startswith("weights/"))
    params = sorted(t.split("/", 1)[1] for t in weights)
    assert {"actor_body.0.weight", "critic_body.0.bias", "action_head.logits.weight", "value_head.weight"} <= set(params), params
    for tag in (*weights, "rollout/advantages", "rollout/returns", "actions/histogram"):
        assert [e.step for e in acc.Histograms(tag)] == expected_steps, tag

    norms = {p: acc.Scalars(f"grad_norm/{p}") for p in params}  # the PPO fast path's gradient, per parameter
    assert all([e.step for e in events] == expected_steps for events in norms.values())
    assert all(math.isfinite(e.value) and e.value >= 0 for events in norms.values() for e in events)
    assert any(e.value > 0 for events in norms.values() for e in events)

    probs = [acc.Scalars(f"actions/prob_{i}") for i in range(2)]  # CartPole: two actions
    assert "actions/prob_2" not in tags["scalars"]
    for p0, p1 in zip(*probs):
        assert p0.step == p1.step and p0.value + p1.value == pytest.approx(1.0, abs=1e-5)
    for event in acc.Histograms("actions/histogram"):
        h = event.histogram_value
        assert list(h.bucket_limit) == [0.5, 1.5] and (h.min, h.max) == (-0.5, 1.5)
        assert sum(h.bucket) == h.num and 0 < h.num <= steps_per_update  # the rollout's valid steps
        assert h.sum == h.bucket[1]  # the number of 1s
    adv = acc.Histograms("rollout/advantages")[-1].histogram_value
    assert 0 < adv.num <= steps_per_update and adv.min < 0 < adv.max
    ratio = acc.Histograms("train/ratio")[-1].histogram_value  # PPO's ratio after the update: moved, but not far
    assert ratio.num == adv.num and 0.5 < ratio.min < 1.0 < ratio.max < 2.0 and ratio.sum / ratio.num == pytest.approx(1.0, abs=0.1)


def test_config_text_and_hparams_records_in_the_event_files(events):
    job, acc = events
    (text,) = acc.Tensors("config")
    assert text.step == 0
    markdown = text.tensor_proto.string_val[0].decode()
    assert markdown.startswith("```yaml\n") and markdown.endswith("\n```")
    written = yaml.safe_load(markdown[len("```yaml\n"):-len("```")])
    saved = OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "config.yaml"), resolve=True)
    assert written == saved
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(acc.Tags()["tensors"])
    assert [e.step for e in acc.Scalars("hparams/final_eval_return")] == [summary(job)["steps"]]


def test_eval_video_is_an_animated_gif_in_tensorboard(tmp_path):
    """eval.video=true: each evaluation renders one deterministic episode into the Images tab."""
    import io

    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlexp.config import compose_config
    from rlexp.run.trainer import Trainer

    cfg = compose_config(["total_steps=2048", "eval.every_steps=1024", "eval.episodes=2", "eval.video=true", "eval.video_frames=20",
                          "progress=false", "logger=tensorboard"])
    Trainer(cfg, tmp_path).fit()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    videos = events.Images("eval/video")
    assert [v.step for v in videos] == [1024, 2048]
    gif = Image.open(io.BytesIO(videos[-1].encoded_image_string))
    assert gif.format == "GIF" and gif.size == (600, 400) and 2 <= gif.n_frames <= 20

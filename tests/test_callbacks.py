"""Callbacks from Python (rlexp.train(..., callbacks=[...])) and from config (callbacks=[{_target_: ...}]):
they see every update's metrics and every evaluation, and one that returns False stops the run."""

import json

import pytest

import rlexp

# 1024 steps per update (8 envs x 128): 4 updates, evaluations at 2048 and 4096
QUICK = ["total_steps=4096", "logger=none", "progress=false", "eval.episodes=2", "eval.every_steps=2048"]


class Recorder(rlexp.Callback):
    """Everything it is shown; built from config too (``name`` tells the instances apart)."""

    seen: dict = {}

    def __init__(self, name: str = "python"):
        self.name, self.events = name, []
        Recorder.seen[name] = self

    def on_run_start(self, trainer):
        self.events.append(("start", trainer.global_step))

    def on_update_end(self, trainer, metrics):
        self.events.append(("update", trainer.global_step, dict(metrics)))

    def on_evaluation_end(self, trainer, evaluation):
        self.events.append(("evaluation", evaluation.step, evaluation.mean, len(evaluation.returns)))

    def on_run_end(self, trainer, summary):
        self.events.append(("end", summary["steps"], summary["status"]))


class StopAfter(rlexp.Callback):
    def __init__(self, updates: int):
        self.updates = updates

    def on_update_end(self, trainer, metrics):
        return trainer.updates < self.updates  # False (stop) once that many updates are done


def updates_of(recorder):
    return [e for e in recorder.events if e[0] == "update"]


def test_a_python_and_a_config_callback_see_every_update_and_evaluation(tmp_path):
    result = rlexp.train([*QUICK, f"callbacks=[{{_target_: {__name__}.Recorder, name: from_config}}]"], run_dir=tmp_path / "run",
                         callbacks=[Recorder("python")])
    summary = result.summary
    assert summary["status"] == "finished" and summary["updates"] == 4 and "stopped_by" not in summary
    for name in ("from_config", "python"):
        recorder = Recorder.seen[name]
        assert recorder.events[0] == ("start", 0)
        updates = updates_of(recorder)
        assert [u[1] for u in updates] == [1024, 2048, 3072, 4096]
        for _, _, metrics in updates:  # what TensorBoard receives for the update
            assert {"loss/policy", "loss/value", "train/approx_kl", "train/clip_fraction", "time/sps"} <= set(metrics)
        evaluations = [e for e in recorder.events if e[0] == "evaluation"]
        assert [e[1] for e in evaluations] == [2048, 4096] and all(e[3] == 2 for e in evaluations)
        assert evaluations[-1][2] == pytest.approx(summary["eval_return_mean"])
        assert recorder.events[-1] == ("end", 4096, "finished")


def test_a_callback_from_python_stops_the_run_and_it_is_saved(tmp_path):
    result = rlexp.train(QUICK, run_dir=tmp_path / "run", callbacks=[StopAfter(2), recorder := Recorder("stopped")])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2048 and summary["stopped_by"] == "StopAfter"
    assert result.summary == summary
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    # the update that asked to stop finished its callbacks, and no other update ran
    assert [u[1] for u in updates_of(recorder)] == [1024, 2048]


def test_a_callback_from_config_stops_the_run(tmp_path):
    result = rlexp.train([*QUICK, f"callbacks=[{{_target_: {__name__}.StopAfter, updates: 3}}]"], run_dir=tmp_path / "run")
    assert result.summary["steps"] == 3072 and result.summary["stopped_by"] == "StopAfter"


def test_a_callback_that_cannot_be_built_names_the_key(tmp_path):
    with pytest.raises(rlexp.ConfigError, match=r"^callbacks"):
        rlexp.train([*QUICK, "callbacks=[{_target_: no.such.Callback}]"], run_dir=tmp_path / "run")

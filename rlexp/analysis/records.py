"""Results as committed data: one small JSON record per seed of a published result.

A run directory holds everything behind a number on the results page (the composed config,
summary.json, TensorBoard events), but it is large and ``outputs/`` is not committed. A
record keeps what the page and its figures need, and what a reader needs to check them:

- ``config``: the config as the run composed it (``.hydra/config.yaml``), and ``command``:
  the command line that made it (a resumed run: ``resumed``, its ``resume`` path blanked, and
  no wall-clock seconds, which would count the time it stood stopped);
- ``versions`` and ``machine``: Python, rlexp, torch, gymnasium, numpy, the env's package,
  and the CPU (from the run's summary.json; a run older than that field gets the recording
  environment's, and ``versions_from`` says so);
- ``final_eval``, ``eval_history`` ([step, seconds since start, mean, std]), a thinned
  ``train_history`` ([step, seconds, episode return]), the steps and seconds to the env's
  reward threshold, training time and steps per second;
- where the env reports values of its own at episode ends (win, draw and loss of a turn-based
  game, each agent's or team's return): ``info_metrics``, their last values, and
  ``info_history``, a thinned curve of each ([step, value]);
- ``tag_history``: a thinned curve ([step, value]) of each further TensorBoard tag the record
  was asked for (``record --tag train/explained_variance``);
- ``evaluations``: what ``rlexp-eval`` measured on the trained run when the record was made
  (against another opponent, over more episodes), each with its command line;
- a trial of an Optuna search: ``trial`` (its number), ``status`` "pruned" where the pruner
  stopped it, and ``started_at`` (Unix seconds) so that the search's wall time can be told.

Records live under ``docs/results/data/<table>/<name>/seed<N>.json`` (a search's trials:
``trial<N>.json``); ``scripts/results_page.py
record`` writes them from run directories and ``build`` turns them into docs/results.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from rlexp.analysis.results import EVAL_TAG, TRAIN_TAG, Curve, Job, first_event_time, read_scalars

RECORD_VERSION = 1
#: the most points of the training-return curve a record keeps (evenly spaced in the run)
TRAIN_POINTS = 150
#: the most points of each info metric's curve a record keeps
INFO_POINTS = 40


def _round(value: Optional[float], digits: int = 4) -> Optional[float]:
    """Round to ``digits`` significant figures (records are read by people and diffed)."""
    if value is None or not math.isfinite(float(value)):
        return None
    value = float(value)
    if value == 0.0:
        return 0.0
    return float(f"{value:.{digits}g}")


def thin(curve: Curve, points: int = TRAIN_POINTS) -> list[list[Optional[float]]]:
    """At most ``points`` rows [step, seconds, value], the first and last included."""
    n = len(curve)
    index = np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int)) if n else []
    return [[int(curve.steps[i]), _round(curve.wall[i], 5), _round(curve.values[i])] for i in index]


def eval_history(job: Job) -> list[list[Optional[float]]]:
    """[step, seconds since the run's start, mean, std] per evaluation: the mean and std from
    summary.json, the seconds from the TensorBoard event at the same step (None without one)."""
    history = (job.summary or {}).get("eval_history") or []
    curve = job.curves.get(EVAL_TAG)
    wall = {int(s): float(w) for s, w in zip(curve.steps, curve.wall)} if curve is not None else {}
    rows = []
    for entry in history:
        step, mean, std = int(entry[0]), entry[1], entry[2] if len(entry) > 2 else None
        rows.append([step, _round(wall.get(step), 5), _round(mean, 6), _round(std, 4)])
    return rows


def scalar_histories(job: Job, tags: Sequence[str], points: int = INFO_POINTS) -> dict[str, list[list[Optional[float]]]]:
    """[step, value] rows of each of ``tags`` that the run's event file holds, thinned."""
    tb_dir = Path(job.path) / "tb"
    if not tags or not tb_dir.is_dir():
        return {}
    curves = read_scalars(tb_dir, tags)
    return {tag: [[row[0], row[2]] for row in thin(curve, points)] for tag, curve in curves.items()}


def make_record(job: Job, *, table: str, name: str, command: str, threshold: Optional[float],
                fallback_versions: Optional[dict] = None, fallback_machine: Optional[str] = None,
                evaluations: Sequence[dict] = (), trial: Optional[int] = None,
                tags: Sequence[str] = ()) -> dict[str, Any]:
    """The record of one job of a multirun that finished, or that was stopped and is kept as far
    as its last evaluation (see the module's docstring); ``evaluations``: what rlexp-eval
    measured on it (:func:`evaluation_entry`)."""
    if not job.ok:
        raise ValueError(f"{job.path}: {job.problem}")
    summary = job.summary or {}
    history = eval_history(job)
    steps_to, wall_to = None, None
    if threshold is not None and history:
        hits = [row for row in history if row[2] is not None and row[2] >= threshold]
        if hits:
            steps_to, wall_to = hits[0][0], hits[0][1]
    last_wall = job.curves[TRAIN_TAG].wall[-1] if TRAIN_TAG in job.curves and len(job.curves[TRAIN_TAG]) else None
    versions, machine, versions_from = summary.get("versions"), summary.get("machine"), "run"
    if versions is None:
        versions, machine, versions_from = fallback_versions, fallback_machine, "recording (the run predates the field)"
    record = {
        "record": RECORD_VERSION,
        "table": table, "name": name, "seed": job.seed, "env_id": summary.get("env_id"),
        "algo": summary.get("algo"), "status": summary.get("status"), "command": command,
        "overrides": list(job.overrides),
        "versions": versions, "machine": machine, "versions_from": versions_from,
        "steps": summary.get("steps"), "updates": summary.get("updates"),
        "train_time_s": _round(summary.get("train_time_s"), 6), "sps": _round(summary.get("sps"), 6),
        "wall_time_s": _round(last_wall, 6),
        "final_eval": {"mean": _round(summary.get("eval_return_mean"), 6), "std": _round(summary.get("eval_return_std"), 4),
                       "episodes": (job.config.get("eval") or {}).get("episodes")},
        "threshold": threshold, "steps_to_threshold": steps_to, "wall_to_threshold_s": wall_to,
        "diagnostics": summary.get("diagnostics") or {},
        "eval_history": history,
        "train_history": thin(job.curves[TRAIN_TAG]) if TRAIN_TAG in job.curves else [],
        "config": job.config,
    }
    info_tags = sorted(summary.get("info_metrics") or {})
    histories = scalar_histories(job, sorted(set(info_tags) | set(tags)))  # one read of the event file for both
    if info_tags:  # only where the env reports some: older records stay as they are
        record["info_metrics"] = {key: _round(value, 6) for key, value in sorted(summary["info_metrics"].items())}
        record["info_history"] = {tag: histories[tag] for tag in info_tags if tag in histories}
    if tags:
        record["tag_history"] = {tag: histories[tag] for tag in tags if tag in histories}
        missing = sorted(set(tags) - set(record["tag_history"]))
        if missing:
            raise ValueError(f"{job.path}: no TensorBoard tag {', '.join(missing)} (--tag names a scalar the run logged)")
    if evaluations:
        record["evaluations"] = list(evaluations)
    if trial is not None:
        record["trial"] = trial
        record["started_at"] = _round(first_event_time(Path(job.path) / "tb"), 10)
    if job.config.get("resume"):  # resumed: where from is this machine's path, not a setting,
        record["config"] = {**job.config, "resume": None}  # and the wall clock counts the time it
        record["resumed"] = True                            # stood stopped (train_time_s does not)
        for row in record["eval_history"] + record["train_history"]:
            row[1] = None
        record["wall_time_s"] = record["wall_to_threshold_s"] = None
    return record


def evaluation_entry(arguments: str, evaluation: Any) -> dict[str, Any]:
    """One entry of a record's ``evaluations``: the rlexp-eval arguments (after the run) and what
    they gave (an :class:`rlexp.cli.evaluate.Evaluation`)."""
    returns = np.asarray(evaluation.returns, dtype=float)
    return {"command": f"rlexp-eval <run> {arguments}".strip(), "episodes": int(returns.size),
            "deterministic": bool(evaluation.deterministic), "return_mean": _round(returns.mean(), 6),
            "return_std": _round(returns.std(), 4),
            "metrics": {key: _round(value, 6) for key, value in evaluation.metrics.items()}}


def record_path(data_dir: Path, table: str, name: str, seed: Any, trial: Optional[int] = None) -> Path:
    return Path(data_dir) / table / name / (f"seed{seed}.json" if trial is None else f"trial{trial}.json")


def write_record(record: dict, data_dir: Path) -> Path:
    """Write one record (sorted keys, 1-space indent, a final newline), atomically."""
    path = record_path(data_dir, record["table"], record["name"], record["seed"], record.get("trial"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


@dataclass
class Record:
    """One record as read back, with what the page's tables and figures ask of it."""

    path: Path
    data: dict

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def final_return(self) -> Optional[float]:
        return (self.data.get("final_eval") or {}).get("mean")

    def as_job(self) -> Job:
        """A :class:`Job` with the record's curves, for the plotting of rlexp.analysis.results."""
        curves = {}
        evals = [row for row in self.data.get("eval_history") or [] if row[2] is not None]
        if evals:
            curves[EVAL_TAG] = Curve(*(np.array([row[i] if row[i] is not None else np.nan for row in evals], dtype=float)
                                       for i in (0, 1, 2)))
        train = [row for row in self.data.get("train_history") or [] if row[2] is not None]
        if train:
            curves[TRAIN_TAG] = Curve(*(np.array([row[i] if row[i] is not None else np.nan for row in train], dtype=float)
                                        for i in (0, 1, 2)))
        summary = {"status": self.data.get("status"), "eval_return_mean": self.final_return}
        return Job(self.path, self.data.get("seed"), list(self.data.get("overrides") or []), str(self.data.get("algo")),
                   self.data.get("seed"), dict(self.data.get("config") or {}), summary, curves)


def load_records(data_dir: Path) -> dict[tuple[str, str], list[Record]]:
    """Every record under ``data_dir``, grouped by (table, name), seeds in order."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for path in sorted([*Path(data_dir).glob("*/*/seed*.json"), *Path(data_dir).glob("*/*/trial*.json")]):
        data = json.loads(path.read_text())
        if data.get("record") != RECORD_VERSION:
            raise ValueError(f"{path}: record version {data.get('record')!r}, this rlexp reads {RECORD_VERSION}")
        groups.setdefault((data["table"], data["name"]), []).append(Record(path, data))
    for records in groups.values():
        records.sort(key=lambda r: (r.get("seed") is None, r.get("seed"), r.get("trial") or 0))
    return groups


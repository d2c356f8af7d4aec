"""MLflow and Weights & Biases as loggers beside TensorBoard (``logger=[tensorboard,mlflow,wandb]``).

Each receives what TensorBoard receives, on the same x-axis (env steps): the scalars, the
run's resolved config, its hyperparameters and the group of runs that differ only by seed,
the final ``hparams/*`` metrics and the run's status; W&B also the distributions. Where a
backend has no such record (MLflow has no histograms) the call does nothing.

One backend run per rlexp run. Its id is kept in the run directory (``mlflow_run.json``,
``wandb_run.json``), so ``resume=<run dir>`` continues the same MLflow or W&B run as it
continues the TensorBoard curves. The packages are optional extras, imported only when such
a logger is built: ``pip install "rlexp[mlflow]"``, ``pip install "rlexp[wandb]"``.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from rlexp.config import job_number
from rlexp.errors import ConfigError, require
from rlexp.run import records
from rlexp.run.logger import NullLogger, write_json_atomic

log = logging.getLogger("rlexp")

#: the files, in the run directory, that name the backend's run a resume continues
MLFLOW_RUN_FILE = "mlflow_run.json"
WANDB_RUN_FILE = "wandb_run.json"

#: the trainer's run status -> MLflow's RunStatus (an interrupted run may be resumed: KILLED until then)
MLFLOW_STATUSES = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}
#: MLflow's limits: params and metrics per log_batch request, characters of a param value
MLFLOW_MAX_PARAMS, MLFLOW_MAX_METRICS, MLFLOW_MAX_PARAM_CHARS = 100, 1000, 6000
#: W&B's modes; auto: online where a W&B login is found, offline otherwise
WANDB_MODES = ("auto", "online", "offline", "disabled")


def missing_package(logger: str, package: str, extra: str) -> ConfigError:
    return ConfigError("_target_", f'{logger} needs the {package} package: pip install "rlexp[{extra}]"')


def finite_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics as floats, without None and NaN (TensorBoard's logger leaves those out too)."""
    out = {}
    for tag, value in metrics.items():
        if value is not None and not math.isnan(value := float(value)):
            out[tag] = value
    return out


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"algo": {"gamma": 0.99}}`` -> ``{"algo.gamma": 0.99}``; an empty mapping is a leaf."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def sweep_dir(run_dir: str | Path) -> Optional[Path]:
    """A multirun job's sweep directory (its run directory's parent: hydra.sweep.subdir is one
    level); None for a single run."""
    return Path(run_dir).resolve().parent if job_number() is not None else None


def read_json_dict(path: Path) -> Optional[dict[str, Any]]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- MLflow -------------------------------------------------------------------------------------
def local_store(tracking_uri: str) -> str:
    """A ``sqlite:///`` URI with a relative path made absolute (from the working directory, as
    MLflow reads it) and its folder made; any other URI (a server's) as it is."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return tracking_uri
    path = Path(tracking_uri[len(prefix):]).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path)


@contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """For a SQLite store, an exclusive lock on ``<store>.lock`` (POSIX): MLflow makes a new
    store's tables when a client first opens it, and two processes doing so at once collide."""
    prefix = "sqlite:///"
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        fcntl = None
    if fcntl is None or not tracking_uri.startswith(prefix):
        yield
        return
    with open(tracking_uri[len(prefix):] + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MLFLOW_MAX_PARAM_CHARS]


class MLflowLogger(NullLogger):
    """One MLflow run per rlexp run, in the store ``tracking_uri`` names: by default a SQLite
    file under outputs/ (no server; ``mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db``
    shows it), or a tracking server's ``http://host:5000``.

    - experiment: ``experiment``; null: ``rlexp`` for a single run, and one experiment per sweep
      named after the sweep directory, its runs tagged ``rlexp.job`` and ``rlexp.group`` (the
      same for runs that differ only by seed);
    - params: every key of the resolved config (dotted) and the run's hyperparameters; the
      config itself as the artifact ``config.yaml``;
    - metrics: the scalars at their env steps (the final ``hparams/*`` ones too); text entries
      as ``text/<tag>/step_<N>.md`` and evaluation videos as ``videos/<tag>/step_<N>.gif``;
    - at the end, the run's status (finished: FINISHED, failed: FAILED, interrupted: KILLED,
      and the tag ``rlexp.status``) and the run directory's ``artifacts`` (summary.json, the
      last checkpoint).

    On resume the same MLflow run continues (``mlflow_run.json`` in the run directory). MLflow
    cannot delete metric points: where a killed run logged past its last checkpoint, those
    points stay, and the resumed run logs each metric only after that metric's last step."""

    def __init__(self, run_dir: str | Path, purge_step: int | None = None, tracking_uri: str = "sqlite:///outputs/mlflow.db",
                 experiment: Optional[str] = None, artifacts: Sequence[str] = ("summary.json", "checkpoints/last.pt")):
        super().__init__(run_dir)
        try:
            from mlflow.entities import Metric, Param
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing_package("MLflowLogger", "mlflow", "mlflow") from None
        self.Metric, self.Param, self.MlflowException = Metric, Param, MlflowException
        self.run_dir = Path(run_dir)
        self.artifacts = list(artifacts)
        self.pending: list[Any] = []  # asynchronous log_batch operations not yet waited for
        self.logged_until: dict[str, int] = {}  # resumed: each metric's last step in the run already
        self.params: set[str] = set()
        self.ended = self.closed = False
        saved = read_json_dict(self.run_dir / MLFLOW_RUN_FILE) if purge_step is not None else None
        self.resumed = saved is not None
        if saved is not None:
            self.tracking_uri, self.run_id = saved["tracking_uri"], saved["run_id"]
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            self.continue_run(purge_step - 1)
        else:
            self.tracking_uri = local_store(str(tracking_uri))
            with store_lock(self.tracking_uri):  # a sweep's parallel jobs: one of them makes a new store's tables
                self.client = MlflowClient(tracking_uri=self.tracking_uri)
            self.run_id = self.start_run(experiment)
            write_json_atomic(self.run_dir / MLFLOW_RUN_FILE, {"run_id": self.run_id, "tracking_uri": self.tracking_uri})

    def start_run(self, experiment: Optional[str]) -> str:
        sweep = sweep_dir(self.run_dir)
        tags = {"rlexp.run_dir": str(self.run_dir.resolve())}
        if sweep is not None:
            tags.update({"rlexp.sweep_dir": str(sweep), "rlexp.job": str(job_number())})
        name = experiment or (display_path(sweep) if sweep is not None else "rlexp")
        return self.client.create_run(self.experiment_id(name), run_name=self.run_dir.name, tags=tags).info.run_id

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name, artifact_location=self.artifact_location())
            except self.MlflowException:  # another job of the sweep made it first
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        require(found.lifecycle_stage != "deleted", "experiment",
                f"the MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) or choose another name")
        return found.experiment_id

    def artifact_location(self) -> Optional[str]:
        """A SQLite store keeps its runs' artifacts beside it (<store folder>/mlartifacts), not in
        ./mlruns of whichever directory the first run started in; a server decides for itself."""
        prefix = "sqlite:///"
        if not self.tracking_uri.startswith(prefix):
            return None
        return (Path(self.tracking_uri[len(prefix):]).parent / "mlartifacts").as_uri()

    def continue_run(self, checkpoint_step: int) -> None:
        try:
            run = self.client.get_run(self.run_id)
        except self.MlflowException as error:
            raise ConfigError("tracking_uri", f"cannot continue MLflow run {self.run_id} ({MLFLOW_RUN_FILE}) in "
                                              f"{self.tracking_uri}: {str(error).splitlines()[0]}") from None
        self.logged_until = {key: max(point.step for point in self.client.get_metric_history(self.run_id, key))
                             for key in run.data.metrics}
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.set_tag(self.run_id, "rlexp.resumed_at_step", str(checkpoint_step))

    def log_params(self, params: Mapping[str, Any]) -> None:
        new = [self.Param(key, param_value(value)) for key, value in params.items() if key not in self.params]
        for batch in chunks(new, MLFLOW_MAX_PARAMS):
            self.client.log_batch(self.run_id, params=list(batch))
        self.params.update(param.key for param in new)

    def log_config(self, config: Mapping[str, Any]) -> None:
        if self.resumed:  # the run has its params; MLflow refuses to change one (total_steps=, to train longer)
            return
        self.client.log_dict(self.run_id, dict(config), "config.yaml")
        self.log_params(flat_config(config))

    def start_hparams(self, hparams: Mapping[str, Any], group: str, step: int = 0, metrics: Sequence[str] = records.METRICS) -> None:
        self.client.set_tag(self.run_id, "rlexp.group", group)
        if not self.resumed:
            self.log_params(hparams)  # those the config does not hold already: the algorithm's class, group choices

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        points = [self.Metric(key, value, now, step) for key, value in finite_scalars(metrics).items()
                  if step > self.logged_until.get(key, -1)]
        for batch in chunks(points, MLFLOW_MAX_METRICS):
            self.pending.append(self.client.log_batch(self.run_id, metrics=list(batch), synchronous=False))
        if len(self.pending) >= 100:
            self.flush()

    def text(self, tag: str, text: str, step: int) -> None:
        self.client.log_text(self.run_id, text, f"text/{tag}/step_{step}.md")

    def video(self, tag: str, frames: Any, step: int, fps: int = 30) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"step_{step}.gif"
            path.write_bytes(records.gif_bytes(frames, fps))
            self.client.log_artifact(self.run_id, str(path), f"videos/{tag}")

    def end_hparams(self, status: str, metrics: Mapping[str, float], step: int) -> None:
        self.log(metrics, step)
        self.flush()
        self.client.set_tag(self.run_id, "rlexp.status", status)
        self.client.set_terminated(self.run_id, MLFLOW_STATUSES.get(status, "FAILED"))
        self.ended = True

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for operation in pending:
            operation.wait()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.flush()
        for name in self.artifacts:  # summary.json is written after end_hparams: uploaded here
            path = self.run_dir / name
            folder = Path(name).parent.as_posix()
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path), None if folder == "." else folder)
        if not self.ended:  # closed without an end (a trainer built and closed without fit)
            self.client.set_terminated(self.run_id, "KILLED")


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (outputs/multirun/...)."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


# -- Weights & Biases ------------------------------------------------------------------------
def wandb_logged_in() -> bool:
    """Whether W&B finds credentials without asking: WANDB_API_KEY, an identity token file, or
    ``wandb login``'s entry for the W&B host in ~/.netrc (or the file NETRC names)."""
    import netrc
    from urllib.parse import urlsplit

    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(mode: str) -> Optional[str]:
    """``mode`` for wandb.init: auto is WANDB_MODE where it is set (None: W&B reads it), else
    online with a login and offline without one."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return None
    return "online" if wandb_logged_in() else "offline"


class WandbLogger(NullLogger):
    """One W&B run per rlexp run, in ``project`` (and ``entity``), named after the run directory,
    its files under ``<run dir>/wandb``. ``mode``: auto (online where a W&B login is found,
    offline otherwise; WANDB_MODE wins), online, offline or disabled. An offline run is kept in
    ``<run dir>/wandb/offline-run-*``; ``wandb sync`` uploads it later.

    - config: the run's resolved config; group: the same for runs that differ only by seed
      (rlexp.run.records.group_name), so W&B groups a sweep's seeds; a sweep's runs are tagged
      with its directory's name;
    - history: the scalars at their env steps (``step=``), distributions every
      ``histogram_every`` updates, text entries as HTML, evaluation videos as GIFs;
    - summary: the last value of each scalar (the final ``hparams/*`` among them), summary.json's
      values and ``status``; the run directory's ``artifacts`` as run files.

    On resume the same W&B run continues (``wandb_run.json``; resume="allow"); W&B itself drops
    steps below the run's last one."""

    def __init__(self, run_dir: str | Path, purge_step: int | None = None, project: str = "rlexp", entity: Optional[str] = None,
                 mode: str = "auto", histogram_every: int = 10, artifacts: Sequence[str] = ("summary.json", "checkpoints/last.pt")):
        super().__init__(run_dir)
        require(int(histogram_every) >= 0, "histogram_every", f"must be >= 0 (0: no distributions), got {histogram_every}")
        require(mode in WANDB_MODES, "mode", f"must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        try:
            import wandb
        except ImportError:
            raise missing_package("WandbLogger", "wandb", "wandb") from None
        self.wandb = wandb
        self.run_dir = Path(run_dir)
        self.histogram_every = int(histogram_every)
        self.mode = wandb_mode(mode)
        self.artifacts = list(artifacts)
        saved = read_json_dict(self.run_dir / WANDB_RUN_FILE) if purge_step is not None else None
        self.resume_id = saved.get("id") if saved else None
        self.project = saved.get("project", project) if saved else project
        self.entity = saved.get("entity", entity) if saved else entity
        self.config: dict[str, Any] = {}
        self.run: Any = None
        self.status: Optional[str] = None

    def start(self, group: Optional[str] = None) -> Any:
        sweep = sweep_dir(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.init(
            project=self.project, entity=self.entity, dir=str(self.run_dir), name=self.run_dir.name, group=group, job_type="train",
            config=self.config, tags=[f"sweep {sweep.name}"[:64]] if sweep is not None else None, mode=self.mode,
            id=self.resume_id, resume="allow" if self.resume_id else None, allow_val_change=bool(self.resume_id),
            reinit="create_new", settings=self.wandb.Settings(console="off", quiet=True))
        if self.mode == "disabled":
            return self.run
        write_json_atomic(self.run_dir / WANDB_RUN_FILE, {"id": self.run.id, "project": self.run.project, "entity": self.run.entity})
        where = f"offline in {Path(self.run.dir).parent}" if self.run.offline else self.run.url
        log.info("W&B run %s%s: %s", self.run.id, " (resumed)" if self.resume_id else "", where)
        return self.run

    def active(self) -> Any:
        return self.run if self.run is not None else self.start()

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        if self.run is not None:
            self.run.config.update(self.config, allow_val_change=True)

    def start_hparams(self, hparams: Mapping[str, Any], group: str, step: int = 0, metrics: Sequence[str] = records.METRICS) -> None:
        if self.run is None:
            self.start(group)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        row = finite_scalars(metrics)
        if row:
            self.active().log(row, step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.active().log({tag: self.wandb.Html(f"<pre>{html.escape(text)}</pre>")}, step=step)

    def video(self, tag: str, frames: Any, step: int, fps: int = 30) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"step_{step}.gif"
            path.write_bytes(records.gif_bytes(frames, fps))
            self.active().log({tag: self.wandb.Video(str(path), format="gif")}, step=step)  # copied into the run on log

    def histograms(self, values: Mapping[str, Any], step: int) -> None:
        row = {}
        for tag, value in values.items():
            array = records.finite_values(value)
            if array is not None:
                row[tag] = self.wandb.Histogram(np_histogram=np.histogram(array, bins=records.HISTOGRAM_BINS))
        if row:
            self.active().log(row, step=step)

    def counts(self, tag: str, counts: Sequence[int], step: int) -> None:
        if sum(counts) > 0:  # one bin per integer, centred on it
            edges = np.arange(len(counts) + 1, dtype=float) - 0.5
            self.active().log({tag: self.wandb.Histogram(np_histogram=(np.asarray(counts), edges))}, step=step)

    def end_hparams(self, status: str, metrics: Mapping[str, float], step: int) -> None:
        self.log(metrics, step)
        self.status = status
        self.active().summary["status"] = status

    def close(self) -> None:
        if self.run is None:
            return
        run, self.run = self.run, None
        summary = read_json_dict(self.run_dir / "summary.json") or {}
        run.summary.update({key: value for key, value in summary.items()
                            if isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value))})
        for name in self.artifacts:
            path = self.run_dir / name
            if path.exists():  # a folder: the files in it
                run.save(str(path / "*" if path.is_dir() else path), base_path=str(self.run_dir), policy="now")
        if self.status == "interrupted":
            run.mark_preempting()  # stopped to be resumed, not failed
        run.finish(exit_code=1 if self.status == "failed" else 0)
        if run.offline:
            log.info("W&B run %s is offline; upload it with: wandb sync %s", run.id, Path(run.dir).parent)

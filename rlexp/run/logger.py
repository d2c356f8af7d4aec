"""Metric sinks behind one interface; every x-axis is env steps.

``NullLogger`` is the interface (and logs nothing); ``TensorBoardLogger`` writes the run's own
event files; ``rlexp.run.trackers`` holds MLflow and Weights & Biases. The ``logger`` group
selects any number of them (``logger=[tensorboard,mlflow]``): each option's yaml is its own
node, ``logger.<name>``, and ``make_logger`` builds every node and hands the trainer one
logger (``Loggers`` forwards each call to all of them).

(Named logger.py rather than logging.py so that nothing inside the
package can shadow the standard library's ``logging``.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from rlexp.run import records
from rlexp.errors import ConfigError, require
from rlexp.files import write_atomic


class NullLogger:
    """The interface every logger answers, in the order a run calls it; logs nothing (for
    benchmarks and tests that do not look at curves). A backend overrides what it can show.

    The trainer builds a logger with ``run_dir`` and, when it resumes, ``purge_step`` (the
    first step after the checkpoint: what a killed run logged from there on is stale)."""

    def __init__(self, run_dir: str | Path | None = None, purge_step: int | None = None):
        self.run_dir = run_dir

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The run's whole resolved config (nested plain values), once, before anything else."""

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def video(self, tag: str, frames: Any, step: int, fps: int = 30) -> None:
        """Frames (T, H, W, 3) uint8, played as an animated GIF where the backend shows one."""

    #: write distributions every N updates (0: never); the Records callback computes them only then
    histogram_every: int = 0

    def start_hparams(self, hparams: Mapping[str, Any], group: str, step: int = 0, metrics: Sequence[str] = records.METRICS) -> None:
        """The run's start: its flat hyperparameters (rlexp.run.records.run_hparams), the group
        of runs that differ only by seed, and the final ``metrics`` it will report (TensorBoard's
        HParams experiment and session-start records)."""

    def end_hparams(self, status: str, metrics: Mapping[str, float], step: int) -> None:
        """The run's end: the final ``hparams/*`` scalars and its status (finished, failed,
        interrupted); TensorBoard's session-end record (none for an interrupted run:
        rlexp.run.records.STATUSES). summary.json is written after this, before ``close``."""

    def histograms(self, values: Mapping[str, Any], step: int) -> None:
        """One histogram per tag of the values (tensors or arrays)."""

    def counts(self, tag: str, counts: Sequence[int], step: int) -> None:
        """A histogram of the integers 0..n-1 from how often each occurred."""

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger(NullLogger):
    def __init__(
        self, run_dir: str | Path, subdir: str = "tb", flush_secs: int = 10, purge_step: int | None = None, histogram_every: int = 10
    ):
        super().__init__(run_dir)
        require(int(histogram_every) >= 0, "histogram_every", f"must be >= 0 (0: no distributions), got {histogram_every}")
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

        self.log_dir = Path(run_dir) / subdir
        # max_queue: events waiting for the writer thread. At torch's default (10) one update's
        # scalars already fill it, and every further event then waits for that thread (ms each)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs, purge_step=purge_step, max_queue=1000)
        self.histogram_every = int(histogram_every)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for tag, value in metrics.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(tag, value, global_step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        self._write(records.text_summary(tag, text), step)  # under exactly ``tag`` (add_text appends /text_summary)

    def video(self, tag: str, frames: Any, step: int, fps: int = 30) -> None:
        self._write(records.gif_summary(tag, frames, fps), step)

    def _write(self, summary: Any, step: int) -> None:
        self.writer._get_file_writer().add_summary(summary, global_step=step)

    def start_hparams(self, hparams: Mapping[str, Any], group: str, step: int = 0, metrics: Sequence[str] = records.METRICS) -> None:
        self._write(records.experiment_summary(hparams, metrics), step)
        self._write(records.session_start_summary(hparams, group), step)

    def end_hparams(self, status: str, metrics: Mapping[str, float], step: int) -> None:
        self.log(metrics, step)
        end = records.session_end_summary(status)
        if end is not None:
            self._write(end, step)
        self.writer.flush()

    def histograms(self, values: Mapping[str, Any], step: int) -> None:
        for tag, value in values.items():
            array = records.finite_values(value)
            if array is not None:
                self.writer.add_histogram(tag, array, global_step=step, bins=records.HISTOGRAM_BINS)

    def counts(self, tag: str, counts: Sequence[int], step: int) -> None:
        if sum(counts) > 0:
            self._write(records.count_histogram_summary(tag, counts), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Loggers(NullLogger):
    """Several loggers as one: every call goes to each, in order. Distributions are computed
    every ``histogram_every`` updates, the smallest of the loggers that write them, and go to
    those loggers only. ``close`` closes every logger even when one of them fails."""

    def __init__(self, loggers: Iterable[NullLogger]):
        super().__init__()
        self.loggers = list(loggers)
        everies = [logger.histogram_every for logger in self.loggers if logger.histogram_every > 0]
        self.histogram_every = min(everies, default=0)

    def log_config(self, config: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            if hasattr(logger, "log_config"):  # a user's own logger may predate log_config
                logger.log_config(config)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log(metrics, step)

    def text(self, tag: str, text: str, step: int) -> None:
        for logger in self.loggers:
            logger.text(tag, text, step)

    def video(self, tag: str, frames: Any, step: int, fps: int = 30) -> None:
        for logger in self.loggers:
            logger.video(tag, frames, step, fps=fps)

    def start_hparams(self, hparams: Mapping[str, Any], group: str, step: int = 0, metrics: Sequence[str] = records.METRICS) -> None:
        for logger in self.loggers:
            logger.start_hparams(hparams, group, step=step, metrics=metrics)

    def end_hparams(self, status: str, metrics: Mapping[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.end_hparams(status, metrics, step)

    def histograms(self, values: Mapping[str, Any], step: int) -> None:
        for logger in self.loggers:
            if logger.histogram_every > 0:
                logger.histograms(values, step)

    def counts(self, tag: str, counts: Sequence[int], step: int) -> None:
        for logger in self.loggers:
            if logger.histogram_every > 0:
                logger.counts(tag, counts, step)

    def flush(self) -> None:
        for logger in self.loggers:
            logger.flush()

    def close(self) -> None:
        failure = None
        for logger in self.loggers:
            try:
                logger.close()
            except Exception as error:  # noqa: BLE001 - the others still close; the first failure is raised after
                failure = failure or error
        if failure is not None:
            raise failure


def logger_nodes(node: Any) -> list[tuple[str, Any]]:
    """(config key, node) of every logger the ``logger`` config selects. Today's layout has one
    node per selected option (``logger.tensorboard``, ``logger.mlflow``; ``logger=none``: none);
    a run saved before several loggers existed has a single node with a ``_target_``
    (``logger._target_: ...TensorBoardLogger``), which still builds."""
    from omegaconf import DictConfig

    if node is None:
        return []
    if not isinstance(node, (DictConfig, Mapping)):
        raise ConfigError("logger", f"must be a mapping of loggers such as {{tensorboard: {{_target_: ...}}}}, got {node!r}")
    if "_target_" in node:
        return [("logger", node)]
    nodes = []
    for name, child in node.items():
        if child is None:  # logger.mlflow=null switches one off
            continue
        if not isinstance(child, (DictConfig, Mapping)) or "_target_" not in child:
            raise ConfigError(f"logger.{name}", f"must be a logger's config with a _target_, got {child!r}")
        nodes.append((f"logger.{name}", child))
    return nodes


def make_logger(cfg: Any, run_dir: str | Path, purge_step: int | None = None) -> NullLogger:
    """The run's logger from its config's ``logger`` node: one logger, ``Loggers`` for several,
    a ``NullLogger`` for none; given the run's resolved config (``log_config``)."""
    from omegaconf import OmegaConf

    from rlexp.builders import build

    loggers = [build(key, node, run_dir=run_dir, purge_step=purge_step) for key, node in logger_nodes(cfg.get("logger"))]
    logger = loggers[0] if len(loggers) == 1 else Loggers(loggers) if loggers else NullLogger(run_dir)
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an interpolation that cannot resolve here: log what is there
        config = OmegaConf.to_container(cfg, resolve=False)
    if hasattr(logger, "log_config"):  # a user's own logger may predate log_config
        logger.log_config(config)
    return logger


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> None:
    """JSON through a temporary file and a rename: never half a file."""
    text = json.dumps(data, indent=2, sort_keys=True, default=float) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))

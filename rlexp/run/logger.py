"""Metric sinks. TensorBoard through torch.utils.tensorboard; every x-axis is env steps.

(Named logger.py rather than logging.py so that nothing inside the
package can shadow the standard library's ``logging``.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from rlexp.run import records
from rlexp.errors import require
from rlexp.files import write_atomic


class NullLogger:
    """Logs nothing: for benchmarks and tests that do not look at curves."""

    def __init__(self, run_dir: str | Path | None = None, purge_step: int | None = None):
        self.run_dir = run_dir

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def video(self, tag: str, frames: Any, step: int, fps: int = 30) -> None:
        """Frames (T, H, W, 3) uint8 as a TensorBoard video."""

    # -- TensorBoard's HParams and Distributions dashboards (rlexp.run.records) ---------------
    #: write distributions every N updates (0: never); the Records callback computes them only then
    histogram_every: int = 0

    def start_hparams(self, hparams: Mapping[str, Any], group: str, step: int = 0, metrics: Sequence[str] = records.METRICS) -> None:
        """The HParams dashboard's experiment (its hyperparameters and ``metrics``) and session-start records."""

    def end_hparams(self, status: str, metrics: Mapping[str, float], step: int) -> None:
        """The final ``hparams/*`` scalars and the session-end record with the run's status
        (none for an interrupted run: rlexp.run.records.STATUSES)."""

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


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> None:
    """JSON through a temporary file and a rename: never half a file."""
    text = json.dumps(data, indent=2, sort_keys=True, default=float) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))

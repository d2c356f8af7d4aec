"""Metric sinks. TensorBoard through torch.utils.tensorboard; every x-axis is env steps.

(Named logger.py rather than DESIGN.md's logging.py so that nothing inside the
package can shadow the standard library's ``logging``.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from rlexp.files import write_atomic


class NullLogger:
    """Logs nothing: for benchmarks and tests that do not look at curves."""

    def __init__(self, run_dir: str | Path | None = None, purge_step: int | None = None):
        self.run_dir = run_dir

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger(NullLogger):
    def __init__(self, run_dir: str | Path, subdir: str = "tb", flush_secs: int = 10, purge_step: int | None = None):
        super().__init__(run_dir)
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

        self.log_dir = Path(run_dir) / subdir
        self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs, purge_step=purge_step)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for tag, value in metrics.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> None:
    """JSON through a temporary file and a rename: never half a file."""
    text = json.dumps(data, indent=2, sort_keys=True, default=float) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))

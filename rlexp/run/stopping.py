"""Stopping cleanly: SIGINT/SIGTERM ask the trainer to stop after the current update."""

from __future__ import annotations

import logging
import signal
from typing import Any, Optional

log = logging.getLogger("rlexp")


class StopRequest:
    """While active, the first SIGINT/SIGTERM is recorded (``signum``) instead of killing
    the process, so the loop can finish its update, save and flush; a second one aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        #: set while a failed run writes its records: a signal then (a launcher stopping the
        #: ranks a lost one left behind) waits for them instead of killing the process midway
        self.failing = False
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.failing:  # the run ends with its error once its records are written
            return
        log.warning("%s received: stopping after this update (send again to abort)", self.name)

    def __enter__(self) -> "StopRequest":
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (some launchers): default handling stays
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

"""Values the env reports in ``info`` (``env.info_metrics``), read where episodes end.

``env.info_metrics=[is_success, score]`` logs each key, read from the info of the step that
ends an episode (the episode RecordEpisodeStatistics reports: with gymnasium's NEXT_STEP
autoreset, the step that ends it carries the episode's final info; under env=atari's episodic
life, the end of the whole game), as ``rollout/<key>`` (over the episodes that finished in the
rollout) and ``eval/<key>`` (over the evaluation's episodes). A map chooses the reduction over
those episodes: ``{is_success: mean, score: max}`` (mean, sum, max, min; mean by default).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Iterable

import numpy as np

from rlexp.envs.factory import INFO_REDUCTIONS as REDUCTIONS

log = logging.getLogger("rlexp")

def as_numpy(x: Any) -> np.ndarray:
    return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)


class InfoMetrics:
    """Collects the configured info values of the episodes that end, until :meth:`pop`."""

    def __init__(self, reductions: Mapping[str, str]):
        self.reductions = dict(reductions)
        self.values: dict[str, list[float]] = {key: [] for key in self.reductions}
        self.seen: set[str] = set()  # configured keys seen at least once
        self.reported: set[str] = set()  # every key the env's info has held

    def __bool__(self) -> bool:
        return bool(self.reductions)

    def read(self, info: Mapping[str, Any], ended: Any) -> None:
        """The values of the sub-envs whose episode ended at this step (``ended``: (num_envs,) bools)."""
        self.reported.update(k for k in info if not k.startswith("_"))
        ended = as_numpy(ended).astype(bool)
        if not ended.any():
            return
        for key in self.reductions:
            if key not in info:
                continue
            values = as_numpy(info[key])
            present = as_numpy(info.get("_" + key, np.ones(len(ended), dtype=bool))).astype(bool) & ended
            if present.any():
                self.seen.add(key)
                rows = values[present].astype(float).reshape(int(present.sum()), -1)
                self.values[key].extend(rows.mean(axis=1).tolist())  # a vector value: its mean

    def pop(self, prefix: str) -> dict[str, float]:
        """``{prefix/key: reduced value}`` of the episodes read since the last pop (keys with none left out)."""
        out = {f"{prefix}/{key}": float(REDUCTIONS[self.reductions[key]](values))
               for key, values in self.values.items() if values}
        for values in self.values.values():
            values.clear()
        return out

    def warn_missing(self, env_id: str, others: Iterable["InfoMetrics"] = ()) -> None:
        """One warning for the configured keys no episode end has carried (by the end of the
        first evaluation), naming the keys the env does report."""
        seen = set(self.seen).union(*(o.seen for o in others))
        reported = set(self.reported).union(*(o.reported for o in others))
        missing = [key for key in self.reductions if key not in seen]
        if missing:
            keys = ", ".join(sorted(reported - {"episode"})) or "none"
            log.warning("env.info_metrics: %s never appeared in %s's info at an episode's end; the env reports: %s",
                        ", ".join(missing), env_id, keys)


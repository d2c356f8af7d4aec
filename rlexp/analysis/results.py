"""Read a Hydra multirun back: one record per job, grouped by what the sweep varied.

Every job directory holds what Hydra wrote (``.hydra/overrides.yaml``,
``.hydra/hydra.yaml``), the run's ``summary.json`` and its TensorBoard events; this
module reads exactly those (the events through TensorBoard's own EventAccumulator),
so nothing here depends on a second log format. A job that crashed, was interrupted
or never started is reported, not fatal: the tables and plots use the jobs that
finished and list the others.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import yaml

EVAL_TAG = "eval/return_mean"
TRAIN_TAG = "rollout/episode_return"


@dataclass
class Curve:
    """One scalar series: env steps, seconds since the run started, values."""

    steps: np.ndarray
    wall: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class Job:
    path: Path
    num: Optional[int]
    overrides: list[str]
    algo: str
    seed: Optional[int]
    config: dict = field(default_factory=dict)  # the composed config (.hydra/config.yaml)
    summary: Optional[dict] = None
    curves: dict[str, Curve] = field(default_factory=dict)
    problem: Optional[str] = None  # why the job cannot be counted as finished

    @property
    def ok(self) -> bool:
        return self.problem is None

    def eval_curve(self) -> Optional[Curve]:
        """Evaluation returns from TensorBoard, else from summary.json (no wall times there)."""
        if EVAL_TAG in self.curves:
            return self.curves[EVAL_TAG]
        history = (self.summary or {}).get("eval_history") or []
        if not history:
            return None
        steps, means, _ = (np.asarray(col, dtype=float) for col in zip(*history))
        return Curve(steps, np.full_like(steps, np.nan), means)


@dataclass
class Multirun:
    root: Path
    jobs: list[Job]
    missing: list[str]  # the override lists of jobs the sweep defined but that left no directory

    def finished(self) -> list[Job]:
        return [job for job in self.jobs if job.ok]

    def problems(self) -> list[str]:
        lines = [f"{job.path.name} ({' '.join(job.overrides)}): {job.problem}" for job in self.jobs if not job.ok]
        return lines + [f"job {overrides}: no job directory (never ran?)" for overrides in self.missing]


# -- reading ----------------------------------------------------------------------
def read_scalars(tb_dir: Path, tags: Iterable[str]) -> dict[str, Curve]:
    """The given scalar tags of one run; wall time counts from the run's first event."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    accumulator = EventAccumulator(str(tb_dir), size_guidance={SCALARS: 0})  # 0 = keep every point
    accumulator.Reload()
    available = set(accumulator.Tags().get("scalars", []))
    try:
        start = accumulator.FirstEventTimestamp()
    except ValueError:  # no events at all
        return {}
    curves = {}
    for tag in tags:
        if tag in available:
            events = accumulator.Scalars(tag)
            curves[tag] = Curve(
                np.array([e.step for e in events], dtype=float),
                np.array([e.wall_time - start for e in events], dtype=float),
                np.array([e.value for e in events], dtype=float),
            )
    return curves


def first_event_time(tb_dir: Path) -> Optional[float]:
    """When a run wrote its first event (Unix seconds), or None without one."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not Path(tb_dir).is_dir():
        return None
    accumulator = EventAccumulator(str(tb_dir), size_guidance={"scalars": 1})
    accumulator.Reload()
    try:
        return float(accumulator.FirstEventTimestamp())
    except ValueError:
        return None


def _load_yaml(path: Path):
    with open(path) as f:
        return yaml.safe_load(f)


def load_job(path: Path, tags: Sequence[str] = (EVAL_TAG, TRAIN_TAG)) -> Job:
    path = Path(path)
    # a resumed run keeps its first launch's overrides and job number in .hydra/first/
    # (rlexp.cli.train.keep_first_launch): those say which job of its sweep it is
    launch = path / ".hydra" / "first" if (path / ".hydra" / "first" / "overrides.yaml").is_file() else path / ".hydra"
    overrides = [str(o) for o in _load_yaml(launch / "overrides.yaml") or []]
    hydra_cfg = (_load_yaml(launch / "hydra.yaml") or {}).get("hydra", {}) if (launch / "hydra.yaml").is_file() else {}
    config = _load_yaml(path / ".hydra" / "config.yaml") or {}
    num = hydra_cfg.get("job", {}).get("num")
    algo = hydra_cfg.get("runtime", {}).get("choices", {}).get("algo") or str(config.get("algo", {}).get("_target_", "?"))
    seed = config.get("seed")
    job = Job(path, num, overrides, algo, seed, config)

    summary_path = path / "summary.json"
    if not summary_path.exists():
        job.problem = "no summary.json (failed, killed or still running; see train.log)"
    else:
        try:
            job.summary = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            job.problem = f"unreadable summary.json: {e}"
        else:
            if job.summary.get("status") != "finished":
                job.problem = f"status {job.summary.get('status')!r}"
    tb_dir = path / "tb"
    if tb_dir.is_dir():
        job.curves = read_scalars(tb_dir, tags)
    return job


def expected_jobs(root: Path) -> Optional[list[list[str]]]:
    """The override list of every job a basic-sweeper multirun defines, in launch order
    (``None`` when that cannot be known, e.g. another sweeper or no multirun.yaml)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(root) / "multirun.yaml"
    if not path.exists():
        return None
    hydra_cfg = (_load_yaml(path) or {}).get("hydra", {})
    sweeper = hydra_cfg.get("sweeper", {})
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    arguments = params + list(hydra_cfg.get("overrides", {}).get("task", []))
    choices: dict[str, list[str]] = {}  # later overrides of a key replace earlier ones, as in Hydra
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(combo) for combo in itertools.product(*choices.values())]


def load_multirun(root: str | Path, tags: Sequence[str] = (EVAL_TAG, TRAIN_TAG)) -> Multirun:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    jobs = [load_job(p.parent.parent, tags) for p in sorted(root.glob("*/.hydra/overrides.yaml"))]
    if not jobs and (root / ".hydra" / "overrides.yaml").exists():  # a single run's directory
        jobs = [load_job(root, tags)]
    jobs.sort(key=lambda j: (j.num if j.num is not None else math.inf, j.path.name))
    missing = []
    expected = expected_jobs(root)
    if expected is not None:
        seen = {tuple(sorted(job.overrides)) for job in jobs}
        missing = [" ".join(o) for o in expected if tuple(sorted(o)) not in seen]
    return Multirun(root, jobs, missing)


# -- grouping and statistics ----------------------------------------------------------
def group_by_setting(jobs: Sequence[Job]) -> dict[str, list[Job]]:
    """Jobs that differ only in their seed form a group, named by the overrides that
    vary between groups (``algo=ppo`` is shown as ``ppo``)."""
    def setting(job: Job) -> tuple[str, ...]:
        return tuple(o for o in job.overrides if o.split("=", 1)[0].lstrip("+~") != "seed")

    settings = [setting(job) for job in jobs]
    common = set.intersection(*(set(s) for s in settings)) if settings else set()
    groups: dict[str, list[Job]] = {}
    for job, s in zip(jobs, settings):
        varying = [o for o in s if o not in common]
        label = " ".join(o.removeprefix("algo=") for o in varying) or job.algo
        groups.setdefault(label, []).append(job)
    return groups


def _flatten(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        return {k: v for key, child in node.items() for k, v in _flatten(child, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def differing_settings(groups: dict[str, list[Job]], section: str = "algo") -> dict[str, dict[str, object]]:
    """Per group, the ``section`` keys (e.g. the algorithm's hyperparameters) whose values
    are not the same in every group: what a reader needs to reproduce the comparison."""
    flat = {label: _flatten(jobs[0].config.get(section) or {}) for label, jobs in groups.items() if jobs}
    keys = sorted(set().union(*flat.values())) if flat else []
    differing = [k for k in keys if k != "_target_" and len({repr(f.get(k, "-")) for f in flat.values()}) > 1]
    return {label: {k: f[k] for k in differing if k in f} for label, f in flat.items()}


def first_step_at(curve: Optional[Curve], threshold: float) -> Optional[float]:
    """Env steps of the first evaluation at or above ``threshold`` (None: never)."""
    if curve is None:
        return None
    hits = np.nonzero(curve.values >= threshold)[0]
    return float(curve.steps[hits[0]]) if len(hits) else None


def resample(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``y(x)`` on ``grid``: averaged within grid cells where the series is denser than
    the grid (per-rollout training returns), linearly interpolated where it is sparser."""
    if len(x) > len(grid):
        edges = np.concatenate([[-np.inf], (grid[1:] + grid[:-1]) / 2, [np.inf]])
        cell = np.digitize(x, edges) - 1
        counts = np.bincount(cell, minlength=len(grid))
        sums = np.bincount(cell, weights=y, minlength=len(grid))
        filled = counts > 0
        x, y = grid[filled], sums[filled] / counts[filled]
    return np.interp(grid, x, y)


def usable_curves(curves: Sequence[Curve], axis: str) -> list[Curve]:
    """The curves that have points and a value on ``axis`` at every point (a resumed run's
    records have no wall times, so it drops out of the wall-time panels)."""
    return [c for c in curves if len(c) and not np.isnan(getattr(c, axis)).any()]


def mean_std_curve(curves: Sequence[Curve], axis: str, points: int = 100) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(grid, mean, std) over seeds on the x-range every seed covers; ``axis`` is
    ``steps`` or ``wall``."""
    series = [(getattr(c, axis), c.values) for c in usable_curves(curves, axis)]
    if not series:
        return None
    lo, hi = max(x[0] for x, _ in series), min(x[-1] for x, _ in series)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    stacked = np.stack([resample(x, y, grid) for x, y in series])
    return grid, stacked.mean(axis=0), stacked.std(axis=0)


def mean_std(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and standard deviation over seeds (numpy's default ddof=0); None, None if empty."""
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def fmt_mean_std(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    mean, std = mean_std(values)
    return "-" if mean is None else f"{fmt.format(mean)} ± {fmt.format(std)}"


def results_table(groups: dict[str, list[Job]], thresholds: Sequence[float] = (195, 475)) -> str:
    """A markdown table, one row per group of finished jobs; numbers are mean ± std over seeds."""
    header = ["algorithm", "seeds", "final eval return"]
    header += [f"steps to {t:g}" for t in thresholds]
    header += ["train time (s)", "steps/s"]
    rows = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for label, jobs in groups.items():
        done = [job for job in jobs if job.ok]
        cells = [label, f"{len(done)}/{len(jobs)}", fmt_mean_std([job.summary["eval_return_mean"] for job in done])]
        for t in thresholds:
            reached = [s for s in (first_step_at(job.eval_curve(), t) for job in done) if s is not None]
            if not reached:
                cells.append("never")
            else:
                text = fmt_mean_std(reached, "{:,.0f}")
                cells.append(text if len(reached) == len(done) else f"{text} ({len(reached)}/{len(done)} reached)")
        cells.append(fmt_mean_std([job.summary["train_time_s"] for job in done]))
        cells.append(fmt_mean_std([job.summary["sps"] for job in done], "{:,.0f}"))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# -- plotting ---------------------------------------------------------------------------
def plot_learning_curves(groups: dict[str, list[Job]], path: str | Path, title: str = "") -> Path:
    """Mean ± std over seeds of the evaluation and training returns, against env steps
    and against wall time (seconds since the run started, evaluation included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(EVAL_TAG, "evaluation return"), (TRAIN_TAG, "training episode return")]
    axes_kinds = [("steps", "environment steps"), ("wall", "wall time (s)")]
    fig, axes = plt.subplots(len(panels), len(axes_kinds), figsize=(12, 8), squeeze=False)
    for row, (tag, ylabel) in enumerate(panels):
        for col, (axis, xlabel) in enumerate(axes_kinds):
            ax = axes[row][col]
            fewer = False  # a panel that averages fewer seeds than its row's steps panel says so
            for i, (label, jobs) in enumerate(groups.items()):
                curves = [job.curves[tag] for job in jobs if job.ok and tag in job.curves]
                used = len(usable_curves(curves, axis))
                fewer |= used < len(usable_curves(curves, "steps"))
                stats = mean_std_curve(curves, axis)
                if stats is None:
                    continue
                grid, mean, std = stats
                color = f"C{i}"
                ax.plot(grid, mean, color=color, label=f"{label} (n={used})")
                ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if ((row == 0 and col == 0) or fewer) and ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

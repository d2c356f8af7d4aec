"""A report on one Hydra multirun (basic sweep, any launcher, or an Optuna search).

    python scripts/report.py outputs/multirun/<time> [--out DIR] [--threshold 475]

Reads what every job left (``.hydra/``, ``summary.json``, TensorBoard events) through
rlexp/analysis/results.py, groups the jobs by the swept keys except the seed, and writes into the
multirun directory (or ``--out``):

* ``report.csv``: one row per group: the swept values, jobs and finished seeds, mean and
  std over seeds of the final evaluation return, of the env steps to the first evaluation
  at or above the threshold (over the seeds that got there), of the training time (s) and
  of the steps per second; the run directories of the group. Plain numbers, no rounding.
* ``report.md``: the same as a markdown table, the jobs that failed or never ran, and for
  an Optuna search (``optimization_results.yaml``) the best trial.
* ``learning_curves.png``: mean ± std over seeds of each group's evaluation and training
  returns against env steps and wall time.

The threshold defaults to the environment's own ``reward_threshold`` (Gymnasium's
registry: 475 for CartPole-v1, -100 for Acrobot-v1; none for Pendulum-v1).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import yaml

from rlexp.analysis.results import (EVAL_TAG, Job, Multirun, first_step_at, fmt_mean_std, group_by_setting, load_multirun, mean_std,
                           plot_learning_curves)
from rlexp.envs import reward_threshold

CSV_NAME, MD_NAME, PNG_NAME = "report.csv", "report.md", "learning_curves.png"
OPTUNA_RESULTS = "optimization_results.yaml"


# -- what the jobs varied ----------------------------------------------------------------
def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def overrides_dict(job: Job) -> dict[str, str]:
    return {override_key(o): o.split("=", 1)[1] if "=" in o else "" for o in job.overrides}


def swept_keys(jobs: Sequence[Job]) -> list[str]:
    """The override keys whose values differ between jobs, except the seed, in command-line order."""
    per_job = [overrides_dict(job) for job in jobs]
    keys = list(dict.fromkeys(k for d in per_job for k in d))
    return [k for k in keys if k != "seed" and len({d.get(k) for d in per_job}) > 1]


def job_env_id(job: Job) -> Optional[str]:
    return (job.summary or {}).get("env_id") or (job.config.get("env") or {}).get("id")


# -- one row per group --------------------------------------------------------------------
@dataclass
class Row:
    label: str
    setting: dict[str, str]
    jobs: list[Job]
    env_id: Optional[str]
    threshold: Optional[float]
    finished: list[Job] = field(init=False)

    def __post_init__(self) -> None:
        self.finished = [job for job in self.jobs if job.ok]

    def values(self, key: str) -> list[float]:
        return [float(job.summary[key]) for job in self.finished if job.summary.get(key) is not None]

    def steps_to_threshold(self) -> list[float]:
        if self.threshold is None:
            return []
        steps = (first_step_at(job.eval_curve(), self.threshold) for job in self.finished)
        return [s for s in steps if s is not None]

    def objective(self) -> float:
        """Mean final evaluation return (-inf without a finished job): what rows sort by."""
        values = [v for v in self.values("eval_return_mean") if not math.isnan(v)]
        return float(np.mean(values)) if values else -math.inf


def build_rows(run: Multirun, threshold: Optional[float] = None) -> tuple[list[str], list[Row]]:
    keys = swept_keys(run.jobs)
    rows = []
    for label, jobs in group_by_setting(run.jobs).items():
        first = overrides_dict(jobs[0])
        env_id = next((e for e in map(job_env_id, jobs) if e), None)
        rows.append(Row(label, {k: first.get(k, "") for k in keys}, jobs, env_id,
                        threshold if threshold is not None else reward_threshold(env_id)))
    return keys, rows


# -- CSV ------------------------------------------------------------------------------------
CSV_STATS = [("final_eval_return", "eval_return_mean"), ("train_time_s", "train_time_s"), ("sps", "sps")]


def csv_columns(keys: Sequence[str]) -> list[str]:
    columns = ["setting", *keys, "env_id", "jobs", "seeds"]
    columns += ["final_eval_return_mean", "final_eval_return_std"]
    columns += ["threshold", "reached", "steps_to_threshold_mean", "steps_to_threshold_std"]
    columns += ["train_time_s_mean", "train_time_s_std", "sps_mean", "sps_std", "runs"]
    return columns


def csv_record(row: Row) -> dict[str, object]:
    record: dict[str, object] = {"setting": row.label, **row.setting, "env_id": row.env_id or "",
                                 "jobs": len(row.jobs), "seeds": len(row.finished)}
    for name, summary_key in CSV_STATS:
        record[f"{name}_mean"], record[f"{name}_std"] = mean_std(row.values(summary_key))
    reached = row.steps_to_threshold()
    record["threshold"] = row.threshold
    record["reached"] = len(reached) if row.threshold is not None and row.finished else None
    record["steps_to_threshold_mean"], record["steps_to_threshold_std"] = mean_std(reached)
    record["runs"] = " ".join(job.path.name for job in row.jobs)
    return {k: ("" if v is None else v) for k, v in record.items()}


def write_csv(path: Path, keys: Sequence[str], rows: Sequence[Row]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=csv_columns(keys))
        writer.writeheader()
        for row in rows:
            writer.writerow(csv_record(row))


# -- markdown ---------------------------------------------------------------------------------
def fmt_value(value: str) -> str:
    """A swept value as a reader wants it: 0.0006466422717414558 -> 0.0006466."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() and "." not in value else f"{number:.4g}"


def steps_cell(row: Row, shared_threshold: bool) -> str:
    if row.threshold is None or not row.finished:
        return "-"
    reached = row.steps_to_threshold()
    text = fmt_mean_std(reached, "{:,.0f}") if reached else "never"
    if reached and len(reached) < len(row.finished):
        text += f" ({len(reached)}/{len(row.finished)} reached)"
    return text if shared_threshold else f"{text} (≥ {row.threshold:g})"


def markdown_table(keys: Sequence[str], rows: Sequence[Row]) -> str:
    thresholds = {row.threshold for row in rows if row.threshold is not None}
    shared = len(thresholds) == 1
    steps_header = f"steps to {next(iter(thresholds)):g}" if shared else "steps to threshold"
    header = [*(keys or ["setting"]), "seeds", "final eval return", steps_header, "train time (s)", "steps/s", "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [fmt_value(row.setting[k]) for k in keys] if keys else [row.label]
        cells += [
            f"{len(row.finished)}/{len(row.jobs)}",
            fmt_mean_std(row.values("eval_return_mean")),
            steps_cell(row, shared),
            fmt_mean_std(row.values("train_time_s")),
            fmt_mean_std(row.values("sps"), "{:,.0f}"),
            ", ".join(job.path.name for job in row.jobs),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- Optuna -------------------------------------------------------------------------------------
def load_optuna_results(root: Path) -> Optional[dict]:
    path = Path(root) / OPTUNA_RESULTS
    if not path.is_file():
        return None
    with open(path) as f:
        return yaml.safe_load(f) or {}


def same_value(a: object, b: object) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return str(a) == str(b)


def best_trial_jobs(jobs: Sequence[Job], best_params: dict) -> list[Job]:
    """The jobs whose overrides hold the best parameters Optuna reports."""
    found = []
    for job in jobs:
        given = overrides_dict(job)
        if all(key in given and same_value(given[key], value) for key, value in best_params.items()):
            found.append(job)
    return found


def optuna_section(results: dict, jobs: Sequence[Job]) -> list[str]:
    lines = ["## Optuna search", ""]
    if "best_params" in results:
        best = best_trial_jobs(jobs, results["best_params"])
        where = f" (run {', '.join(job.path.name for job in best)})" if best else ""
        lines.append(f"Best value: {results.get('best_value')}{where}, with:")
        lines.append("")
        lines += [f"- {key}={value}" for key, value in results["best_params"].items()]
    else:  # several objectives: the Pareto front
        lines.append("Pareto-optimal trials:")
        lines.append("")
        lines += [f"- values {s.get('values')}: {s.get('params')}" for s in results.get("solutions", [])]
    return lines + [""]


# -- the whole report ---------------------------------------------------------------------------
@dataclass
class Report:
    markdown: str
    csv: Path
    md: Path
    png: Optional[Path]
    finished: int


def plot_labels(rows: Sequence[Row]) -> dict[str, list[Job]]:
    """Groups for the figure; a long setting (an Optuna trial's five values) is named by its runs."""
    return {(row.label if len(row.label) <= 40 else "run " + ", ".join(j.path.name for j in row.jobs)): row.jobs
            for row in rows}


def make_report(root: str | Path, out: Optional[str | Path] = None, threshold: Optional[float] = None,
                title: str = "") -> Report:
    run = load_multirun(root)
    if not run.jobs:
        raise FileNotFoundError(f"{root}: no job directories (no */.hydra/overrides.yaml)")
    out = Path(out) if out is not None else run.root
    out.mkdir(parents=True, exist_ok=True)
    keys, rows = build_rows(run, threshold)
    optuna = load_optuna_results(run.root)
    if optuna is not None:  # a search: best first
        rows.sort(key=lambda row: -row.objective())

    csv_path = out / CSV_NAME
    write_csv(csv_path, keys, rows)

    finished = run.finished()
    png = None
    if finished:
        for job in finished:  # runs without TensorBoard still have their evaluations in summary.json
            curve = job.eval_curve()
            if EVAL_TAG not in job.curves and curve is not None:
                job.curves[EVAL_TAG] = curve
        try:
            png = plot_learning_curves(plot_labels(rows), out / PNG_NAME, title=title or str(run.root))
        except ImportError:  # the table does not need it
            print('report.py: no learning_curves.png without matplotlib (pip install -e ".[plot]")', file=sys.stderr)

    lines = [f"# {title or run.root}", ""]
    if optuna is not None:
        lines += optuna_section(optuna, run.jobs)
    lines += [markdown_table(keys, rows), ""]
    envs = sorted({row.env_id for row in rows if row.env_id})
    thresholds = sorted({row.threshold for row in rows if row.threshold is not None})
    source = "--threshold" if threshold is not None else "the environment's reward_threshold"
    lines.append(
        f"{', '.join(envs) or 'unknown env'}; {len(finished)} of {len(run.jobs)} jobs finished. Mean ± std over the "
        "finished seeds of a row (std with ddof=0). Final eval return: each run's last deterministic evaluation. "
        + (f"Steps to {', '.join(f'{t:g}' for t in thresholds)} ({source}): env steps at the first evaluation at or "
           "above it, over the seeds that reached it. " if thresholds else "No return threshold (none given, none "
           "registered for the environment). ")
        + "Train time excludes evaluation."
        + (" Rows sorted by final eval return." if optuna is not None else "")
    )
    problems = run.problems()
    if problems:
        lines += ["", "## Failed or missing jobs", ""] + [f"- {line}" for line in problems]
    text = "\n".join(lines) + "\n"
    md_path = out / MD_NAME
    md_path.write_text(text)
    return Report(text, csv_path, md_path, png, len(finished))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="report.py", description="Table, CSV and learning curves for a Hydra multirun directory.")
    parser.add_argument("multirun_dir", type=Path, help="outputs/multirun/<time> (or a single run's directory)")
    parser.add_argument("--out", type=Path, help="where report.csv, report.md and learning_curves.png go (default: multirun_dir)")
    parser.add_argument("--threshold", type=float, help="return for 'steps to threshold' (default: the env's reward_threshold)")
    parser.add_argument("--title", default="", help="title of the markdown page and the figure")
    args = parser.parse_args(argv)
    try:
        report = make_report(args.multirun_dir, args.out, args.threshold, args.title)
    except FileNotFoundError as error:
        print(f"report.py: error: {error}", file=sys.stderr)
        return 1
    print(report.markdown)
    written = [p for p in (report.csv, report.md, report.png) if p is not None]
    print("wrote " + ", ".join(str(p) for p in written))
    if not report.finished:
        print(f"report.py: error: no finished job under {args.multirun_dir}", file=sys.stderr)
        return 1
    return 0

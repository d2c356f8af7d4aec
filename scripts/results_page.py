"""docs/results.md from committed records: ``record`` keeps a multirun as data, ``build`` writes the page.

    bash scripts/results_runs.sh                      # the runs: outputs/multirun/results/<name>
    python scripts/results_page.py record outputs/multirun/results/*   # -> docs/results/data/<table>/<name>/seed<N>.json
    python scripts/results_page.py build              # -> docs/results.md, README's results table, docs/results/<name>.png
    python scripts/results_page.py build --check      # exit 1 if either is not what the records give

The page is docs/results/template.md with each line ``{{table:<table>}}`` replaced by the
table of that name, computed from the records (rlexp/analysis/records.py) and from the
published figures and targets of docs/results/references.yaml, each with its source. Prose
lives in the template; numbers in a generated table come from records only. Edit the
template, the references or the records, never docs/results.md (a test rebuilds it).
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlexp.analysis.records import Record, evaluation_entry, load_records, make_record, write_record  # noqa: E402
from rlexp.analysis.report import reward_threshold  # noqa: E402
from rlexp.cli.evaluate import UsageError, evaluate, parse_args  # noqa: E402
from rlexp.analysis.results import fmt_mean_std, load_multirun, mean_std, plot_learning_curves  # noqa: E402

DOCS = ROOT / "docs"
DATA = DOCS / "results" / "data"
TEMPLATE = DOCS / "results" / "template.md"
REFERENCES = DOCS / "results" / "references.yaml"
PAGE = DOCS / "results.md"
README = ROOT / "README.md"
README_START, README_END = "<!-- results-table: written by scripts/results_page.py build -->", "<!-- results-table end -->"
FIGURES = DOCS / "results"
BANNER = ("<!-- Written by `python scripts/results_page.py build` from docs/results/template.md, "
          "docs/results/references.yaml and the records under docs/results/data/. Edit those, not this file. -->")


# -- record ---------------------------------------------------------------------------------
def train_command(task: Sequence[str], hydra: Sequence[str]) -> str:
    """``python -m rlexp.cli.train -m`` with the given overrides, less the ones Hydra adds itself
    (its multirun mode, and the trial number an Optuna search gives each job)."""
    hydra_args = [o for o in hydra
                  if o != "hydra.mode=MULTIRUN" and not o.startswith("++hydra.job.env_set.RLEXP_OPTUNA_TRIAL=")]
    return " ".join(["python -m rlexp.cli.train -m", *map(shlex.quote, task), *map(shlex.quote, hydra_args)])


def reproduce_command(root: Path) -> str:
    """The command line that made the multirun, from Hydra's multirun.yaml."""
    path = root / "multirun.yaml"
    if not path.exists():
        return "-"
    overrides = (yaml.safe_load(path.read_text()) or {}).get("hydra", {}).get("overrides", {})
    return train_command(overrides.get("task", []), overrides.get("hydra", []))


def search_command(jobs: Sequence) -> str:
    """The command line of an Optuna search (which writes no multirun.yaml): the overrides every
    trial shares, and the first trial's Hydra overrides."""
    shared = set.intersection(*(set(job.overrides) for job in jobs))
    first = jobs[0]
    hydra_cfg = (yaml.safe_load((first.path / ".hydra" / "hydra.yaml").read_text()) or {}).get("hydra", {})
    return train_command([o for o in first.overrides if o in shared], hydra_cfg.get("overrides", {}).get("hydra", []))


def record_multirun(root: Path, table: str, data_dir: Path, name: Optional[str] = None,
                    stopped: bool = False, evals: Sequence[str] = (), tags: Sequence[str] = ()) -> list[Path]:
    """One record per finished job of a multirun directory; the name defaults to the directory's.
    With ``stopped``, a job stopped by a signal (status "interrupted", resumable) is kept too, as
    far as its last evaluation: a run too long for one sitting, recorded where it stopped.
    ``evals``: rlexp-eval arguments (``"episodes=1000 opponent=random"``), each run on every job
    and kept in its record; ``tags``: TensorBoard scalars whose curves the records keep too."""
    from rlexp.run.records import machine_description, software_versions

    for arguments in evals:  # a bad argument stops the command before it writes a record
        parse_args(["run", *shlex.split(arguments)])
    run = load_multirun(root)
    if not run.jobs:
        raise FileNotFoundError(f"{root}: no job directories (no */.hydra/overrides.yaml)")
    search = (root / "optimization_results.yaml").is_file()  # an Optuna search: one record per trial,
    if search:                                                 # the ones its pruner stopped too
        for job in run.jobs:
            if (job.summary or {}).get("status") == "pruned":
                job.problem = None
    if stopped:
        for job in run.jobs:
            if (job.summary or {}).get("status") == "interrupted":
                job.problem = None if job.summary.get("eval_history") else "stopped before its first evaluation"
    problems = run.problems()
    if problems:
        hint = "" if stopped else " (--stopped keeps a run stopped by a signal, as far as its last evaluation)"
        raise ValueError(f"{root}: not every job finished: " + "; ".join(problems) + hint)
    name = name or root.name
    command = search_command(run.jobs) if search else reproduce_command(root)
    records = []  # every record made before any is written: a bad --eval or --tag writes none
    for job in run.jobs:
        env_id = (job.summary or {}).get("env_id")
        evaluations = [evaluation_entry(arguments, evaluate(*parse_args([str(job.path), *shlex.split(arguments)])))
                       for arguments in evals]
        records.append(make_record(job, table=table, name=name, command=command, threshold=reward_threshold(env_id),
                                   fallback_versions=software_versions(env_id), fallback_machine=machine_description(),
                                   evaluations=evaluations, trial=job.num if search else None, tags=tags))
    paths = [write_record(record, data_dir) for record in records]
    return paths


# -- build ----------------------------------------------------------------------------------
def cell_mean_std(values: Sequence[float], fmt: str, of: int) -> str:
    if not values:
        return "never"
    text = fmt_mean_std(values, fmt)
    return text if len(values) == of else f"{text} ({len(values)}/{of} seeds)"


def same(records: Sequence[Record], key: Callable[[Record], object]) -> object:
    values = {repr(key(r)) for r in records}
    if len(values) != 1:
        names = {r["name"] for r in records}
        raise ValueError(f"records of {sorted(names)} disagree on a value every seed must share: {sorted(values)}")
    return key(records[0])


def machine_cell(records: Sequence[Record]) -> str:
    machines = sorted({f"{r['machine']}, torch {r['versions'].get('torch')}" for r in records})
    return "; ".join(machines)


def target_cells(name: str, budget: Optional[int], mean: Optional[float], targets: dict) -> tuple[str, str]:
    target = targets.get(name)
    if target is None:
        return "-", "- (no target)"
    where = f"{target['return']:g}" + (f" at {target['steps']:,}" if target.get("steps") else "")
    if mean is None:
        return where, "no (no finished run)"
    verdict = "yes" if mean >= target["return"] else f"no ({mean:.1f})"
    if target.get("steps") and budget is not None and budget != target["steps"]:
        verdict += f" (ran {budget:,} steps, target is for {target['steps']:,})"
    return where, verdict


def command_cell(records: Sequence[Record]) -> str:
    """The command that made a row; a row whose seeds ran as more than one multirun (a seed run
    later) shows each command with its seeds."""
    seeds: dict[str, list[int]] = {}
    for r in records:
        seeds.setdefault(r["command"], []).append(r["seed"])
    if len(seeds) == 1:
        return f"`{records[0]['command']}`"
    return "; ".join(f"`{command}` (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})"
                     for command, s in seeds.items())


def link(path: Path) -> str:
    return os.path.relpath(path, PAGE.parent)


def tuned_table(groups: dict, refs: dict) -> list[str]:
    header = ["preset", "env", "seeds", "steps", "final eval return", "env threshold", "steps to threshold",
              "wall time to threshold (s)", "steps/s", "target", "reached", "curves", "data", "command", "machine"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for (table, name), records in sorted(groups.items()):
        if table != "tuned":
            continue
        finals = [r.final_return for r in records if r.final_return is not None]
        threshold = same(records, lambda r: r.get("threshold"))
        budget = same(records, lambda r: r["config"].get("total_steps"))
        mean, _ = mean_std(finals)
        target, verdict = target_cells(name, budget, mean, refs.get("targets", {}))
        reached = [r["steps_to_threshold"] for r in records if r.get("steps_to_threshold") is not None]
        walls = [r["wall_to_threshold_s"] for r in records if r.get("wall_to_threshold_s") is not None]
        cells = [
            f"`{name}`", same(records, lambda r: r["env_id"]), ", ".join(str(r["seed"]) for r in records),
            steps_cell(records), fmt_mean_std(finals),
            "-" if threshold is None else f"{threshold:g}",
            "- (no threshold)" if threshold is None else cell_mean_std(reached, "{:,.0f}", len(records)),
            "- (no threshold)" if threshold is None else cell_mean_std(walls, "{:.1f}", len(records)),
            fmt_mean_std([r["sps"] for r in records], "{:,.0f}"), target, verdict,
            f"[png]({link(FIGURES / f'{name}.png')})", f"[{len(records)} records]({link(DATA / table / name)})",
            command_cell(records), machine_cell(records),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    recorded = {name for table, name in groups}
    missing = [f"`{name}` ({target['return']:g}" + (f" at {target['steps']:,} steps)" if target.get("steps") else ")")
               for name, target in sorted(refs.get("targets", {}).items()) if name not in recorded]
    if missing:
        lines += ["", "Presets with a target and no record yet (the notes below say what their last runs gave): "
                  + ", ".join(missing) + "."]
    return lines


def steps_cell(records: Sequence[Record]) -> str:
    """The budget; for a row whose runs were stopped short of it, where each seed's last
    evaluation (the return shown) was."""
    budget = same(records, lambda r: r["config"].get("total_steps"))
    if all(r.get("status") == "finished" for r in records):
        return f"{budget:,}" if budget else "-"
    reached = ", ".join(f"{r['eval_history'][-1][0]:,}" for r in records)
    return f"stopped at {reached} (set up for {budget:,})"


def first_at_threshold(records: Sequence[Record]) -> str:
    threshold = same(records, lambda r: r.get("threshold"))
    if threshold is None:
        return "- (no threshold)"
    steps = [r.get("steps_to_threshold") for r in records]
    return f"{threshold:g}: " + ", ".join("never" if s is None else f"{s:,}" for s in steps)


def per_seed_table(table_name: str) -> Callable[[dict, dict], list[str]]:
    """Rows of every record group of a table, with each seed's final return and the share of
    seeds at the target (for a table where what every seed does matters, like the recurrent one)."""

    def render(groups: dict, refs: dict) -> list[str]:
        header = ["preset", "env", "seeds", "steps", "final eval return, per seed", "mean ± std", "target",
                  "seeds at the target", "first evaluation at the env threshold (steps, per seed)", "reference", "curves",
                  "data", "command"]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for (table, name), records in sorted(groups.items()):
            if table != table_name:
                continue
            finals = [r.final_return for r in records]
            fmt = return_format(finals)
            target = refs.get("targets", {}).get(name)
            at_target = "-" if target is None else f"{sum(f >= target['return'] for f in finals)}/{len(finals)}"
            published = refs.get("published", {}).get(refs.get("compare", {}).get(name, ""), None)
            reference = "-" if published is None else published["label"]
            env = same(records, lambda r: r["env_id"])
            masked = same(records, lambda r: (r["config"].get("env") or {}).get("mask_velocity"))
            cells = [
                f"`{name}`", env + (", no velocities" if masked else ""), ", ".join(str(r["seed"]) for r in records),
                steps_cell(records), ", ".join(fmt.format(f) for f in finals), fmt_mean_std(finals, fmt),
                "-" if target is None else f"{target['return']:g}", at_target, first_at_threshold(records), reference,
                f"[png]({link(FIGURES / f'{name}.png')})", f"[{len(records)} records]({link(DATA / table / name)})",
                command_cell(records),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    return render


#: a probes row named ``<base>__<change>`` changes the row ``<base>`` (of the probes table, or
#: else of any table) once; a probes row without it is a base for others
PROBE_SEP = "__"


def probe_groups(groups: dict) -> dict[str, list[tuple[str, list[Record]]]]:
    """The probes by the row they change, that row first: {base: [(row name, records), ...]}."""
    probes: dict[str, list[tuple[str, list[Record]]]] = {}
    for (table, name), records in sorted(groups.items()):
        if table == "probes" and PROBE_SEP in name:
            probes.setdefault(name.split(PROBE_SEP)[0], []).append((name, records))
    by_base = {}
    for base, rows in probes.items():
        home = next((t for t in ["probes", *sorted({t for t, _ in groups})] if (t, base) in groups), None)
        if home is None:
            raise ValueError(f"probes row {base}{PROBE_SEP}... changes the row {base!r}, which has no records")
        by_base[base] = [(base, groups[(home, base)]), *rows]
    return by_base


def return_format(returns: Sequence[float]) -> str:
    """How a table writes these returns: returns all under 10 (success rates of at most 1) need 3
    places, others 1."""
    return "{:.3f}" if max(abs(f) for f in returns) < 10 else "{:.1f}"


def change_from_base(records: Sequence[Record], base: Sequence[Record]) -> str:
    """The overrides a probe adds to its base row's (seeds aside), as one cell."""
    ours, theirs = set(records[0]["overrides"]), set(base[0]["overrides"])
    added = sorted(o for o in ours - theirs if not o.startswith("seed="))
    return ", ".join(f"`{o}`" for o in added) if added else "none (the base row)"


def probes_table(groups: dict, refs: dict) -> list[str]:
    """Short runs of one preset, each row with one change from its base row: each seed's final
    and best evaluation, and the mean of the finals."""
    header = ["probe", "change from the base row", "seeds", "steps", "final eval return, per seed", "mean",
              "best evaluation, per seed (at step)", "data"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for rows in probe_groups(groups).values():
        base = rows[0][1]
        fmt = return_format([r.final_return for _, records in rows for r in records])  # one format per family
        for name, records in rows:
            finals = [r.final_return for r in records]
            best = [max((row for row in r["eval_history"] if row[2] is not None), key=lambda row: row[2]) for r in records]
            budget = same(records, lambda r: r["config"].get("total_steps"))
            cells = [f"`{name}`", change_from_base(records, base), ", ".join(str(r["seed"]) for r in records),
                     f"{budget:,}", ", ".join(fmt.format(f) for f in finals), fmt.format(sum(finals) / len(finals)),
                     ", ".join(f"{fmt.format(b[2])} ({b[0] / 1e6:.2f}M)" for b in best),
                     f"[{len(records)} records]({link(DATA / records[0]['table'] / name)})"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


SHARES = ("win", "draw", "loss")  # info values that are shares of games: shown as percentages


def info_cell(values: dict, keys: Sequence[str]) -> str:
    """``win 96.3%, draw 0.0%`` or ``red -14.12, blue 6.45``: the given info values, by the last
    part of their names."""
    cells = []
    for key in keys:
        value = values.get(key)
        label = key.rsplit("/", 1)[-1]
        if value is None:
            cells.append(f"{label} -")
        else:
            cells.append(f"{label} {value:.1%}" if label in SHARES else f"{label} {value:.2f}")
    return ", ".join(cells)


def ordered(values: dict) -> list[str]:
    """Keys of info values: win, draw and loss first, in that order, then the rest by name."""
    return [k for k in SHARES if k in values] + sorted(k for k in values if k not in SHARES)


def agents_table(groups: dict, refs: dict, spec: str) -> list[str]:
    """Runs of several agents (``spec``: ``<row>:<info key>,...``): one line per seed of the row and
    of its ``<row>__<change>`` rows, with the env's info values named by the keys (``win``,
    ``return/red``) at the last evaluation and at the first rollout, and what rlexp-eval measured."""
    row, _, keys_text = spec.partition(":")
    keys = [k for k in keys_text.split(",") if k]
    rows = [(name, records) for (table, name), records in sorted(groups.items())
            if table == "agents" and (name == row or name.startswith(row + PROBE_SEP))]
    if not rows:
        raise ValueError(f"{TEMPLATE.name}: table agents:{spec}: no records of the row {row!r}")
    base = rows[0][1]
    header = ["row", "change", "seed", "agent steps", "final eval return, per agent", "the env's values, last evaluation",
              "the env's values, first rollout", "rlexp-eval", "agent steps/s", "training time", "data"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name, records in rows:
        for r in records:
            final = r["final_eval"]
            history = r.get("info_history") or {}
            first = {key: history[f"rollout/{key}"][0][1] for key in keys if history.get(f"rollout/{key}")}
            last = {key: (r.get("info_metrics") or {}).get(f"eval/{key}") for key in keys}
            evals = "; ".join(f"`{e['command'].removeprefix('rlexp-eval <run> ')}`: "
                              + info_cell(e["metrics"], [k for k in keys if k in e["metrics"]] or ordered(e["metrics"]))
                              for e in r.get("evaluations") or [])
            cells = [f"`{name}`", change_from_base([r], base) if name != row else "-", str(r["seed"]), f"{r['steps']:,}",
                     f"{final['mean']:.2f} ± {final['std']:.2f} ({final['episodes']} episodes)",
                     info_cell(last, keys), info_cell(first, keys), evals or "-",
                     f"{r['sps']:,.0f}", f"{r['train_time_s']:,.0f} s",
                     f"[record]({link(DATA / 'agents' / name / Path(r.path).name)})"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def searched(records: Sequence[Record]) -> dict[int, str]:
    """Each trial's searched settings (the overrides not every trial of its search shares), as
    ``learning_rate=0.00042, ent_coef=0.0031``."""
    shared = set.intersection(*(set(r["overrides"]) for r in records))

    def short(override: str) -> str:
        key, _, value = override.partition("=")
        try:
            value = f"{float(value):.2g}"
        except ValueError:
            pass
        return f"{key.rsplit('.', 1)[-1]}={value}"

    return {r["trial"]: ", ".join(short(o) for o in r["overrides"] if o not in shared) for r in records}


def search_rows(groups: dict) -> list[tuple[str, list[Record]]]:
    rows = [(name, records) for (table, name), records in sorted(groups.items()) if table == "optuna"]
    for name, records in rows:
        if any(r.get("trial") is None for r in records):
            raise ValueError(f"optuna row {name!r}: a record without a trial number (record an Optuna search's directory)")
    return rows


def optuna_table(groups: dict, refs: dict) -> list[str]:
    """One row per Optuna search: how its trials ended, the env steps they took in all, the best
    completed trial and the search's wall time (first trial's start to last trial's end)."""
    rows = search_rows(groups)
    most = max((sum(r["steps"] for r in records) for _, records in rows), default=0)
    header = ["search", "trials (complete / pruned)", "env steps, all trials", "best final eval return (trial: settings)",
              "wall time", "training time, all trials", "data", "command"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name, records in rows:
        complete = [r for r in records if r["status"] == "finished"]
        pruned = [r for r in records if r["status"] == "pruned"]
        steps = sum(r["steps"] for r in records)
        best = max(complete, key=lambda r: r.final_return) if complete else None
        ends = [r["started_at"] + r["wall_time_s"] for r in records if r.get("started_at") and r.get("wall_time_s")]
        wall = f"{max(ends) - min(r['started_at'] for r in records if r.get('started_at')):,.0f} s" if ends else "-"
        cells = [f"`{name}`", f"{len(complete)} / {len(pruned)}", f"{steps:,} ({steps / most:.1%} of the most)",
                 "-" if best is None else f"{best.final_return:.1f} (trial {best['trial']}: {searched(records)[best['trial']]})",
                 wall, f"{sum(r['train_time_s'] for r in records):,.0f} s",
                 f"[{len(records)} records]({link(DATA / 'optuna' / name)})", command_cell(records)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def optuna_trials_table(groups: dict, refs: dict, spec: str) -> list[str]:
    """The trials of the named searches (``spec``: ``<search>,<search>,...``) side by side, by
    trial number: each one's settings, and where it ended (its last evaluation, at its last step)."""
    wanted = [n for n in spec.split(",") if n]
    rows = dict(search_rows(groups))
    missing = [n for n in wanted if n not in rows]
    if missing:
        raise ValueError(f"{TEMPLATE.name}: table optuna_trials:{spec}: no records of {', '.join(missing)}")
    header = ["trial"] + [cell for n in wanted for cell in (f"`{n}`: settings", "end")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    by_trial = {n: {r["trial"]: r for r in rows[n]} for n in wanted}
    settings = {n: searched(rows[n]) for n in wanted}
    for number in sorted({t for n in wanted for t in by_trial[n]}):
        cells = [str(number)]
        for n in wanted:
            r = by_trial[n].get(number)
            if r is None:
                cells += ["-", "-"]
                continue
            end = f"{r.final_return:.1f} at {r['steps']:,}"
            cells += [settings[n][number], f"pruned: {end}" if r["status"] == "pruned" else end]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def references_table(groups: dict, refs: dict) -> list[str]:
    """The published figures, each linked to the file, line and commit it was read at; then the targets."""
    lines = ["| id | figure | where it is written |", "|---|---|---|"]
    for key, ref in sorted(refs.get("published", {}).items()):
        src = ref["source"]
        url = f"https://github.com/{src['repo']}/blob/{src['commit']}/{src['path']}" + (f"#L{src['line']}" if src.get("line") else "")
        where = f"[{src['repo']} {src['path']}" + (f" line {src['line']}" if src.get("line") else "") + f" at {src['commit'][:10]}]({url})"
        quote = src.get("quote", "").replace("|", "\\|")
        lines.append(f"| `{key}` | {ref['label']} | {where}: `{quote}` |")
    lines += ["", "| preset | target | at | why |", "|---|---|---|---|"]
    for preset, target in sorted(refs.get("targets", {}).items()):
        at = f"{target['steps']:,} steps" if target.get("steps") else "its budget"
        lines.append(f"| `{preset}` | {target['return']:g} | {at} | {target['why']} |")
    return lines


def readme_table(groups: dict, refs: dict) -> list[str]:
    """The README's short table: every tuned preset with a target, from the same records."""
    lines = ["| preset | budget | final eval return | per seed | target | reached |", "| --- | --- | --- | --- | --- | --- |"]
    targets = refs.get("targets", {})
    for (table, name), records in sorted(groups.items()):
        if table != "tuned" or name not in targets:
            continue
        finals = [r.final_return for r in records]
        budget = same(records, lambda r: r["config"].get("total_steps"))
        target, verdict = target_cells(name, budget, mean_std(finals)[0], targets)
        short = f"{budget / 1e6:g}M" if budget >= 1_000_000 else f"{budget / 1e3:g}k"
        lines.append(f"| `{name}` | {short} | {fmt_mean_std(finals)} | {', '.join(f'{f:.1f}' for f in finals)} | "
                     f"{target.split(' at ')[0]} | {verdict.split(' (ran')[0]} |")
    return lines


def with_readme_table(readme: str, groups: dict, refs: dict) -> str:
    """``readme`` with the lines between its two results-table markers replaced."""
    lines = readme.split("\n")
    try:
        start, end = lines.index(README_START), lines.index(README_END)
    except ValueError:
        raise ValueError(f"README.md lacks the lines {README_START!r} and {README_END!r} around its results table")
    return "\n".join(lines[:start + 1] + readme_table(groups, refs) + lines[end:])


#: the tables whose rows show each seed (per_seed_table); each row also gets a figure
PER_SEED_TABLES = ("recurrent", "spaces", "minatar", "minatar_pgx", "masks", "atari")

TABLES: dict[str, Callable[[dict, dict], list[str]]] = {
    "tuned": tuned_table,
    **{name: per_seed_table(name) for name in PER_SEED_TABLES},
    "probes": probes_table,
    "references": references_table,
    "optuna": optuna_table,
}
#: tables a template line names with an argument: ``{{table:agents:<row>:<info key>,...}}``
TABLES_WITH_ARGUMENT: dict[str, Callable[[dict, dict, str], list[str]]] = {
    "agents": agents_table, "optuna_trials": optuna_trials_table}


def render(template: str, groups: dict, refs: dict) -> str:
    out = [BANNER]
    for line in template.splitlines():
        stripped = line.strip()
        if stripped.startswith("{{table:") and stripped.endswith("}}"):
            name, _, argument = stripped[len("{{table:"):-2].partition(":")
            if argument and name in TABLES_WITH_ARGUMENT:
                out += TABLES_WITH_ARGUMENT[name](groups, refs, argument)
            elif name in TABLES and not argument:
                out += TABLES[name](groups, refs)
            else:
                known = [*TABLES, *(f"{t}:<argument>" for t in TABLES_WITH_ARGUMENT)]
                raise ValueError(f"{TEMPLATE.name}: unknown table {stripped[8:-2]!r} (known: {', '.join(known)})")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


#: a row ending in this is its preset without the recurrent core; both are drawn together too
NO_CORE = "_nocore"


def figures(groups: dict, out_dir: Path) -> list[Path]:
    """One figure per row (docs/results/<row>.png), and <row>_vs_mlp.png for a row with a _nocore twin."""
    written = []
    for (table, name), records in sorted(groups.items()):
        if table != "tuned" and table not in PER_SEED_TABLES:
            continue
        jobs = [r.as_job() for r in records]
        env = records[0]["env_id"]
        written.append(plot_learning_curves({name: jobs}, out_dir / f"{name}.png",
                                            title=f"{name} ({env}), mean ± std over {len(jobs)} seeds"))
        twin = groups.get((table, name + NO_CORE))
        if twin:
            written.append(plot_learning_curves(
                {name: jobs, f"{name}, network.recurrent=null": [r.as_job() for r in twin]}, out_dir / f"{name}_vs_mlp.png",
                title=f"{name} ({env}) with and without its recurrent core, mean ± std over seeds"))
    for base, rows in probe_groups(groups).items():  # every probe of a row on one figure with it
        env = rows[0][1][0]["env_id"]
        written.append(plot_learning_curves({name: [r.as_job() for r in records] for name, records in rows},
                                            out_dir / f"probes_{base}.png",
                                            title=f"{env}: one change at a time, mean ± std over seeds"))
    agents: dict[str, dict[str, list]] = {}  # several agents: a row and its changes on one figure
    for (table, name), records in sorted(groups.items()):
        if table == "agents":
            agents.setdefault(name.split(PROBE_SEP)[0], {})[name] = [r.as_job() for r in records]
    for base, rows in agents.items():
        env = groups[("agents", base if base in rows else next(iter(rows)))][0]["env_id"]
        written.append(plot_learning_curves(rows, out_dir / f"{base}.png", title=f"{base} ({env}), mean ± std over seeds"))
    return written


def build(data: Path, template: Path, references: Path, readme: Optional[Path]) -> tuple[str, Optional[str], dict]:
    groups = load_records(data)
    refs = yaml.safe_load(references.read_text()) or {}
    readme_text = with_readme_table(readme.read_text(), groups, refs) if readme else None
    return render(template.read_text(), groups, refs), readme_text, groups


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="results_page.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="keep finished multiruns as records under --data")
    rec.add_argument("multirun_dirs", nargs="+", type=Path)
    rec.add_argument("--table", default="tuned", help="which table of the page the rows belong to (default: tuned)")
    rec.add_argument("--name", help="the row's name (default: the multirun directory's; one directory only)")
    rec.add_argument("--data", type=Path, default=DATA)
    rec.add_argument("--stopped", action="store_true",
                     help="keep jobs stopped by a signal too, as far as their last evaluation (the page says so)")
    rec.add_argument("--eval", action="append", default=[], metavar="ARGS",
                     help="rlexp-eval arguments to run on every job and keep in its record, "
                          "e.g. --eval 'episodes=1000 opponent=random' (repeatable)")
    rec.add_argument("--tag", action="append", default=[], metavar="TAG",
                     help="a TensorBoard scalar whose thinned curve the records keep too, e.g. train/explained_variance (repeatable)")
    bld = sub.add_parser("build", help="write docs/results.md (and the curves) from the records")
    bld.add_argument("--data", type=Path, default=DATA)
    bld.add_argument("--template", type=Path, default=TEMPLATE)
    bld.add_argument("--references", type=Path, default=REFERENCES)
    bld.add_argument("--out", type=Path, default=PAGE)
    bld.add_argument("--readme", type=Path, default=README, help="the README whose results table to write ('-': none)")
    bld.add_argument("--check", action="store_true", help="write nothing; exit 1 if --out differs from what the records give")
    bld.add_argument("--figures", type=Path, default=FIGURES, help="where the curves go (default: docs/results)")
    bld.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)

    try:
        if args.command == "record":
            if args.name and len(args.multirun_dirs) > 1:
                raise ValueError("--name names one row: give one multirun directory")
            for root in args.multirun_dirs:
                for path in record_multirun(root, args.table, args.data, args.name, args.stopped, args.eval, args.tag):
                    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
            return 0
        readme = None if str(args.readme) == "-" else args.readme
        page, readme_text, groups = build(args.data, args.template, args.references, readme)
    except (FileNotFoundError, ValueError, KeyError, UsageError) as error:
        print(f"results_page.py: error: {error}", file=sys.stderr)
        return 1
    outputs = [(args.out, page)] + ([(readme, readme_text)] if readme else [])
    if args.check:
        stale = 0
        for path, text in outputs:
            current = path.read_text() if path.exists() else ""
            if current != text:
                stale += 1
                diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(path), "from the records", lineterm="")
                print("\n".join(list(diff)[:40]))
                print(f"results_page.py: {path} differs from what the records give; "
                      "run `python scripts/results_page.py build` and commit the result", file=sys.stderr)
        if not stale:
            print(f"{' and '.join(str(p) for p, _ in outputs)}: what the records give")
        return 1 if stale else 0
    for path, text in outputs:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    written = [] if args.no_figures else figures(groups, args.figures)
    print(f"wrote {' and '.join(str(p) for p, _ in outputs)} and {len(written)} figure(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

from rlexp.analysis.records import Record, load_records, make_record, write_record  # noqa: E402
from rlexp.analysis.report import reward_threshold  # noqa: E402
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
def reproduce_command(root: Path) -> str:
    """The command line that made the multirun, from Hydra's multirun.yaml."""
    path = root / "multirun.yaml"
    if not path.exists():
        return "-"
    overrides = (yaml.safe_load(path.read_text()) or {}).get("hydra", {}).get("overrides", {})
    hydra_args = [o for o in overrides.get("hydra", []) if o != "hydra.mode=MULTIRUN"]
    return " ".join(["python -m rlexp.cli.train -m", *map(shlex.quote, overrides.get("task", [])),
                     *map(shlex.quote, hydra_args)])


def record_multirun(root: Path, table: str, data_dir: Path, name: Optional[str] = None,
                    stopped: bool = False) -> list[Path]:
    """One record per finished job of a multirun directory; the name defaults to the directory's.
    With ``stopped``, a job stopped by a signal (status "interrupted", resumable) is kept too, as
    far as its last evaluation: a run too long for one sitting, recorded where it stopped."""
    from rlexp.run.records import machine_description, software_versions

    run = load_multirun(root)
    if not run.jobs:
        raise FileNotFoundError(f"{root}: no job directories (no */.hydra/overrides.yaml)")
    if stopped:
        for job in run.jobs:
            if (job.summary or {}).get("status") == "interrupted":
                job.problem = None if job.summary.get("eval_history") else "stopped before its first evaluation"
    problems = run.problems()
    if problems:
        hint = "" if stopped else " (--stopped keeps a run stopped by a signal, as far as its last evaluation)"
        raise ValueError(f"{root}: not every job finished: " + "; ".join(problems) + hint)
    name = name or root.name
    command = reproduce_command(root)
    paths = []
    for job in run.jobs:
        env_id = (job.summary or {}).get("env_id")
        record = make_record(job, table=table, name=name, command=command, threshold=reward_threshold(env_id),
                             fallback_versions=software_versions(env_id), fallback_machine=machine_description())
        paths.append(write_record(record, data_dir))
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
            fmt = "{:.3f}" if max(abs(f) for f in finals) < 10 else "{:.1f}"  # returns of at most 1 (success rates) need 3 places
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
        for name, records in rows:
            finals = [r.final_return for r in records]
            best = [max((row for row in r["eval_history"] if row[2] is not None), key=lambda row: row[2]) for r in records]
            budget = same(records, lambda r: r["config"].get("total_steps"))
            cells = [f"`{name}`", change_from_base(records, base), ", ".join(str(r["seed"]) for r in records),
                     f"{budget:,}", ", ".join(f"{f:.1f}" for f in finals), f"{sum(finals) / len(finals):.1f}",
                     ", ".join(f"{b[2]:.1f} ({b[0] / 1e6:.2f}M)" for b in best),
                     f"[{len(records)} records]({link(DATA / records[0]['table'] / name)})"]
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
PER_SEED_TABLES = ("recurrent", "spaces", "minatar", "masks", "atari")

TABLES: dict[str, Callable[[dict, dict], list[str]]] = {
    "tuned": tuned_table,
    **{name: per_seed_table(name) for name in PER_SEED_TABLES},
    "probes": probes_table,
    "references": references_table,
}


def render(template: str, groups: dict, refs: dict) -> str:
    out = [BANNER]
    for line in template.splitlines():
        stripped = line.strip()
        if stripped.startswith("{{table:") and stripped.endswith("}}"):
            name = stripped[len("{{table:"):-2]
            if name not in TABLES:
                raise ValueError(f"{TEMPLATE.name}: unknown table {name!r} (known: {', '.join(TABLES)})")
            out += TABLES[name](groups, refs)
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
                for path in record_multirun(root, args.table, args.data, args.name, args.stopped):
                    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
            return 0
        readme = None if str(args.readme) == "-" else args.readme
        page, readme_text, groups = build(args.data, args.template, args.references, readme)
    except (FileNotFoundError, ValueError, KeyError) as error:
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

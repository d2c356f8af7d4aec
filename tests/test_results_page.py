"""docs/results.md is what its committed records give, and records hold what a row needs.

scripts/results_page.py: ``record`` keeps a run as JSON under docs/results/data/, ``build``
writes the page from the template, the references and the records (rlexp/analysis/records.py).
"""

import importlib.util
import json
import shutil

import pytest
import yaml
from conftest import ROOT

import rlexp

SPEC = importlib.util.spec_from_file_location("results_page", ROOT / "scripts" / "results_page.py")
results_page = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(results_page)


def test_the_committed_page_is_what_the_records_give(capsys):
    assert results_page.main(["build", "--check"]) == 0, capsys.readouterr()


def test_check_fails_when_a_record_is_edited(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "docs" / "results" / "data", data)
    record = sorted(data.glob("tuned/*/seed0.json"))[0]
    content = json.loads(record.read_text())
    content["final_eval"]["mean"] -= 123.0
    record.write_text(json.dumps(content))
    assert results_page.main(["build", "--check", "--data", str(data)]) == 1
    captured = capsys.readouterr()
    assert "differs from what the records give" in captured.err
    assert f"`{content['name']}`" in captured.out  # the diff shows the row that changed


def fake_record(seed, final, evals, name="toy", table="tuned", threshold=475.0):
    """A record as rlexp.analysis.records.make_record writes it, with numbers chosen by hand."""
    reached = [(s, w) for s, w, m, _ in evals if m >= threshold]
    return {
        "record": 1, "table": table, "name": name, "seed": seed, "env_id": "CartPole-v1", "algo": "PPO",
        "status": "finished", "command": f"python -m rlexp.cli.train -m hparams={name} seed=0,1,2",
        "overrides": [f"seed={seed}"], "versions": {"torch": "9.9"}, "machine": "a test CPU", "versions_from": "run",
        "steps": 40000, "updates": 10, "train_time_s": 10.0, "sps": 1000.0 * (seed + 1), "wall_time_s": 12.0,
        "final_eval": {"mean": final, "std": 0.0, "episodes": 20}, "threshold": threshold,
        "steps_to_threshold": reached[0][0] if reached else None, "wall_to_threshold_s": reached[0][1] if reached else None,
        "diagnostics": {}, "eval_history": evals, "train_history": [[256, 0.1, 20.0], [40000, 10.0, 400.0]],
        "config": {"total_steps": 40000, "env": {"id": "CartPole-v1"}},
    }


def write_toy_page(tmp_path, records, targets, figures=None, tables=("tuned", "recurrent")):
    """Build a page of the given records with a template of the given tables."""
    data = tmp_path / "data"
    for record in records:
        path = data / record["table"] / record["name"] / f"seed{record['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    (tmp_path / "template.md").write_text("# Toy\n\n" + "\n\n".join(f"{{{{table:{t}}}}}" for t in tables) + "\n")
    (tmp_path / "refs.yaml").write_text(yaml.safe_dump({"published": {}, "targets": targets, "compare": {}}))
    out = tmp_path / "page.md"
    drawing = ["--figures", str(figures)] if figures else ["--no-figures"]
    code = results_page.main(["build", *drawing, "--data", str(data), "--template", str(tmp_path / "template.md"),
                              "--references", str(tmp_path / "refs.yaml"), "--out", str(out), "--readme", "-"])
    assert code == 0
    return out.read_text()


def test_a_row_is_computed_from_its_records(tmp_path):
    records = [
        fake_record(0, 480.0, [[10000, 2.0, 300.0, 9.0], [20000, 4.0, 480.0, 5.0], [40000, 9.0, 480.0, 5.0]]),
        fake_record(1, 500.0, [[10000, 3.0, 400.0, 9.0], [30000, 8.0, 500.0, 0.0], [40000, 11.0, 500.0, 0.0]]),
        fake_record(2, 490.0, [[10000, 2.0, 100.0, 9.0], [40000, 10.0, 490.0, 1.0]]),
        fake_record(0, 20.0, [[10000, 1.0, 20.0, 1.0]], name="never"),
    ]
    page = write_toy_page(tmp_path, records, {"toy": {"return": 495.0, "steps": 40000, "why": "by hand"}})
    row = next(line for line in page.splitlines() if line.startswith("| `toy`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0, 1, 2" and cells[3] == "40,000"
    assert cells[4] == "490.0 ± 8.2"  # mean of 480, 500, 490; std (ddof=0) sqrt(200/3)
    assert cells[6] == "30,000 ± 8,165"  # 20k, 30k, 40k
    assert cells[7] == "7.3 ± 2.5"  # 4, 8, 10 s
    assert cells[8] == "2,000 ± 816"  # 1000, 2000, 3000
    assert cells[9] == "495 at 40,000" and cells[10] == "no (490.0)"
    never = next(line for line in page.splitlines() if line.startswith("| `never`"))
    assert "| never | never |" in never and "- (no target)" in never


def test_a_per_seed_row_counts_the_seeds_at_the_target(tmp_path):
    records = [fake_record(s, final, [[40000, 9.0, final, 0.0]], name="lstm", table="recurrent")
               for s, final in enumerate([500.0, 474.9, 475.0, 12.5])]
    page = write_toy_page(tmp_path, records, {"lstm": {"return": 475.0, "why": "by hand"}})
    row = next(line for line in page.splitlines() if line.startswith("| `lstm`"))
    assert "| 0, 1, 2, 3 |" in row and "| 500.0, 474.9, 475.0, 12.5 |" in row
    assert "| 2/4 |" in row  # 500 and 475.0 are at 475; 474.9 is not


def test_a_seed_run_later_shows_its_own_command(tmp_path):
    records = [fake_record(s, 500.0, [[40000, 9.0, 500.0, 0.0]]) for s in range(3)]
    records[2]["command"] = "python -m rlexp.cli.train -m hparams=toy seed=2"
    page = write_toy_page(tmp_path, records, {})
    row = next(line for line in page.splitlines() if line.startswith("| `toy`"))
    assert ("| `python -m rlexp.cli.train -m hparams=toy seed=0,1,2` (seeds 0, 1); "
            "`python -m rlexp.cli.train -m hparams=toy seed=2` (seed 2) |") in row


def test_records_that_disagree_on_the_budget_are_refused(tmp_path, capsys):
    one, two = fake_record(0, 1.0, []), fake_record(1, 1.0, [])
    two["config"]["total_steps"] = 80000
    data = tmp_path / "data" / "tuned" / "toy"
    data.mkdir(parents=True)
    for record in (one, two):
        (data / f"seed{record['seed']}.json").write_text(json.dumps(record))
    code = results_page.main(["build", "--check", "--data", str(tmp_path / "data"), "--readme", "-"])
    assert code == 1
    assert "disagree" in capsys.readouterr().err


def test_a_run_becomes_a_record_with_its_config_versions_and_curves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = rlexp.train(["total_steps=3072", "eval.every_steps=1024", "eval.episodes=2", "progress=false", "seed=4"],
                      run_dir=tmp_path / "run")
    paths = results_page.record_multirun(run.run_dir, "tuned", tmp_path / "data", name="quick")
    assert [p.name for p in paths] == ["seed4.json"]
    record = json.loads(paths[0].read_text())
    assert record["config"] == yaml.safe_load((run.run_dir / ".hydra" / "config.yaml").read_text())
    assert record["versions_from"] == "run"
    assert record["versions"]["rlexp"] == rlexp.__version__ and "torch" in record["versions"]
    assert record["steps"] == run["steps"] and record["final_eval"]["mean"] == pytest.approx(run["eval_return_mean"], rel=1e-5)
    assert [row[0] for row in record["eval_history"]] == [e[0] for e in run["eval_history"]]
    assert all(row[1] is not None and row[1] >= 0 for row in record["eval_history"])  # seconds from TensorBoard
    assert 0 < len(record["train_history"]) <= 150
    assert paths[0].stat().st_size < 20_000


def test_a_run_that_did_not_finish_is_not_recorded(tmp_path):
    run = tmp_path / "multirun" / "0_job"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    (run / ".hydra" / "hydra.yaml").write_text("hydra: {job: {num: 0}}\n")
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(ValueError, match="not every job finished"):
        results_page.record_multirun(tmp_path / "multirun", "tuned", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_run_stopped_by_a_signal_is_kept_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = rlexp.train(["total_steps=2048", "eval.every_steps=1024", "eval.episodes=2", "progress=false", "seed=3"],
                      run_dir=tmp_path / "run")
    summary_path = run.run_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["status"] = "interrupted"  # what a SIGTERM'd run writes (it is resumable)
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="status 'interrupted'.*--stopped"):
        results_page.record_multirun(run.run_dir, "atari", tmp_path / "data")
    assert not (tmp_path / "data").exists()
    [path] = results_page.record_multirun(run.run_dir, "atari", tmp_path / "data", name="cut", stopped=True)
    record = json.loads(path.read_text())
    assert record["status"] == "interrupted" and record["eval_history"][-1][0] == run["eval_history"][-1][0]

    summary["eval_history"] = []  # stopped before it was ever evaluated: nothing to show
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="before its first evaluation"):
        results_page.record_multirun(run.run_dir, "atari", tmp_path / "data2", stopped=True)


def test_a_resumed_job_of_a_multirun_is_still_that_job(tmp_path, monkeypatch):
    """Hydra rewrites .hydra/ when a run resumes; the first launch's files stay in .hydra/first/,
    so the job still matches its sweep's overrides and its record names no path of this machine."""
    monkeypatch.chdir(tmp_path)
    launch = ["total_steps=2048", "eval.every_steps=1024", "eval.episodes=2", "progress=False", "seed=5"]  # as a sweep writes them
    root = tmp_path / "multirun"
    rlexp.train(launch, run_dir=root / "0_job")
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "overrides": {"task": launch}}}))
    resumed = rlexp.train([f"resume={root / '0_job'}", "total_steps=3072"])
    assert resumed["steps"] == 3072
    assert yaml.safe_load((root / "0_job" / ".hydra" / "first" / "overrides.yaml").read_text()) == launch
    [path] = results_page.record_multirun(root, "tuned", tmp_path / "data", name="resumed")
    record = json.loads(path.read_text())
    assert record["overrides"] == launch and record["steps"] == 3072 and record["resumed"] is True
    assert record["config"]["resume"] is None and record["config"]["total_steps"] == 3072
    assert str(tmp_path) not in path.read_text()
    assert record["wall_time_s"] is None and all(row[1] is None for row in record["eval_history"])


def test_a_stopped_row_says_where_each_seed_stopped(tmp_path):
    records = [fake_record(0, 30.0, [[10000, 2.0, 10.0, 1.0], [30000, 6.0, 30.0, 2.0]], name="cut", table="atari"),
               fake_record(1, 25.0, [[10000, 2.0, 25.0, 1.0]], name="cut", table="atari"),
               fake_record(0, 50.0, [[40000, 6.0, 50.0, 2.0]], name="whole", table="atari")]
    for record in records[:2]:
        record["status"] = "interrupted"
    page = write_toy_page(tmp_path, records, {}, tables=("atari",))
    cut = next(line for line in page.splitlines() if line.startswith("| `cut`"))
    assert "| stopped at 30,000, 10,000 (set up for 40,000) | 30.0, 25.0 |" in cut
    whole = next(line for line in page.splitlines() if line.startswith("| `whole`"))
    assert "| 40,000 | 50.0 |" in whole


def test_build_draws_a_figure_per_row_and_one_with_the_coreless_twin(tmp_path):
    evals = [[10000, 2.0, 30.0, 1.0], [20000, 4.0, 60.0, 1.0]]
    records = [fake_record(s, 60.0, evals, name=name, table="recurrent") for s in (0, 1) for name in ("lstm", "lstm_nocore")]
    write_toy_page(tmp_path, records, {}, figures=tmp_path / "fig")
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["lstm.png", "lstm_nocore.png", "lstm_vs_mlp.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in (tmp_path / "fig").iterdir())


@pytest.mark.parametrize("env_id,package", [("LunarLander-v3", "box2d"), ("HalfCheetah-v5", "mujoco"), ("ALE/Pong-v5", "ale-py"),
                                            ("MinAtar/Breakout-v1", "minatar"), ("mpe2.simple_spread_v3", "mpe2")])
def test_a_run_names_the_version_of_the_package_its_env_comes_from(env_id, package):
    import importlib.metadata

    from rlexp.run.records import software_versions

    try:
        expected = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{package} is not installed")
    versions = software_versions(env_id)
    assert versions[package] == expected
    assert {"python", "rlexp", "torch", "gymnasium", "numpy"} <= set(versions)
    assert set(software_versions("CartPole-v1")) == {"python", "rlexp", "torch", "gymnasium", "numpy"}


def probe(name, seed, final, evals, *extra, table="probes"):
    record = fake_record(seed, final, [[step * 10_000, *rest] for step, *rest in evals], name=name, table=table, threshold=1e9)
    record["overrides"] = ["hparams=ppo_minatar_mlp", *extra, f"seed={seed}"]
    return record


def test_a_probe_row_names_its_one_change_and_its_seeds_best_evaluation(tmp_path):
    records = [
        probe("game", 0, 15.5, [[100, 1.0, 6.0, 0.0], [200, 2.0, 16.4, 1.0], [300, 3.0, 15.5, 2.0]]),
        probe("game", 1, 11.1, [[100, 1.0, 6.0, 0.0], [300, 3.0, 11.1, 1.0]]),
        probe("game__gamma", 1, 7.0, [[100, 1.0, 7.5, 0.0], [300, 3.0, 7.0, 0.0]], "algo.gamma=0.99"),
        probe("game__gamma", 2, 20.0, [[100, 1.0, 6.0, 0.0], [300, 3.0, 20.0, 0.0]], "algo.gamma=0.99"),
        probe("fame__lr", 0, 1.0, [[100, 1.0, 1.0, 0.0]], "algo.learning_rate=0.1"),
        probe("fame", 0, 2.0, [[100, 1.0, 2.0, 0.0]], table="tuned"),  # a base row of another table
    ]
    figures = tmp_path / "figures"
    page = write_toy_page(tmp_path, records, {}, figures=figures, tables=("probes",))
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in page.splitlines() if line.startswith("| `")]
    assert [r[0] for r in rows] == ["`fame`", "`fame__lr`", "`game`", "`game__gamma`"]  # each base before its probes
    fame, fame_lr, base, gamma = rows
    assert fame[1] == "none (the base row)" and fame_lr[1] == "`algo.learning_rate=0.1`"
    assert "data/tuned/fame" in fame[7] and "data/probes/fame__lr" in fame_lr[7]
    # a family whose returns are all under 10 (success rates) is written with 3 places, not rounded to 1.0
    assert fame[4] == "2.000" and fame_lr[4] == "1.000" and fame_lr[5] == "1.000" and fame_lr[6] == "1.000 (1.00M)"
    assert base[1] == "none (the base row)" and gamma[1] == "`algo.gamma=0.99`"  # other seeds are no change
    assert base[2] == "0, 1" and gamma[2] == "1, 2"
    assert base[4] == "15.5, 11.1" and base[5] == "13.3"
    assert base[6] == "16.4 (2.00M), 11.1 (3.00M)"
    assert gamma[4] == "7.0, 20.0" and gamma[5] == "13.5" and gamma[6] == "7.5 (1.00M), 20.0 (3.00M)"
    assert (figures / "probes_game.png").stat().st_size > 10_000  # every probe of a row on one figure
    assert (figures / "probes_fame.png").exists()


def test_a_probe_without_its_base_row_is_refused(tmp_path, capsys):
    with pytest.raises(AssertionError):
        write_toy_page(tmp_path, [probe("game__gamma", 0, 7.0, [[100, 1.0, 7.0, 0.0]])], {}, tables=("probes",))
    assert "changes the row 'game', which has no records" in capsys.readouterr().err


def test_a_game_run_keeps_its_win_rates_and_what_rlexp_eval_measured(tmp_path, monkeypatch):
    pytest.importorskip("pettingzoo")
    monkeypatch.chdir(tmp_path)
    run = rlexp.train(["env=connect_four", "env.num_envs=4", "algo.n_steps=64", "total_steps=512", "eval.every_steps=256",
                       "eval.episodes=10", "progress=false", "seed=3"], run_dir=tmp_path / "run")
    paths = results_page.record_multirun(run.run_dir, "agents", tmp_path / "data", name="c4",
                                         evals=["episodes=30 opponent=random"])
    record = json.loads(paths[0].read_text())
    shares = {key: record["info_metrics"][f"eval/{key}"] for key in ("win", "draw", "loss")}
    assert sum(shares.values()) == pytest.approx(1.0)  # each of the 10 games is won, drawn or lost
    assert record["info_metrics"]["eval/win"] == pytest.approx(run["info_metrics"]["eval/win"], rel=1e-5)
    history = record["info_history"]["rollout/win"]
    assert history and history[-1][0] <= 512 and all(0.0 <= value <= 1.0 for _, value in history)
    (evaluation,) = record["evaluations"]
    assert evaluation["command"] == "rlexp-eval <run> episodes=30 opponent=random"
    assert evaluation["episodes"] == 30 and evaluation["deterministic"] is True
    won, lost = evaluation["metrics"]["win"], evaluation["metrics"]["loss"]
    assert won + lost + evaluation["metrics"]["draw"] == pytest.approx(1.0)
    # a game pays +1 for a win, -1 for a loss and 0 for a draw, so the mean return is win - loss
    assert evaluation["return_mean"] == pytest.approx(won - lost, abs=1e-5)


def test_a_bad_evaluation_argument_stops_before_any_record(tmp_path, capsys):
    run = tmp_path / "multirun" / "0_job"
    (run / ".hydra").mkdir(parents=True)
    code = results_page.main(["record", "--table", "agents", "--data", str(tmp_path / "data"),
                              "--eval", "episodes=0", str(tmp_path / "multirun")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "episodes" in err[0] and ">= 1" in err[0]
    assert not (tmp_path / "data").exists()


def agents_record(name, seed, overrides=(), evaluations=()):
    record = fake_record(seed, -18.0 - seed, [[1000, 5.0, -18.0 - seed, 4.0]], name=name, table="agents")
    record["overrides"] = [*overrides, f"seed={seed}"]
    record["info_metrics"] = {"eval/return/red": -14.125, "eval/return/blue": 6.5, "eval/win": 0.963,
                              "rollout/return/red": -13.0}
    record["info_history"] = {"rollout/return/red": [[100, -24.81], [1000, -13.0]], "rollout/win": [[100, 0.25]]}
    record["evaluations"] = list(evaluations)
    return record


def test_a_several_agents_row_shows_the_named_values_and_rlexp_eval_per_seed(tmp_path):
    vs_random = {"command": "rlexp-eval <run> episodes=1000 opponent=random", "episodes": 1000, "deterministic": True,
                 "return_mean": 0.926, "return_std": 0.3, "metrics": {"win": 0.963, "draw": 0.0, "loss": 0.037}}
    records = [agents_record("mpe", 1, evaluations=[vs_random]), agents_record("mpe", 2),
               agents_record("mpe__global", 1, overrides=["env.critic_input=global_state"]),
               agents_record("other", 1)]
    page = write_toy_page(tmp_path, records, {}, tables=("agents:mpe:return/red,return/blue", "agents:mpe:win"))
    first, second = [block.splitlines() for block in page.split("\n\n")[1:3]]
    assert len(first) == 2 + 3  # the header, its rule, seeds 1 and 2 of mpe and seed 1 of mpe__global; not `other`
    cells = [c.strip() for c in first[2].strip("|").split("|")]
    assert cells[:4] == ["`mpe`", "-", "1", "40,000"]
    assert cells[4] == "-19.00 ± 0.00 (20 episodes)"
    assert cells[5] == "red -14.12, blue 6.50"  # the last evaluation's values
    assert cells[6] == "red -24.81, blue -"  # the first rollout's (none of blue was logged)
    assert cells[7] == "`episodes=1000 opponent=random`: win 96.3%, draw 0.0%, loss 3.7%"  # keys not asked for: all of them
    assert first[4].startswith("| `mpe__global` | `env.critic_input=global_state` | 1 |")
    assert "| win 96.3% | win 25.0% | `episodes=1000 opponent=random`: win 96.3% |" in second[2]


def test_a_table_of_several_agents_without_records_is_refused(tmp_path, capsys):
    with pytest.raises(AssertionError):
        write_toy_page(tmp_path, [agents_record("mpe", 1)], {}, tables=("agents:nothing:win",))
    assert "no records of the row 'nothing'" in capsys.readouterr().err


def test_a_record_keeps_the_curves_of_the_tags_asked_for_and_refuses_a_tag_the_run_never_logged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = rlexp.train(["total_steps=2048", "eval.every_steps=1024", "eval.episodes=2", "progress=false", "seed=1"],
                      run_dir=tmp_path / "run")
    with pytest.raises(ValueError, match="no TensorBoard tag nope/never"):
        results_page.record_multirun(run.run_dir, "tuned", tmp_path / "data", name="quick",
                                     tags=["train/explained_variance", "nope/never"])
    assert not (tmp_path / "data").exists()  # nothing written
    (path,) = results_page.record_multirun(run.run_dir, "tuned", tmp_path / "data", name="quick",
                                           tags=["train/explained_variance"])
    history = json.loads(path.read_text())["tag_history"]["train/explained_variance"]
    per_update = run["steps"] // run["updates"]
    assert [step for step, _ in history] == [per_update * (i + 1) for i in range(run["updates"])]  # one per update
    assert all(value <= 1.0 for _, value in history)

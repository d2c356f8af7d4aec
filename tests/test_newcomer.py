"""What a newcomer meets first: run directories named after the env trained, the help of
rlexp-train and rlexp-eval, and rlexp-eval evaluating as the run's own evaluations did."""

import re
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli, run_cli_in_process

import rlexp
from rlexp.config import run_name

QUICK = ["total_steps=1024", "logger=none", "eval.every_steps=0", "eval.episodes=2", "progress=false"]
STAMP = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"


@pytest.mark.parametrize("env_id, name", [
    ("CartPole-v1", "cartpole-v1"),
    ("MiniGrid-DoorKey-5x5-v0", "minigrid-doorkey-5x5-v0"),
    ("ALE/Pong-v5", "pong-v5"),
    ("ALE/Breakout-v5", "breakout-v5"),
    ("MinAtar/Breakout-v1", "minatar-breakout-v1"),
    ("my_pkg.envs:Maze-v0", "maze-v0"),
    ("mpe2.simple_spread_v3", "simple_spread_v3"),  # PettingZoo game modules: the game's name
    ("pettingzoo.classic.connect_four_v3", "connect_four_v3"),
    ("a b/../C*?-v0", "a-b-c-v0"),
])
def test_run_name_is_a_short_safe_form_of_the_env_id(env_id, name):
    assert run_name(env_id) == name


def test_cli_run_dir_names_the_env_id_not_the_env_group(tmp_path):
    """env=cartpole (the default group) with another env.id: the directory names that id."""
    result = run_cli_in_process("env.id=Acrobot-v1", *QUICK, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = [p.name for p in (tmp_path / "outputs" / "runs").iterdir()]
    assert len(runs) == 1 and re.fullmatch(rf"{STAMP}_ppo_acrobot-v1", runs[0]), runs


def test_multirun_job_dirs_name_the_env_id(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli_in_process("-m", "seed=0,1", "env.id=Acrobot-v1", *QUICK, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0_ppo_acrobot-v1", "1_ppo_acrobot-v1"]
    assert all((sweep / job / "summary.json").is_file() for job in jobs)


def test_python_api_run_dir_names_the_env_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = rlexp.train(["env.id=Acrobot-v1", *QUICK])
    assert result.run_dir.parent == tmp_path / "outputs" / "runs"
    assert re.fullmatch(rf"{STAMP}_ppo_acrobot-v1(_\d+)?", result.run_dir.name), result.run_dir.name
    assert result["env_id"] == "Acrobot-v1"


def rlexp_eval(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "rlexp.cli.evaluate", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def rlexp_eval_in_process(*args):
    """rlexp-eval's main() in this process (conftest.run_cli_in_process: the same code from main() on)."""
    return run_cli_in_process(*map(str, args), module="rlexp.cli.evaluate")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_eval_help_prints_the_usage_once_and_exits_0(flag):
    result = rlexp_eval(flag) if flag == "--help" else rlexp_eval_in_process(flag)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: rlexp-eval <run dir or checkpoint.pt>")
    assert result.stdout.count("usage:") == 1
    assert "deterministic=" in result.stdout and "episodes=" in result.stdout


@pytest.mark.parametrize("args, message", [
    ((), "rlexp-eval: error: the run directory (or checkpoint.pt) to evaluate is required"),
    (("episodes=3",), "rlexp-eval: error: the first argument is the run directory (or checkpoint.pt) to evaluate, got 'episodes=3'"),
])
def test_eval_without_a_run_prints_the_usage_and_one_error_line(args, message):
    result = rlexp_eval(*args) if not args else rlexp_eval_in_process(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0], message], result.stderr
    assert lines[0].startswith("usage: rlexp-eval <run dir or checkpoint.pt>")
    assert result.stderr.count("usage:") == 1 and result.stdout == ""


def test_train_help_lists_the_groups_a_user_picks_from_not_the_schemas():
    result = run_cli("--help", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if "schema/" in line], result.stdout[:2000]
    groups = {line.split(":")[0] for line in lines if re.match(r"^[a-z_/]+: \w", line)}
    assert {"algo", "env", "network", "hparams", "logger", "diagnostics", "sweep"} <= groups, groups
    assert "algo: a2c, ppo, reinforce, reinforce_baseline" in lines
    assert "== Config ==" in result.stdout and "total_steps: 100000" in lines  # the rest of Hydra's help is still there


@pytest.fixture(scope="module")
def sampling_run(tmp_path_factory):
    """A tiny CartPole run whose own evaluations sampled actions, as the Atari presets' do."""
    run_dir = tmp_path_factory.mktemp("sampling") / "run"
    result = run_cli_in_process("total_steps=1024", "logger=none", "eval.every_steps=0", "eval.episodes=2", "progress=false",
                                "eval.deterministic=false", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


@pytest.mark.parametrize("args, kind", [((), "stochastic"), (("deterministic=true",), "deterministic"), (("deterministic=false",), "stochastic")])
def test_eval_chooses_actions_as_the_runs_own_evaluations_unless_told(sampling_run, args, kind):
    result = rlexp_eval_in_process(sampling_run, "episodes=2", *args)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("CartPole-v1: return") and f"over 2 {kind} episodes" in line, line


def test_agent_evaluate_chooses_actions_as_the_runs_own_evaluations_unless_told(sampling_run, monkeypatch):
    import numpy as np

    import rlexp.run.episodes as episodes

    modes = []

    def recording_play(policy, env, n, device, deterministic=True, seed=None):
        modes.append(deterministic)
        return np.zeros(n)

    monkeypatch.setattr(episodes, "play_episodes", recording_play)
    agent = rlexp.load(sampling_run)
    agent.evaluate(episodes=2)
    agent.evaluate(episodes=2, deterministic=True)
    assert modes == [False, True]


def test_eval_refuses_a_mode_that_is_not_a_bool(sampling_run):
    result = rlexp_eval_in_process(sampling_run, "episodes=2", "deterministic=maybe")
    assert result.returncode == 1
    assert result.stderr.startswith("rlexp-eval: error: deterministic: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_readme_plot_example_writes_into_outputs_not_the_committed_docs():
    """Copying the README's plot command must not overwrite tracked files; regenerating the
    committed docs is its own command, introduced as such."""
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if "scripts/plot.py" in line and "--png" in line]
    example = next(line for line in commands if line.startswith("python scripts/plot.py"))
    assert "--png outputs/" in example and "--md outputs/" in example, example
    to_docs = [line for line in commands if "docs/" in line.split("scripts/plot.py", 1)[1]]
    assert to_docs and all(not line.startswith("python ") for line in to_docs), to_docs  # not in a block to copy
    paragraph = readme[readme.rindex("\n\n", 0, readme.index(to_docs[0])):readme.index(to_docs[0])]
    assert "regenerate" in paragraph.lower(), paragraph


def test_readme_lists_every_extra_once_near_the_top_with_its_install_line():
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    readme = (ROOT / "README.md").read_text()
    top = readme[readme.index("## Install and run"):readme.index("\n## ", readme.index("## Install and run") + 1)]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in top.splitlines() if line.startswith("| `")]
    listed = [row[0].strip("`") for row in rows]
    assert sorted(listed) == sorted(extras) and len(listed) == len(set(listed)), (listed, extras)
    for (_, enables, install), name in zip(rows, listed):
        assert install == f'`pip install -e ".[{name}]"`' and enables, (name, install)

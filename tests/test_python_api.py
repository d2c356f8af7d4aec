"""rlexp.train from Python: the CLI's config tree, checks, run directory and one-line errors,
any number of times in one process."""

import logging
import re
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, run_cli, run_cli_in_process

import rlexp
from rlexp.errors import ConfigError

QUICK = ["total_steps=1024", "logger=none", "eval.every_steps=0", "eval.episodes=2", "progress=false"]


def test_two_trainings_in_one_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    handlers = list(logging.getLogger("rlexp").handlers)
    first = rlexp.train(["seed=3", "algo.learning_rate=1e-3", *QUICK])
    second = rlexp.train(["env=acrobot", "network.hidden_sizes=[32]", *QUICK])

    for result, env_id, algo_env in ((first, "CartPole-v1", "ppo_cartpole"), (second, "Acrobot-v1", "ppo_acrobot")):
        # the CLI's run directory: outputs/runs/<date>_<time>_<algo>_<env id, lower case> under the working directory
        assert result.run_dir.parent == tmp_path / "outputs" / "runs"
        assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_ppo_{env_id.lower()}(_\d+)?", result.run_dir.name)
        assert result["status"] == "finished" and result["steps"] == 1024 and result["env_id"] == env_id
        assert yaml.safe_load((result.run_dir / "summary.json").read_text())["steps"] == 1024
        assert (result.run_dir / "checkpoints" / "last.pt").is_file()
        assert "done: 1024 steps" in (result.run_dir / "train.log").read_text()
        hydra_cfg = yaml.safe_load((result.run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["runtime"]["choices"]["env"] == algo_env.split("_")[1]  # what rlexp.analysis.results reads
        assert hydra_cfg["runtime"]["output_dir"] == str(result.run_dir)

    # each run composed from its own overrides only
    saved = [yaml.safe_load((r.run_dir / ".hydra" / "config.yaml").read_text()) for r in (first, second)]
    assert (saved[0]["seed"], saved[0]["env"]["id"], saved[0]["algo"]["learning_rate"]) == (3, "CartPole-v1", 1e-3)
    assert (saved[1]["seed"], saved[1]["env"]["id"], saved[1]["network"]["hidden_sizes"]) == (1, "Acrobot-v1", [32])
    assert yaml.safe_load((second.run_dir / ".hydra" / "overrides.yaml").read_text()) == ["env=acrobot", "network.hidden_sizes=[32]", *QUICK]
    assert logging.getLogger("rlexp").handlers == handlers  # the run's log handlers are gone again

    agent = rlexp.load(second)  # the result is a path to the run
    assert agent.action_space.contains(int(agent.predict(agent.observation_space.sample())))


def test_run_dir_and_resume(tmp_path):
    run_dir = tmp_path / "my run"
    result = rlexp.train(QUICK, run_dir=run_dir)
    assert result.run_dir == run_dir and result["steps"] == 1024
    resumed = rlexp.train([f"resume={run_dir}", "total_steps=2048"])
    assert resumed.run_dir == run_dir and resumed["steps"] == 2048 and resumed["updates"] == 2 * result["updates"]
    with pytest.raises(ConfigError, match="^run_dir: resume= continues in the run's own directory"):
        rlexp.train([f"resume={run_dir}"], run_dir=tmp_path / "elsewhere")


# the same bad overrides as tests/test_cli.py: from Python, the message is the CLI's line
BAD = ["algo=nope", "algo.clip_rnge=0.1", "algo.n_epochs=abc", "env.id=CartPoel-v1", "algo.batch_size=100000", "foo bar"]


def test_bad_overrides_raise_the_cli_line(tmp_path, monkeypatch):
    """The CLI's lines from its main() run in this process (conftest.run_cli_in_process), the
    first from the command started as a user does."""
    cli_lines = {}
    for override in BAD:
        run = run_cli if override == BAD[0] else run_cli_in_process
        result = run(override, f"hydra.run.dir={tmp_path / 'cli'}")
        assert result.returncode == 1
        cli_lines[override] = result.stderr.strip().removeprefix("rlexp-train: error: ")
    monkeypatch.chdir(tmp_path)
    for override in BAD:
        with pytest.raises(ConfigError) as raised:
            rlexp.train([override, *QUICK])
        assert str(raised.value) == cli_lines[override]
        assert "\n" not in str(raised.value)
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs" / "runs").iterdir())  # nothing half-written


def test_overrides_are_a_list_of_key_values():
    with pytest.raises(ConfigError, match=r"^overrides: must be a list of strings"):
        rlexp.train("env=pendulum")
    with pytest.raises(ConfigError, match=r"^overrides: -m is a flag of the rlexp-train command"):
        rlexp.train(["-m", "seed=1,2"])


def test_rlexp_train_stays_callable_once_the_module_is_imported():
    """Importing the entry point's module (the console script does) leaves ``rlexp.train`` the
    function: calling it still trains."""
    code = ("import rlexp.cli.train as module, rlexp\n"
            "assert rlexp.train is module.train\n"
            "try:\n    rlexp.train(['algo=nope'])\nexcept rlexp.ConfigError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("algo=nope: no such option; choose one of: a2c, ppo")

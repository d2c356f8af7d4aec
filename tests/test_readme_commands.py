"""scripts/readme_commands.py (issue #35): every command block of the README runs as pasted in
a fresh clone with small budgets, or is skipped for a stated reason. These tests check the
extractor, the budget and placeholder rules and that every README command has a decision,
and run one README block for real; the full run is opt-in (-m slow)."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import pytest
from conftest import ROOT

from rlexp.analysis import readme_commands as rc

SAMPLE = """\
# Title

Some text with `rlexp-train` inline.

## Install

```bash
pip install -e .
# a comment line, not a heading
rlexp-train env=pendulum \\
    seed=3   # two lines
```

```
$ rlexp-train algo=nope
rlexp-train: error: algo=nope: no such option
```

### From Python

```python
import rlexp  # a ``` in a comment is no fence
print("done")
```

```yaml
key: 1
```
"""


def command(text: str, kind: str = "bash", expected=()) -> rc.Command:
    block = rc.Block(1, 1, kind, "heading", [text])
    return rc.Command(block, 2, text, list(expected))


def test_extractor_finds_every_block_with_its_line_language_and_heading():
    blocks = rc.extract_blocks(SAMPLE)
    assert [b.line for b in blocks] == [7, 14, 21, 26]
    assert [b.lang for b in blocks] == ["bash", "", "python", "yaml"]
    assert [b.kind for b in blocks] == ["shell", "console", "python", "text"]
    assert [b.heading for b in blocks] == ["Install", "Install", "From Python", "From Python"]

    shell = rc.commands_of(blocks[0])
    assert [(c.line, c.text) for c in shell] == [(8, "pip install -e ."), (10, "rlexp-train env=pendulum seed=3   # two lines")]
    (transcript,) = rc.commands_of(blocks[1])
    assert (transcript.line, transcript.text) == (15, "rlexp-train algo=nope")
    assert transcript.expected == ["rlexp-train: error: algo=nope: no such option"]
    (python,) = rc.commands_of(blocks[2])
    assert python.line == 22 and python.text == 'import rlexp  # a ``` in a comment is no fence\nprint("done")\n'
    assert rc.commands_of(blocks[3]) == []


def test_an_unclosed_block_is_named_by_its_line():
    with pytest.raises(ValueError, match="line 3 is never closed"):
        rc.extract_blocks("# A\n\n```bash\nrlexp-train\n")


def test_budget_overrides_go_on_training_lines_before_their_comment_and_not_elsewhere(compose_cfg):
    plan = rc.decide(command("rlexp-train env=pendulum seed=3   # two lines"))
    assert plan.action == "run"
    assert plan.code == "rlexp-train env=pendulum seed=3 total_steps=2048 eval.episodes=2"
    plan = rc.decide(command("python -m rlexp.cli.train total_steps=200000"), steps=512, episodes=1)
    assert plan.code == "python -m rlexp.cli.train total_steps=200000 total_steps=512 eval.episodes=1"
    # ... which works because Hydra keeps the last value of a key
    assert compose_cfg("total_steps=200000", "total_steps=512").total_steps == 512

    plot = "python scripts/plot.py outputs/multirun/compare_algos/<time> --png outputs/a.png  # picture"
    assert rc.decide(command(plot)).code == "python scripts/plot.py outputs/multirun/compare_algos/<time> --png outputs/a.png"
    assert rc.decide(command("rlexp-eval outputs/runs/<run> episodes=20")).code.endswith("episodes=20 episodes=2")

    sweep = rc.decide(command("rlexp-train -m seed=0,1,2 algo=a2c,ppo")).code
    assert sweep.endswith("seed=0") and "algo=a2c,ppo" in sweep  # one seed, both algorithms
    assert rc.decide(command("rlexp-train -m +sweep=ppo_optuna")).code.endswith("hydra.sweeper.n_trials=2")
    assert rc.decide(command("rlexp-train -m +sweep=compare_algos")).code.endswith("seed=0")
    assert rc.decide(command("rlexp-train seed=0,1")).code == "rlexp-train seed=0,1 total_steps=2048 eval.episodes=2"  # no -m
    longer = rc.decide(command("rlexp-train resume=outputs/runs/<run> total_steps=500000")).code
    assert longer.endswith("total_steps=4096 eval.episodes=2")  # beyond the resumed run's own 2048


def test_python_blocks_keep_a_small_stated_budget_and_lower_a_large_one():
    code, notes = rc.python_budget('rlexp.train(["total_steps=20000"])')
    assert code == 'rlexp.train(["total_steps=20000"])' and notes == []
    code, notes = rc.python_budget('rlexp.train(["total_steps=1000000"])')
    assert code == f'rlexp.train(["total_steps={rc.PYTHON_MAX_STEPS}"])' and notes


def test_placeholders_are_filled_with_the_latest_matching_directory(tmp_path):
    for name in ["runs/2026-01-01_10-00-00_ppo_pong-v5", "runs/2026-01-02_10-00-00_ppo_cartpole-v1",
                 "runs/2026-01-01_09-00-00_a2c_cartpole-v1", "multirun/2026-01-01_10-00-00", "multirun/2026-01-03_10-00-00",
                 "multirun/compare_algos/2026-01-05_10-00-00", "multirun/dashboards"]:
        (tmp_path / "outputs" / name).mkdir(parents=True)
    filled, notes = rc.fill_placeholders("rlexp-eval outputs/runs/<run> episodes=2", tmp_path)
    assert filled == "rlexp-eval outputs/runs/2026-01-02_10-00-00_ppo_cartpole-v1 episodes=2" and notes
    atari = rc.decide(command("rlexp-eval outputs/runs/<run> env.repeat_action_probability=0.25"))
    assert rc.fill_placeholders(atari.code, tmp_path, atari.run_glob)[0].startswith("rlexp-eval outputs/runs/2026-01-01_10-00-00_ppo_pong-v5 ")
    # <date>_<time> is a dated sweep, not compare_algos/ or dashboards/; nor is a transcript's example date
    assert rc.fill_placeholders("report.py outputs/multirun/<date>_<time>", tmp_path)[0] == "report.py outputs/multirun/2026-01-03_10-00-00"
    assert rc.fill_placeholders("outputs/multirun/2026-11-23_21-32-46", tmp_path)[0] == "outputs/multirun/2026-01-03_10-00-00"
    assert rc.fill_placeholders("outputs/multirun/compare_algos/<time> --png outputs/x.png", tmp_path)[0] == (
        "outputs/multirun/compare_algos/2026-01-05_10-00-00 --png outputs/x.png")
    python = 'load("outputs/runs/<run>/policy.pt")  # or rlexp.load("outputs/runs/<run>")\n'
    assert rc.fill_placeholders(python, tmp_path, python=True)[0] == (
        'load("outputs/runs/2026-01-02_10-00-00_ppo_cartpole-v1/policy.pt")  # or rlexp.load("outputs/runs/<run>")\n')
    with pytest.raises(rc.Undecided, match="nothing in outputs/runs to fill"):
        rc.fill_placeholders("outputs/runs/<run>", tmp_path / "empty")
    assert rc.decide(command("rlexp-eval outputs/runs/<nope>")).action == "undecided"


def test_every_readme_command_runs_or_is_skipped_with_a_reason():
    readme = (ROOT / "README.md").read_text()
    plans = rc.plan_blocks(rc.extract_blocks(readme))
    undecided = [f"line {p.line}: {p.shown}: {p.reason}" for p in plans if p.action == "undecided"]
    assert not undecided, undecided
    assert all(p.reason for p in plans if p.action in ("skip", "text"))
    assert sum(p.action in ("run", "server", "python") for p in plans) >= 40  # most of the README does run
    commands = [p.code for p in plans if p.command is not None]
    for table, patterns in [("SKIPS", [s.pattern for s in rc.SKIPS]), ("SWEEP_REDUCTIONS", [r[0] for r in rc.SWEEP_REDUCTIONS]),
                            ("RUN_CHOICES", [r[0] for r in rc.RUN_CHOICES]), ("PREPARE", [r[0] for r in rc.PREPARE])]:
        for pattern in patterns:  # no stale entries
            assert any(re.search(pattern, c) for c in commands), f"{table}: {pattern!r} matches no README command"
    # a new block without a rule is caught
    extra = rc.plan_blocks(rc.extract_blocks(readme + "\n```bash\nmake docs\n```\n"))
    assert [p.shown for p in extra if p.action == "undecided"] == ["make docs"]


def test_a_transcripts_error_lines_must_be_printed():
    expected = ["rlexp-train: error: algo=nope: no such option", "... (elided output)"]
    assert rc.missing_error_lines(expected, "rlexp-train: error: algo=nope: no such option\n") == []
    assert rc.missing_error_lines(expected, "rlexp-train: error: algo=nope: unknown\n") == [expected[0]]


def test_commands_run_the_clones_code_with_this_python(tmp_path):
    """In the clone, the entry points must import the clone's rlexp, not the one this
    environment has installed (an editable install puts its finder on sys.meta_path)."""
    (tmp_path / "rlexp" / "cli").mkdir(parents=True)
    (tmp_path / "rlexp" / "__init__.py").write_text("")
    (tmp_path / "rlexp" / "cli" / "__init__.py").write_text("")
    (tmp_path / "rlexp" / "cli" / "train.py").write_text("def main():\n    print('the clone')\n")
    status, output = rc.run_process(["bash", "-c", "rlexp-train --help"], tmp_path, timeout=60)
    assert (status, output.strip()) == (0, "the clone"), output[-2000:]


SERVER = """\
import http.server, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
http.server.HTTPServer(("localhost", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_a_server_is_asked_over_http_and_stopped(tmp_path):
    (tmp_path / "server.py").write_text(SERVER)
    answered, said, _ = rc.run_server("python server.py", tmp_path, timeout=60)
    assert answered and said.startswith("HTTP 200 on port "), said
    with pytest.raises(OSError):  # stopped: nothing answers there any more
        urllib.request.urlopen(f"http://localhost:{said.split()[-1]}/", timeout=5)
    answered, said, _ = rc.run_server("python -c 'raise SystemExit(3)'", tmp_path, timeout=60)
    assert not answered and said == "exited with 3 before answering"


def script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_commands.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_bad_arguments_get_one_line_and_a_non_zero_exit():
    result = script("--only", "999")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "--only '999': not a block index" in result.stderr


def test_a_readme_command_runs_end_to_end_in_a_fresh_clone():
    """The first command of the README's error transcript, through the script: a clone of
    HEAD, the command run there with its budget, its exit status and the README's error line
    checked, one row and the count."""
    head = subprocess.run(["git", "-C", str(ROOT), "show", "HEAD:README.md"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    blocks = rc.extract_blocks(head.stdout)
    (line,) = [c.line for b in blocks if b.kind == "console" for c in rc.commands_of(b) if c.text == "rlexp-train algo=nope"]
    result = script("--line", str(line), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "fresh clone of " in result.stdout
    rows = [row for row in result.stdout.splitlines() if re.match(rf"\s*\d+\s+{line}\s", row)]
    assert len(rows) == 1 and "rlexp-train algo=nope" in rows[0], result.stdout
    assert "ok (exit 1 and the README's error line)" in rows[0], rows
    assert "1 ran ok, 0 failed, 0 skipped" in result.stdout


def test_bad_line_is_named():
    result = script("--line", "2")
    assert result.returncode == 2
    assert result.stderr.strip() == "readme_commands: error: --line '2': no README command or block starts on that line (--list shows them)"


@pytest.mark.slow
def test_every_readme_block_runs():
    """All of them (about 10 minutes on 2 cores)."""
    result = script(timeout=3600)
    assert result.returncode == 0, result.stdout[-6000:]

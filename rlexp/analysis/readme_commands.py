"""Every command block of README.md, run as pasted in a fresh clone with small budgets
(issue #35, "a newcomer's first hour").

    python scripts/readme_commands.py              # clone HEAD into a temp dir, run every block, one row per command
    python scripts/readme_commands.py --list       # the blocks and what would be done with each, nothing run
    python scripts/readme_commands.py --only 3,5 --keep --timeout 300
    python scripts/readme_commands.py --line 117   # the command on that README line

Blocks: ```bash, ```sh, ```shell and ```console blocks, and unlabelled blocks whose lines
start with "$ " (a console transcript), hold commands, one per line (continuation lines
joined, comment lines left out); a ```python block runs whole. Other blocks (```yaml, a
directory listing) are listed as "not a command".

Each command meets, in this order:

1. SKIPS: a command matching one of its patterns is not run; the row gives the table's reason.
2. RUNNERS: the program decides how it runs. Training (rlexp-train) gets a small budget
   appended as Hydra overrides (the last value of a key wins): total_steps, eval.episodes,
   and fewer jobs for a sweep (SWEEP_REDUCTIONS, one seed of a seed list); rlexp-eval gets
   fewer episodes; tensorboard is started, asked for its page over HTTP and stopped; the
   other known programs run unchanged. A ```python block keeps its stated budget up to
   PYTHON_MAX_STEPS.
3. Anything else has no decision: it fails, so a new README block needs an entry here.

Placeholders in paths (outputs/runs/<run>, outputs/multirun/<date>_<time>, a transcript's
example sweep directory) are filled with the latest matching directory that earlier blocks
wrote into the clone's outputs/ (RUN_CHOICES narrows <run> where a command needs a kind of
run). A transcript's "<prog>: error: ..." lines must be printed, with a non-zero exit.

The clone is of HEAD, and --list, --only and --line read HEAD's README too: uncommitted
changes are not checked (the script says so when README.md has some). Commands run in the
clone with this Python's environment (its bin/ first on PATH) and the clone first on
PYTHONPATH, so the clone's code and conf/ run and outputs/ is written there.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tokenize
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]

#: fence languages whose lines are shell commands
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
#: fence languages that hold no command (file contents, listings, output)
TEXT_LANGS = {"", "text", "yaml", "yml", "toml", "json", "ini"}

#: the default small budget: environment steps of a training command, episodes of an evaluation
STEPS = 2048
EPISODES = 2
#: a ```python block keeps its stated total_steps up to this many (a few seconds of CartPole)
PYTHON_MAX_STEPS = 20_000
#: seconds a server gets to answer over HTTP
SERVER_WAIT = 90


@functools.lru_cache(maxsize=None)
def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


def has_sqlalchemy_2() -> bool:
    """mlflow ui (MLflow's server) needs SQLAlchemy 2; logging to a store works with 1.4 too."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("sqlalchemy").split(".")[0]) >= 2
    except (PackageNotFoundError, ValueError):
        return False


@functools.lru_cache(maxsize=None)
def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class Skip:
    pattern: str  # a regular expression searched in the command (its comment left out)
    reason: str
    unless: Optional[Callable[[], bool]] = None  # where this holds, the command runs after all


#: commands that are not run, and why
SKIPS: tuple[Skip, ...] = (
    Skip(r"^pip install ", "installs packages: this runs in an environment that has them (CI: pip install -e \".[dev]\")"),
    Skip(r"^python -m pytest", "the test suite itself: CI runs it, and it holds this script's own tests"),
    Skip(r"\bdevice=cuda", "needs a CUDA GPU (none here)", unless=has_cuda),
    Skip(r"hydra/launcher=ray_local", "needs the ray extra, not in dev (hydra-ray-launcher is not installed)",
         unless=lambda: has_module("hydra_plugins.hydra_ray_launcher")),
    Skip(r"hydra/launcher=ray_cluster", "needs a running Ray cluster (HEAD_IP)"),
    Skip(r"hydra/launcher=slurm", "needs a SLURM cluster and a launcher config of your own (the yaml block)"),
    Skip(r"^optuna-dashboard ", 'needs optuna-dashboard, not in dev (pip install "optuna-dashboard==0.13.0")',
         unless=lambda: has_module("optuna_dashboard")),
    Skip(r"^mlflow ui ", "MLflow's UI needs SQLAlchemy 2; this environment has 1.x (logging to the store works with it)",
         unless=has_sqlalchemy_2),
    Skip(r"^torchrun --nnodes=", "needs several machines (torchrun's rendezvous at HEAD_HOST)"),
    Skip(r"^sbatch ", "needs a SLURM cluster"),
    Skip(r"^python scripts/ray_torchrun\.py --nodes [2-9]", "needs a Ray cluster of several machines"),
    Skip(r"^rlexp-train -m hydra/launcher=joblib seed=0,1$",
         "shows the error printed when hydra-joblib-launcher is missing; it is installed here",
         unless=lambda: not has_module("hydra_plugins.hydra_joblib_launcher")),
)


@dataclass(frozen=True)
class Runner:
    pattern: str  # matched at the start of the command
    kind: str  # train | eval | plain | server


#: the programs the README's commands run, and how
RUNNERS: tuple[Runner, ...] = (
    Runner(r"^(rlexp-train|python -m rlexp\.cli\.train|torchrun --nproc_per_node=\d+ -m rlexp\.cli\.train)(?=\s|$)", "train"),
    Runner(r"^(rlexp-eval|python -m rlexp\.cli\.evaluate)(?=\s|$)", "eval"),
    Runner(r"^(rlexp-export|python -m rlexp\.cli\.export)(?=\s|$)", "plain"),
    Runner(r"^python scripts/(plot|report)\.py(?=\s|$)", "plain"),
    Runner(r"^tensorboard(?=\s|$)", "server"),
    Runner(r"^mlflow ui(?=\s|$)", "server"),
    Runner(r"^optuna-dashboard(?=\s|$)", "server"),
    Runner(r"^optuna(?=\s|$)", "plain"),  # Optuna's own CLI, on a study a command before made
)

#: a multirun matching the pattern gets these overrides too: fewer jobs
SWEEP_REDUCTIONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (r"\+sweep=compare_algos\b", ("seed=0",), "one seed of its three"),
    (r"\+sweep=ppo_optuna\b", ("hydra.sweeper.n_trials=2",), "2 trials"),
    (r"\+sweep=ppo_optuna_pruning\b", ("hydra.sweeper.n_trials=2",), "2 trials"),
)
SEED_LIST = re.compile(r"(?<![\w.])seed=(\d+)(?:,\d+)+(?=\s|$)")

#: which run fills <run> for a command matching the pattern (default: the latest run)
RUN_CHOICES: tuple[tuple[str, str, str], ...] = (
    (r"env\.repeat_action_probability", "*-v5", "an Atari run: the key exists in env=atari only"),
    (r"(?<![\w.])opponent=", "*_connect_four_v3", "a connect-four run: opponents play turn-based games"),
)

#: commands run before a command matching the pattern (what the text above its block says to do)
PREPARE: tuple[tuple[str, str], ...] = (
    (r"policy\.pt", "rlexp-export outputs/runs/<run>"),
)

DATED = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]_[0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
#: a placeholder in a path -> the glob of the directory names it stands for
PLACEHOLDERS = {"<date>_<time>": DATED, "<time>": DATED, "<run>": DATED + "_*"}
PLACEHOLDER = re.compile(r"<[A-Za-z_ ]+>")
EXAMPLE_DATED = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d")  # a transcript's example directory
OUTPUT_PATH = re.compile(r"outputs/[^\s'\"]*")
ERROR_LINE = re.compile(r"^[\w.-]+: error: ")


class Undecided(Exception):
    """A command this script has no rule for, or a placeholder it cannot fill."""


@dataclass
class Block:
    index: int  # 1-based, in README order
    line: int  # README line of the opening fence
    lang: str
    heading: str  # the nearest heading above it
    lines: list[str]

    @property
    def kind(self) -> str:
        """python, shell, console (a transcript), text (not a command) or unknown."""
        if self.lang == "python":
            return "python"
        prompted = any(line.startswith("$ ") for line in self.lines)
        if prompted and (self.lang in SHELL_LANGS or self.lang in ("", "text")):
            return "console"
        if self.lang in SHELL_LANGS:
            return "shell"
        if self.lang in TEXT_LANGS:
            return "text"
        return "unknown"


@dataclass
class Command:
    block: Block
    line: int  # README line where it starts
    text: str  # as pasted; continuation lines joined
    expected: list[str] = field(default_factory=list)  # a transcript's output lines


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def extract_blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown``, in order, with its line and heading."""
    blocks: list[Block] = []
    heading = ""
    fence: Optional[str] = None
    for number, line in enumerate(markdown.splitlines(), 1):
        if fence is None:
            opening = FENCE.match(line)
            if opening:
                fence = opening.group(1)
                blocks.append(Block(len(blocks) + 1, number, opening.group(2).lower(), heading, []))
            elif HEADING.match(line):
                heading = HEADING.match(line).group(1)
        elif line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            fence = None
        else:
            blocks[-1].lines.append(line)
    if fence is not None:
        raise ValueError(f"README.md: the block opened at line {blocks[-1].line} is never closed")
    return blocks


def commands_of(block: Block) -> list[Command]:
    """The commands of a block: one per shell line, one per "$ " line of a transcript (with
    the output lines below it), the whole code of a python block; none for text."""
    first = block.line + 1
    if block.kind == "python":
        return [Command(block, first, "\n".join(block.lines) + "\n")]
    if block.kind == "console":
        found: list[Command] = []
        for number, line in enumerate(block.lines, first):
            if line.startswith("$ "):
                found.append(Command(block, number, line[2:].strip()))
            elif found and line.strip():
                found[-1].expected.append(line.rstrip())
        return found
    if block.kind != "shell":
        return []
    found, pending, start = [], None, 0
    for number, line in enumerate(block.lines, first):
        stripped = line.strip()
        if pending is None:
            if not stripped or stripped.startswith("#"):
                continue
            pending, start = stripped, number
        else:
            pending = f"{pending} {stripped}"
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        found.append(Command(block, start, pending))
        pending = None
    if pending is not None:
        found.append(Command(block, start, pending))
    return found


def split_comment(text: str) -> tuple[str, str]:
    """(the command, its trailing ``# comment``); a # inside quotes or a word is kept."""
    quote, previous = None, " "
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            return text[:i].rstrip(), text[i:]
        previous = char
    return text.rstrip(), ""


@dataclass
class Plan:
    command: Optional[Command]
    block: Block
    action: str  # run | server | python | skip | text | undecided
    reason: str = ""  # why skipped, not a command, or undecided
    code: str = ""  # what runs, before placeholders are filled
    notes: list[str] = field(default_factory=list)  # what was changed from the README, in words
    prepare: list[str] = field(default_factory=list)
    run_glob: str = PLACEHOLDERS["<run>"]

    @property
    def line(self) -> int:
        return self.command.line if self.command else self.block.line

    @property
    def shown(self) -> str:
        if self.command is None:
            return f"```{self.block.lang or ''} block, {len(self.block.lines)} lines"
        if self.block.kind == "python":
            return "python: " + "; ".join(l.strip() for l in self.command.text.splitlines() if l.strip() and not l.startswith("#"))
        return self.command.text


def budget_overrides(code: str, steps: int = STEPS, episodes: int = EPISODES) -> tuple[list[str], list[str]]:
    """(Hydra overrides to append to a training command, notes). Later values win in Hydra,
    so each override replaces the command's own value of that key."""
    notes: list[str] = []
    total = steps
    if re.search(r"(?<![\w.])resume=", code) and re.search(r"(?<![\w.])total_steps=", code):
        total = 2 * steps  # "train for longer": beyond the resumed run's own budget
        notes.append("resumed run trains on to twice the budget")
    extra = [f"total_steps={total}", f"eval.episodes={episodes}"]
    if re.search(r"(?:^|\s)(-m|--multirun)(?=\s|$)", code):
        seeds = SEED_LIST.search(code)
        if seeds:
            extra.append(f"seed={seeds.group(1)}")
            notes.append("one seed of the list")
        for pattern, overrides, why in SWEEP_REDUCTIONS:
            if re.search(pattern, code):
                extra += overrides
                notes.append(why)
    return extra, notes


def python_budget(code: str, limit: int = PYTHON_MAX_STEPS) -> tuple[str, list[str]]:
    """A python block's code with any total_steps above ``limit`` lowered to it, and notes."""
    notes: list[str] = []

    def lower(match: re.Match) -> str:
        if int(match.group(1)) <= limit:
            return match.group(0)
        notes.append(f"total_steps={match.group(1)} -> {limit}")
        return f"total_steps={limit}"

    return re.sub(r"total_steps=(\d+)", lower, code), notes


def check_placeholders(text: str) -> None:
    for name in PLACEHOLDER.findall(text):
        if not any(name in known for known in PLACEHOLDERS):
            raise Undecided(f"no rule fills the placeholder {name} (PLACEHOLDERS)")


def decide(command: Command, steps: int = STEPS, episodes: int = EPISODES) -> Plan:
    """What to do with one command of the README."""
    block = command.block
    if block.kind == "python":
        code, notes = python_budget(command.text)
        plan = Plan(command, block, "python", code=code, notes=notes)
        strings = " ".join(python_strings(code))
        try:
            check_placeholders(strings)
        except Undecided as error:
            return Plan(command, block, "undecided", reason=str(error), code=code)
        plan.prepare = [prep for pattern, prep in PREPARE if re.search(pattern, strings)]
        return plan
    code, _comment = split_comment(command.text)
    for skip in SKIPS:
        if re.search(skip.pattern, code) and not (skip.unless and skip.unless()):
            return Plan(command, block, "skip", reason=skip.reason, code=code)
    runner = next((r for r in RUNNERS if re.match(r.pattern, code)), None)
    if runner is None:
        return Plan(command, block, "undecided", reason="no rule runs or skips it (RUNNERS, SKIPS)", code=code)
    try:
        check_placeholders(code)
    except Undecided as error:
        return Plan(command, block, "undecided", reason=str(error), code=code)
    plan = Plan(command, block, "server" if runner.kind == "server" else "run", code=code)
    if runner.kind == "train":
        extra, notes = budget_overrides(code, steps, episodes)
        plan.code = f"{code} {' '.join(extra)}"
        plan.notes = [f"+ {' '.join(extra)}", *notes]
    elif runner.kind == "eval":
        plan.code = f"{code} episodes={episodes}"
        plan.notes = [f"+ episodes={episodes}"]
    elif runner.kind == "server":
        plan.notes = ["+ --port <free port>; answered over HTTP, then stopped"]
    for pattern, run_glob, why in RUN_CHOICES:
        if "<run>" in code and re.search(pattern, code):
            plan.run_glob = f"{DATED}_{run_glob}"
            plan.notes.append(f"<run>: {why}")
    plan.prepare = [prep for pattern, prep in PREPARE if re.search(pattern, code)]
    return plan


def plan_blocks(blocks: Sequence[Block], steps: int = STEPS, episodes: int = EPISODES) -> list[Plan]:
    plans: list[Plan] = []
    for block in blocks:
        if block.kind == "text":
            plans.append(Plan(None, block, "text", reason=f"not a command ({block.lang or 'unlabelled'} block: a file or a listing)"))
        elif block.kind == "unknown":
            plans.append(Plan(None, block, "undecided", reason=f"a ```{block.lang} block: no rule for this language"))
        else:
            commands = commands_of(block)
            if not commands:
                plans.append(Plan(None, block, "undecided", reason="a command block without a command"))
            plans += [decide(command, steps, episodes) for command in commands]
    return plans


# -- placeholders ------------------------------------------------------------------------
def python_strings(code: str) -> list[str]:
    """The string literals of python code (placeholders in comments are left alone)."""
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type == tokenize.STRING]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return [code]


def latest(directory: Path, pattern: str) -> Optional[Path]:
    found = sorted(p for p in directory.glob(pattern) if p.is_dir())
    return found[-1] if found else None


def fill_path(path: str, workdir: Path, run_glob: str = PLACEHOLDERS["<run>"]) -> tuple[str, list[str]]:
    """``path`` (outputs/...) with each placeholder segment replaced by the latest matching
    directory under ``workdir``; a dated example name that does not exist counts as one."""
    segments, notes = path.split("/"), []
    for i, segment in enumerate(segments):
        parent = workdir.joinpath(*segments[:i])
        if PLACEHOLDER.search(segment):
            pattern = segment
            for name, glob in PLACEHOLDERS.items():
                pattern = pattern.replace(name, run_glob if name == "<run>" else glob)
            if PLACEHOLDER.search(pattern):
                raise Undecided(f"no rule fills the placeholder {PLACEHOLDER.search(pattern).group(0)} (PLACEHOLDERS)")
        elif EXAMPLE_DATED.fullmatch(segment) and not (parent / segment).exists():
            pattern = DATED
        else:
            continue
        found = latest(parent, pattern)
        if found is None:
            shown = "/".join(segments[:i] + [segment])
            raise Undecided(f"nothing in {'/'.join(segments[:i]) or '.'} to fill {shown} (run the block that writes it first)")
        segments[i] = found.name
        notes.append(f"{segment} -> {found.name}")
    return "/".join(segments), notes


def fill_placeholders(text: str, workdir: Path, run_glob: str = PLACEHOLDERS["<run>"], python: bool = False) -> tuple[str, list[str]]:
    """``text`` with its outputs/... paths filled (in a python block: only inside strings)."""
    notes: list[str] = []

    def fill(match: re.Match) -> str:
        filled, said = fill_path(match.group(0), workdir, run_glob)
        notes.extend(said)
        return filled

    if not python:
        return OUTPUT_PATH.sub(fill, text), notes
    for string in sorted(set(python_strings(text)), key=len, reverse=True):
        if OUTPUT_PATH.search(string):
            text = text.replace(string, OUTPUT_PATH.sub(fill, string))
    return text, notes


# -- running -----------------------------------------------------------------------------
@dataclass
class Outcome:
    status: str  # ok | FAILED ... | skipped: ... | not a command ...
    seconds: Optional[float] = None
    output: str = ""
    failed: bool = False
    notes: list[str] = field(default_factory=list)


def command_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "RLEXP_FULL_ERROR", "RLEXP_DEBUG")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), *filter(None, [env.get("PYTHONPATH")])])
    env.update(PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    return env


def stop(process: subprocess.Popen) -> None:
    """End a command we started and everything it started (its own process group)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def run_process(argv: list[str], workdir: Path, timeout: float) -> tuple[Optional[int], str]:
    """(exit status or None on timeout, stdout and stderr together)."""
    process = subprocess.Popen(argv, cwd=workdir, env=command_env(workdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        stop(process)
        output, _ = process.communicate()
        return None, output or ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_server(code: str, workdir: Path, timeout: float) -> tuple[bool, str, str]:
    """Start the server on a free port, wait until http://localhost:<port>/ answers 200, stop it.
    (answered, what happened, its output)."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(["bash", "-c", f"exec {code} --port {port}"], cwd=workdir, env=command_env(workdir),
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                   start_new_session=True)
        deadline = time.monotonic() + min(timeout, SERVER_WAIT)
        answered, said = False, f"no answer on port {port} within {min(timeout, SERVER_WAIT):.0f} s"
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    said = f"exited with {process.returncode} before answering"
                    break
                try:
                    with urllib.request.urlopen(f"http://localhost:{port}/", timeout=5) as response:
                        answered, said = response.status == 200, f"HTTP {response.status} on port {port}"
                        break
                except (urllib.error.URLError, ConnectionError, OSError):
                    time.sleep(0.5)
        finally:
            stop(process)
        log.seek(0)
        return answered, said, log.read()


def missing_error_lines(expected: Sequence[str], output: str) -> list[str]:
    printed = {line.strip() for line in output.splitlines()}
    return [line for line in expected if ERROR_LINE.match(line) and line.strip() not in printed]


def execute(plan: Plan, workdir: Path, scratch: Path, timeout: float) -> Outcome:
    """Run one planned command in ``workdir`` (the clone)."""
    if plan.action == "skip":
        return Outcome(f"skipped: {plan.reason}")
    if plan.action == "text":
        return Outcome(plan.reason)
    if plan.action == "undecided":
        return Outcome(f"FAILED: {plan.reason}", failed=True)
    start = time.monotonic()
    notes: list[str] = []
    try:
        for prep in plan.prepare:
            filled, said = fill_placeholders(prep, workdir, plan.run_glob)
            rc, output = run_process(["bash", "-c", filled], workdir, timeout)
            notes += said
            if rc != 0:
                return Outcome(f"FAILED: preparing ({filled}) exited {rc}", time.monotonic() - start, output, True, notes)
            notes.append(f"first: {filled}")
        code, said = fill_placeholders(plan.code, workdir, plan.run_glob, python=plan.action == "python")
        notes += said
    except Undecided as error:
        return Outcome(f"FAILED: {error}", time.monotonic() - start, "", True, notes)
    if plan.action == "server":
        answered, said, output = run_server(code, workdir, timeout)
        status = f"ok ({said}, then stopped)" if answered else f"FAILED: {said}"
        return Outcome(status, time.monotonic() - start, output, not answered, notes)
    if plan.action == "python":
        script = scratch / f"block_{plan.block.index}.py"
        script.write_text(code)
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-c", code]
    rc, output = run_process(argv, workdir, timeout)
    seconds = time.monotonic() - start
    expected_errors = [line for line in (plan.command.expected if plan.command else []) if ERROR_LINE.match(line)]
    if rc is None:
        return Outcome(f"FAILED: timed out after {timeout:.0f} s", seconds, output, True, notes)
    if expected_errors:
        missing = missing_error_lines(expected_errors, output)
        if rc == 0:
            return Outcome("FAILED: exited 0 where the README shows an error", seconds, output, True, notes)
        if missing:
            return Outcome(f"FAILED: did not print the README's line: {missing[0]}", seconds, output, True, notes)
        return Outcome(f"ok (exit {rc} and the README's error line{'s' if len(expected_errors) > 1 else ''})", seconds, output, False, notes)
    if rc != 0:
        return Outcome(f"FAILED rc={rc}", seconds, output, True, notes)
    return Outcome("ok", seconds, output, False, notes)


# -- the table ---------------------------------------------------------------------------
def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def row(plan: Plan, status: str, seconds: Optional[float]) -> str:
    secs = f"{seconds:.1f}s" if seconds is not None else "-"
    return f"{plan.block.index:>3} {plan.line:>4}  {shorten(plan.block.heading, 24):<24}  {shorten(plan.shown, 60):<60}  {status}  {secs}"


HEADER = f"{'#':>3} {'line':>4}  {'heading':<24}  {'command':<60}  status  seconds"


def clone_repo(source: Path, into: Path) -> Path:
    target = into / "clone"
    result = subprocess.run(["git", "clone", "--quiet", str(source), str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"readme_commands: error: git clone {source} failed: {result.stderr.strip()}")
    return target


def parse_only(values: Sequence[str], count: int) -> set[int]:
    chosen: set[int] = set()
    for value in values:
        for part in value.split(","):
            if not part.strip().isdigit() or not 1 <= int(part) <= count:
                raise SystemExit(f"readme_commands: error: --only {part.strip()!r}: not a block index (1 to {count}; --list shows them)")
            chosen.add(int(part))
    return chosen


def parse_lines(values: Sequence[str], blocks: Sequence[Block]) -> set[int]:
    starts = {b.line for b in blocks if b.kind in ("text", "unknown") or not commands_of(b)}
    starts |= {c.line for b in blocks for c in commands_of(b)}
    chosen: set[int] = set()
    for value in values:
        for part in value.split(","):
            if not part.strip().isdigit() or int(part) not in starts:
                raise SystemExit(f"readme_commands: error: --line {part.strip()!r}: no README command or block starts on that line (--list shows them)")
            chosen.add(int(part))
    return chosen


def selected(plans: Sequence[Plan], only: Optional[set[int]], lines: Optional[set[int]]) -> list[Plan]:
    return [p for p in plans if (not only or p.block.index in only) and (not lines or p.line in lines)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--list", action="store_true", help="show the blocks and what would be done with each; run nothing")
    parser.add_argument("--only", action="append", default=[], metavar="N[,N...]", help="only these block indices (as --list numbers them)")
    parser.add_argument("--line", action="append", default=[], metavar="N[,N...]",
                        help="only the commands that start on these README lines (--list shows them)")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed) instead of deleting it")
    parser.add_argument("--timeout", type=float, default=600, metavar="S", help="seconds per command (default 600)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"total_steps of a training command (default {STEPS})")
    parser.add_argument("--episodes", type=int, default=EPISODES, help=f"evaluation episodes (default {EPISODES})")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.steps < 1 or args.episodes < 1:
        parser.error("--timeout, --steps and --episodes must be positive")
    try:
        return run(args)
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
            return 2
        raise


def committed_readme() -> str:
    """README.md as HEAD has it: what a fresh clone holds and runs."""
    shown = subprocess.run(["git", "-C", str(ROOT), "show", "HEAD:README.md"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"readme_commands: error: no README.md at HEAD of a git checkout in {ROOT}: {shown.stderr.strip()}")
    return shown.stdout


def run(args: argparse.Namespace) -> int:
    text = committed_readme()
    blocks = extract_blocks(text)
    only = parse_only(args.only, len(blocks)) if args.only else None
    lines = parse_lines(args.line, blocks) if args.line else None
    worktree = ROOT / "README.md"
    if not worktree.is_file() or worktree.read_text(encoding="utf-8") != text:
        print("note: README.md has uncommitted changes; this reads and runs the committed one (HEAD)")
    if args.list:
        print(HEADER)
        for plan in selected(plan_blocks(blocks, args.steps, args.episodes), only, lines):
            what = {"run": "run", "server": "start, ask over HTTP, stop", "python": "run the block"}.get(plan.action)
            print(row(plan, what or (f"skip: {plan.reason}" if plan.action == "skip" else plan.reason), None))
            if plan.action in ("run", "server", "python") and plan.block.kind != "python":
                print(f"{'':>10}runs: {plan.code}")
            for note in [*(f"first: {p}" for p in plan.prepare), *plan.notes]:
                print(f"{'':>10}{note}")
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="readme_commands_"))
    clone = clone_repo(ROOT, scratch)
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"fresh clone of {head} (HEAD; uncommitted changes are not in it) in {clone}")
    print(f"budget: total_steps={args.steps}, eval episodes {args.episodes}; timeout {args.timeout:.0f} s per command")
    print(HEADER, flush=True)
    failed = ran = skipped = 0
    started = time.monotonic()
    try:
        for plan in selected(plan_blocks(blocks, args.steps, args.episodes), only, lines):
            outcome = execute(plan, clone, scratch, args.timeout)
            print(row(plan, outcome.status, outcome.seconds), flush=True)
            failed += outcome.failed
            ran += outcome.seconds is not None and not outcome.failed
            skipped += plan.action == "skip"
            if outcome.failed:
                print(f"{'':>10}runs: {' '.join(plan.code.split()) if plan.block.kind != 'python' else '(the python block)'}")
                for note in outcome.notes:
                    print(f"{'':>10}{note}")
                for line in outcome.output.rstrip().splitlines()[-15:]:
                    print(f"{'':>10}| {line}")
                print(flush=True)
    finally:
        if args.keep:
            print(f"kept the clone: {clone}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{ran} ran ok, {failed} failed, {skipped} skipped; {time.monotonic() - started:.0f} s")
    return 1 if failed else 0

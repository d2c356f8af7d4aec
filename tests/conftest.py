"""Shared fixtures: compose configs the way rlexp-train does, and run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import rlexp.config  # noqa: F401  (registers the schemas)

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def opt_in_to_slow(request):
    """Tests marked ``slow`` (long learning runs) run only when a ``-m`` expression selects them
    (``-m slow``, ``-m "slow or not slow"``, ...); without ``-m`` they are skipped.

    pytest itself deselects the tests a ``-m`` expression does not match, so a slow test
    that reaches this fixture with ``-m`` given was selected by it and runs.
    """
    if request.node.get_closest_marker("slow") is None:
        return
    if not (request.config.getoption("-m") or "").strip():
        pytest.skip("learning test: opt in with -m slow")


@pytest.fixture(autouse=True)
def opt_in_to_ray(request):
    """Tests marked ``ray`` start a Ray instance of their own: as pyproject.toml's marker says, they
    run only when the ``-m`` expression names ray (``-m ray``, ``-m "slow or ray"``) and are skipped
    otherwise, ``-m "not slow"`` included (test_sweeps.py's Ray tests also say so themselves)."""
    if request.node.get_closest_marker("ray") is None:
        return
    expression = request.config.getoption("-m") or ""
    if "ray" not in expression or "not ray" in expression:
        pytest.skip("starts a Ray instance: opt in with -m ray")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture
def compose_cfg():
    """compose_cfg(*overrides) -> DictConfig, with Hydra's own config nodes available."""

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            return compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m rlexp.cli.train *args`` in a subprocess (what a user's shell runs)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "RLEXP_FULL_ERROR", "RLEXP_DEBUG")}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "rlexp.cli.train", *args],
        cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


#: the warning filters of a fresh interpreter started without -W or PYTHONWARNINGS (CPython's own)
FRESH_INTERPRETER_WARNING_FILTERS = [
    ("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, None), ("ignore", PendingDeprecationWarning, None),
    ("ignore", ImportWarning, None), ("ignore", ResourceWarning, None),
]


def run_cli_in_process(*args: str, cwd: Path | None = None, env: dict | None = None,
                       module: str = "rlexp.cli.train") -> subprocess.CompletedProcess:
    """What ``run_cli`` returns (``python -m <module> *args``), without a new interpreter: the
    entry point's own ``main()`` runs in this process with the command line, environment and
    working directory the command would see, its stdout and stderr captured (Python's streams
    and file descriptors 1 and 2) and its ``SystemExit`` taken as the exit status (or what
    ``main()`` returns, for a script that exits with it: ``sys.exit(main())``); warnings are
    printed to stderr as a fresh interpreter prints them. Afterwards the state a command may
    change is put back: the environment, working directory, logging, Hydra's globals, signal
    handlers, the garbage collector and torch's thread count.

    The same code as the command from ``main()`` on, some 2-3 s cheaper a call (no interpreter,
    torch and Hydra start-up). What only a process of its own shows keeps ``run_cli``: output
    while importing or at exit, signals and exit by signal, environment variables read at import
    (PYTHONPATH), env workers in processes of their own, the console scripts themselves; and the
    tables of bad input and the preset and algorithm runs keep some cases on ``run_cli``."""
    import contextlib
    import gc
    import importlib
    import io
    import logging
    import signal
    import tempfile
    import warnings

    import torch
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    entry = importlib.import_module(module)
    saved_argv, saved_env, saved_cwd = sys.argv, dict(os.environ), os.getcwd()
    saved_gc, saved_frozen, saved_threads = gc.isenabled(), gc.get_freeze_count(), torch.get_num_threads()
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    saved_hydra, saved_hydra_cfg = get_gh_backup(), HydraConfig.instance().cfg
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    saved_loggers = {logger: (logger.level, list(logger.handlers), list(logger.filters), logger.propagate, logger.disabled) for logger in loggers}
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as fd_out, tempfile.TemporaryFile() as fd_err:
        try:
            for key in ("HYDRA_FULL_ERROR", "RLEXP_FULL_ERROR", "RLEXP_DEBUG"):
                os.environ.pop(key, None)
            os.environ.update({"PYTHONUNBUFFERED": "1", **(env or {})})
            os.chdir(cwd or ROOT)
            sys.argv = [entry.__file__, *args]
            os.dup2(fd_out.fileno(), 1)
            os.dup2(fd_err.fileno(), 2)
            with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                warnings.resetwarnings()
                for action, category, module_name in reversed(FRESH_INTERPRETER_WARNING_FILTERS):
                    warnings.filterwarnings(action, category=category, module=module_name or "")
                warnings.showwarning = warnings._showwarning_orig  # to sys.stderr, as a fresh interpreter does
                try:
                    returned = entry.main()
                    code = returned if isinstance(returned, int) else 0
                except SystemExit as stop:
                    if stop.code is None or isinstance(stop.code, int):
                        code = stop.code or 0
                    else:  # sys.exit("message"): printed, status 1
                        print(stop.code, file=sys.stderr)
                        code = 1
        finally:
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            sys.argv = saved_argv
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
            for sig, handler in saved_signals.items():
                signal.signal(sig, handler)
            if saved_frozen == 0 and gc.get_freeze_count():
                gc.unfreeze()  # main() freezes start-up's objects once a run has finished
            (gc.enable if saved_gc else gc.disable)()
            torch.set_num_threads(saved_threads)
            if saved_hydra is not None or GlobalHydra in Singleton._instances:
                restore_gh_from_backup(saved_hydra)
            HydraConfig.instance().cfg = saved_hydra_cfg
            for logger, (level, handlers, filters, propagate, disabled) in saved_loggers.items():  # Hydra's dictConfig
                for handler in logger.handlers:
                    if handler not in handlers:
                        handler.close()
                logger.handlers[:], logger.filters[:] = handlers, filters
                logger.setLevel(level)
                logger.propagate, logger.disabled = propagate, disabled
        fd_out.seek(0)
        fd_err.seek(0)
        stdout = out.getvalue() + fd_out.read().decode(errors="replace")
        stderr = err.getvalue() + fd_err.read().decode(errors="replace")
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args], code, stdout, stderr)


def record_rewards(env) -> list:
    """Make ``env.step`` (a vector env) keep each step's rewards, as float arrays, in the list returned."""
    import numpy as np
    import torch

    seen: list = []
    step = env.step

    def recording_step(action):
        out = step(action)
        reward = out[1]
        seen.append(np.array(reward.cpu() if isinstance(reward, torch.Tensor) else reward, dtype=float))
        return out

    env.step = recording_step
    return seen


def pong_game_points(rewards) -> tuple[int, int]:
    """(points won, points lost) in one sub-env's raw Pong rewards, checking each is -1, 0 or 1."""
    import numpy as np

    rewards = np.asarray(rewards, dtype=float)
    assert set(np.unique(rewards).tolist()) <= {-1.0, 0.0, 1.0}, f"raw Pong rewards are -1, 0 or 1: {np.unique(rewards)}"
    return int((rewards == 1).sum()), int((rewards == -1).sum())

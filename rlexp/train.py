"""Entry point: ``rlexp-train [overrides]`` or ``python -m rlexp.train [overrides]``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import rlexp.config  # noqa: F401  (registers the structured-config schemas)
from rlexp.errors import ConfigError, TrainingError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def run(cfg: DictConfig) -> float:
    """One training run. Returns the final evaluation return (what a sweeper maximises)."""
    from rlexp.trainer import Trainer  # heavy imports only once the config composed

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        check_interpolations(cfg)
        trainer = Trainer(cfg, run_dir)
    except ConfigError as error:
        remove_if_empty_run(run_dir)
        exit_in_single_run(str(error))
        raise
    try:
        summary = trainer.fit()
    except TrainingError as error:
        exit_in_single_run(f"{error}; checkpoints/last.pt holds the last good state")
        raise
    if summary["status"] == "interrupted":
        print(f"rlexp-train: stopped at step {summary['steps']}; continue with: rlexp-train resume={run_dir}", file=sys.stderr)
        sys.exit(128 + (trainer.stop.signum or 0))
    return summary["eval_return_mean"]


def check_interpolations(cfg: DictConfig) -> None:
    """Resolve every ``${...}`` once, up front, so a broken one is reported with the key
    that holds it (``algo.learning_rate: Interpolation key 'foo' not found``) rather than
    from wherever the value is first read."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(getattr(e, "full_key", None) or "config", str(e).splitlines()[0]) from None


def exit_in_single_run(message: str) -> None:
    """Report in one line and exit 1 from a single run; past this point Hydra would add its
    own "Error executing job" line. In a multirun (or with a traceback requested) return,
    so the caller re-raises and the sweep handles the failed job."""
    if not traceback_requested() and HydraConfig.get().mode.name == "RUN":
        print(f"rlexp-train: error: {message}", file=sys.stderr)
        sys.exit(1)


def traceback_requested() -> bool:
    return os.environ.get("RLEXP_DEBUG") == "1" or os.environ.get("RLEXP_FULL_ERROR") == "1"


def remove_if_empty_run(run_dir: Path) -> None:
    """A run that failed its config checks leaves nothing behind but Hydra's own files."""
    leftovers = {p.name for p in run_dir.iterdir()} - {".hydra", "train.log"}
    if not leftovers and HydraConfig.get().mode.name == "RUN":
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    """Run Hydra, turning any config or usage error into one line on stderr.

    Hydra prints its own multi-line report unless HYDRA_FULL_ERROR is set, so we set
    it for Hydra and decide here: a full traceback only when the user asked for one
    (HYDRA_FULL_ERROR=1 or RLEXP_DEBUG=1).
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["RLEXP_FULL_ERROR"] = "1"  # remembered for the job, which sees our own setting below
    want_traceback = traceback_requested()
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        sys.argv[1:] = resume_arguments(sys.argv[1:])
        run()
    except KeyboardInterrupt:
        print("rlexp-train: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the point is to catch everything once
        if want_traceback:
            raise
        print(f"rlexp-train: error: {describe(error)}", file=sys.stderr)
        if not is_user_error(error):
            print("rlexp-train: this looks like a bug; run with HYDRA_FULL_ERROR=1 for the traceback", file=sys.stderr)
        sys.exit(1)


def is_user_error(error: BaseException) -> bool:
    """Bad config or command line (one line is the whole story) rather than a bug."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    while error is not None:
        if isinstance(error, (ConfigError, TrainingError, HydraException, OmegaConfBaseException, YAMLError)):
            return True
        if raised_in(error, ("hydra.", "omegaconf.")):  # e.g. Hydra's own command-line usage checks
            return True
        error = error.__cause__ or error.__context__
    return False


def raised_in(error: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether the innermost frame of ``error``'s traceback belongs to one of ``packages``."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return module.startswith(packages)


def resume_arguments(args: list[str]) -> list[str]:
    """``resume=<run dir or checkpoint>``: compose from that run's own saved config (not the
    defaults), write into the same run directory, and let the other overrides apply on top
    (``total_steps=...`` to train longer)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith("resume=")]
    if not values or not values[-1] or values[-1] == "null":
        return args
    target = Path(values[-1]).expanduser().resolve()
    run_dir = target.parent.parent if target.is_file() else target
    saved = run_dir / ".hydra" / "config.yaml"
    if not target.exists():
        raise ConfigError("resume", f"{target} does not exist")
    if not saved.is_file():
        raise ConfigError("resume", f"{run_dir} is not an rlexp run directory (no .hydra/config.yaml)")
    if "-m" in args or "--multirun" in args:
        raise ConfigError("resume", "resume one run at a time (no -m)")
    rest = [a for a in args if not a.startswith("resume=")]
    return [f"--config-path={saved.parent}", "--config-name=config", f"++resume={target}", f"hydra.run.dir={run_dir}", *rest]


# Launcher and sweeper options that exist once their Hydra plugin is installed:
# config path -> (plugin, how to install it). The first three are rlexp extras (pyproject.toml).
PLUGIN_INSTALL = {
    "hydra/launcher/joblib": ("hydra-joblib-launcher", 'pip install -e ".[sweep]"'),
    "hydra/sweeper/optuna": ("hydra-optuna-sweeper", 'pip install -e ".[sweep]"'),
    "hydra/launcher/ray": ("hydra-ray-launcher", 'pip install -e ".[ray]"'),
    "hydra/launcher/ray_aws": ("hydra-ray-launcher", 'pip install -e ".[ray]"'),
    "hydra/launcher/submitit_slurm": ("hydra-submitit-launcher", "pip install hydra-submitit-launcher"),
    "hydra/launcher/submitit_local": ("hydra-submitit-launcher", "pip install hydra-submitit-launcher"),
    "hydra/launcher/rq": ("hydra-rq-launcher", "pip install hydra-rq-launcher"),
    "hydra/sweeper/ax": ("hydra-ax-sweeper", "pip install hydra-ax-sweeper"),
    "hydra/sweeper/nevergrad": ("hydra-nevergrad-sweeper", "pip install hydra-nevergrad-sweeper"),
}


def describe(error: BaseException) -> str:
    """One line saying what is wrong, naming the config key where there is one."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    for e in chain:
        if isinstance(e, ConfigError):
            return str(e)
        if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
            group, _, option = e.missing_cfg_file.rpartition("/")
            if e.missing_cfg_file in PLUGIN_INSTALL:
                plugin, command = PLUGIN_INSTALL[e.missing_cfg_file]
                return f"{group}={option}: the Hydra plugin {plugin} is not installed; {command}"
            options = e.options or []
            return f"{group}={option}: no such option; choose one of: {', '.join(options)}"
        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            return f"{e.full_key}: {str(e).splitlines()[0]}"
    first = chain[0]
    text = " ".join(line.strip() for line in str(first).splitlines() if line.strip())
    return text or type(first).__name__


if __name__ == "__main__":
    main()

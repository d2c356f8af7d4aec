"""Entry points: ``rlexp-train [overrides]`` (``python -m rlexp.cli.train [overrides]``) and, from
Python, ``rlexp.train(["env=pendulum", ...])`` (:func:`train`). Both compose the same conf/
tree, run the same checks, fill the same run directory and word errors in the same line."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import rlexp.config  # noqa: F401  (registers the structured-config schemas)
from rlexp.errors import ConfigError, TrainingError

if TYPE_CHECKING:
    from rlexp.run.trainer import Trainer

CONFIG_DIR = str(rlexp.config.CONF_DIR)


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="config")
def run(cfg: DictConfig) -> float:
    """One training run. Returns the final evaluation return (what a sweeper maximises)."""
    from rlexp.run import distributed

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    single = HydraConfig.get().mode.name == "RUN"
    world = distributed.current()
    if world is None and nproc_setting(cfg) > 1:  # distributed.nproc=N: start the ranks, then wait for them
        return launch_ranks(cfg, run_dir, single)
    if world is not None:  # under torchrun: rank 0 owns the run directory, the others follow it
        if world.is_main:
            distributed.share_run_dir(run_dir)
        else:
            distributed.follower_logging(run_dir, world)
    try:
        trainer = start_run(cfg, run_dir, remove_if_failed=single and world is None, callbacks=() if single else sweep_callbacks())
    except ConfigError as error:
        if world is not None:
            distributed.all_ready(False)
            if not world.is_main:  # rank 0 hit the same and says it
                logging.getLogger("rlexp").error("%s", error)
                sys.exit(1)
        exit_in_single_run(str(error))
        raise
    if world is not None and not distributed.all_ready(True):
        sys.exit(1)  # another rank could not start and said why
    if single:
        gc.freeze()  # start-up's objects (torch and its compiler stack, Hydra, the envs) live as long as the process: never walk them again
    gc.enable()  # main() turned collection off for the start-up
    try:
        summary = trainer.fit()
    except TrainingError as error:
        if world is not None and isinstance(error, distributed.RankLost):
            if distributed.launched_by_rlexp():  # the launcher names the rank that stopped, in one line
                sys.exit(1)  # DataParallel.lost wrote this rank's reason to its log file
            exit_in_single_run(f"{error}; checkpoints/last.pt holds the last checkpoint")
        exit_in_single_run(failed_message(error))
        raise
    if world is not None and not world.is_main:  # rank 0 reports the run's end
        if summary["status"] == "interrupted":
            sys.exit(128 + (trainer.stop.signum or signal.SIGTERM))
        return float("nan")
    if summary["status"] == "interrupted":
        print(f"rlexp-train: stopped at step {summary['steps']}; continue with: rlexp-train resume={run_dir}", file=sys.stderr)
        sys.exit(128 + (trainer.stop.signum or 0))
    return summary["eval_return_mean"]


def nproc_setting(cfg: DictConfig) -> int:
    from omegaconf import OmegaConf

    nproc = OmegaConf.select(cfg, "distributed.nproc", default=1)
    if not isinstance(nproc, int) or nproc < 1:
        raise ConfigError("distributed.nproc", f"must be a whole number >= 1 (processes for this run), got {nproc!r}")
    return nproc


def launch_ranks(cfg: DictConfig, run_dir: Path, single: bool) -> float:
    """``distributed.nproc=N``: this process composed the run and made its directory; N ranks
    of rlexp-train compose the same config (Hydra's own sources and overrides) into that
    directory through torch's launcher. Returns the run's final evaluation return."""
    import json

    from rlexp.run import distributed

    hydra_cfg = HydraConfig.get()
    sources = [s for s in hydra_cfg.runtime.config_sources if s.provider == "main"]
    config_path = sources[0].path.split("://", 1)[-1] if sources else CONFIG_DIR
    args = [f"--config-path={config_path}", f"--config-name={hydra_cfg.job.config_name}", *hydra_cfg.overrides.task,
            f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
    nproc = nproc_setting(cfg)
    logging.getLogger("rlexp").info("distributed.nproc=%d: starting %d ranks (torch's elastic launcher) into %s", nproc, nproc, run_dir)
    code = distributed.launch(nproc, args)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    if code != 0:
        if single:
            sys.exit(code)  # the ranks (or the launcher, for a rank that was killed) said why
        raise TrainingError(f"the run's {nproc} ranks stopped with exit status {code}; see {run_dir}/train.log")
    if summary is None:
        raise TrainingError(f"the ranks ended without writing {summary_path}")
    return summary["eval_return_mean"]


def sweep_callbacks() -> list[Any]:
    """What the sweeper asks of a multirun job: under hydra/sweeper=optuna_pruning, reporting
    to its Optuna trial and stopping when pruned (rlexp/cli/optuna_trial.py); else nothing."""
    from rlexp.cli.optuna_trial import trial_callbacks

    return trial_callbacks()


def start_run(cfg: DictConfig, run_dir: Path, remove_if_failed: bool, callbacks: Sequence[Any] = ()) -> Trainer:
    """The run's Trainer, built after the config checks. A run that fails them leaves no run
    directory behind when ``remove_if_failed`` (a single run; a sweep keeps its job dirs)."""
    from rlexp.run.trainer import Trainer  # heavy imports only once the config composed

    try:
        check_interpolations(cfg)
        return Trainer(cfg, run_dir, callbacks=callbacks)
    except ConfigError:
        if remove_if_failed:
            remove_if_empty_run(run_dir)
        raise


def failed_message(error: TrainingError) -> str:
    return f"{error}; checkpoints/last.pt holds the last good state"


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
        print(f"{program()}: error: {message}", file=sys.stderr)
        sys.exit(1)


def traceback_requested() -> bool:
    return os.environ.get("RLEXP_DEBUG") == "1" or os.environ.get("RLEXP_FULL_ERROR") == "1"


def remove_if_empty_run(run_dir: Path) -> None:
    """A run that failed its config checks leaves nothing behind but Hydra's own files."""
    leftovers = {p.name for p in run_dir.iterdir()} - {".hydra", "train.log"} if run_dir.is_dir() else set()
    if not leftovers:
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
    # Start-up builds millions of long-lived objects (torch's import, torch._dynamo on the
    # optimizer's first call): cyclic collections while they are made find nothing to free and
    # cost about 0.3 s here. The job turns collection back on before training (run()); a sweep's
    # launcher keeps it on (it may run for hours in this process).
    if not any(a in ("-m", "--multirun") or a.startswith("hydra.mode=") for a in sys.argv[1:]):
        gc.disable()
    from rlexp.run import distributed

    try:
        sys.argv[1:] = resume_arguments(sys.argv[1:])
        world = distributed.start()  # under torchrun: join the other ranks (a no-op alone)
        if world is not None and any(a in ("-m", "--multirun") or a.startswith("hydra.mode=") for a in sys.argv[1:]):
            raise ConfigError("distributed", "torchrun starts the ranks of one run; run a sweep without torchrun "
                                             "(each job can set distributed.nproc=N)")
        if world is not None and not world.is_main:
            sys.argv[1:] = distributed.follower_arguments(sys.argv[1:], world)
        run()
        gc.freeze()  # the interpreter's last collection at exit would walk them all once more (about 0.4 s)
    except KeyboardInterrupt:
        print("rlexp-train: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the point is to catch everything once
        if want_traceback:
            raise
        print(f"{program()}: error: {describe(error)}", file=sys.stderr)
        if not is_user_error(error):
            print(f"{program()}: this looks like a bug; run with HYDRA_FULL_ERROR=1 for the traceback", file=sys.stderr)
        sys.exit(1)
    finally:
        distributed.stop()


def program() -> str:
    """rlexp-train, with the rank where this process is one of several."""
    from rlexp.run import distributed

    world = distributed.current()
    return f"[rank {world.rank}] rlexp-train" if world is not None and not world.is_main else "rlexp-train"


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
    plan = resume_plan(args)
    if plan is None:
        return args
    config_dir, overrides = plan
    return [f"--config-path={config_dir}", "--config-name=config", *overrides]


def resume_plan(args: Sequence[str]) -> tuple[Path, list[str]] | None:
    """For ``resume=...`` among ``args``: (the run's saved config dir, the overrides to compose
    it with: the checkpoint, the run's own directory, then the other overrides); else None."""
    values = [a.split("=", 1)[1] for a in args if a.startswith("resume=")]
    if not values or not values[-1] or values[-1] == "null":
        return None
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
    keep_first_launch(saved.parent)
    return saved.parent, [f"++resume={target}", f"hydra.run.dir={run_dir}", *rest]


#: where a resumed run keeps the .hydra files of its first launch (Hydra rewrites .hydra/ on
#: each resume with the resume's own overrides; the first ones say how the run was made, and
#: which job of its multirun it is)
FIRST_LAUNCH = "first"


def keep_first_launch(hydra_dir: Path) -> None:
    """Copy a run's .hydra/*.yaml to .hydra/first/ before its first resume overwrites them.
    Every rank of a torchrun resume gets here at once: a file already kept is left alone."""
    first = hydra_dir / FIRST_LAUNCH
    first.mkdir(exist_ok=True)
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        if (hydra_dir / name).is_file() and not (first / name).exists():
            shutil.copy2(hydra_dir / name, first / name)


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


# -- from Python ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns: the run directory and the run's summary (summary.json).
    ``rlexp.load(result)`` takes it as it takes the directory (it is path-like), and
    ``result["eval_return_mean"]`` reads the summary."""

    run_dir: Path
    summary: dict[str, Any]

    def __fspath__(self) -> str:
        return str(self.run_dir)

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]


def train(overrides: Sequence[str] = (), run_dir: str | os.PathLike | None = None, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train one run from Python, as ``rlexp-train <overrides>`` does: the same conf/ tree
    (``resume=<run dir>`` too), the same checks, the same run directory
    (``outputs/runs/<date>_<time>_<algo>_<env>`` under the working directory, ``<env>`` a short form
    of ``env.id`` (rlexp.config.run_name); or ``run_dir``)
    with .hydra/, checkpoints/, summary.json and train.log.

    Raises :class:`rlexp.ConfigError` for a bad override or config value and
    :class:`rlexp.TrainingError` when training diverges; the message is the line rlexp-train
    prints after ``rlexp-train: error:``. A run stopped by Ctrl-C (the notebook's interrupt)
    saves its checkpoint and returns with ``result["status"] == "interrupted"``.

    ``callbacks``: :class:`rlexp.Callback` objects whose hooks run on the run's events after the
    run's own (and after those the config's ``callbacks`` list names); one that returns False
    from a hook stops the run.
    """
    overrides = checked_overrides(overrides)
    from rlexp.run.distributed import world_from_env

    if world_from_env() is not None:
        raise ConfigError("distributed", "rlexp.train trains in one process; under torchrun run the module instead: "
                                         "torchrun --nproc_per_node=N -m rlexp.cli.train <overrides>")
    try:
        plan = resume_plan(overrides)
        if plan is not None and run_dir is not None:
            raise ConfigError("run_dir", "resume= continues in the run's own directory; leave run_dir out")
        config_dir, overrides = plan if plan is not None else (Path(CONFIG_DIR), overrides)
        config = compose_with_hydra(config_dir, overrides)
    except Exception as error:  # noqa: BLE001 - a user's mistake becomes one line, a bug keeps its traceback
        if not is_user_error(error):
            raise
        raise as_config_error(error) from None

    previous = HydraConfig.instance().cfg
    try:
        output_dir, task_cfg = prepare_run_dir(config, run_dir)
        with run_logging(output_dir):
            try:
                trainer = start_run(task_cfg, output_dir, remove_if_failed=True, callbacks=callbacks)
            except Exception as error:  # noqa: BLE001 - as above
                if not is_user_error(error):
                    raise
                raise as_config_error(error) from None
            try:
                summary = trainer.fit()
            except TrainingError as error:
                raise TrainingError(failed_message(error)) from None
            if summary["status"] == "interrupted":
                logging.getLogger("rlexp").warning("stopped at step %d; continue with: rlexp.train(['resume=%s'])", summary["steps"], output_dir)
    finally:
        HydraConfig.instance().cfg = previous  # as Hydra's own run_job leaves it
    return TrainResult(output_dir, summary)


def checked_overrides(overrides: Sequence[str]) -> list[str]:
    if isinstance(overrides, (str, bytes)) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError("overrides", f"must be a list of strings such as ['env=pendulum', 'seed=3'], got {overrides!r}")
    overrides = list(overrides)
    flags = [o for o in overrides if o.startswith("-")]
    if flags:
        raise ConfigError("overrides", f"{flags[0]} is a flag of the rlexp-train command; rlexp.train takes key=value overrides only")
    return overrides


def compose_with_hydra(config_dir: Path, overrides: list[str]) -> DictConfig:
    """The config rlexp-train composes, Hydra's own node included (run dir pattern, choices).
    Hydra's global state is set up for this call only and left as it was found, so this
    works any number of times in one process, beside a user's own Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None, job_name="train"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    finally:
        restore_gh_from_backup(backup)


def prepare_run_dir(config: DictConfig, run_dir: str | os.PathLike | None) -> tuple[Path, DictConfig]:
    """Make the run directory and write .hydra/ into it as Hydra's run_job does; return it and
    the run's config (without the hydra node). Hydra's config stays set for the run, so
    ``${hydra:...}`` interpolations in the run's config resolve."""
    import copy

    from omegaconf import OmegaConf, open_dict, read_write

    HydraConfig.instance().set_config(config)  # the run dir pattern reads ${hydra:runtime.choices...}
    if run_dir is not None:
        output_dir = Path(os.path.abspath(Path(run_dir).expanduser()))
    else:
        output_dir = Path(os.path.abspath(str(config.hydra.run.dir)))
        if not any(o.startswith("hydra.run.dir=") for o in config.hydra.overrides.hydra):
            output_dir = unused_dir(output_dir)  # two runs in the same second of one process
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(config)
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.hydra.output_subdir is not None:
        saved = output_dir / str(config.hydra.output_subdir)
        saved.mkdir(exist_ok=True)
        for name, node in (("config.yaml", task_cfg), ("hydra.yaml", HydraConfig.instance().cfg), ("overrides.yaml", config.hydra.overrides.task)):
            (saved / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")
    return output_dir, task_cfg


def unused_dir(path: Path) -> Path:
    """``path``, or ``path_2``, ``path_3``, ... where it exists already."""
    candidate, n = path, 2
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}_{n}"), n + 1
    return candidate


@contextmanager
def run_logging(run_dir: Path) -> Iterator[None]:
    """rlexp-train's logging for one run, without taking over the process's: rlexp's messages
    go to <run dir>/train.log in the format Hydra writes, and to stdout where no handler of
    the caller's shows them (a notebook, a plain script)."""
    logger = logging.getLogger("rlexp")
    formatter = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    handlers: list[logging.Handler] = [logging.FileHandler(run_dir / "train.log", encoding="utf-8")]
    if not logging.getLogger().handlers:
        handlers.append(logging.StreamHandler(sys.stdout))
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)


def as_config_error(error: BaseException) -> ConfigError:
    """A user's mistake as a ConfigError whose message is the line rlexp-train prints."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConfigError):
            return cause
        cause = cause.__cause__ or cause.__context__
    line = describe(error)
    key, sep, message = line.partition(": ")
    named = sep and key[:1].islower() and " " not in key  # a config key (algo.clip_range, algo=nope), not Hydra's exception name
    return ConfigError(key, message) if named else ConfigError("", line)


if __name__ == "__main__":
    main()

"""The trial's side of an Optuna search with pruning (``hydra/sweeper=optuna_pruning``; the
sweeper's side is rlexp/cli/optuna_sweeper.py).

A job of such a search runs in whatever process the launcher gives it (the sweeper's own, a
joblib worker, a Ray worker). It learns which trial it is from ``RLEXP_OPTUNA_TRIAL`` (the
trial's number, which the sweeper puts in the job's ``hydra.job.env_set``), reads the study's
storage, name and pruner from its own Hydra config (``hydra.sweeper``), and finds the trial in
the storage. rlexp-train then runs it with :class:`OptunaPruning`: every evaluation's mean
return is reported to the trial at the run's env step, and when the study's pruner says the
trial should stop, the run stops and the trial gets the user attribute ``pruned_at_step``,
which tells the sweeper to record it as PRUNED.

:class:`OptunaPruning` also works in an Optuna objective of your own::

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 3e-3, log=True)
        result = rlexp.train([f"algo.learning_rate={lr}"], callbacks=[OptunaPruning(trial)])
        if "pruned_at_step" in trial.user_attrs:
            raise optuna.TrialPruned()
        return result["eval_return_mean"]
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from rlexp.run.callbacks import Callback, Evaluation

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("rlexp")

#: the environment variable that holds a job's trial number (set through hydra.job.env_set)
TRIAL_VAR = "RLEXP_OPTUNA_TRIAL"
#: the trial's user attribute that says it was pruned, and at which env step
PRUNED_AT = "pruned_at_step"


class OptunaPruning(Callback):
    """Reports each evaluation's mean return to an Optuna ``trial`` at the run's env step and
    stops the run when the study's pruner says so. The run's last evaluation is reported but
    never pruned (it is the trial's result), nor one that reached ``eval.stop_at``."""

    #: the status a run stopped by this callback ends with (summary.json, TensorBoard's HParams)
    stop_status = "pruned"

    def __init__(self, trial: optuna.trial.Trial):
        self.trial = trial
        self.pruned_at: Optional[int] = None

    def on_evaluation_end(self, trainer: Any, evaluation: Evaluation) -> Optional[bool]:
        self.trial.report(evaluation.mean, evaluation.step)
        if trainer.updates >= trainer.n_updates or trainer.solved():
            return None
        if not self.trial.should_prune():
            return None
        self.pruned_at = evaluation.step
        self.trial.set_user_attr(PRUNED_AT, evaluation.step)
        log.info("Optuna trial %d pruned at step %d (eval return %.1f)", self.trial.number, evaluation.step, evaluation.mean)
        return False


def storage_url(storage: Optional[str], cwd: str | Path) -> str:
    """The study's storage as every job must see it: a relative SQLite path is taken from
    ``cwd`` (where the sweep started) and its directory made. Pruning needs a storage the jobs
    share, so none, and SQLite in memory, are refused."""
    if not storage:
        raise ValueError("hydra.sweeper.storage: pruning needs a storage the trials share, e.g. sqlite:///outputs/optuna.db")
    from sqlalchemy.engine import make_url

    url = make_url(str(storage))
    if url.get_backend_name() != "sqlite":
        return str(storage)  # a database server: the same address from every job
    if not url.database or url.database == ":memory:":
        raise ValueError(f"hydra.sweeper.storage={storage}: an in-memory database is not shared by the trials; "
                         "give a file, e.g. sqlite:///outputs/optuna.db")
    path = (Path(cwd) / url.database).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return url.set(database=str(path)).render_as_string(hide_password=False)


def load_trial(storage: str, study_name: str, number: int, pruner: Any = None) -> optuna.trial.Trial:
    """Trial ``number`` of a study in an RDB storage, asked for by another process, ready to
    report and to ask the ``pruner`` (the study's own: Optuna keeps no pruner in the storage)."""
    import optuna

    rdb = optuna.storages.RDBStorage(storage)
    # the job never samples: a random sampler keeps the trial's set-up from fitting a model
    study = optuna.load_study(study_name=study_name, storage=rdb, sampler=optuna.samplers.RandomSampler(), pruner=pruner)
    trial_id = rdb.get_trial_id_from_study_id_trial_number(rdb.get_study_id_from_name(study_name), number)
    return optuna.trial.Trial(study, trial_id)


def trial_callbacks() -> list[Callback]:
    """In a job of ``hydra/sweeper=optuna_pruning``: ``[OptunaPruning(its trial)]``; elsewhere ``[]``."""
    number = os.environ.get(TRIAL_VAR)
    if number is None:
        return []
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") is not None else None
    trial = load_trial(storage_url(sweeper.storage, hydra_cfg.runtime.cwd), sweeper.study_name, int(number), pruner)
    return [OptunaPruning(trial)]

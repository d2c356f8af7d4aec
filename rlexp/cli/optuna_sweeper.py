"""``hydra/sweeper=optuna_pruning``: Hydra's Optuna sweeper with one of Optuna's pruners.

Hydra's Optuna sweeper (hydra-optuna-sweeper) asks the study for a batch of ``n_jobs``
trials, has the launcher run them as Hydra jobs, and tells the study what each job returned.
It cannot prune: a job has no way to report to its trial while it runs. This subclass keeps
its search-space parsing and its batches and adds:

- the study is created with ``hydra.sweeper.pruner`` in ``hydra.sweeper.storage``, a database
  every job reaches (a relative SQLite path is taken from the directory the sweep started in);
  the same command again adds its trials to the same study;
- each job is told its trial number through its ``hydra.job.env_set`` (``RLEXP_OPTUNA_TRIAL``);
  in the job, rlexp-train reports every evaluation to the trial and stops when the pruner says
  so (rlexp/cli/optuna_trial.py), marking the trial ``pruned_at_step``;
- once a batch is done the sweeper reads the study afresh (the jobs wrote to it from their own
  processes) and tells it each trial's end: PRUNED for a marked trial (Optuna keeps its last
  reported value), COMPLETE with the run's final evaluation return, or FAIL.

Hydra finds the plugin class in hydra_plugins/rlexp_optuna_pruning (it instantiates sweepers
only from the ``hydra_plugins`` package); its config is conf/hydra/sweeper/optuna_pruning.yaml.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import Counter
from typing import Any, List

import optuna
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from rlexp.cli.optuna_trial import PRUNED_AT, TRIAL_VAR, storage_url

log = logging.getLogger(__name__)


class PruningSweeperImpl(OptunaSweeperImpl):
    """Hydra's OptunaSweeperImpl, given ``pruner`` (an Optuna pruner; None: never prune)."""

    def __init__(self, pruner: Any = None, **optuna_sweeper: Any) -> None:
        super().__init__(**optuna_sweeper)
        self.pruner = pruner if pruner is not None else optuna.pruners.NopPruner()

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if not self.study_name:
            raise ValueError("hydra.sweeper.study_name: the trials find their study by name; give one")
        self.storage = storage_url(self.storage, config.hydra.runtime.cwd)

    def load_study(self) -> optuna.Study:
        return optuna.load_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler, pruner=self.pruner)

    def sweep(self, arguments: List[str]) -> None:
        self._process_searchspace_config()
        space, fixed = create_params_from_overrides(self._parse_sweeper_params_config() + list(arguments))
        space = {**(self.search_space_distributions or {}), **space}
        for name in fixed:  # a key given one value on the command line is not searched
            space.pop(name, None)
        directions = self._get_directions()
        if len(directions) != 1:
            raise ValueError(f"hydra.sweeper.direction: a pruner compares one objective; got {directions}")
        if isinstance(self.sampler, functools.partial):  # Hydra's config of GridSampler
            raise ValueError("hydra/sweeper/sampler=grid: not with pruning; use hydra/sweeper=optuna for a grid")

        study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                    pruner=self.pruner, direction=directions[0], load_if_exists=True)
        log.info("Optuna study %s in %s (%d trials before this sweep): %d trials, %d at a time; %s, %s",
                 self.study_name, self.storage, len(study.trials), self.n_trials, self.n_jobs,
                 type(self.sampler).__name__, type(self.pruner).__name__)
        left = self.n_trials
        while left > 0:
            study = self.load_study()
            trials = [study.ask() for _ in range(min(self.n_jobs, left))]
            overrides = [(*trial_overrides, f"++hydra.job.env_set.{TRIAL_VAR}={trial.number}")
                         for trial_overrides, trial in zip(self._configure_trials(trials, space, fixed), trials)]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            # a fresh view of the study: the jobs reported to it from their own processes, and
            # the study object that asked keeps its own (stale) copies of the trials it made
            study = self.load_study()
            errors = [error for trial, ret in zip(trials, returns) if (error := tell_trial(study, trial.number, ret)) is not None]
            if errors and len(errors) / len(returns) > self.max_failure_rate:
                raise RuntimeError(f"{len(errors)} of {len(returns)} trials failed, more than "
                                   f"hydra.sweeper.max_failure_rate={self.max_failure_rate}") from errors[0]
            left -= len(trials)
        self.save_results(self.load_study())

    def save_results(self, study: optuna.Study) -> None:
        """optimization_results.yaml in the sweep directory: the best trial (as Hydra's Optuna
        sweeper writes it), and where the study is and how its trials ended."""
        counts = Counter(t.state.name.lower() for t in study.trials)
        results: dict[str, Any] = {"name": "optuna", "study_name": self.study_name, "storage": self.storage,
                                   "trials": {state: counts[state] for state in ("complete", "pruned", "fail")}}
        complete = [t for t in study.trials if t.state is TrialState.COMPLETE]
        if complete:
            best = study.best_trial
            results.update(best_params=best.params, best_value=best.value, best_trial=best.number)
            log.info("Best value %s (trial %d): %s", best.value, best.number, best.params)
        log.info("Study %s: %s", self.study_name, ", ".join(f"{n} {state}" for state, n in results["trials"].items()))
        OmegaConf.save(OmegaConf.create(results), f"{self.config.hydra.sweep.dir}/optimization_results.yaml")


def tell_trial(study: optuna.Study, number: int, ret: JobReturn) -> BaseException | None:
    """Tell ``study`` how the job of trial ``number`` ended (``ret``, Hydra's JobReturn): PRUNED
    when the job marked the trial ``pruned_at_step``, else COMPLETE with what the job returned,
    or FAIL (a job that raised, or returned no finite number). Returns the failed trial's error."""
    try:
        value = ret.return_value  # raises the job's own error
        trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        if PRUNED_AT in trial.user_attrs:
            study.tell(number, state=TrialState.PRUNED)
            log.info("trial %d pruned at step %s", number, trial.user_attrs[PRUNED_AT])
            return None
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"the run returned {value}")
    except Exception as error:  # noqa: BLE001 - every failed trial is recorded, and the study goes on
        study.tell(number, state=TrialState.FAIL)
        log.warning("trial %d failed: %s", number, error)
        return error
    study.tell(number, value)
    log.info("trial %d: %s", number, value)
    return None

"""A pruner whose decisions a test knows in advance: hydra.sweeper.pruner._target_=optuna_pruners.PruneFrom
(with tests/ on PYTHONPATH), or in process."""

from __future__ import annotations

import optuna


class PruneFrom(optuna.pruners.BasePruner):
    """Prunes the trials numbered in ``trials`` (every trial when None) once they have reported at
    or past env step ``step``; never the others."""

    def __init__(self, step: int, trials: list[int] | None = None):
        self.step, self.trials = step, None if trials is None else set(trials)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        chosen = self.trials is None or trial.number in self.trials
        return chosen and trial.last_step is not None and trial.last_step >= self.step

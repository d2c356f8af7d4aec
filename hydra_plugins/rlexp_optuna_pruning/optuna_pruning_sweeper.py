"""The ``hydra/sweeper=optuna_pruning`` plugin: Hydra's Optuna sweeper plus one of Optuna's
pruners (conf/hydra/sweeper/optuna_pruning.yaml).

Hydra imports every module of the ``hydra_plugins`` package at start-up, so this one imports
nothing heavy: Optuna and rlexp's implementation (:mod:`rlexp.cli.optuna_sweeper`) load when
the sweeper is built.
"""

from __future__ import annotations

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaPruningSweeper(Sweeper):
    """Takes the keys of Hydra's Optuna sweeper and ``pruner`` (an Optuna pruner)."""

    def __init__(self, **config: Any) -> None:
        try:
            from rlexp.cli.optuna_sweeper import PruningSweeperImpl
        except ImportError as error:  # hydra-optuna-sweeper or optuna missing
            raise ImportError(f"hydra/sweeper=optuna_pruning needs hydra-optuna-sweeper: pip install -e \".[sweep]\" ({error})") from error
        self.sweeper = PruningSweeperImpl(**config)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        return self.sweeper.sweep(arguments)

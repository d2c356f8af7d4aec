"""rlexp's Hydra plugins (``hydra/sweeper=optuna_pruning``).

Hydra instantiates a sweeper only from a class defined inside the ``hydra_plugins`` package,
so the class Hydra sees lives here; the work is in :mod:`rlexp.cli.optuna_sweeper`.
"""

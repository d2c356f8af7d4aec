"""rlexp: config-driven policy-gradient experiments (REINFORCE, A2C, PPO) with Hydra, Gymnasium and TensorBoard.

From Python: ``result = rlexp.train(["env=pendulum"])`` trains as ``rlexp-train env=pendulum`` does;
``agent = rlexp.load(result)`` (or a run directory), then ``agent.predict(obs)`` and
``agent.evaluate(episodes=20)``. A mistake raises :class:`ConfigError` (a diverged run
:class:`TrainingError`) with the one-line message rlexp-train prints. The heavy modules load
when first used, not on import.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["Agent", "Callback", "ConfigError", "TrainResult", "TrainingError", "load", "train"]


def __getattr__(name: str):
    if name in ("Agent", "load"):
        from rlexp import agent

        return getattr(agent, name)
    if name in ("train", "TrainResult"):
        module = importlib.import_module("rlexp.cli.train")
        return getattr(module, name)
    if name == "Callback":
        from rlexp.run.callbacks import Callback

        return Callback
    if name in ("ConfigError", "TrainingError"):
        from rlexp import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'rlexp' has no attribute {name!r}")

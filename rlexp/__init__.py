"""rlexp: config-driven policy-gradient experiments (REINFORCE, A2C, PPO) with Hydra, Gymnasium and TensorBoard.

From Python: ``agent = rlexp.load("outputs/runs/<run>")``, then ``agent.predict(obs)`` and
``agent.evaluate(episodes=20)``. The heavy modules load when first used, not on import.
"""

__version__ = "0.1.0"
__all__ = ["Agent", "load"]


def __getattr__(name: str):
    if name in ("Agent", "load"):
        from rlexp import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'rlexp' has no attribute {name!r}")

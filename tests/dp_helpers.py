"""Helpers the data-parallel tests load into their runs (tests/test_distributed.py)."""

from __future__ import annotations

import torch

import rlexp


class NudgeParameters(rlexp.Callback):
    """Moves one weight of rank 0's policy (callbacks run on rank 0 only) after update
    ``after``: the next update's checksum comparison must catch the ranks drifting apart."""

    def __init__(self, after: int = 1):
        self.after = after

    def on_update_end(self, trainer, metrics):
        if trainer.updates == self.after:
            with torch.no_grad():
                next(trainer.policy.parameters()).view(-1)[0] += 1e-3


def _register() -> None:
    """``dp_helpers:SeedRecorder-v0``: CartPole that leaves a file named after each seed it is
    reset with in $RLEXP_TEST_SEEDS (which episodes each rank plays)."""
    import os

    import gymnasium as gym
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    class Recorder(CartPoleEnv):
        def reset(self, *, seed=None, options=None):
            if seed is not None and os.environ.get("RLEXP_TEST_SEEDS"):
                with open(os.path.join(os.environ["RLEXP_TEST_SEEDS"], f"seed-{seed}-pid-{os.getpid()}"), "w"):
                    pass
            return super().reset(seed=seed, options=options)

    if "SeedRecorder-v0" not in gym.registry:
        gym.register("SeedRecorder-v0", entry_point=lambda **kwargs: Recorder(**kwargs), max_episode_steps=500)


_register()

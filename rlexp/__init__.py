"""rlexp: config-driven policy-gradient experiments (REINFORCE, A2C, PPO) on Gymnasium."""

__version__ = "0.1.0"

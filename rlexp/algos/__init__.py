"""One file per algorithm. Each subclasses OnPolicyAlgorithm and defines its loss."""

from rlexp.algos.base import OnPolicyAlgorithm
from rlexp.algos.ppo import PPO

__all__ = ["OnPolicyAlgorithm", "PPO"]

"""One file per algorithm. Each subclasses OnPolicyAlgorithm and defines its loss."""

from rlexp.algos.a2c import A2C
from rlexp.algos.base import OnPolicyAlgorithm
from rlexp.algos.ppo import PPO
from rlexp.algos.reinforce import REINFORCE
from rlexp.algos.reinforce_baseline import REINFORCEWithBaseline

__all__ = ["A2C", "OnPolicyAlgorithm", "PPO", "REINFORCE", "REINFORCEWithBaseline"]

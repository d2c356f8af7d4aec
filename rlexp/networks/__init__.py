"""Networks: encoders (by observation space), action heads (by action space) and the
actor-critic that joins them. Nothing here knows about algorithms or the trainer."""

from rlexp.networks.actor_critic import ActorCritic

__all__ = ["ActorCritic"]

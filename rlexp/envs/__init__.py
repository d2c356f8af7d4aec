"""Environments: what the trainer steps. ``factory`` builds Gymnasium vector envs (and the
torch-native ones) from an ``env`` config with Gymnasium's own wrappers; ``normalization``
moves their running statistics; ``torch_native`` holds batched classic-control envs in torch.
Nothing here knows about policies or algorithms."""

from rlexp.envs.factory import ActionAdapter, EnvSpec, check_env_id, is_torch_env, reward_threshold
from rlexp.envs.normalization import load_normalization_state, normalization_state, sync_obs_normalization

__all__ = [
    "ActionAdapter", "EnvSpec", "check_env_id", "is_torch_env", "reward_threshold",
    "load_normalization_state", "normalization_state", "sync_obs_normalization",
]

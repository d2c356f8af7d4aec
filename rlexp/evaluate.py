"""Deterministic evaluation of a policy on its own environment instances."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


@torch.inference_mode()
def evaluate_policy(
    policy: torch.nn.Module,
    env: gym.vector.VectorEnv,
    episodes: int,
    device: torch.device,
    deterministic: bool = True,
    seed: int | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` complete episodes, one per sub-environment.

    ``env`` must have exactly ``episodes`` sub-environments and a
    RecordEpisodeStatistics wrapper: each sub-env plays one episode and its first
    return is kept, so long episodes are not under-sampled (running until N episodes
    finish in total would favour the short ones).
    """
    assert env.num_envs == episodes, "evaluation env needs one sub-env per episode"
    obs, _ = env.reset(seed=seed)
    returns = np.full(episodes, np.nan)
    while np.isnan(returns).any():
        action = policy.predict(torch.as_tensor(obs, dtype=torch.float32, device=device), deterministic)
        obs, _, _, _, info = env.step(action.cpu().numpy())
        if "_episode" in info:
            first = info["_episode"] & np.isnan(returns)
            returns[first] = info["episode"]["r"][first]
    return returns

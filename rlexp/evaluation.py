"""Evaluating a policy: whole episodes on environment instances of its own (the trainer's
periodic evaluation and ``rlexp-eval``), and rebuilding a trained policy from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from rlexp.envs import ActionAdapter, load_normalization_state
from rlexp.errors import ConfigError, require
from rlexp.observations import to_tensor


class PolicyStepper:
    """A policy acting in a vector env, step after step. A feed-forward policy acts on each
    observation alone; a recurrent one keeps a state per sub-env, zeroed where an episode
    begins (the step after Gymnasium's autoreset step, as in training)."""

    def __init__(self, policy: torch.nn.Module, num_envs: int, device: torch.device):
        self.policy = policy
        self.recurrent = bool(getattr(policy, "is_recurrent", False))
        if self.recurrent:
            self.state = policy.initial_state(num_envs, device)
            self.starts = torch.ones(num_envs, dtype=torch.bool, device=device)
            self.ended = np.zeros(num_envs, dtype=bool)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if not self.recurrent:
            return self.policy.predict(obs, deterministic)
        action, self.state = self.policy.predict(obs, self.state, self.starts, deterministic)
        return action

    def stepped(self, terminated: Any, truncated: Any) -> None:
        """After env.step: where the previous step ended an episode this one was the reset."""
        if self.recurrent:
            self.starts = torch.as_tensor(self.ended, device=self.state.device)
            self.ended = as_numpy(terminated) | as_numpy(truncated)


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
    to_env = ActionAdapter(env, device)
    stepper = PolicyStepper(policy, env.num_envs, device)
    obs, _ = env.reset(seed=seed)
    returns = np.full(episodes, np.nan)
    while np.isnan(returns).any():
        action = stepper.act(to_tensor(obs, env.single_observation_space, device), deterministic)
        obs, _, terminated, truncated, info = env.step(to_env(action))
        stepper.stepped(terminated, truncated)
        if "_episode" in info:
            first = as_numpy(info["_episode"]) & np.isnan(returns)
            returns[first] = as_numpy(info["episode"]["r"])[first]
    return returns


@torch.inference_mode()
def episode_frames(policy: torch.nn.Module, env: gym.vector.VectorEnv, device: torch.device, seed: int,
                   max_frames: int = 1000, deterministic: bool = True) -> np.ndarray:
    """The rendered frames (T, H, W, 3) of one episode in ``env`` (one sub-env made with
    render_mode="rgb_array"), at most ``max_frames`` of them."""
    to_env = ActionAdapter(env, device)
    stepper = PolicyStepper(policy, env.num_envs, device)
    obs, _ = env.reset(seed=seed)
    frames = [env.render()[0]]
    while len(frames) < max_frames:
        action = stepper.act(to_tensor(obs, env.single_observation_space, device), deterministic)
        obs, _, terminated, truncated, _ = env.step(to_env(action))
        if bool(terminated[0] or truncated[0]):
            break
        frames.append(env.render()[0])
    return np.stack(frames)


def as_numpy(x) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def load_trained(path: Path, device: torch.device, num_envs: int, render_mode: str | None = None, env_overrides: Sequence[str] = ()):
    """(policy, env, config) rebuilt from a checkpoint's own config and weights; ``env_overrides``
    (``env.<key>=<value>``) change the run's env settings for this evaluation."""
    from omegaconf import OmegaConf

    from rlexp.builders import build
    from rlexp.checkpoint import load_checkpoint

    state = load_checkpoint(path, key="checkpoint")
    cfg = OmegaConf.create(state["config"])
    if env_overrides:
        cfg.env = with_env_overrides(cfg.env, env_overrides)
    spec = build("env", cfg.env)
    if render_mode:
        spec.make_kwargs["render_mode"] = render_mode
    env = spec.make(num_envs=num_envs, training=False)
    policy = build("network", cfg.network, observation_space=env.single_observation_space, action_space=env.single_action_space)
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as e:
        if env_overrides:
            raise ConfigError("env", f"{' '.join(env_overrides)} changes the observation or action space: the weights in {path} "
                                     "do not fit it; change settings that keep the spaces (episode length, sticky actions...)") from None
        raise ConfigError("checkpoint", f"{path}: weights do not fit its own network config ({str(e).splitlines()[0][:200]})") from None
    load_normalization_state(env, {"obs_rms": state.get("obs_rms")})  # raw rewards: no return_rms here
    return policy.to(device).eval(), env, cfg


def with_env_overrides(env_cfg: Any, overrides: Sequence[str]) -> Any:
    """The run's env config with ``env.<key>=<value>`` changes; a key the run's env config does
    not have is refused (``make_kwargs`` takes new entries: they go to the env's constructor)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from rlexp.config import AtariEnvSchema, EnvSchema

    changes = []
    for item in overrides:
        key, sep, _ = item.partition("=")
        require(bool(sep) and key.startswith("env.") and len(key) > 4, key or "env",
                f"an env setting is given as env.<key>=<value>, got {item!r}")
        top = key[len("env."):].split(".")[0]
        require(top in env_cfg, key, f"the run's env config has no {top!r}; it has: {', '.join(k for k in env_cfg if not k.startswith('_'))}")
        changes.append(item[len("env."):])
    # typed as rlexp-train types them (a number where a number belongs), where the saved config
    # fits today's schema; a config saved before a key existed is merged untyped
    schema = AtariEnvSchema if str(env_cfg.get("_target_", "")).endswith("AtariSpec") else EnvSchema
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), env_cfg)
        base = typed if not OmegaConf.missing_keys(typed) else env_cfg
    except OmegaConfBaseException:
        base = env_cfg
    try:
        return OmegaConf.merge(base, OmegaConf.from_dotlist(changes))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"env.{key}" if key else "env", str(e).splitlines()[0]) from None

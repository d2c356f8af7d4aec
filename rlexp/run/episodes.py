"""Playing episodes: the trainer's periodic evaluation (:class:`Evaluator`), ``rlexp-eval`` and
``Agent.evaluate`` (:func:`play_episodes`), videos (:func:`episode_frames`), and rebuilding a
trained policy from a checkpoint (:func:`load_trained`). Every step goes through the
collector's Stepper, as in training."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch

from rlexp.envs import EnvSpec, load_normalization_state, sync_obs_normalization
from rlexp.errors import ConfigError, require
from rlexp.run.collector import Stepper
from rlexp.run.info_metrics import InfoMetrics


@torch.inference_mode()
def play_episodes(
    policy: torch.nn.Module,
    env: gym.vector.VectorEnv,
    episodes: int,
    device: torch.device,
    deterministic: bool = True,
    seed: int | None = None,
    info_metrics: Optional[InfoMetrics] = None,
) -> np.ndarray:
    """Returns of ``episodes`` complete episodes, one per sub-environment.

    ``env`` must have exactly ``episodes`` sub-environments and a
    RecordEpisodeStatistics wrapper: each sub-env plays one episode and its first
    return is kept, so long episodes are not under-sampled (running until N episodes
    finish in total would favour the short ones). ``info_metrics`` reads the env.info_metrics
    values of those same first episodes.
    """
    assert env.num_envs == episodes, "evaluation env needs one sub-env per episode"
    stepper = Stepper(env, policy, device)
    stepper.reset(seed)
    returns = np.full(episodes, np.nan)
    while np.isnan(returns).any():
        *_, info = stepper.step(stepper.predict(deterministic))
        if "_episode" in info:
            first = as_numpy(info["_episode"]) & np.isnan(returns)
            if info_metrics:
                info_metrics.read(info, first)
            returns[first] = as_numpy(info["episode"]["r"])[first]
    return returns


@torch.inference_mode()
def episode_frames(policy: torch.nn.Module, env: gym.vector.VectorEnv, device: torch.device, seed: int,
                   max_frames: int, deterministic: bool = True) -> np.ndarray:
    """The rendered frames (T, H, W, 3) of one episode in ``env`` (one sub-env made with
    render_mode="rgb_array"), at most ``max_frames`` of them."""
    stepper = Stepper(env, policy, device)
    stepper.reset(seed)
    frames = [env.render()[0]]
    while len(frames) < max_frames:
        _, terminated, truncated, _, _ = stepper.step(stepper.predict(deterministic))
        if bool(terminated[0] or truncated[0]):
            break
        frames.append(env.render()[0])
    return np.stack(frames)


def as_numpy(x) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class Evaluator:
    """The trainer's evaluation: ``episodes`` episodes on env instances of its own (made on first
    use), with the training env's observation statistics, on ``eval_device`` (a copy of the
    policy there when it is not the training device), from a fixed seed so that every
    evaluation of a run is judged on the same episodes."""

    def __init__(self, spec: EnvSpec, train_env: gym.vector.VectorEnv, policy: torch.nn.Module, device: torch.device,
                 eval_device: torch.device, episodes: int, deterministic: bool, seed: int, video_frames: int):
        self.spec, self.train_env, self.policy = spec, train_env, policy
        self.device, self.eval_device = device, eval_device
        self.episodes, self.deterministic, self.seed, self.video_frames = episodes, deterministic, seed, video_frames
        self.env: Optional[gym.vector.VectorEnv] = None
        self.copy: Optional[torch.nn.Module] = None  # the policy on eval_device, where that differs
        #: env.info_metrics of the evaluation's episodes (pop("eval") after each evaluation)
        self.info_metrics = InfoMetrics(getattr(spec, "info_reductions", {}))

    def returns(self) -> np.ndarray:
        if self.env is None:
            self.env = self.spec.make(num_envs=self.episodes, training=False, device=self.eval_device)
        sync_obs_normalization(self.train_env, self.env)
        policy = self.policy_on_eval_device()
        policy.eval()
        try:
            # one episode per row: a game of several agents plays one per agent
            return play_episodes(policy, self.env, self.env.num_envs, self.eval_device, self.deterministic, seed=self.seed,
                                 info_metrics=self.info_metrics)
        finally:
            self.policy.train()

    def video(self) -> tuple[np.ndarray, int]:
        """One deterministic episode, rendered: (frames, frames per second)."""
        spec = dataclasses.replace(self.spec, make_kwargs={**self.spec.make_kwargs, "render_mode": "rgb_array"})
        try:
            env = spec.make(num_envs=1, training=False, device=self.eval_device)
        except ConfigError as e:
            raise e.under("env") from None
        try:
            sync_obs_normalization(self.train_env, env)
            policy = self.policy_on_eval_device()
            policy.eval()
            frames = episode_frames(policy, env, self.eval_device, seed=self.seed, max_frames=self.video_frames)
        finally:
            self.policy.train()
            env.close()
        return frames, int(env.metadata.get("render_fps") or 30)

    def policy_on_eval_device(self) -> torch.nn.Module:
        """The policy itself, or its copy on eval_device refreshed from the current weights:
        one device-to-host copy per evaluation."""
        if self.eval_device == self.device:
            return self.policy
        if self.copy is None:
            self.copy = copy.deepcopy(self.policy).to(self.eval_device)
        self.copy.load_state_dict(self.policy.state_dict())
        return self.copy

    def close(self) -> None:
        if self.env is not None:
            self.env.close()


def load_trained(path: Path, device: torch.device, num_envs: int, render_mode: str | None = None, env_overrides: Sequence[str] = ()):
    """(policy, env, config) rebuilt from a checkpoint's own config and weights; ``env_overrides``
    (``env.<key>=<value>``) change the run's env settings for this evaluation."""
    from omegaconf import OmegaConf

    from rlexp.builders import build
    from rlexp.run.checkpoint import load_checkpoint

    state = load_checkpoint(path, key="checkpoint")
    cfg = OmegaConf.create(state["config"])
    if env_overrides:
        cfg.env = with_env_overrides(cfg.env, env_overrides)
    spec = build("env", cfg.env)
    if render_mode:
        spec.make_kwargs["render_mode"] = render_mode
    env = spec.make(num_envs=num_envs, training=False)
    policy = build("network", cfg.network, observation_space=env.single_observation_space, action_space=env.single_action_space)
    if getattr(spec, "opponent_is_run", False):  # a turn-based game against a trained run (env.opponent=<run>)
        from rlexp.run.selfplay import opponent_from_setting

        env.unwrapped.opponents = opponent_from_setting(spec, policy.to(device), env.single_observation_space, device)
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as e:
        if env_overrides:
            raise ConfigError("env", f"{' '.join(env_overrides)} changes the observation or action space: the weights in {path} "
                                     "do not fit it; change settings that keep the spaces (episode length, sticky actions...)") from None
        raise ConfigError("checkpoint", f"{path}: weights do not fit its own network config ({str(e).splitlines()[0][:200]})") from None
    load_normalization_state(env, {"obs_rms": state.get("obs_rms")})  # raw rewards: no return_rms here
    return policy.to(device).eval(), env, cfg


def run_evaluates_deterministically(cfg: Any) -> bool:
    """How the run's own evaluations chose actions (its ``eval.deterministic``: the Atari presets
    sample): what ``rlexp-eval`` and ``Agent.evaluate`` do unless told otherwise. A config saved
    without the key evaluated deterministically."""
    from omegaconf import OmegaConf

    return bool(OmegaConf.select(cfg, "eval.deterministic", default=True))


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

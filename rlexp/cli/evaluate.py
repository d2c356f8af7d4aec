"""``rlexp-eval``: load a trained run, report its return over fresh episodes, record videos."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import gymnasium as gym
import numpy as np
import torch

from rlexp.errors import ConfigError, require
from rlexp.run.collector import Stepper
from rlexp.run.episodes import load_trained, play_episodes, run_evaluates_deterministically


USAGE = ("usage: rlexp-eval <run dir or checkpoint.pt> [episodes=10] [deterministic=true|false] [video=false] [video_episodes=1] "
         "[checkpoint=last|best] [seed=0] [device=cpu] [opponent=...] [env.<key>=<value> ...]")

HELP = f"""{USAGE}

Play whole episodes with a trained policy and print the mean and std of their returns.

arguments:
  <run dir or checkpoint.pt>  a run directory (outputs/runs/<run>) or one of its checkpoints
  episodes=N                  how many episodes, one per env instance (default 10)
  deterministic=true|false    the policy's most likely action, or sampled actions (default: as the
                              run's own evaluations, its eval.deterministic; the Atari presets sample)
  video=true|false            also record MP4s into <run>/videos (pip install -e ".[video]")
  video_episodes=N            how many episodes to record (default 1)
  checkpoint=last|best        which checkpoint of a run directory (default last)
  seed=N                      the first episode's seed (default 0)
  device=cpu|cuda|cuda:N      where the policy runs (default cpu)
  env.<key>=<value>           the run's env config changed for this evaluation only
  opponent=random|pkg.mod:fn  turn-based games: who plays the other seat (env.opponent); prints win, draw, loss
  -h, --help                  show this help and exit"""


class UsageError(Exception):
    """The command line is not a rlexp-eval command line: the usage and one line, exit 2."""


@dataclass
class EvalArgs:
    episodes: int = 10
    deterministic: Optional[bool] = None  # None: as the run's own evaluations (its eval.deterministic)
    video: bool = False
    video_episodes: int = 1
    checkpoint: str = "last"  # which file of a run directory: last or best
    seed: int = 0
    device: str = "cpu"
    #: ``env.<key>=<value>`` arguments: the run's env config changed for this evaluation only
    #: (``env.repeat_action_probability=0.25``, ``env.make_kwargs.step_limit=2500``); kept out of
    #: the typed fields above, which OmegaConf checks
    env: tuple[str, ...] = field(default=(), metadata={"omegaconf_ignore": True})


def parse_args(argv: list[str]) -> tuple[Path, EvalArgs]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not argv:
        raise UsageError("the run directory (or checkpoint.pt) to evaluate is required")
    if "=" in argv[0] or argv[0].startswith("-"):
        raise UsageError(f"the first argument is the run directory (or checkpoint.pt) to evaluate, got {argv[0]!r}")
    # opponent=...: the turn-based game's opponent (env.opponent) for this evaluation
    argv = [argv[0], *("env." + arg if arg.startswith("opponent=") else arg for arg in argv[1:])]
    env_overrides = tuple(arg for arg in argv[1:] if arg.startswith("env."))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(EvalArgs), OmegaConf.from_dotlist([arg for arg in argv[1:] if not arg.startswith("env.")]))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "arguments"
        raise ConfigError(key, str(e).splitlines()[0]) from None
    args = EvalArgs(**OmegaConf.to_container(merged), env=env_overrides)
    require(args.episodes >= 1, "episodes", f"must be >= 1, got {args.episodes}")
    require(args.video_episodes >= 1, "video_episodes", f"must be >= 1, got {args.video_episodes}")
    require(args.checkpoint in ("last", "best"), "checkpoint", f"must be last or best, got {args.checkpoint!r}")
    return Path(argv[0]).expanduser(), args


def record_videos(path: Path, args: EvalArgs, device: torch.device, video_dir: Path) -> list[Path]:
    """Play ``video_episodes`` episodes in one env through gymnasium's RecordVideo."""
    from gymnasium.wrappers.vector import RecordVideo

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rendering needs no screen
    try:
        policy, env, _ = load_trained(path, device, num_envs=1, render_mode="rgb_array", env_overrides=args.env)
        env = RecordVideo(env, str(video_dir), episode_trigger=lambda _: True, name_prefix="eval")
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError("video", f"video needs extra packages: pip install \"rlexp[video]\" ({str(e).splitlines()[0]})") from None
    before = set(video_dir.glob("*.mp4")) if video_dir.exists() else set()
    stepper = Stepper(env, policy, device)
    stepper.reset(args.seed)
    finished = 0
    with torch.inference_mode():
        while finished < args.video_episodes:
            _, terminated, truncated, _, _ = stepper.step(stepper.predict(args.deterministic))
            finished += int((terminated | truncated).sum())
    env.close()
    return sorted(set(video_dir.glob("*.mp4")) - before)


@dataclass
class Evaluation:
    """What one ``rlexp-eval`` command measured: the returns of its episodes and the env's info
    metrics at their ends (win, draw, loss of a turn-based game; each agent's return)."""

    env_id: str
    checkpoint: Path
    returns: np.ndarray
    deterministic: bool
    env_overrides: tuple[str, ...]
    metrics: dict[str, float]

    def line(self) -> str:
        kind = "deterministic" if self.deterministic else "stochastic"
        changed = f", with {' '.join(self.env_overrides)}" if self.env_overrides else ""
        extra = "".join(f"; {key} {value:.3f}" for key, value in self.metrics.items())
        return (f"{self.env_id}: return {self.returns.mean():.2f} +/- {self.returns.std():.2f} over {len(self.returns)} "
                f"{kind} episodes ({self.checkpoint}{changed}){extra}")


def evaluate(target: Path, args: EvalArgs) -> Evaluation:
    """Play ``args.episodes`` episodes with the run (or checkpoint) ``target``: what rlexp-eval prints."""
    from rlexp.builders import build, resolve_device
    from rlexp.run.checkpoint import checkpoint_path
    from rlexp.run.info_metrics import InfoMetrics

    path = checkpoint_path(target, args.checkpoint)
    torch.set_num_threads(1)
    device = resolve_device(args.device)
    policy, env, cfg = load_trained(path, device, num_envs=args.episodes, env_overrides=args.env)
    deterministic = run_evaluates_deterministically(cfg) if args.deterministic is None else args.deterministic
    try:
        # the env's info values at episode ends: win/draw/loss of a turn-based game, each agent's return
        metrics = InfoMetrics(getattr(build("env", cfg.env), "info_reductions", {}))
        returns = play_episodes(policy, env, env.num_envs, device, deterministic, seed=args.seed, info_metrics=metrics)
    finally:
        env.close()
    extra = {key.partition("/")[2]: float(value) for key, value in metrics.pop("eval").items()}
    return Evaluation(str(cfg.env.id), path, returns, deterministic, tuple(args.env), extra)


def main(argv: list[str] | None = None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(HELP)
        sys.exit(0)
    try:
        target, args = parse_args(argv)
        result = evaluate(target, args)
        print(result.line())
        if args.video:
            from rlexp.builders import resolve_device

            path = result.checkpoint
            run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
            args.deterministic = result.deterministic
            for video in record_videos(path, args, resolve_device(args.device), run_dir / "videos"):
                print(f"video: {video}")
    except UsageError as error:
        print(USAGE, file=sys.stderr)
        print(f"rlexp-eval: error: {error}", file=sys.stderr)
        sys.exit(2)
    except ConfigError as error:
        print(f"rlexp-eval: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

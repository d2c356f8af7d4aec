"""Checkpoints: atomic save (temporary file + rename) and safe load (weights_only).

A checkpoint holds only tensors, numbers, strings and containers, so it loads with
``torch.load(weights_only=True)`` and cannot run code when opened.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlexp.errors import ConfigError
from rlexp.files import write_atomic

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    write_atomic(path, lambda tmp: torch.save({"format_version": FORMAT_VERSION, **state}, tmp))


def checkpoint_path(target: str | Path, which: str = "last") -> Path:
    """``<which>.pt`` of a run directory (or of a checkpoints/ folder); a file path as given."""
    target = Path(target)
    if not target.is_dir():
        return target
    return target / "checkpoints" / f"{which}.pt" if (target / "checkpoints").is_dir() else target / f"{which}.pt"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", key: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint or raise ConfigError(key, ...) saying why it cannot be used."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise ConfigError(key, f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, tampered or not a torch file at all
        raise ConfigError(key, f"{path} is not a readable rlexp checkpoint: {why_unreadable(e)}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION or "policy" not in state:
        raise ConfigError(key, f"{path} is not an rlexp checkpoint (format {FORMAT_VERSION})")
    return state


def why_unreadable(error: Exception) -> str:
    """What is wrong with a file that torch.load(weights_only=True) refused, in rlexp's words.
    torch's own message goes on to suggest weights_only=False, which would run whatever code
    a tampered file carries: it is never passed on."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) or "Weights only load failed" in text:
        unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        found = f" ({unsupported.group(1)})" if unsupported else ""
        return (f"it holds Python objects{found} beside tensors and plain values; rlexp checkpoints never do, "
                "so it was changed or made by something else: do not load it")
    if "zip archive" in text or "central directory" in text or isinstance(error, EOFError):
        return "the file is truncated or damaged (an interrupted copy?); use the run's other checkpoint (best.pt or last.pt)"
    return f"not a torch checkpoint file ({type(error).__name__})"


def rng_state() -> dict[str, Any]:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python_state": _python_rng(),
        "numpy": {"keys": torch.as_tensor(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _python_rng() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python_state"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- a run's state ------------------------------------------------------------------------------
def run_state(trainer: Any) -> dict[str, Any]:
    """What checkpoints/*.pt hold of a run (rlexp.run.trainer.Trainer): weights, optimiser, progress,
    episode statistics, evaluation history, warning signs' memory, normalisation statistics,
    random generators, the spaces and the config."""
    from omegaconf import OmegaConf

    from rlexp.envs import normalization_state

    return {
        "policy": trainer.policy.state_dict(), "optimizer": trainer.algo.optimizer.state_dict(),
        "global_step": trainer.global_step, "updates": trainer.updates, "episodes": trainer.collector.episodes,
        "train_time": trainer.train_time, "recent_returns": list(trainer.collector.recent_returns),
        "eval_history": [list(e) for e in trainer.eval_history], "best_eval": trainer.best_eval,
        "diagnostics": trainer.warning_signs.state(), **normalization_state(trainer.env), "rng": rng_state(),
        "spaces": spaces_signature(trainer.env), "config": OmegaConf.to_container(trainer.cfg, resolve=True),
        "world_size": getattr(trainer, "world_size", 1),
        **({"selfplay": trainer.selfplay.state_dict()} if getattr(trainer, "selfplay", None) is not None else {}),
    }


def restore_run_state(trainer: Any, state: dict[str, Any]) -> None:
    """Continue a run from ``state``; refuse one trained on other spaces or shapes."""
    from rlexp.envs import load_normalization_state

    trained_on, now = int(state.get("world_size", 1)), getattr(trainer, "world_size", 1)
    if trained_on != now:
        how = f"torchrun --nproc_per_node={trained_on} or distributed.nproc={trained_on}" if trained_on > 1 else "one process: no torchrun, distributed.nproc=1"
        raise ConfigError("resume", f"this run trained on {trained_on} process(es) and resumes on the same number ({how}); "
                                    f"this launch has {now}")
    if state.get("spaces") != spaces_signature(trainer.env):
        raise ConfigError("resume", f"checkpoint was trained on {state.get('spaces')}, this config gives {spaces_signature(trainer.env)}")
    try:
        trainer.policy.load_state_dict(state["policy"])
        trainer.algo.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError("resume", f"checkpoint does not fit this network/optimizer config ({first[:200]})") from None
    trainer.global_step, trainer.updates, trainer.train_time = state["global_step"], state["updates"], state["train_time"]
    trainer.collector.episodes = state["episodes"]
    trainer.collector.recent_returns.extend(state["recent_returns"])
    trainer.eval_history = [tuple(e) for e in state["eval_history"]]
    trainer.best_eval = state["best_eval"]
    # each sign once per run, resumed or not, and measured against the run's own start
    trainer.warning_signs.load(state.get("diagnostics"), fired=state.get("diagnostics_fired"), progress=trainer.updates / trainer.n_updates)
    load_normalization_state(trainer.env, state)
    restore_rng_state(state["rng"])
    if getattr(trainer, "selfplay", None) is not None and "selfplay" in state:  # the same past selves to play
        trainer.selfplay.load_state_dict(state["selfplay"])


def spaces_signature(env: Any) -> str:
    return f"obs {env.single_observation_space}, actions {env.single_action_space}"

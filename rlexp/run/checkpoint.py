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

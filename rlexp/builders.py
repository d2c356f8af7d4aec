"""Building runtime objects from config groups, with errors that name the config key."""

from __future__ import annotations

from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from rlexp.errors import ConfigError, require


def build(group: str, node: DictConfig, **runtime: Any) -> Any:
    """instantiate(cfg.<group>, **runtime objects) with errors that name the config key."""
    try:
        return instantiate(node, _convert_="all", **runtime)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause.under(group) from None
        if isinstance(cause, TypeError):
            raise ConfigError(group, f"{node.get('_target_')} rejected the config: {cause}") from None
        raise ConfigError(group, str(e).splitlines()[0]) from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("device", f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        require(torch.cuda.is_available(), "device", f"{name} requested but CUDA is not available here; use device=cpu or device=auto")
        require(device.index is None or device.index < torch.cuda.device_count(), "device", f"{name}: only {torch.cuda.device_count()} CUDA device(s)")
    return device

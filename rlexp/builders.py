"""Building runtime objects from config groups, with errors that name the config key."""

from __future__ import annotations

from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from rlexp.errors import ConfigError, require


#: ``_target_`` paths that runs saved before a package layout change name, and where those
#: classes live now: such runs still resume and evaluate. rlexp 0.1 kept the network in
#: rlexp.policies; the loggers moved into rlexp/run/ with the collector change.
MOVED_TARGETS = {
    "rlexp.policies.ActorCritic": "rlexp.networks.ActorCritic",
    "rlexp.logger.TensorBoardLogger": "rlexp.run.logger.TensorBoardLogger",
    "rlexp.logger.NullLogger": "rlexp.run.logger.NullLogger",
}


def build(group: str, node: DictConfig, **runtime: Any) -> Any:
    """instantiate(cfg.<group>, **runtime objects) with errors that name the config key."""
    node = with_current_targets(node)
    try:
        return instantiate(node, _convert_="all", **runtime)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause.under(group) from None
        if isinstance(cause, (TypeError, ValueError)):  # a constructor's own check says what is wrong
            raise ConfigError(group, f"{node.get('_target_')} rejected the config: {cause}") from None
        raise ConfigError(group, str(e).splitlines()[0]) from None


def with_current_targets(node: DictConfig) -> DictConfig:
    """``node`` with a moved ``_target_`` (see MOVED_TARGETS) pointing at today's class."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if target not in MOVED_TARGETS:
        return node
    node = node.copy()
    with open_dict(node):
        node._target_ = MOVED_TARGETS[target]
    return node


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

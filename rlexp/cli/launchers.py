"""What rlexp adds to Hydra's own launchers: a sweep's console lines that say which job wrote
them, third-party start-up chatter kept off the console, and a local Ray kept on loopback.

Console lines of a multirun: every launcher runs a job through Hydra's ``run_job``, which sets
the job's Hydra config (``hydra.job.num`` among it) and then the job's logging from
``hydra.job_logging`` (conf/config.yaml); that config's console formatter is
:class:`JobConsoleFormatter`, which puts ``[job N]`` in front of each line in a multirun only.
train.log keeps Hydra's format. :class:`QuietLibraries` keeps INFO and below of a few chatty
libraries (Alembic's "setup plugin ..." lines when Optuna imports it, Optuna's own messages) off
the console handlers; their warnings still show, and a job's train.log keeps everything.
Optuna writes to stderr through a colour handler of its own: :class:`OptunaThroughLogging`
hands its messages to Python's logging instead, before the Optuna sweeper starts.

Ray:

``conf/hydra/launcher/ray_local.yaml`` runs a multirun through hydra-ray-launcher on a Ray
instance that the launcher starts on this machine; the launching is the plugin's. Ray (2.60)
starts such an instance on the machine's network address and listens on every interface; it
even turns ``_node_ip_address=127.0.0.1`` back into the network address. The switch that
keeps it on 127.0.0.1 is Ray's own ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (single-machine
mode, Ray's default on macOS and Windows), which Ray reads when it is imported. The launcher
imports Ray only when it launches, after Hydra's ``on_multirun_start`` callbacks, so the
callback :class:`RayLocalOnly` sets it there. (Hydra turns an exception in a callback into a warning, so
the callback only sets and reports; it cannot stop a sweep.)
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rlexp.config import job_number

log = logging.getLogger(__name__)

#: libraries whose INFO (and DEBUG) lines stay off the console: start-up chatter, not results
QUIET_LIBRARIES = ("alembic", "optuna", "sqlalchemy")


class JobConsoleFormatter(logging.Formatter):
    """The console format of a job, with ``[job N] `` in front in a multirun (Hydra builds one
    each time it sets up a job's logging, after it has set that job's config)."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None):
        number = job_number()
        if number is not None:
            fmt = f"[job {number}] {fmt or '%(message)s'}"
        super().__init__(fmt, datefmt)


class QuietLibraries(logging.Filter):
    """Drops INFO and below from the libraries in :data:`QUIET_LIBRARIES` (a console handler's filter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] not in QUIET_LIBRARIES


class OptunaThroughLogging(Callback):
    """Before the Optuna sweeper starts: Optuna's messages go through Python's logging (where
    :class:`QuietLibraries` keeps its INFO off the console) instead of its own colour handler
    on stderr. Nothing happens with another sweeper."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "optuna" not in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
            return
        import optuna

        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()

LOCAL_ONLY_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class RayLocalOnly(Callback):
    """A Ray instance that the Ray launcher starts itself listens on 127.0.0.1 only.

    With ``hydra.launcher.ray.init.address`` set to a cluster's address it does nothing:
    connecting to a cluster is hydra/launcher=ray_cluster's business.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not starts_own_instance(config):
            return
        os.environ[LOCAL_ONLY_VAR] = "0"  # inherited by the Ray processes started from here
        if "ray" in sys.modules:  # imported earlier (by user code): Ray has read the variable already
            sys.modules["ray"]._private.ray_constants.ENABLE_RAY_CLUSTER = False

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """In each job (a Ray worker): the node's address goes to the job's train.log."""
        ray = sys.modules.get("ray")
        if ray is None or not ray.is_initialized() or not starts_own_instance(config):
            return
        node_ip = ray.util.get_node_ip_address()
        if ipaddress.ip_address(node_ip).is_loopback:
            log.info("Ray node address %s (loopback only)", node_ip)
        else:
            log.warning("Ray node address %s: the local Ray instance is NOT on loopback", node_ip)


def starts_own_instance(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.launcher.ray.init.address", default=None) in (None, "local")

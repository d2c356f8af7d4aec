"""What rlexp adds to Hydra's own launchers: one callback that keeps a local Ray on loopback.

``conf/hydra/launcher/ray_local.yaml`` runs a multirun through hydra-ray-launcher on a Ray
instance that the launcher starts on this machine; the launching is the plugin's. Ray (2.60)
starts such an instance on the machine's network address and listens on every interface; it
even turns ``_node_ip_address=127.0.0.1`` back into the network address. The switch that
keeps it on 127.0.0.1 is Ray's own ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (single-machine
mode, Ray's default on macOS and Windows), which Ray reads when it is imported. The launcher
imports Ray only when it launches, after Hydra's ``on_multirun_start`` callbacks, so the
callback below sets it there. (Hydra turns an exception in a callback into a warning, so
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

log = logging.getLogger(__name__)

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

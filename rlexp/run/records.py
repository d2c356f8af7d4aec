"""What TensorBoard's HParams, Text and Distributions dashboards read, built as summary
protos and plain numbers. No writer here: rlexp.run.logger writes these into the run's own
event files (``<run dir>/tb``), and the trainer decides when.

HParams (one row per job of a sweep, seeds of one setting grouped):

- at the start, an experiment record (the hyperparameters' names and types, and the
  ``hparams/*`` metrics) and a session-start record (the values, and a ``group_name``
  that is the same for runs differing only by seed, so TensorBoard averages them);
- at the end, the ``hparams/*`` metrics as scalars at the last step and a session-end
  record with the run's real status (finished: success, failed: failure; an interrupted
  run, which ``resume=`` may continue, writes none and shows as unknown: see STATUSES).

These are written with TensorBoard's own protos (``tensorboard.plugins.hparams``), not
torch's ``SummaryWriter.add_hparams``, which writes a separate timestamped run and
marks the session successful as it starts.

The hyperparameters are flattened scalars: every key the job's Hydra overrides set
(``.hydra/overrides.yaml``, which Hydra writes before the job runs) and the main values
of the config (algorithm and its scalar settings, env id and number of envs, network
shape, seed, total steps).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # the protos load when a summary is built: a run with logger=none never needs TensorBoard
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import plugin_data_pb2

#: the final metrics of a run, listed as the HParams dashboard's metrics
FINAL_EVAL_RETURN = "hparams/final_eval_return"
BEST_EVAL_RETURN = "hparams/best_eval_return"
STEPS_TO_THRESHOLD = "hparams/steps_to_threshold"
SPS = "hparams/sps"
METRICS = (FINAL_EVAL_RETURN, BEST_EVAL_RETURN, STEPS_TO_THRESHOLD, SPS)
METRIC_DESCRIPTIONS = {
    FINAL_EVAL_RETURN: "mean return of the last evaluation",
    BEST_EVAL_RETURN: "best mean evaluation return",
    STEPS_TO_THRESHOLD: "env steps of the first evaluation reaching the env's reward_threshold",
    SPS: "env steps per second of training",
}

#: the trainer's run status -> the HParams session status that ends the session.
#: TensorBoard's Status has UNKNOWN, SUCCESS, FAILURE and RUNNING only (no ABORTED). An
#: interrupted run is neither a success nor a failure, and ``resume=`` may continue it in
#: the same event files, where TensorBoard keeps the *first* record of a tag: so it writes
#: no session end at all, which TensorBoard shows as UNKNOWN, and the resumed run's end,
#: when it comes, is the one shown. A run an Optuna pruner stopped ("pruned") has no
#: status of its own there either: it writes no session end and shows as UNKNOWN, apart
#: from the finished and failed runs (Optuna's study keeps it as PRUNED).
STATUSES = {
    "finished": "STATUS_SUCCESS",  # names in tensorboard.plugins.hparams.api_pb2.Status
    "failed": "STATUS_FAILURE",
}

#: overridden keys (and everything under them) that say how a run is watched or kept,
#: not what it trains: never hyperparameters
NOT_HPARAMS = ("progress", "resume", "log_interval", "logger", "checkpoint", "diagnostics", "hydra")
#: hyperparameters that do not make a different setting: runs differing only in these
#: share a session group, which TensorBoard averages
NOT_GROUPING = ("seed",)

#: the config's main values, always recorded (dotted keys into the resolved config)
MAIN_KEYS = ("env.id", "env.num_envs", "network.hidden_sizes", "network.activation", "network.shared", "seed", "total_steps")


# -- hyperparameters ------------------------------------------------------------------
def read_overrides(run_dir: str | Path) -> list[str]:
    """The job's Hydra overrides (``<run dir>/.hydra/overrides.yaml``); [] when there are none."""
    import yaml

    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in loaded] if isinstance(loaded, list) else []


def run_hparams(cfg: DictConfig | Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Flat {name: bool | float | str} of the run's hyperparameters: the main values of
    the config, then every overridden key (its resolved value; a config group's choice,
    ``algo=a2c``, as the chosen name unless the main values already name it)."""
    tree = _plain(cfg)
    hparams: dict[str, Any] = {}
    algo = tree.get("algo") or {}
    target = algo.get("_target_")
    if isinstance(target, str):
        hparams["algo"] = target.rsplit(".", 1)[-1]
    for key, value in sorted(algo.items()):
        if not key.startswith("_") and _is_leaf(value):
            _put(hparams, f"algo.{key}", value)
    for key in MAIN_KEYS:
        found, value = _select(tree, key)
        if found:
            _put(hparams, key, value)
    for override in overrides:
        parsed = _parse_override(override)
        if parsed is None:
            continue
        key, text = parsed
        if _excluded(key, NOT_HPARAMS):
            continue
        found, value = _select(tree, key)
        if found and _is_leaf(value):
            _put(hparams, key, value)
        elif key not in hparams:  # a group's choice (algo=a2c, +sweep=...) or a key the config lacks
            hparams[key] = text
    return hparams


def group_name(hparams: Mapping[str, Any]) -> str:
    """The same for runs whose hyperparameters differ only by seed: a readable prefix and
    a stable hash of the rest."""
    kept = {k: v for k, v in hparams.items() if not _excluded(k, NOT_GROUPING)}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()[:16]
    prefix = " ".join(str(hparams[k]) for k in ("algo", "env.id") if k in hparams)
    return f"{prefix} {digest}" if prefix else digest


def _plain(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        try:
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
        except Exception:  # noqa: BLE001 - a broken interpolation: record what is there
            return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]
    return dict(cfg)


def _select(tree: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _is_leaf(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, tuple))


def _put(hparams: dict[str, Any], key: str, value: Any) -> None:
    """Store one value as the HParams plugin types it: bool, number (float) or string.
    None (an unset option) is left out, as TensorBoard has no type for it."""
    if value is None:
        return
    if isinstance(value, bool):
        hparams[key] = value
    elif isinstance(value, (int, float)):
        hparams[key] = float(value)
    elif isinstance(value, (list, tuple)):
        hparams[key] = str(list(value))
    else:
        hparams[key] = str(value)


def _parse_override(override: str) -> Optional[tuple[str, str]]:
    """``key=value`` (also ``+key=``, ``++key=``, ``group@package=``) -> (key, value);
    deletions (``~key``) and anything without ``=`` -> None."""
    if override.startswith("~") or "=" not in override:
        return None
    key, value = override.split("=", 1)
    key = key.lstrip("+").split("@", 1)[0].replace("/", ".")
    return (key, value) if key else None


def _excluded(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


# -- HParams summaries ------------------------------------------------------------------
def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    summary = Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return summary


def _data_type(value: Any) -> int:
    from tensorboard.plugins.hparams import api_pb2

    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    if isinstance(value, (int, float)):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def experiment_summary(hparams: Mapping[str, Any], metrics: Sequence[str] = METRICS, time_created_secs: Optional[float] = None) -> Summary:
    """The HParams dashboard's configuration: the hyperparameters' names and types (no
    domain: each run knows its own values only) and the metrics (scalar tags of this run)."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    experiment = api_pb2.Experiment(
        time_created_secs=time.time() if time_created_secs is None else time_created_secs,
        hparam_infos=[api_pb2.HParamInfo(name=name, type=_data_type(value)) for name, value in hparams.items()],
        metric_infos=[
            api_pb2.MetricInfo(name=api_pb2.MetricName(group="", tag=tag), display_name=tag.split("/", 1)[-1],
                               description=METRIC_DESCRIPTIONS.get(tag, ""))
            for tag in metrics
        ],
    )
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


def session_start_summary(hparams: Mapping[str, Any], group: str = "", start_time_secs: Optional[float] = None) -> Summary:
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=time.time() if start_time_secs is None else start_time_secs)
    for name, value in hparams.items():
        if isinstance(value, bool):
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = float(value)
        else:
            info.hparams[name].string_value = str(value)
    return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end_summary(status: str, end_time_secs: Optional[float] = None) -> Optional[Summary]:
    """The session's end for the trainer's ``status`` (finished | failed); None for a run that
    may go on (interrupted: see STATUSES)."""
    if status not in STATUSES:
        return None
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(STATUSES[status]), end_time_secs=time.time() if end_time_secs is None else end_time_secs)
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


# -- final metrics ------------------------------------------------------------------------
def hparams_metrics(info_reductions: Mapping[str, str] = ()) -> tuple[str, ...]:
    """The HParams dashboard's metrics: the run's final figures, and the last evaluation's value
    of each env.info_metrics key (``hparams/eval_<key>``)."""
    return METRICS + tuple(f"hparams/eval_{key}" for key in info_reductions)


def final_metrics(summary: Mapping[str, Any], threshold: Optional[float]) -> dict[str, float]:
    """The ``hparams/*`` scalars from the trainer's summary.json dict; a metric the run does
    not have (no evaluation yet, threshold never reached or none) is left out."""
    history = summary.get("eval_history") or []
    reached = None
    if threshold is not None:
        reached = next((float(step) for step, mean, *_ in history if mean >= threshold), None)
    values = {
        FINAL_EVAL_RETURN: summary.get("eval_return_mean") if history else None,
        BEST_EVAL_RETURN: summary.get("best_eval_return"),
        STEPS_TO_THRESHOLD: reached,
        # no training time recorded (a run that failed in its first update): no speed either
        SPS: summary.get("sps") if summary.get("train_time_s", 1.0) > 0 else None,
    }
    for tag, value in (summary.get("info_metrics") or {}).items():  # eval/<key> -> hparams/eval_<key>
        if tag.startswith("eval/"):
            values[f"hparams/eval_{tag[len('eval/'):]}"] = value
    return {tag: float(v) for tag, v in values.items() if v is not None and math.isfinite(float(v))}


# -- text --------------------------------------------------------------------------------
def gif_bytes(frames: np.ndarray, fps: int) -> bytes:
    """Frames (T, H, W, 3) uint8 as an animated GIF file's bytes (Pillow)."""
    import io

    from PIL import Image

    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    return buffer.getvalue()


def gif_summary(tag: str, frames: np.ndarray, fps: int) -> Summary:
    """Frames (T, H, W, 3) uint8 as an animated GIF in an image summary: TensorBoard's Images
    tab plays it. (torch's add_video needs moviepy 1.x's moviepy.editor; Pillow is enough.)"""
    from tensorboard.compat.proto.summary_pb2 import Summary

    height, width = np.asarray(frames[0]).shape[:2]
    return Summary(value=[Summary.Value(tag=tag, image=Summary.Image(height=height, width=width, colorspace=3,
                                                                      encoded_image_string=gif_bytes(frames, fps)))])


def text_summary(tag: str, text: str) -> Summary:
    """A markdown text entry under exactly ``tag`` (torch's ``add_text`` appends
    ``/text_summary`` to the tag)."""
    from tensorboard.compat.proto import types_pb2
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.plugins.text import metadata as text_metadata

    tensor = TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode("utf-8")],
                         tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
    return Summary(value=[Summary.Value(tag=tag, metadata=text_metadata.create_summary_metadata(tag, ""), tensor=tensor)])


def config_markdown(cfg: DictConfig | Mapping[str, Any]) -> str:
    """The resolved config as YAML in a markdown code block (TensorBoard's Text dashboard)."""
    text = OmegaConf.to_yaml(OmegaConf.create(_plain(cfg)))
    return f"```yaml\n{text.rstrip()}\n```"


# -- distributions -------------------------------------------------------------------------
#: equal-width buckets per histogram, as TensorFlow 2's tf.summary.histogram (torch's default,
#: ~1500 exponential "tensorflow" buckets, costs ten times as much to compute)
HISTOGRAM_BINS = 30


def count_histogram_summary(tag: str, counts: Sequence[int]) -> Summary:
    """A histogram of integer values 0..n-1 with one bucket per value, centred on it
    (``counts[i]``: how often value i occurred)."""
    from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

    counts = np.asarray(counts, dtype=np.float64)
    values = np.arange(len(counts), dtype=np.float64)
    histogram = HistogramProto(
        min=-0.5,  # TensorBoard draws the first bucket from min and the last up to max
        max=len(counts) - 0.5,
        num=float(counts.sum()),
        sum=float((counts * values).sum()),
        sum_squares=float((counts * values * values).sum()),
        bucket_limit=(values + 0.5).tolist(),
        bucket=counts.tolist(),
    )
    return Summary(value=[Summary.Value(tag=tag, histo=histogram)])


#: at most this many per-action scalars (a huge MultiDiscrete would flood the dashboard)
MAX_ACTION_SCALARS = 64


@torch.no_grad()
def action_records(policy: torch.nn.Module, batch: Any) -> tuple[dict[str, float], Optional[list[int]]]:
    """The policy's action distribution on the batch's observations (the rollout's) and the
    actions it sampled there: (scalars, counts of each sampled action or None).

    Discrete heads: ``actions/prob_<i>``, the mean probability of action i (MultiDiscrete:
    ``actions/prob_<entry>_<i>``; MultiBinary: the probability of bit i being 1), and
    the counts behind ``actions/histogram``. Continuous heads: ``actions/mean_<d>`` and
    ``actions/std_<d>``, the policy's mean and standard deviation averaged over the states.
    """
    actions = batch.actions
    if not hasattr(policy, "distribution") or actions.shape[0] == 0:
        return {}, None
    dist = policy.distribution(batch.obs, batch.seq)
    scalars: dict[str, float] = {}
    counts = None
    if isinstance(dist, torch.distributions.Normal):
        means, stds = dist.mean.mean(0).reshape(-1).tolist(), dist.stddev.mean(0).reshape(-1).tolist()
        for d in range(min(len(means), MAX_ACTION_SCALARS)):
            scalars[f"actions/mean_{d}"], scalars[f"actions/std_{d}"] = means[d], stds[d]
        return scalars, None
    if isinstance(dist, (torch.distributions.Categorical, torch.distributions.Bernoulli)):
        probs = dist.probs.mean(0).reshape(-1).tolist()
        for i in range(min(len(probs), MAX_ACTION_SCALARS)):
            scalars[f"actions/prob_{i}"] = probs[i]
        n = len(probs) if isinstance(dist, torch.distributions.Categorical) else 2
    elif hasattr(dist, "parts"):  # MultiCategorical: independent Categoricals
        for j, part in enumerate(dist.parts):
            for i, p in enumerate(part.probs.mean(0).tolist()):
                if len(scalars) < MAX_ACTION_SCALARS:
                    scalars[f"actions/prob_{j}_{i}"] = p
        n = max(part.probs.shape[-1] for part in dist.parts)
    else:
        return {}, None
    counts = torch.bincount(actions.reshape(-1).long().clamp(0, n - 1).cpu(), minlength=n).tolist()
    return scalars, counts


def parameter_gradients(policy: torch.nn.Module, flat_grad: Optional[np.ndarray] = None) -> dict[str, torch.Tensor]:
    """{parameter name: its gradient from the last gradient step (after clipping)}.
    ``flat_grad``: the numpy fast path's one gradient buffer (rlexp.algos.ppo_fast_cpu),
    laid out as policy.parameters() in order; otherwise each parameter's ``.grad``."""
    grads: dict[str, torch.Tensor] = {}
    offset = 0
    for name, param in policy.named_parameters():
        if flat_grad is not None:
            grads[name] = torch.from_numpy(flat_grad[offset: offset + param.numel()])
            offset += param.numel()
        elif param.grad is not None:
            grads[name] = param.grad.detach()
    return grads


def gradient_norms(grads: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``grad_norm/<parameter name>``: each parameter's gradient L2 norm (one host read, and
    one numpy reduction rather than a torch call per parameter)."""
    if not grads:
        return {}
    flat = torch.cat([g.detach().reshape(-1).float() for g in grads.values()]).cpu().numpy()
    starts = np.cumsum([0] + [g.numel() for g in grads.values()])[:-1]
    norms = np.sqrt(np.add.reduceat(np.square(flat, dtype=np.float64), starts))
    return {f"grad_norm/{name}": float(norm) for name, norm in zip(grads, norms)}


def finite_values(values: Any) -> Optional[np.ndarray]:
    """A flat float array of the finite entries of a tensor or array; None when empty."""
    array = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, dtype=np.float32)
    array = array.reshape(-1)
    if not np.isfinite(array).all():
        array = array[np.isfinite(array)]
    return array if array.size else None



#: the distribution behind an env, by the start of its id or its entry point's module
_ENV_DISTRIBUTIONS = {"ALE/": "ale-py", "MinAtar/": "minatar", "MiniGrid-": "minigrid", "BabyAI-": "minigrid",
                      "gymnasium.envs.box2d": "box2d", "gymnasium.envs.mujoco": "mujoco"}


def software_versions(env_id: Optional[str] = None) -> dict[str, str]:
    """Versions of Python, rlexp, torch, gymnasium, numpy and of the package the env comes from
    (ale-py, box2d, mujoco, minatar, minigrid, a PettingZoo game's package): what a result needs
    beside its config to be reproduced."""
    import importlib.metadata as metadata

    import gymnasium

    try:
        own = metadata.version("rlexp")
    except metadata.PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        own = "not installed"
    versions = {"python": platform.python_version(), "rlexp": own, "torch": torch.__version__,
                "gymnasium": gymnasium.__version__, "numpy": np.__version__}
    names = []
    if env_id:
        module = env_id.split(":")[0]  # a game module (mpe2.simple_spread_v3) or package:callable
        try:
            entry = gymnasium.spec(env_id).entry_point
            module = entry.split(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", "")
        except Exception:
            pass
        names = [dist for start, dist in _ENV_DISTRIBUTIONS.items() if env_id.startswith(start) or module.startswith(start)]
        names.append(module.split(".")[0].replace("_", "-"))
    for name in names:
        if name and name not in versions:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
    return versions


def machine_description() -> str:
    """CPU model, core count and OS of this machine, e.g. "AMD EPYC 7B13, 2 cores, Linux"."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def run_summary(trainer: Any, status: str) -> dict[str, Any]:
    """summary.json of a run (rlexp.run.trainer.Trainer) that ended with ``status``."""
    last = trainer.eval_history[-1] if trainer.eval_history else (trainer.global_step, float("nan"), float("nan"))
    rolling = trainer.collector.rolling_return()
    summary = {
        "status": status, "algo": type(trainer.algo).__name__, "env_id": trainer.env_spec.id, "seed": int(trainer.cfg.seed),
        "device": str(trainer.device), "steps": trainer.global_step, "updates": trainer.updates,
        "train_time_s": round(trainer.train_time, 3), "sps": trainer.global_step / max(trainer.train_time, 1e-9),
        "episodes": trainer.collector.episodes, "rolling_return": None if math.isnan(rolling) else rolling,
        "eval_return_mean": last[1], "eval_return_std": last[2],
        "best_eval_return": trainer.best_eval if trainer.eval_history else None, "reached_stop_at": trainer.solved(),
        "eval_history": [list(e) for e in trainer.eval_history], "diagnostics": dict(trainer.warning_signs.fired),
        "versions": software_versions(trainer.env_spec.id), "machine": machine_description(),
    }
    if getattr(trainer, "info_values", None):  # env.info_metrics: the last rollout/<key> and eval/<key>
        summary["info_metrics"] = dict(trainer.info_values)
    if getattr(trainer, "world_size", 1) > 1:  # a data-parallel run: its ranks' steps are all counted
        summary["world_size"] = trainer.world_size
    if trainer.callbacks.stopped_by is not None:
        summary["stopped_by"] = trainer.callbacks.stopped_by
    return summary

"""``rlexp-export <run> --format torchscript|onnx``: a trained policy as one file that acts
without rlexp.

The file maps a batch of observations to the actions ``rlexp.load(run).predict(obs)`` returns
(deterministic): the run's observation processing is inside it (the saved normalisation
statistics and clipping; the encoders' image scaling and one-hots), and the actions come out in
the env's own format (a Discrete index plus the space's ``start``, a Box mean clipped to the
bounds, MultiDiscrete and MultiBinary in the space's shape and dtype).

- TorchScript (``policy.pt``): ``torch.jit.load(path)(obs)`` with plain torch; ``obs`` is a
  tensor, or a dict (tuple) of tensors for Dict (Tuple) observations.
- ONNX (``policy.onnx``, ``pip install "rlexp[onnx]"``): one input per observation leaf,
  named ``obs`` (or ``obs.<key>``), in the dtype the file declares; one output, ``action``.

Before writing, the export plays sampled observations through both the file and the agent
and refuses a file whose actions differ.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlexp.agent import NORMALIZE_EPSILON, Agent, load
from rlexp.errors import ConfigError, require
from rlexp.data.observations import MASK_KEY, leaf_dtype, to_tensor
from rlexp.envs.masks import OBS_KEY

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
#: exported actions must equal the agent's to this (absolute, for continuous actions)
TOLERANCE = 1e-5


class ExportedPolicy(nn.Module):
    """Observations in, the agent's deterministic actions out, in tensors only (traceable)."""

    def __init__(self, agent: Agent):
        super().__init__()
        # a copy without gradients: the file's outputs are plain tensors (.numpy() works)
        self.policy = copy.deepcopy(agent.policy).requires_grad_(False)
        self.observation_space, self.action_space = agent.observation_space, agent.action_space
        rms = agent.obs_rms
        # gymnasium's NormalizeObservation works in float64: so does this, for equal results
        self.register_buffer("obs_mean", rms["mean"].double() if rms is not None else None)
        self.register_buffer("obs_std", torch.sqrt(rms["var"].double() + NORMALIZE_EPSILON) if rms is not None else None)
        self.clip_obs = float(agent.clip_obs) if agent.clip_obs is not None else None
        #: a run with action masks takes them as an input: beside the env's own observation
        #: (obs.observation and obs.action_mask) or as an entry of its Dict observation
        self.masks_wrapped = agent.masks is not None and agent.masks.wrapped
        space = self.action_space
        self.discrete = isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))
        start = np.asarray(getattr(space, "start", 0)).reshape(-1) if self.discrete else np.zeros(1)
        self.register_buffer("action_start", torch.as_tensor(start, dtype=torch.int64))
        is_box = isinstance(space, gym.spaces.Box)
        self.register_buffer("action_low", torch.as_tensor(space.low, dtype=torch.float32) if is_box else None)
        self.register_buffer("action_high", torch.as_tensor(space.high, dtype=torch.float32) if is_box else None)
        self.action_shape = tuple(space.shape) if isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)) else None
        self.action_dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype if self.action_shape is not None else None

    def forward(self, obs: Any) -> torch.Tensor:
        obs = cast_leaves(obs, self.observation_space)
        if self.masks_wrapped:  # the env's own observation beside the action mask (an input like any other)
            obs = {**obs, OBS_KEY: self.process(obs[OBS_KEY])}
        else:
            obs = self.process(obs)
        action, _ = self.policy.predict(obs, None, None, deterministic=True)  # stateless: nothing to carry
        if self.action_low is not None:
            return torch.maximum(torch.minimum(action, self.action_high), self.action_low)
        if self.action_shape is not None:
            action = action.reshape((-1,) + self.action_shape)
        if self.discrete:
            action = action + self.action_start.reshape(self.action_shape or ())
        return action.to(self.action_dtype) if self.action_dtype is not None else action


    def process(self, obs: Any) -> Any:
        """The run's observation normalisation and clipping."""
        if self.obs_mean is not None:
            obs = ((obs.double() - self.obs_mean) / self.obs_std).float()
        if self.clip_obs is not None:
            obs = obs.clamp(-self.clip_obs, self.clip_obs)
        return obs


def cast_leaves(obs: Any, space: gym.Space) -> Any:
    """Every observation leaf in the dtype rlexp stores it in (so float64 input works too)."""
    if isinstance(space, gym.spaces.Dict):
        return {key: cast_leaves(obs[key], sub) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(cast_leaves(obs[i], sub) for i, sub in enumerate(space.spaces))
    return obs.to(leaf_dtype(space))


def leaves(obs: Any, space: gym.Space, name: str = "obs") -> list[tuple[str, Any, gym.Space]]:
    """(name, value, space) of every leaf of an observation tree, in the space's order."""
    if isinstance(space, gym.spaces.Dict):
        return [leaf for key, sub in space.spaces.items() for leaf in leaves(obs[key], sub, f"{name}.{key}")]
    if isinstance(space, gym.spaces.Tuple):
        return [leaf for i, sub in enumerate(space.spaces) for leaf in leaves(obs[i], sub, f"{name}.{i}")]
    return [(name, obs, space)]


def rebuild(flat: list[Any], space: gym.Space) -> Any:
    """Inverse of :func:`leaves`: a tree of ``space``'s shape from its leaves (consumed in order)."""
    if isinstance(space, gym.spaces.Dict):
        return {key: rebuild(flat, sub) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(rebuild(flat, sub) for sub in space.spaces)
    return flat.pop(0)


class LeafInputs(nn.Module):
    """ONNX takes flat named inputs: one per observation leaf, rebuilt into the tree here."""

    def __init__(self, exported: ExportedPolicy):
        super().__init__()
        self.exported = exported

    def forward(self, *flat: torch.Tensor) -> torch.Tensor:
        return self.exported(rebuild(list(flat), self.exported.observation_space))


def sample_observations(space: gym.Space, n: int, seed: int) -> Any:
    """A batch of ``n`` observations of ``space`` in the env's own (numpy) format."""
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]

    def stack(items: list[Any], sub: gym.Space) -> Any:
        if isinstance(sub, gym.spaces.Dict):
            return {key: stack([x[key] for x in items], s) for key, s in sub.spaces.items()}
        if isinstance(sub, gym.spaces.Tuple):
            return tuple(stack([x[i] for x in items], s) for i, s in enumerate(sub.spaces))
        return np.stack([np.asarray(x) for x in items])

    return stack(samples, space)


def agent_observations(agent: Agent, n: int, seed: int) -> Any:
    """A batch of ``n`` sampled observations as the agent's policy takes them; a sampled action
    mask keeps the first choice of each sub-action allowed (a random one may allow none)."""
    obs = sample_observations(agent.observation_space, n, seed)
    if agent.masks is not None:
        obs[MASK_KEY][:, agent.masks.starts] = True
    return obs


def check_exportable(agent: Agent) -> None:
    require(not agent.stateful, "network.recurrent",
            "recurrent policies cannot be exported yet (the file would need the recurrent state as an input and an output)")


def export_torchscript(module: ExportedPolicy, example: Any, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 marks torch.jit deprecated; it still loads everywhere
        traced = torch.jit.trace(module, (example,), check_trace=False)
        info = {"observation_space": str(module.observation_space), "action_space": str(module.action_space),
                "inputs": {name: [str(leaf_dtype(space)), list(np.shape(value))[1:]] for name, value, space in leaves(example, module.observation_space)}}
        torch.jit.save(traced, str(path), _extra_files={"rlexp.json": json.dumps(info)})


def export_onnx(module: ExportedPolicy, example: Any, path: Path) -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ConfigError("--format", 'onnx needs the onnx package: pip install "rlexp[onnx]"') from None
    flat = leaves(example, module.observation_space)
    names = [name for name, _, _ in flat]
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript-based exporter: the newer one (dynamo=True) needs onnxscript as well
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(LeafInputs(module), tuple(value for _, value, _ in flat), str(path), input_names=names,
                          output_names=["action"], dynamic_axes={**{n: {0: "batch"} for n in names}, "action": {0: "batch"}},
                          opset_version=17, dynamo=False)


def run_file(path: Path, fmt: str, obs: Any, space: gym.Space) -> np.ndarray | None:
    """The actions the written file gives for a batch of (numpy) observations; None for an
    ONNX file where onnxruntime is not installed."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = torch.jit.load(str(path))
        with torch.no_grad():
            return loaded(to_tensor(obs, space, torch.device("cpu"))).numpy()
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: np.asarray(value, dtype=torch.empty(0, dtype=leaf_dtype(sub)).numpy().dtype) for name, value, sub in leaves(obs, space)}
    return session.run(["action"], feed)[0]


def export(run: str | Path, fmt: str = "torchscript", checkpoint: str = "last", output: str | Path | None = None) -> tuple[Path, bool]:
    """Write the policy of ``run`` (a run directory or a checkpoint) as ``fmt``; returns the
    file and whether its actions were checked against the agent's (ONNX needs onnxruntime)."""
    require(fmt in FORMATS, "--format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    agent = load(run, checkpoint=checkpoint, device="cpu")
    if output is None:
        run_path = Path(run).expanduser()
        run_dir = run_path if run_path.is_dir() else run_path.parent.parent if run_path.parent.name == "checkpoints" else run_path.parent
        output = run_dir / f"policy{'' if checkpoint == 'last' else '_' + checkpoint}{FORMATS[fmt]}"
    output = Path(output).expanduser()
    return output, write_policy(agent, fmt, output)


def write_policy(agent: Agent, fmt: str, output: Path) -> bool:
    """Write ``agent``'s policy to ``output`` as ``fmt`` (atomically, once checked); returns
    whether its actions were checked against ``agent.predict``."""
    check_exportable(agent)
    output.parent.mkdir(parents=True, exist_ok=True)
    space = agent.observation_space
    example = to_tensor(agent_observations(agent, 3, seed=0), space, torch.device("cpu"))
    tmp = output.with_name(output.name + ".tmp")
    try:
        with in_float32(agent.policy):
            module = ExportedPolicy(agent).eval()
            try:
                (export_torchscript if fmt == "torchscript" else export_onnx)(module, example, tmp)
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001 - a layer the exporter cannot write: one line saying which
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError("--format", f"{fmt} cannot express this policy ({type(e).__name__}: {first[:200]})") from None
            checked = verify(tmp, fmt, agent)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return checked


@contextmanager
def in_float32(policy: nn.Module) -> Iterator[None]:
    """The file computes in float32, which every runtime has (ONNX Runtime's CPU kernels have no
    bfloat16 matrix products): a policy trained with ``network.precision=bf16`` is written and
    checked as its float32 self, the same weights without the autocast."""
    precision = getattr(policy, "precision", None)
    if precision is not None:
        policy.precision = "fp32"
    try:
        yield
    finally:
        if precision is not None:
            policy.precision = precision


def verify(path: Path, fmt: str, agent: Agent) -> bool:
    """Whether the file's actions were compared with ``agent.predict`` (a batch of 7 and a
    batch of 1 sampled observations); raises where they differ."""
    space = agent.observation_space
    for n, seed in ((7, 1), (1, 2)):
        obs = agent_observations(agent, n, seed)
        got = run_file(path, fmt, obs, space)
        if got is None:
            return False
        if agent.masks is not None:  # predict takes the env's own observation and the mask apart
            own = obs[OBS_KEY] if agent.masks.wrapped else {k: v for k, v in obs.items() if k != MASK_KEY}
            expected = agent.predict(own, deterministic=True, action_mask=obs[MASK_KEY])
        else:
            expected = agent.predict(obs, deterministic=True)
        same = got.shape == np.shape(expected) and np.allclose(got, expected, rtol=0, atol=TOLERANCE)
        require(same, "--format", f"the {fmt} file's actions differ from the agent's on sampled observations; please report this run's config")
    return True


USAGE = "usage: rlexp-export RUN [--format torchscript|onnx] [--checkpoint last|best] [--output PATH]"


class UsageError(Exception):
    """The command line itself is wrong (exit status 2, as argparse's own)."""


class UsageParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message}; {USAGE}")


def main(argv: list[str] | None = None) -> None:
    parser = UsageParser(prog="rlexp-export", description="Write a trained policy as a file that runs without rlexp.")
    parser.add_argument("run", help="a run directory (or a checkpoint file)")
    parser.add_argument("--format", choices=list(FORMATS), default="torchscript", help="torchscript (default) or onnx")
    parser.add_argument("--checkpoint", choices=["last", "best"], default="last", help="which checkpoint of the run (default last)")
    parser.add_argument("--output", type=Path, default=None, help="where to write (default: <run>/policy.pt or policy.onnx)")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        torch.set_num_threads(1)
        path, checked = export(args.run, args.format, args.checkpoint, args.output)
    except (ConfigError, UsageError) as error:
        print(f"rlexp-export: error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, UsageError) else 1)
    note = "actions checked against the agent's" if checked else "not checked: pip install onnxruntime to check it"
    print(f"{path} ({args.format}; {note})")


if __name__ == "__main__":
    main()

"""One run on several processes: data-parallel training under ``torchrun`` (or
``distributed.nproc=N``, which starts the processes through torch's own launcher).

Every process (rank) composes the same config, builds the same policy and steps envs of its
own (seeded past the other ranks' envs). After each rollout the ranks merge their observation
and reward normalisation statistics; in each gradient step they average their gradients (one
flattened all-reduce, each rank weighted by its share of the minibatch's samples, so the
average is the gradient of the loss over the union of the ranks' minibatches), standardise
advantages with the mean and standard deviation of that union, and take the same
``target_kl`` decision. So every rank holds the same parameters after every update: the
trainer compares a checksum of them each update and stops with an error naming the first rank
that differs.

Rank 0 owns the run: the run directory, train.log, TensorBoard, evaluation, checkpoints and
summary.json. The other ranks write only ``rank<N>.log`` in the run directory, and their
warnings reach the console prefixed with ``[rank N]``.

Sizes are per rank: ``env.num_envs``, ``algo.n_steps`` and ``algo.batch_size`` are what one
rank steps and what one rank puts in a minibatch, so the global rollout (and the global
minibatch) is ``world_size`` times theirs; ``total_steps`` counts every rank's steps. Two ranks
of ``num_envs=4, batch_size=64`` train on the same global batches as one process of
``num_envs=8, batch_size=128``, with the same env seeds.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch

from rlexp.errors import ConfigError, TrainingError

log = logging.getLogger("rlexp")

BACKENDS = ("auto", "gloo", "nccl")
#: set in the processes rlexp's own launcher starts (distributed.nproc): the launcher reports a
#: rank that died, so rank 0 does not add its own line about losing contact
LAUNCHED_ENV = "RLEXP_DISTRIBUTED_LAUNCHER"


@dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> Optional[World]:
    """The process's place in a torchrun launch (RANK, WORLD_SIZE, LOCAL_RANK); None when it
    runs alone (no launcher, or a world of one)."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1 or "RANK" not in os.environ:
        return None
    rank = int(os.environ["RANK"])
    return World(rank, size, int(os.environ.get("LOCAL_RANK", rank)))


_world: Optional[World] = None


def current() -> Optional[World]:
    """This process's World once :func:`start` ran under a launcher; else None."""
    return _world


def start() -> Optional[World]:
    """Join the launch's process group (gloo for CPU tensors, and NCCL for CUDA tensors where
    CUDA is there) when this process is one rank of several; a no-op otherwise."""
    global _world
    world = world_from_env()
    if world is None or _world is not None:
        return _world
    import torch.distributed as dist

    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    _world = world
    return world


def stop() -> None:
    global _world
    if _world is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a peer already gone: nothing left to close cleanly
            pass
    _world = None


# -- the run directory ------------------------------------------------------------------------
def share_run_dir(run_dir: Optional[Path]) -> Optional[Path]:
    """Rank 0 sends its run directory (None: it could not make one), the others receive it."""
    import torch.distributed as dist

    box = [str(run_dir) if run_dir is not None else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0]) if box[0] is not None else None


def follower_arguments(args: Sequence[str], world: World) -> list[str]:
    """A rank other than 0 composes the config rank 0 composed, into rank 0's run directory,
    writing no .hydra/ of its own. Blocks until rank 0 has its run directory."""
    run_dir = share_run_dir(None)
    if run_dir is None:  # rank 0 stopped before its run started and said why
        sys.exit(1)
    kept = [a for a in args if not a.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    return [*kept, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]


def all_ready(ok: bool) -> bool:
    """Whether every rank built its trainer (a rank that could not has said why)."""
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def follower_logging(run_dir: Path, world: World) -> None:
    """Rank N > 0: its log lines go to <run dir>/rank<N>.log, and only its warnings and errors
    to the console, prefixed with [rank N]."""
    root = logging.getLogger()
    formatter = logging.Formatter(f"[rank {world.rank}][%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
            stale = Path(handler.baseFilename)
            if stale.name != "train.log" and stale.is_file() and stale.stat().st_size == 0:
                stale.unlink()
        elif isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.WARNING)
            handler.setFormatter(formatter)
    own = logging.FileHandler(run_dir / f"rank{world.rank}.log", encoding="utf-8")
    own.setFormatter(formatter)
    root.addHandler(own)
    log.info("rank %d of %d: pid %d, local rank %d", world.rank, world.world_size, os.getpid(), world.local_rank)


def log_to_files(message: str, level: int = logging.ERROR) -> None:
    """``message`` in the log files (train.log, rank<N>.log) but not on the console: where
    the launcher reports the same event in its own line."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), None)
    for handler in [*log.handlers, *logging.getLogger().handlers]:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


# -- data-parallel training ---------------------------------------------------------------------
class RankLost(TrainingError):
    """A collective failed: another rank stopped (it died, was killed, or failed)."""


class DataParallel:
    """The collectives of one data-parallel run, for the trainer and the algorithm. Each
    wraps torch.distributed's; a peer that is gone becomes :class:`RankLost`."""

    def __init__(self, world: World, backend: str, device: torch.device):
        import torch.distributed as dist

        if backend not in BACKENDS:
            raise ConfigError("distributed.backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "nccl" and device.type != "cuda":
            raise ConfigError("distributed.backend", f"nccl reduces CUDA tensors only and this run trains on {device}; "
                                                     "use distributed.backend=auto or gloo")
        self.world, self.dist = world, dist
        # where the reductions happen: gloo on the host, NCCL on the rank's GPU
        self.device = device if device.type == "cuda" and backend != "gloo" else torch.device("cpu")
        self.step = 0  # the run's env step, for the lost-rank message

    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def size(self) -> int:
        return self.world.world_size

    def _sum(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """Sum ``tensor`` over the ranks (in place on the reduction device; returned there)."""
        try:
            self.dist.all_reduce(tensor)
        except Exception as error:  # noqa: BLE001 - gloo/NCCL raise RuntimeError and subclasses
            raise self.lost(what, error) from None
        return tensor

    def finish_together(self) -> None:
        """Wait until every rank has finished the run (rank 0: its last evaluation, checkpoint and
        summary), so that no rank tears its process group down while another still uses it."""
        try:
            self.dist.barrier()
        except Exception as error:  # noqa: BLE001 - a peer gone at the very end: the run's records are written
            log.warning("%s", self.lost_message("the end-of-run barrier", error))

    def lost(self, what: str, error: BaseException) -> RankLost:
        """The error to raise for a failed collective, its message written to this rank's log
        files at once: the launcher stops the ranks a lost one left behind as soon as it sees it
        gone, maybe before the error has travelled up to be reported."""
        message = self.lost_message(what, error)
        log_to_files(message)
        return RankLost(message)

    def lost_message(self, what: str, error: BaseException) -> str:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"rank {self.rank} lost contact with the other ranks ({what}: {first[:160]}) at step {self.step}: another rank stopped"

    # -- sums ----------------------------------------------------------------------------
    def total(self, value: float) -> float:
        return float(self._sum(torch.tensor([float(value)], dtype=torch.float64, device=self.device), "a count").item())

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on one (a stop request, a callback's stop)."""
        return self.total(1.0 if flag else 0.0) > 0

    def flags(self, *flags: bool) -> list[bool]:
        """Each flag, True on every rank when it is True on one."""
        summed = self._sum(torch.tensor([1.0 if f else 0.0 for f in flags], dtype=torch.float64, device=self.device), "a stop flag")
        return [bool(v > 0) for v in summed.tolist()]

    def weighted_mean(self, value: torch.Tensor, n: int) -> float:
        """The mean over every rank's samples of a per-rank mean over ``n`` samples."""
        pair = torch.tensor([float(value) * n, float(n)], dtype=torch.float64, device=self.device)
        pair = self._sum(pair, "a statistic")
        return float(pair[0] / pair[1]) if pair[1] > 0 else 0.0

    def mean_std(self, x: torch.Tensor) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """Mean and (unbiased) standard deviation of the union of every rank's ``x``; None when
        the union has fewer than two values."""
        flat = x.detach().reshape(-1).to(torch.float64)
        sums = torch.stack([flat.new_tensor(float(flat.numel())), flat.sum(), flat.pow(2).sum()]).to(self.device)
        n, s, sq = self._sum(sums, "advantage statistics").tolist()
        if n < 2:
            return None
        mean = s / n
        var = max(sq - n * mean * mean, 0.0) / (n - 1)
        return x.new_tensor(mean), x.new_tensor(var ** 0.5)

    def minibatch_count(self, n_local: int, batch_size: int) -> int:
        """How many minibatches every rank cuts its samples into: the global sample count over
        the global minibatch (the same rounding as one process), never more than the smallest
        rank's sample count."""
        counts = torch.tensor([float(n_local), float(-n_local)], dtype=torch.float64, device=self.device)
        total = float(self._sum(counts[:1].clone(), "sample counts").item())
        smallest = -self._max(counts[1:].clone())
        return int(max(min(round(total / (batch_size * self.size)), smallest), 1))

    def _max(self, tensor: torch.Tensor) -> float:
        try:
            self.dist.all_reduce(tensor, op=self.dist.ReduceOp.MAX)
        except Exception as error:  # noqa: BLE001
            raise self.lost("sample counts", error) from None
        return float(tensor.item())

    # -- gradients and parameters --------------------------------------------------------
    def average_gradients(self, params: Iterable[torch.nn.Parameter], n: int) -> None:
        """Replace each gradient by the samples-weighted mean of the ranks' gradients:
        sum_r (n_r / N) g_r, in one flattened all-reduce. A rank with no samples (n = 0)
        contributes zeros."""
        params = [p for p in params if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]).to(self.device, torch.float32)
        weights = torch.tensor([float(n)], dtype=torch.float32, device=self.device)
        flat = self._sum(torch.cat([flat * float(n), weights]), "the gradient all-reduce")
        total = float(flat[-1].item())
        flat = flat[:-1] / max(total, 1.0)
        offset = 0
        for p in params:
            count = p.numel()
            value = flat[offset:offset + count].view_as(p).to(p.device, p.dtype)
            if p.grad is None:
                p.grad = value.clone()
            else:
                p.grad.copy_(value)
            offset += count

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (the same start, whatever the init)."""
        tensors = [t for t in [*module.parameters(), *module.buffers()] if t.numel()]
        if not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1).to(self.device, torch.float64) for t in tensors])
        try:
            self.dist.broadcast(flat, src=0)
        except Exception as error:  # noqa: BLE001
            raise self.lost("the parameter broadcast", error) from None
        offset = 0
        with torch.no_grad():
            for t in tensors:
                t.copy_(flat[offset:offset + t.numel()].view_as(t).to(t.device, t.dtype))
                offset += t.numel()

    def parameter_checksums(self, module: torch.nn.Module) -> list[int]:
        """Every rank's checksum of its parameters' bits (:func:`checksum`), rank by rank."""
        mine = torch.tensor([checksum(module)], dtype=torch.int64)
        everyone = [torch.zeros_like(mine) for _ in range(self.size)]
        try:
            self.dist.all_gather(everyone, mine.to(self.device))
        except Exception as error:  # noqa: BLE001
            raise self.lost("the parameter checksums", error) from None
        return [int(t.item()) for t in everyone]

    def check_same_parameters(self, module: torch.nn.Module, updates: int) -> int:
        """Stop with an error naming the first rank whose parameters differ from rank 0's;
        returns the common checksum."""
        sums = self.parameter_checksums(module)
        for rank, value in enumerate(sums):
            if value != sums[0]:
                raise TrainingError(f"rank {rank}'s parameters differ from rank 0's after update {updates} "
                                    f"(checksums {value:#x} and {sums[0]:#x}): the ranks no longer train one policy")
        return sums[0]

    # -- what the ranks saw ----------------------------------------------------------------
    def gather(self, values: Any, what: str) -> list[Any]:
        """Every rank's ``values`` (any picklable object), rank by rank."""
        out: list[Any] = [None] * self.size
        try:
            self.dist.all_gather_object(out, values)
        except Exception as error:  # noqa: BLE001
            raise self.lost(what, error) from None
        return out

    def merge_normalization(self, env: Any, previous: Optional[dict[str, Any]]) -> dict[str, Any]:
        """Merge the observation and reward normalisation statistics the ranks gathered since
        ``previous`` (the merged statistics every rank started the rollout from; None: the
        wrappers' initial ones) into what one process would have computed from all of their
        samples; load them into ``env`` and return them (the next call's ``previous``)."""
        from rlexp.envs import load_normalization_state, normalization_state

        state = normalization_state(env)
        if previous is None:
            previous = state
        merged: dict[str, Any] = {}
        for key, current in state.items():
            if current is None:
                merged[key] = None
                continue
            merged[key] = merge_moments(current, previous[key], self._sum)
        load_normalization_state(env, merged)
        return normalization_state(env)


def merge_moments(current: dict[str, Any], previous: dict[str, Any], sum_over_ranks: Any) -> dict[str, Any]:
    """Running mean/variance statistics (gymnasium's RunningMeanStd: mean, var, count) that
    every rank grew from ``previous`` with samples of its own, merged exactly: each rank's
    increment in count, sum and sum of squares is summed over the ranks and added to
    ``previous``'s."""
    c0, m0, v0 = float(previous["count"]), previous["mean"].double(), previous["var"].double()
    c1, m1, v1 = float(current["count"]), current["mean"].double(), current["var"].double()
    delta = torch.cat([torch.tensor([c1 - c0], dtype=torch.float64), (c1 * m1 - c0 * m0).reshape(-1),
                       (c1 * (v1 + m1 * m1) - c0 * (v0 + m0 * m0)).reshape(-1)])
    delta = sum_over_ranks(delta, "the normalisation statistics").cpu()
    k = m0.numel()
    count = c0 + float(delta[0])
    mean = (c0 * m0.reshape(-1) + delta[1:1 + k]) / count
    var = ((c0 * (v0 + m0 * m0)).reshape(-1) + delta[1 + k:]) / count - mean * mean
    return {"mean": mean.reshape(m0.shape).to(previous["mean"].dtype), "var": var.clamp_min(0).reshape(v0.shape).to(previous["var"].dtype),
            "count": count}


def checksum(module: torch.nn.Module) -> int:
    """A 63-bit checksum of the parameters' bits: equal parameters give equal sums, and a
    change of any single value changes it."""
    total = 0
    for i, p in enumerate(module.parameters()):
        bits = p.detach().reshape(-1).cpu().contiguous()
        words = bits.view(torch.int32) if bits.element_size() == 4 else bits.to(torch.float32).view(torch.int32)
        index = torch.arange(1, words.numel() + 1, dtype=torch.int64)
        total = (total * 1_000_003 + int(((words.to(torch.int64) & 0xFFFFFFFF) * index).sum().item()) + i) % (2**61 - 1)
    return total


# -- distributed.nproc: the launcher ---------------------------------------------------------------
def launch(nproc: int, args: Sequence[str]) -> int:
    """Start ``nproc`` ranks of ``python -m rlexp.cli.train <args>`` on this machine through
    torch's elastic launcher (what torchrun runs) and wait for them. Returns 0, or the exit
    status to leave with after one line naming the rank that died first (a rank that failed
    has said why itself)."""
    import inspect
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    options = dict(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
                   rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1)
    if "signals_to_handle" in inspect.signature(LaunchConfig).parameters:  # torch >= 2.10
        # Ctrl-C reaches the ranks from the terminal and each stops cleanly; the launcher passes
        # on only the signals a terminal does not send them all (older torch passes SIGINT on
        # too: a rank that gets it twice aborts without its last checkpoint)
        options["signals_to_handle"] = "SIGTERM,SIGHUP,SIGQUIT"
    config = LaunchConfig(**options)
    quiet = logging.getLogger("torch.distributed.elastic")
    level, quiet_level = quiet.level, logging.CRITICAL  # its error report repeats what the one line below says
    quiet.setLevel(quiet_level)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the ranks answer it; we wait for them
    os.environ[LAUNCHED_ENV] = "1"
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "rlexp.cli.train", *args)
        return 0
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        code = failure.exitcode
        if code < 0:  # killed by a signal: it could not say so itself
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
            print(f"rlexp-train: error: rank {rank} of {nproc} was killed by {name}; the run stopped "
                  "(checkpoints/last.pt holds its last checkpoint)", file=sys.stderr)
            return 1
        interrupted = {128 + signal.SIGINT, 128 + signal.SIGTERM}
        codes = {f.exitcode for f in error.failures.values()}
        return 128 + signal.SIGINT if codes <= interrupted else 1
    finally:
        os.environ.pop(LAUNCHED_ENV, None)
        signal.signal(signal.SIGINT, previous)
        quiet.setLevel(level)


def launched_by_rlexp() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def rank_seed(seed: int, world: Optional[World]) -> int:
    """The random seed of this rank's sampling: the run's own on rank 0, another on each
    other rank (the env seeds are offset separately: see Trainer)."""
    return seed if world is None else seed + 7919 * world.rank


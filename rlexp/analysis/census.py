"""The census: every environment that gymnasium, ale-py and minigrid register is made, its
policy built by ``network=auto``, and one short rollout and one PPO update run.

    python scripts/census.py                         # all of them -> docs/census.md
    python scripts/census.py --family toy_text minigrid --limit 5

Each env trains in this process with tiny settings (2 envs x 8 steps, one epoch), under an
alarm so that an env that hangs is reported, not waited for. An env that cannot run is
listed with the first line of its error.
"""

from __future__ import annotations

import argparse
import importlib
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

#: the packages whose environments the census covers, by the module that registers them
PACKAGES = {"minigrid": "minigrid", "ale_py": "atari"}
#: settings small enough for one rollout and one update of any env
TINY = ["env.num_envs=2", "algo.n_steps=8", "algo.batch_size=16", "algo.n_epochs=1", "total_steps=16",
        "eval.every_steps=0", "checkpoint.every_updates=0", "logger=none", "progress=false"]


@dataclass
class Entry:
    env_id: str
    family: str
    ok: bool
    seconds: float
    detail: str  # the spaces when it ran, the error's first line when not


def family_of(env_id: str) -> str:
    import gymnasium as gym

    entry = gym.registry[env_id].entry_point
    # a callable entry point names its family in its own name (gymnasium's _raise_mujoco_py_error)
    module = entry if isinstance(entry, str) else f"{getattr(entry, '__module__', '')}.{getattr(entry, '__name__', '')}"
    for name in ("classic_control", "toy_text", "box2d", "mujoco", "phys2d", "tabular", "ale_py", "minigrid"):
        if name in module:
            return name
    return "compatibility" if "shimmy" in module or "GymV" in env_id else module.split(".")[0] or "other"


def registered_ids(families: Optional[Sequence[str]] = None) -> list[str]:
    """Every id in gymnasium's registry once minigrid and ale-py (where installed) are imported."""
    import gymnasium as gym

    for module in PACKAGES:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    ids = sorted(gym.registry)
    return [i for i in ids if families is None or family_of(i) in families]


class Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise Timeout()


def run_one(env_id: str, seconds: int = 120) -> Entry:
    """Build a trainer for ``env_id`` with ``network=auto`` and run one rollout and one update."""
    from rlexp.config import compose_config
    from rlexp.run.trainer import Trainer

    family = family_of(env_id)
    start = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    trainer = None
    try:
        cfg = compose_config([f"env.id={env_id}", *TINY])
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(cfg, run_dir)
            trainer.collector.reset(seed=0)
            trainer.train_one_rollout(progress_remaining=1.0)
            spaces = f"{type(trainer.env.single_observation_space).__name__} -> {type(trainer.env.single_action_space).__name__}"
            encoder = type(trainer.policy.actor_encoder).__name__
            trainer.close()
            trainer = None
        return Entry(env_id, family, True, time.perf_counter() - start, f"{spaces} ({encoder})")
    except Timeout:
        return Entry(env_id, family, False, time.perf_counter() - start, f"no rollout and update within {seconds} s")
    except Exception as error:  # noqa: BLE001 - the census reports every failure, whatever it is
        local = re.compile(r"[^\s'\"]*site-packages/")  # no paths of this machine in the report
        text = local.sub("site-packages/", " ".join(str(error).split())) or type(error).__name__
        return Entry(env_id, family, False, time.perf_counter() - start, f"{type(error).__name__}: {text[:300]}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if trainer is not None:
            try:
                trainer.close()
            except Exception:  # noqa: BLE001 - closing a broken env must not hide the first error
                pass


def report(entries: Sequence[Entry]) -> str:
    """The census as markdown: a count per family, then every env that did not run."""
    families: dict[str, list[Entry]] = {}
    for entry in entries:
        families.setdefault(entry.family, []).append(entry)
    ok = sum(e.ok for e in entries)
    lines = [f"**{ok} of {len(entries)}** registered environments build a policy and run one rollout and one PPO update.", "",
             "| family | runs | registered | seconds (all) |", "| --- | ---: | ---: | ---: |"]
    for family, group in sorted(families.items()):
        lines.append(f"| {family} | {sum(e.ok for e in group)} | {len(group)} | {sum(e.seconds for e in group):.0f} |")
    failed = [e for e in entries if not e.ok]
    if failed:
        lines += ["", "Left out, with the reason:", "", "| env | family | why |", "| --- | --- | --- |"]
        lines += [f"| {e.env_id} | {e.family} | {e.detail.replace('|', '/')} |" for e in failed]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    import logging

    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", nargs="*", help="only these families (classic_control toy_text box2d mujoco ale_py minigrid ...)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many envs per family")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per env")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args(argv)
    logging.getLogger("rlexp").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    ids = registered_ids(args.family)
    if args.limit is not None:
        taken: dict[str, int] = {}
        kept = []
        for env_id in ids:
            family = family_of(env_id)
            if taken.get(family, 0) < args.limit:
                taken[family] = taken.get(family, 0) + 1
                kept.append(env_id)
        ids = kept
    entries = []
    for n, env_id in enumerate(ids, 1):
        entry = run_one(env_id, args.timeout)
        entries.append(entry)
        print(f"[{n}/{len(ids)}] {'ok  ' if entry.ok else 'FAIL'} {env_id} ({entry.seconds:.1f} s): {entry.detail}", flush=True)
    text = report(entries)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    sys.exit(0)


if __name__ == "__main__":
    main()

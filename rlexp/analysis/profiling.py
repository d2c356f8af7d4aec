"""Where a training step's time goes: collection vs update, and the update's top operators.

    python scripts/profile_update.py                       # the RL Zoo CartPole preset on CPU
    python scripts/profile_update.py hparams=ppo_pendulum compile=true

Builds the same Trainer as ``rlexp-train`` (any override works), warms up, then times
whole rollouts: collection (policy inference + env steps + storage), GAE, and the
update, reported per env step and per gradient step. Finally torch.profiler records a
few updates and lists the operators with the most self time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

import torch


def profile(overrides: list[str], rollouts: int = 20, warmup: int = 3, top: int = 15) -> str:
    from rlexp.config import compose_config
    from rlexp.run.trainer import Trainer

    base = ["hparams=ppo_cartpole", "logger=none", "progress=false", "eval.every_steps=0", "checkpoint.every_updates=0"]
    cfg = compose_config(base + overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir)
        algo, rollout = trainer.algo, trainer.rollout
        steps = {"n": 0}
        # count gradient steps on whichever path runs them: autograd, or rlexp.algos.ppo_fast_cpu's numpy
        owner, name = (trainer.backend, "ppo_step") if trainer.backend is not None else (algo, "gradient_step")
        step_function = getattr(owner, name)

        def counted(*args, **kwargs):
            steps["n"] += 1
            return step_function(*args, **kwargs)

        setattr(owner, name, counted)
        collector = trainer.collector
        collector.reset(seed=cfg.seed)
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        last_value = None

        def one_rollout() -> tuple[float, float, float]:
            nonlocal last_value
            t0 = time.perf_counter()
            collector.collect()
            sync()
            t1 = time.perf_counter()
            last_value = collector.bootstrap_value()
            sync()
            t2 = time.perf_counter()
            algo.update(rollout, last_value, progress_remaining=1.0)
            sync()
            return t1 - t0, t2 - t1, time.perf_counter() - t2

        for _ in range(warmup):
            one_rollout()
        steps["n"] = 0
        times = [one_rollout() for _ in range(rollouts)]
        grad_steps = steps["n"] / rollouts
        collect, bootstrap, update = (statistics.median(t[i] for t in times) for i in range(3))
        env_steps = trainer.steps_per_rollout
        total = collect + bootstrap + update
        lines = [
            f"overrides: {' '.join(base + overrides)}",
            f"device {trainer.device}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}; "
            f"median of {rollouts} rollouts of {env_steps} env steps, {grad_steps:g} gradient steps each; "
            f"update path: {'fast_cpu (numpy, rlexp/algos/ppo_fast_cpu.py)' if trainer.backend is not None else 'autograd'}",
            "",
            "| phase | per rollout (ms) | share | unit cost |",
            "| --- | --- | --- | --- |",
            f"| collection | {collect * 1e3:.1f} | {collect / total:.0%} | {collect / trainer.rollout.n_steps * 1e6:.0f} us per vector step of {trainer.env.num_envs} envs |",
            f"| bootstrap value | {bootstrap * 1e3:.2f} | {bootstrap / total:.0%} | |",
            f"| update | {update * 1e3:.1f} | {update / total:.0%} | {update / max(grad_steps, 1) * 1e3:.3f} ms per gradient step (the algorithm's targets included) |",
            f"| total | {total * 1e3:.1f} | | {env_steps / total:,.0f} env steps/s without evaluation and logging |",
        ]
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                algo.update(rollout, last_value, progress_remaining=1.0)
        unseen = " (the fast path's numpy work is not listed: only its matrix products run in torch)" if trainer.backend is not None else ""
        lines += ["", f"Top {top} operators by self CPU time over 3 updates{unseen}:", "",
                  prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)]
        trainer.env.close()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    print(profile(argv))


if __name__ == "__main__":
    main()

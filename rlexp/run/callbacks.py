"""Callbacks: code that runs on a run's named events, as SB3's callbacks do.

The trainer is a schedule (collect, update, then the callbacks); everything else a run does
after an update is a callback on one of these events:

- ``on_run_start(trainer)``: once, before the first rollout (after a resume too);
- ``on_update_end(trainer, metrics)``: after every update, with that update's metrics (the
  ``loss/*``, ``train/*``, ``rollout/*`` and ``time/sps`` entries TensorBoard receives);
- ``on_evaluation_end(trainer, evaluation)``: after every evaluation, with its
  :class:`Evaluation` (step, mean, std, the returns);
- ``on_run_end(trainer, summary)``: once, with what summary.json holds.

A hook that returns ``False`` stops the run after the current update: the run ends as
finished, saves checkpoints/last.pt and summary.json, and says which callback stopped it.

The run's own work is done by the callbacks below, in this order: TensorBoard records,
warning signs, the progress bar, periodic evaluation, checkpoints. A user's callbacks run
after them, given from Python (``rlexp.train(overrides, callbacks=[...])``) or from config
(``callbacks=[{_target_: my.module.MyCallback, ...}]``, built with Hydra's instantiate).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from rlexp.errors import TrainingError
from rlexp.run import records

#: the rlexp.run.trainer.Trainer a hook receives (not imported: the trainer imports this module)
Trainer = Any

log = logging.getLogger("rlexp")


@dataclass(frozen=True)
class Evaluation:
    step: int
    mean: float
    std: float
    returns: np.ndarray


class Callback:
    """Override the hooks you need; each may return False to stop the run."""

    #: the status a run ends with when this callback stops it (summary.json, TensorBoard's
    #: HParams session): "finished", or "pruned" for a search's pruner (rlexp/cli/optuna_trial.py)
    stop_status = "finished"

    def on_run_start(self, trainer: Trainer) -> None:
        pass

    def on_update_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> Optional[bool]:
        return None

    def on_evaluation_end(self, trainer: Trainer, evaluation: Evaluation) -> Optional[bool]:
        return None

    def on_run_end(self, trainer: Trainer, summary: Mapping[str, Any]) -> None:
        pass


class CallbackList:
    """Calls every callback's hook in order; remembers the first that asked to stop, and the
    status it ends the run with."""

    def __init__(self, callbacks: Iterable[Callback]):
        self.callbacks = list(callbacks)
        self.stopped_by: Optional[str] = None
        self.stop_status = "finished"

    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            if getattr(callback, hook)(*args) is False and self.stopped_by is None:
                self.stopped_by = type(callback).__name__
                self.stop_status = getattr(callback, "stop_status", "finished")

    def on_run_start(self, trainer: Trainer) -> None:
        self._call("on_run_start", trainer)

    def on_update_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        self._call("on_update_end", trainer, metrics)

    def on_evaluation_end(self, trainer: Trainer, evaluation: Evaluation) -> None:
        self._call("on_evaluation_end", trainer, evaluation)

    def on_run_end(self, trainer: Trainer, summary: Mapping[str, Any]) -> None:
        self._call("on_run_end", trainer, summary)


# -- the run's own callbacks --------------------------------------------------------------------
class Records(Callback):
    """TensorBoard scalars every ``log_interval`` updates; every ``logger.histogram_every``
    updates the distributions (rlexp.run.records): weights, per-layer gradient norms, what the
    algorithm reports (advantages, returns, PPO's ratio) and the policy's actions."""

    def __init__(self, log_interval: int):
        self.log_interval = log_interval

    def on_update_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        if trainer.updates % self.log_interval == 0:
            trainer.logger.log(dict(metrics), trainer.global_step)
        every = trainer.logger.histogram_every
        if every > 0 and trainer.updates % every == 0:
            self.distributions(trainer)

    @staticmethod
    def distributions(trainer: Trainer) -> None:
        step, logger, policy = trainer.global_step, trainer.logger, trainer.policy
        logger.histograms({f"weights/{name}": param for name, param in policy.named_parameters()}, step)
        scalars = records.gradient_norms(records.parameter_gradients(policy))
        batch = trainer.rollout.batch()
        action_scalars, counts = records.action_records(policy, batch)
        logger.histograms(trainer.algo.histograms(batch), step)
        logger.log({**scalars, **action_scalars}, step)
        if counts is not None:
            logger.counts("actions/histogram", counts, step)


class WarningSignsCheck(Callback):
    """The lesson's warning signs (rlexp.run.warning_signs) after every update: each once, as a
    console line and a TensorBoard text entry; ``diagnostics=strict`` stops the run at the first."""

    def on_update_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        signs = trainer.warning_signs
        if not signs.enabled:
            return
        for finding in signs.check(metrics, **self.inputs(trainer)):
            line = finding.line()
            log.warning("step %d: %s", trainer.global_step, line)
            trainer.logger.text(f"diagnostics/{finding.name}", line, trainer.global_step)
            if signs.mode == "strict":
                raise TrainingError(f"{line} (diagnostics=strict stops here; diagnostics=warn goes on)")


    @staticmethod
    def inputs(trainer: Trainer) -> dict[str, Any]:
        """What the checks read of the run besides the update's metrics (the signs' benchmark
        records exactly this)."""
        rollout = trainer.rollout
        targets = trainer.algo.value_targets(rollout)
        return {
            "progress": trainer.updates / trainer.n_updates,
            "rolling_return": trainer.collector.rolling_return(),
            "abs_reward": float(rollout.rewards_env.abs().max()),
            "abs_value_target": float(targets.abs().max()) if targets is not None and targets.numel() else 0.0,
            "normalized_rewards": bool(getattr(trainer.env_spec, "normalize_reward", False)),
        }


class ProgressBar(Callback):
    """A tqdm bar over the run's steps (a widget in Jupyter, text on a terminal; off with progress=false)."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def on_run_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        from rlexp.config import job_number

        number = job_number()  # a sweep's jobs share the terminal: each bar says whose it is
        self.bar = tqdm(total=trainer.n_updates * trainer.steps_per_rollout, initial=trainer.global_step, unit="step",
                        disable=None if self.enabled else True, dynamic_ncols=True,
                        desc=None if number is None else f"job {number}")

    def on_update_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        self.bar.update(trainer.steps_per_rollout)
        rolling = trainer.collector.rolling_return()
        self.bar.set_postfix(sps=f"{metrics['time/sps']:.0f}", ret="-" if np.isnan(rolling) else f"{rolling:.1f}")

    def on_run_end(self, trainer: Trainer, summary: Mapping[str, Any]) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PeriodicEvaluation(Callback):
    """An evaluation every ``every_steps`` environment steps (0: none during training); stops
    the run once one reaches ``stop_at``."""

    def __init__(self, every_steps: int, stop_at: Optional[float]):
        self.every, self.stop_at = every_steps, stop_at
        self.next_eval = float("inf")

    def on_run_start(self, trainer: Trainer) -> None:
        if self.every > 0:
            self.next_eval = (trainer.global_step // self.every + 1) * self.every

    def on_update_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> Optional[bool]:
        if trainer.global_step < self.next_eval:
            return None
        with trainer.clock.paused():
            evaluation = trainer.evaluate_and_log()
        self.next_eval += self.every
        if self.stop_at is not None and evaluation.mean >= self.stop_at:
            log.info("eval return %.1f reached eval.stop_at=%g: stopping", evaluation.mean, self.stop_at)
            return False
        return None


class PeriodicCheckpoint(Callback):
    """checkpoints/last.pt every ``every_updates`` updates (0: only at the end)."""

    def __init__(self, every_updates: int):
        self.every = every_updates

    def on_update_end(self, trainer: Trainer, metrics: Mapping[str, float]) -> None:
        if self.every > 0 and trainer.updates % self.every == 0:
            trainer.save("last.pt")

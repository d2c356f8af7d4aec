"""Warning signs of a run going wrong, checked after every update (``diagnostics=warn``).

Each check is the lesson's troubleshooting list turned into a rule over the last few
updates' metrics, and names the lesson's remedy. A sign fires at most once per run: one
console line, a ``diagnostics/<name>`` text entry in TensorBoard and a count in
summary.json; ``diagnostics=strict`` stops the run instead, ``off`` checks nothing. The
thresholds are config values: conf/diagnostics/warn.yaml is the one place their defaults live
(:func:`make_warning_signs` reads it for a run saved before the group existed).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

MODES = ("off", "warn", "strict")
#: settings older versions had, ignored when a saved run's config names them (see docs/warning_signs.md)
RETIRED = ("max_clip_fraction", "value_window_fraction", "min_target_spread")

REMEDIES = {
    "policy_collapse": "raise algo.ent_coef, lower algo.learning_rate, check algo.normalize_advantage",
    "updates_too_large": "lower algo.learning_rate or algo.clip_range, or set algo.target_kl",
    "value_not_learning": "raise algo.vf_coef, set env.normalize_reward=true where it is off, keep the critic's network "
                          "apart from the actor's (network.shared=false)",
    "nothing_learnt": "check the reward scale, raise algo.batch_size or algo.n_steps",
    "first_ratio_not_one": "a bug: the policy changed between collecting the rollout and its first minibatch "
                           "(a stale network, an observation processed differently, dropout or batch norm in train mode)",
    "reward_scale": "set env.normalize_reward=true (or env.clip_reward)",
}


@dataclass
class Finding:
    name: str
    message: str  # what was seen, then the remedy: one line

    def line(self) -> str:
        return f"diagnostics/{self.name}: {self.message}; {REMEDIES[self.name]}"


@dataclass
class WarningSigns:
    """The checks and their thresholds (the ``diagnostics`` config group; conf/diagnostics/warn.yaml
    says what each one means)."""

    mode: str
    window: int
    entropy_collapse_fraction: float
    early_fraction: float
    max_approx_kl: float
    max_approx_kl_once: float
    warmup_fraction: float
    max_best_explained_variance: float
    flat_return_fraction: float
    max_entropy_fraction: float
    first_ratio_tolerance: float
    max_abs_reward: float
    max_abs_value_target: float
    fired: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from rlexp.errors import require

        require(self.mode in MODES, "mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        require(self.window >= 1, "window", f"must be >= 1, got {self.window}")
        for key in ("entropy_collapse_fraction", "early_fraction", "warmup_fraction",
                    "flat_return_fraction", "max_entropy_fraction"):
            require(0 <= getattr(self, key) <= 1, key, f"is a share of training or of a start value: must be in [0, 1], got {getattr(self, key)}")
        for key in ("max_approx_kl", "max_approx_kl_once", "first_ratio_tolerance", "max_abs_reward", "max_abs_value_target"):
            require(getattr(self, key) > 0, key, f"must be > 0, got {getattr(self, key)}")
        require(-1 <= self.max_best_explained_variance <= 1, "max_best_explained_variance",
                f"is an explained variance: must be in [-1, 1], got {self.max_best_explained_variance}")
        self.history: deque[Mapping[str, float]] = deque(maxlen=self.window)
        self.explained: list[float] = []
        self.first_entropy: Optional[float] = None
        self.returns: list[float] = []
        self.blind_since: Optional[float] = None  # progress at a resume that brought no history

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict:
        """What the checks have seen, for the checkpoint: a resumed run compares against its
        own start (first entropy, first returns), not against the update it resumed at."""
        return {"fired": dict(self.fired), "history": [dict(h) for h in self.history], "explained": list(self.explained),
                "first_entropy": self.first_entropy, "returns": list(self.returns), "blind_since": self.blind_since}

    def load(self, state: Optional[Mapping], fired: Optional[Mapping[str, int]] = None, progress: float = 0.0) -> None:
        """Restore :meth:`state`. A checkpoint written before the checks kept their history
        (``state`` None) restores what fired and turns off, for the rest of the run, the two
        signs measured against the run's start (policy_collapse, nothing_learnt): the update
        it resumed at is not the start, and comparing with it fired nothing_learnt on runs
        that had learnt."""
        if state is None:
            self.fired.update(fired or {})
            self.blind_since = progress
            return
        self.fired.update(state["fired"])
        self.history.clear()
        self.history.extend(dict(h) for h in state["history"])
        self.explained = list(state["explained"])
        self.first_entropy = state["first_entropy"]
        self.returns = list(state["returns"])
        self.blind_since = state.get("blind_since")

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def check(self, metrics: Mapping[str, float], progress: float, rolling_return: float,
              abs_reward: float, abs_value_target: float, normalized_rewards: bool) -> list[Finding]:
        """The signs that fire for the first time after this update. ``progress``: the share
        of training done; ``rolling_return``: mean return of recent episodes (NaN if none);
        ``abs_reward``, ``abs_value_target``: the largest magnitudes in the rollout."""
        if not self.enabled:
            return []
        self.history.append(dict(metrics))
        if math.isfinite(rolling_return):
            self.returns.append(rolling_return)
        explained = metrics.get("train/explained_variance")
        if explained is not None and math.isfinite(explained):
            self.explained.append(explained)
        entropy = metrics.get("train/entropy")
        if entropy is not None and self.first_entropy is None:
            self.first_entropy = entropy
        found = [f for f in (self._collapse(entropy, progress), self._too_large(), self._value(progress), self._flat(progress),
                             self._first_ratio(metrics), self._scale(abs_reward, abs_value_target, normalized_rewards)) if f is not None]
        new = [f for f in found if f.name not in self.fired]
        for f in new:
            self.fired[f.name] = 1
        return new

    # -- the signs -------------------------------------------------------------------------------
    def _collapse(self, entropy: Optional[float], progress: float) -> Optional[Finding]:
        """The entropy fell below ``entropy_collapse_fraction`` of its first value within the first
        ``early_fraction`` of training while the returns had not improved. A policy that turns
        deterministic after it learnt (MiniGrid DoorKey at 40% of training) is left alone, and so
        is one that collapses while its returns still climb (a mild negative entropy bonus): a rule
        that also waited for the returns to stall after the collapse fired on DoorKey, whose
        returns stall at their maximum (docs/warning_signs.md)."""
        start = self.first_entropy
        if self.blind_since is not None or entropy is None or start is None or start <= 0 or progress > self.early_fraction:
            return None
        if entropy < self.entropy_collapse_fraction * start and not self._improving():
            return Finding("policy_collapse", f"entropy fell to {entropy:.3g} from {start:.3g} in the first "
                                              f"{progress:.0%} of training while returns did not improve")
        return None

    def _improving(self) -> bool:
        """Whether the returns ever beat the first ones: the best mean over ``window`` consecutive
        updates is above the first ``window`` updates' mean by a fifth of the larger of the
        returns' range and the first returns' size. The best, not the last: A2C on CartPole learns
        to 300, slumps to 60 and recovers. A fifth of that scale: the rolling return of a run that
        learns nothing wanders by a few percent (CartPole at about 22: 19 to 26), which a tenth of
        the range alone took for learning (docs/warning_signs.md)."""
        if len(self.returns) < 2:
            return False
        n = max(1, min(self.window, len(self.returns) // 2))
        means = [sum(self.returns[i:i + n]) / n for i in range(len(self.returns) - n + 1)]
        scale = max(max(self.returns) - min(self.returns), abs(means[0]))
        return scale > 0 and max(means) - means[0] > 0.2 * scale

    def _too_large(self) -> Optional[Finding]:
        """The median approx KL of the last ``window`` updates is above ``max_approx_kl``. A median,
        not every update: a learning rate far too large moves the policy by a KL of 1 or more most
        updates but not all; healthy presets stay below 0.035. Or one update alone above
        ``max_approx_kl_once``: a step so large that the policy turned deterministic at once, after
        which every KL is 0 (healthy presets: 0.08 at most). The clip fraction is not used: a
        healthy CartPole run's reaches 0.4, a broken run's can be 0 (docs/warning_signs.md)."""
        last = self.history[-1].get("train/approx_kl") if self.history else None
        if last is not None and last > self.max_approx_kl_once:
            return Finding("updates_too_large", f"one update moved the policy by an approx KL of {last:.3g} "
                                                f"(beyond {self.max_approx_kl_once:g})")
        kls = [h["train/approx_kl"] for h in self.history if h.get("train/approx_kl") is not None]
        if len(kls) < self.window:
            return None
        median = statistics.median(kls)
        if median > self.max_approx_kl:
            return Finding("updates_too_large", f"approx KL above {self.max_approx_kl:g} in most of the last {self.window} updates "
                                                f"(median {median:.3g}, last {self.history[-1]['train/approx_kl']:.3g})")
        return None

    def _value(self, progress: float) -> Optional[Finding]:
        """The critic never learnt: after the warm-up (and at least ``window`` updates), the best
        explained variance of the run so far is still at or below ``max_best_explained_variance``.
        A healthy critic has stretches of explained variance near 0 too (CartPole once returns
        saturate, LunarLander's for its first fifth of training), so a recent median fired on 12 of
        20 healthy default runs; the best value so far separates the two: critics that cannot learn
        peak at 0.043, every healthy preset's has passed 0.25 by half of training
        (docs/warning_signs.md)."""
        if progress < self.warmup_fraction or len(self.explained) < self.window:
            return None
        best = max(self.explained)
        if best <= self.max_best_explained_variance:
            return Finding("value_not_learning", f"explained variance never above {self.max_best_explained_variance:g} "
                                                 f"(best {best:.3g} over {len(self.explained)} updates) after {progress:.0%} of training")
        return None

    def _flat(self, progress: float) -> Optional[Finding]:
        start, entropy = self.first_entropy, self.history[-1].get("train/entropy") if self.history else None
        if (self.blind_since is not None or progress < self.flat_return_fraction or len(self.returns) < 2 * self.window
                or start is None or entropy is None):
            return None
        last = self.returns[-self.window:]
        if not self._improving() and entropy >= self.max_entropy_fraction * start:
            return Finding("nothing_learnt", f"returns flat ({sum(last) / len(last):.3g}) after {progress:.0%} of training "
                                             f"while entropy stays at {entropy / start:.0%} of its start")
        return None

    def _first_ratio(self, metrics: Mapping[str, float]) -> Optional[Finding]:
        kl = metrics.get("train/first_minibatch_kl")
        if kl is not None and kl > self.first_ratio_tolerance:
            return Finding("first_ratio_not_one", f"PPO's first minibatch had approx KL {kl:.3g} (its ratio must be exactly 1)")
        return None

    def _scale(self, abs_reward: float, abs_value_target: float, normalized_rewards: bool) -> Optional[Finding]:
        if normalized_rewards:
            return None
        if abs_reward > self.max_abs_reward:
            return Finding("reward_scale", f"rewards reach {abs_reward:.3g} in magnitude (beyond {self.max_abs_reward:g}) "
                                           "without normalisation")
        if abs_value_target > self.max_abs_value_target:
            return Finding("reward_scale", f"value targets reach {abs_value_target:.3g} in magnitude (beyond "
                                           f"{self.max_abs_value_target:g}) without normalisation")
        return None


def make_warning_signs(node: Any = None, **changes: Any) -> WarningSigns:
    """The ``diagnostics`` group's checks from its config node; settings the node lacks (``None``: a
    run saved before the group existed) come from conf/diagnostics/warn.yaml, settings it has that
    were retired are ignored, and ``changes`` replace settings."""
    from omegaconf import OmegaConf

    from rlexp.config import CONF_DIR
    from rlexp.errors import ConfigError

    defaults = OmegaConf.load(CONF_DIR / "diagnostics" / "warn.yaml")
    defaults.pop("defaults", None)
    given = {} if node is None else OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    # warn.yaml fills the settings a run saved by an older rlexp lacks
    settings = {**OmegaConf.to_container(defaults), **given, **changes}
    for key in RETIRED:  # a run saved by an older rlexp may still name them
        settings.pop(key, None)
    try:
        return WarningSigns(**settings)
    except ConfigError as e:
        raise e.under("diagnostics") from None
    except TypeError as e:
        raise ConfigError("diagnostics", str(e).replace("WarningSigns.__init__() ", "")) from None

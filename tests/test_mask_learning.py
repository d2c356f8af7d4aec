"""Issue #30's learning target: on the identity task with 70 actions of which 55 are invalid in
each state (env=invalid_actions, sb3-contrib's InvalidActionEnvDiscrete; optimum return 100),
masked PPO (hparams=ppo_invalid_actions) reaches at least 90% of the optimum within 2,048 steps,
and unmasked PPO with the same settings does clearly worse.

Measured (final deterministic evaluation over 10 episodes at 2,048 steps, 2 CPU cores,
``rlexp-train hparams=ppo_invalid_actions seed=<s>``; unmasked: ``env.action_mask=none
env.make_kwargs.strict=false``):

- masked, seeds 1-10: 100.0, 99.1, 99.3, 97.1, 99.8, 100.0, 99.7, 99.5, 100.0, 99.2; seeds 1-30:
  mean 98.8, lowest 94.6 (the preset's comment lists them all);
- unmasked, seeds 1-10: 20.6, 35.7, 27.6, 26.2, 26.8, 24.2, 17.5, 29.2, 38.3, 30.8.

The bars (masked >= 90, the issue's target; unmasked <= 60) sit clear of every seed measured,
since floats, and so the runs, differ from one CPU to another. The masked env is strict (a
forbidden action raises), so a masked run that finishes took no invalid action. One seed of
each runs in the default suite (a few seconds a run); seeds 1-3 of both are ``slow`` (opt in
with ``-m slow``).
"""

from __future__ import annotations

import pytest

import rlexp

OPTIMUM = 100.0  # 100-step episodes, reward 1 for the target action
MASKED_BAR = 0.9 * OPTIMUM
UNMASKED_BAR = 60.0
UNMASKED = ("env.action_mask=none", "env.make_kwargs.strict=false")  # strict=false: an invalid action just misses


def final_eval(tmp_path, seed: int, *overrides: str) -> tuple[float, dict]:
    """Train the preset; its final evaluation's mean return and the run's summary."""
    run_dir = tmp_path / f"seed{seed}{'_unmasked' if overrides else ''}"
    result = rlexp.train(["hparams=ppo_invalid_actions", f"seed={seed}", "logger=none", "progress=false", *overrides], run_dir=run_dir)
    assert result["status"] == "finished"
    assert result["steps"] <= 2048, "the target is within 2,048 env steps"
    assert result["eval_history"][-1][0] == result["steps"], "the final evaluation is of the policy at the end"
    return float(result["eval_return_mean"]), result


def test_the_preset_is_the_issue_s_task(compose_cfg):
    """70 actions, 55 invalid in each state, 100-step episodes, a strict env whose mask the
    policy reads; at most 2,048 steps, a deterministic evaluation of 10 episodes or more."""
    cfg = compose_cfg("hparams=ppo_invalid_actions")
    assert cfg.env.id == "rlexp.analysis.mask_envs:RlexpInvalidActions-v0"
    assert dict(cfg.env.make_kwargs) == {"n_actions": 70, "n_invalid": 55, "ep_length": 100, "strict": True}
    assert cfg.env.action_mask == "auto" and cfg.algo._target_ == "rlexp.algos.ppo.PPO"
    assert cfg.total_steps <= 2048 and cfg.eval.every_steps <= cfg.total_steps
    assert cfg.eval.deterministic is True and cfg.eval.episodes >= 10
    # the unmasked comparison changes the mask and the env's strictness only
    unmasked = compose_cfg("hparams=ppo_invalid_actions", *UNMASKED)
    assert unmasked.env.action_mask == "none" and unmasked.env.make_kwargs.strict is False
    for group in ("algo", "network"):
        assert unmasked[group] == cfg[group]


def test_masked_ppo_reaches_90_percent_of_the_optimum_in_2048_steps(tmp_path):
    mean, result = final_eval(tmp_path, 1)
    assert mean >= MASKED_BAR, f"masked PPO, seed 1: final eval {mean:.1f} < {MASKED_BAR}; history {result['eval_history']}"


def test_unmasked_ppo_does_clearly_worse(tmp_path):
    mean, _ = final_eval(tmp_path, 1, *UNMASKED)
    assert mean <= UNMASKED_BAR, f"unmasked PPO, seed 1: final eval {mean:.1f}, expected at most {UNMASKED_BAR}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_masked_and_unmasked_on_three_seeds(tmp_path, seed):
    masked, _ = final_eval(tmp_path, seed)
    unmasked, _ = final_eval(tmp_path, seed, *UNMASKED)
    assert masked >= MASKED_BAR, f"seed {seed}: masked {masked:.1f} < {MASKED_BAR}"
    assert unmasked <= UNMASKED_BAR, f"seed {seed}: unmasked {unmasked:.1f} > {UNMASKED_BAR}"

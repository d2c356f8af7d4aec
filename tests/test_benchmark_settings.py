"""The benchmark claims identical settings for rlexp and SB3: each case's SB3 keyword
arguments must say what the rlexp preset it runs composes to (SB3 itself is not needed)."""

import pytest

from rlexp.analysis.benchmark import CASES


@pytest.mark.parametrize("name", list(CASES))
def test_sb3_settings_match_the_rlexp_preset(compose_cfg, name):
    case = CASES[name]
    cfg = compose_cfg(f"hparams={case.preset}")
    sb3 = dict(case.sb3)
    assert cfg.env.id == case.env_id
    assert cfg.algo._target_.rsplit(".", 1)[1] == case.algo  # same algorithm (the budget is the case's own)
    assert cfg.env.num_envs == sb3.pop("n_envs")
    assert cfg.env.normalize_obs == case.normalize
    assert cfg.env.normalize_reward == (case.normalize and case.normalize_reward)
    assert cfg.env.get("mask_velocity", False) == case.recurrent  # the recurrent case: both sides without velocities
    if "policy_kwargs" in sb3:  # sb3-contrib's MlpLstmPolicy against rlexp's network group
        kwargs = sb3.pop("policy_kwargs")
        assert cfg.network.recurrent == "lstm" and cfg.network.recurrent_size == kwargs["lstm_hidden_size"]
        assert cfg.network.shared is False and kwargs["enable_critic_lstm"] is True  # a core each for actor and critic
        assert list(cfg.network.hidden_sizes) == kwargs["net_arch"]["pi"] == kwargs["net_arch"]["vf"]
        assert (cfg.network.activation, cfg.network.ortho_init) == (kwargs["activation_fn"], kwargs["ortho_init"])
    for key in [k for k in ("learning_rate", "clip_range") if k in sb3]:
        value = sb3.pop(key)
        schedule, initial = value if isinstance(value, tuple) else ("constant", value)
        assert cfg.algo[key] == pytest.approx(initial), key
        assert cfg.algo["lr_schedule" if key == "learning_rate" else "clip_range_schedule"] == schedule, key
    for key in ("use_sde", "sde_sample_freq"):
        default = {"use_sde": False, "sde_sample_freq": -1}[key]
        assert cfg.network[key] == sb3.pop(key, default), key
    for key, value in sb3.items():  # the rest share SB3's names
        assert cfg.algo[key] == pytest.approx(value), key


def test_rlexp_worker_reports_its_update_path_and_takes_overrides():
    """The rlexp side of the benchmark in a fresh process, shortened: the fast CPU path by
    default, autograd with fast_cpu=false, and the table says which one ran."""
    from rlexp.analysis.benchmark import run_one, table

    fast = run_one("rlexp", "cartpole", 0, 1, 2, ["total_steps=2048"])
    slow = run_one("rlexp", "cartpole", 0, 1, 2, ["total_steps=2048", "fast_cpu=false"])
    assert (fast["update_path"], slow["update_path"]) == ("fast_cpu", "autograd")
    assert fast["steps"] == slow["steps"] == 2048 and fast["sps"] > 0
    assert "rlexp's update path: fast_cpu\n" in table([fast], "cartpole")


@pytest.mark.parametrize("variant", ["preset", "envs16384x32", "envs16384_mb2x4"])
def test_gpu_benchmark_variants_build(compose_cfg, tmp_path, variant):
    """The GPU benchmark's default variants compose into trainers that pass their own checks,
    with the rollout and gradient steps per update that their comments promise."""
    from rlexp.analysis.benchmark_gpu import VARIANTS
    from rlexp.run.trainer import Trainer

    cfg = compose_cfg("hparams=ppo_cartpole_gpu", "device=cpu", "logger=none", "progress=false", *VARIANTS[variant])
    trainer = Trainer(cfg, tmp_path)
    steps_per_update = cfg.algo.n_epochs * (trainer.steps_per_rollout // cfg.algo.batch_size)
    expected = {"preset": (131_072, 80), "envs16384x32": (524_288, 80), "envs16384_mb2x4": (524_288, 8)}[variant]
    assert (trainer.steps_per_rollout, steps_per_update) == expected
    assert trainer.env.num_envs == cfg.env.num_envs and trainer.evaluator.eval_device.type == "cpu"

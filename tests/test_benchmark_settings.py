"""The benchmark claims identical settings for rlexp and SB3: each case's SB3 keyword
arguments must say what the rlexp preset it runs composes to (SB3 itself is not needed)."""

import math

import pytest
from omegaconf import OmegaConf

from conftest import CONF
from rlexp.analysis.benchmark import CASES


#: SB3's own defaults (stable-baselines3 2.x; sb3-contrib's RecurrentPPO: PPO's, with n_steps and
#: batch_size 128), what the SB3 side runs with for every keyword a case does not give
SB3_DEFAULTS = {
    "PPO": dict(learning_rate=3e-4, n_steps=2048, batch_size=64, n_epochs=10, gamma=0.99, gae_lambda=0.95, clip_range=0.2,
                clip_range_vf=None, normalize_advantage=True, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, target_kl=None,
                use_sde=False, sde_sample_freq=-1),
    "A2C": dict(learning_rate=7e-4, n_steps=5, gamma=0.99, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5,
                rms_prop_eps=1e-5, use_rms_prop=True, normalize_advantage=False, use_sde=False, sde_sample_freq=-1),
}
#: run-level keys a preset may set that are not training settings: the benchmark gives its own
RUN_LEVEL = ("total_steps", "seed", "eval.", "checkpoint.")


def sb3_side(case) -> dict[str, object]:
    """Every setting the SB3 side of ``case`` runs with, under rlexp's config keys."""
    sb3 = {**SB3_DEFAULTS[case.algo], **({"n_steps": 128, "batch_size": 128} if case.recurrent else {}), **case.sb3}
    out: dict[str, object] = {"env.num_envs": sb3.pop("n_envs")}
    for key, schedule_key in (("learning_rate", "algo.lr_schedule"), ("clip_range", "algo.clip_range_schedule")):
        if key in sb3:
            value = sb3.pop(key)
            schedule, initial = value if isinstance(value, tuple) else ("constant", value)
            out[f"algo.{key}"], out[schedule_key] = initial, schedule
    for key in ("use_sde", "sde_sample_freq"):
        out[f"network.{key}"] = sb3.pop(key)
    if sb3.pop("use_rms_prop", False):  # th.optim.RMSprop(alpha=0.99, eps=rms_prop_eps, weight_decay=0)
        out.update({"algo.optimizer._target_": "torch.optim.RMSprop", "algo.optimizer.alpha": 0.99,
                    "algo.optimizer.eps": sb3.pop("rms_prop_eps")})
    elif case.algo == "PPO":  # SB3's policies give Adam eps=1e-5
        out.update({"algo.optimizer._target_": "torch.optim.Adam", "algo.optimizer.eps": 1e-5})
    kwargs = sb3.pop("policy_kwargs", None)
    if kwargs is not None and case.recurrent:  # sb3-contrib's MlpLstmPolicy, with a core each for actor and critic
        assert kwargs["enable_critic_lstm"] is True and kwargs["net_arch"]["pi"] == kwargs["net_arch"]["vf"]
        out.update({"network.recurrent": "lstm", "network.recurrent_size": kwargs["lstm_hidden_size"], "network.shared": False,
                    "network.hidden_sizes": kwargs["net_arch"]["pi"], "network.activation": kwargs["activation_fn"],
                    "network.init": "orthogonal" if kwargs["ortho_init"] else "torch"})
    elif kwargs is not None:  # MlpPolicy's own layers (tanh, orthogonal init), separate for actor and critic
        assert set(kwargs) == {"net_arch"} and kwargs["net_arch"]["pi"] == kwargs["net_arch"]["vf"], kwargs
        out.update({"network.hidden_sizes": kwargs["net_arch"]["pi"], "network.shared": False, "network.activation": "tanh",
                    "network.init": "orthogonal"})
    out.update({f"algo.{key}": value for key, value in sb3.items()})  # the rest share SB3's names
    # VecNormalize (clip_reward acts only with norm_reward); inf is no clipping, rlexp's null
    norm_reward = case.normalize and case.normalize_reward
    norm_obs = case.normalize and case.normalize_obs
    out.update({"env.normalize_obs": norm_obs, "env.normalize_reward": norm_reward,
                "env.clip_obs": case.clip_obs if norm_obs and math.isfinite(case.clip_obs) else None,
                "env.clip_reward": case.clip_reward if norm_reward and math.isfinite(case.clip_reward) else None,
                "env.mask_velocity": case.recurrent})  # the recurrent case: both sides without velocities
    if case.masked:  # MaskablePPO masks its policy with the env's masks, which rlexp reads from the env's info
        out["env.action_mask"] = "auto"
    return out


def preset_side(preset: str) -> tuple[dict[str, object], dict[str, str]]:
    """(the settings the preset file sets, flattened to dotted keys; its group choices)."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF / "hparams" / f"{preset}.yaml"))
    groups = {}
    for entry in raw.pop("defaults", []):
        (key, value), = entry.items()
        groups[key.removeprefix("override ").lstrip("/")] = value

    def flat(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return {k: v for k, v in flat(raw) if not k.startswith(RUN_LEVEL)}, groups


def same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == pytest.approx(b, rel=1e-9)
    return a == b


@pytest.mark.parametrize("name", list(CASES))
def test_sb3_settings_match_the_rlexp_preset(compose_cfg, name):
    """Every setting either side sets is set on the other, to the same value: each key of the
    preset file has an SB3 counterpart, and the composed config equals everything SB3 runs
    with (its defaults included, and VecNormalize's normalisation and clipping)."""
    case = CASES[name]
    cfg = compose_cfg(f"hparams={case.preset}")
    assert cfg.env.id == case.env_id
    assert cfg.algo._target_.rsplit(".", 1)[1] == case.algo  # same algorithm (the budget is the case's own)
    theirs = sb3_side(case)
    ours, groups = preset_side(case.preset)
    assert groups.get("algo", "").upper() == case.algo and (groups.get("network") == "cnn") == case.atari, groups

    only_ours = sorted(set(ours) - set(theirs))
    assert not only_ours, f"{case.preset} sets {only_ours}, which the SB3 side of {name!r} does not"
    differ = {key: (OmegaConf.select(cfg, key, default="<missing>"), value) for key, value in theirs.items()
              if not same(OmegaConf.to_object(v) if OmegaConf.is_config(v := OmegaConf.select(cfg, key, default="<missing>")) else v,
                          value)}
    assert not differ, f"{name}: rlexp's value != SB3's: {differ}"


@pytest.mark.slow  # 16 s: the benchmark script's worker, not the library
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


def test_masked_case_steps_the_same_task_on_both_sides(compose_cfg):
    """The invalid-action case: SB3's env (masks from action_masks(), which MaskablePPO calls) is
    rlexp's (masks in info) with the preset's make_kwargs as its defaults; from one seed both give
    the same observations and masks, step after step, and stay strict (an invalid action raises)."""
    import gymnasium as gym
    import numpy as np

    case = CASES["invalid_actions"]
    cfg = compose_cfg(f"hparams={case.preset}")
    ours = gym.make(case.env_id, **cfg.env.make_kwargs)
    theirs = gym.make(case.sb3_env_id)  # what make_vec_env builds: the class's defaults
    for attr, key in (("n_actions", "n_actions"), ("n_invalid", "n_invalid"), ("ep_length", "ep_length"), ("strict", "strict")):
        assert getattr(theirs.unwrapped, attr) == cfg.env.make_kwargs[key]
    obs_a, info = ours.reset(seed=3)
    obs_b, _ = theirs.reset(seed=3)
    for _ in range(5):
        mask = np.asarray(info["action_mask"], dtype=bool)
        assert obs_a == obs_b and np.array_equal(mask, theirs.unwrapped.action_masks()) and mask.sum() == 70 - 55
        action = int(np.flatnonzero(mask)[0])
        obs_a, _, _, _, info = ours.step(action)
        obs_b, _, _, _, _ = theirs.step(action)
    with pytest.raises(RuntimeError, match="invalid action"):
        theirs.step(int(np.flatnonzero(~theirs.unwrapped.action_masks())[0]))


def test_cases_needing_sb3_contrib_are_skipped_with_a_line_without_it(monkeypatch, capsys):
    import importlib.util

    from rlexp.analysis import benchmark

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sb3_contrib" else find_spec(name, *a))
    assert benchmark.runnable(["cartpole", "invalid_actions", "cartpole_lstm"]) == ["cartpole"]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["skipping invalid_actions", "skipping cartpole_lstm"]
    assert all("sb3-contrib" in line and 'pip install -e ".[bench]"' in line for line in lines)

"""Every tuned preset (conf/hparams) trains end to end from the command line for a few
hundred to ~2,000 steps and leaves a finished summary.json. Presets whose environment
needs an optional extra that is not installed (Box2D, MuJoCo) skip themselves.

The command's main() runs in this process (conftest.run_cli_in_process: the same code from
main() on, without 2-3 s of interpreter, torch and Hydra start-up a preset), but for
FRESH_PROCESS_PRESET, started as a command of its own."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import pytest

from rlexp.envs.factory import register_family
from conftest import group_options, run_cli, run_cli_in_process

BUDGET = 1024  # env steps per smoke run
FRESH_PROCESS_PRESET = "ppo_cartpole"


def rollout_overrides(cfg) -> list[str]:
    """Shrink the rollout when one of the preset's rollouts is longer than the budget
    (BipedalWalker's is 32 x 2048 steps, ppo_cartpole_gpu's 4,096 x 32); the other values
    stay as the preset sets them."""
    num_envs, n_steps = cfg.env.num_envs, cfg.algo.n_steps
    if "PettingZooSpec" in cfg.env._target_:  # a parallel game's rows: one per (game, agent)
        from rlexp.builders import build

        rows = build("env", cfg.env).rows_per_copy
        if num_envs * rows * n_steps > BUDGET:
            return [f"env.num_envs={max(1, BUDGET // (rows * n_steps))}"]
        return []
    if num_envs * n_steps <= BUDGET:
        return []
    overrides = []
    if num_envs > BUDGET // 4:  # ppo_cartpole_gpu's 4,096 envs: a few steps of a smaller batch
        num_envs = BUDGET // 4
        overrides.append(f"env.num_envs={num_envs}")
    n_steps = max(1, BUDGET // num_envs)
    overrides.append(f"algo.n_steps={n_steps}")
    if "batch_size" in cfg.algo and cfg.algo.batch_size > n_steps * num_envs:
        overrides.append(f"algo.batch_size={n_steps * num_envs}")
    return overrides


def evaluation_overrides(cfg) -> list[str]:
    """An Atari game lasts hundreds of steps of the CNN (an untrained Pong game ~800, ~5 s here):
    games stop at 200 steps (env.max_episode_steps, as test_newcomer_more.py's cheapest Atari run),
    so the evaluation plays one short game; the training rollouts are shorter than that anyway."""
    return ["env.max_episode_steps=200"] if str(cfg.env.id).startswith("ALE/") else []


#: covered in the default suite by a test that asserts more of the same run: -m slow here
COVERED_ELSEWHERE = {
    # tests/test_atari.py::test_ppo_atari_one_update: the preset for 1,024 steps (one update) and
    # one evaluation game of Pong, its summary and the CNN it builds
    "ppo_atari",
}


@pytest.mark.filterwarnings("ignore:builtin type .* has no __module__:DeprecationWarning")  # Box2D's SWIG types
@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.slow) if p in COVERED_ELSEWHERE else p for p in group_options("hparams")])
def test_preset_trains_from_the_cli(compose_cfg, preset, tmp_path):
    cfg = compose_cfg(f"hparams={preset}")
    try:
        if "PettingZooSpec" in cfg.env._target_:  # a PettingZoo game module, not a Gymnasium id
            pytest.importorskip(cfg.env.id.rpartition(".")[0].split(".")[0])
        else:
            register_family(cfg.env.id)  # MiniGrid and ALE ids register when their package is imported
            gym.make(cfg.env.id).close()
    except gym.error.DependencyNotInstalled as e:
        pytest.skip(f"{preset}: {cfg.env.id} needs an optional dependency that is not installed ({e})")
    run = run_cli if preset == FRESH_PROCESS_PRESET else run_cli_in_process
    result = run(
        f"hparams={preset}", f"total_steps={BUDGET}", *rollout_overrides(cfg), *evaluation_overrides(cfg), "eval.episodes=1",
        "logger=none", "progress=false", f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["env_id"] == cfg.env.id
    assert BUDGET <= summary["steps"] <= 2 * BUDGET
    assert math.isfinite(summary["eval_return_mean"])

"""Torch-native classic-control envs: step-by-step parity with Gymnasium's own envs
(through SyncVectorEnv + RecordEpisodeStatistics, so autoreset, time limit and episode
statistics are compared too), NEXT_STEP autoreset, seeding, and the factory."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import vector as vw

from rlexp.errors import ConfigError
from rlexp.envs.torch_native import TORCH_ENVS, make_torch_env

ENV_IDS = list(TORCH_ENVS)
PI = math.pi

# Start states spread over (and past) the region an episode visits, so that
# termination, wrapping and clipping are all exercised; (low, high) per state column.
BROAD_STATES = {
    "CartPole-v1": ([-2.4, -2.0, -0.21, -2.0], [2.4, 2.0, 0.21, 2.0]),
    "Acrobot-v1": ([-PI, -PI, -4 * PI, -9 * PI], [PI, PI, 4 * PI, 9 * PI]),
    "MountainCar-v0": ([-1.2, -0.07], [0.5, 0.07]),
    "MountainCarContinuous-v0": ([-1.2, -0.07], [0.45, 0.07]),
    "Pendulum-v1": ([-3 * PI, -8.0], [3 * PI, 8.0]),
}
# Box actions are drawn past the bounds to check the envs' own clipping.
ACTION_RANGE = {"MountainCarContinuous-v0": 1.5, "Pendulum-v1": 3.0}
# Gymnasium keeps MountainCarContinuous's state in float32, so a free-running float64
# copy drifts away by float32 rounding (about 1e-5 after 70 steps); for it the torch
# state is copied into Gymnasium's before every step, which checks each step exactly.
LOCKSTEP = {"MountainCarContinuous-v0"}
# Short limits so that truncation happens in the test as well as termination.
PARITY_LIMIT = {"CartPole-v1": 60, "Acrobot-v1": 60, "MountainCar-v0": 80, "MountainCarContinuous-v0": 80, "Pendulum-v1": 50}
INITIAL_RANGES = {  # Gymnasium's reset distributions
    "CartPole-v1": ([-0.05] * 4, [0.05] * 4),
    "Acrobot-v1": ([-0.1] * 4, [0.1] * 4),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "MountainCarContinuous-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "Pendulum-v1": ([-PI, -1.0], [PI, 1.0]),
}


def broad_states(env_id: str, rng: np.random.Generator, n: int) -> np.ndarray:
    low, high = BROAD_STATES[env_id]
    return rng.uniform(low, high, size=(n, len(low)))


def random_actions(env_id: str, space: gym.Space, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=n)
    bound = ACTION_RANGE[env_id]
    return rng.uniform(-bound, bound, size=(n, 1)).astype(np.float32)


def gym_state(env: gym.Env) -> np.ndarray:
    return np.asarray(env.unwrapped.state, dtype=np.float64)


def assert_within(states: torch.Tensor, low, high) -> None:
    low = torch.tensor(low, dtype=states.dtype)
    high = torch.tensor(high, dtype=states.dtype)
    assert bool(((states >= low) & (states <= high)).all()), states


@pytest.mark.parametrize("sync_free", [False, True], ids=["host-reads", "sync-free"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_parity_with_gymnasium(env_id: str, sync_free: bool) -> None:
    """Free-running comparison over 300 vector steps (LOCKSTEP envs: re-synced every
    step); where an episode ends, the torch env's reset state (or a fresh broad one) is
    copied into both. ``sync_free`` is the step CUDA uses (no host reads: every sub-env
    draws a reset state, episode info on every step), run here on the CPU."""
    n, steps, limit = 32, 300, PARITY_LIMIT[env_id]
    rng = np.random.default_rng(0)
    ref = vw.RecordEpisodeStatistics(gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", max_episode_steps=limit))
    subenvs = ref.unwrapped.envs
    env = make_torch_env(env_id, n, "cpu", seed=0, dtype=torch.float64, max_episode_steps=limit)
    env.sync_free = sync_free
    ref.reset(seed=0)
    env.reset(seed=0)
    start = broad_states(env_id, rng, n)
    env.set_state(start)
    for i, sub in enumerate(subenvs):
        sub.unwrapped.state = start[i].copy()

    counts = {"terminated": 0, "truncated": 0, "episodes": 0}
    resetting = np.zeros(n, dtype=bool)
    for t in range(steps):
        if env_id in LOCKSTEP:
            for i in np.flatnonzero(~resetting):
                subenvs[i].unwrapped.state = env.state[i].numpy().copy()
        actions = random_actions(env_id, env.single_action_space, rng, n)
        # Gymnasium computes with the action's dtype (Pendulum's torque term in float32
        # for float32 actions); the same values as float64 keep its arithmetic float64
        ref_obs, ref_reward, ref_term, ref_trunc, ref_info = ref.step(actions.astype(np.float64) if actions.dtype == np.float32 else actions)
        obs, reward, term, trunc, info = env.step(torch.as_tensor(actions))
        where = f"{env_id} step {t}"

        np.testing.assert_array_equal(term.numpy(), ref_term, err_msg=where)
        np.testing.assert_array_equal(trunc.numpy(), ref_trunc, err_msg=where)
        np.testing.assert_allclose(reward.numpy(), ref_reward, rtol=0, atol=1e-5, err_msg=where)
        live = ~resetting  # on reset steps each side drew its own initial state
        np.testing.assert_allclose(obs.numpy()[live], ref_obs[live], rtol=0, atol=1e-5, err_msg=where)
        ref_states = np.stack([gym_state(sub) for sub in subenvs])
        np.testing.assert_allclose(env.state.numpy()[live], ref_states[live], rtol=0, atol=1e-5, err_msg=where)

        if sync_free:
            assert "_episode" in info, where  # on every step, all false when no episode ended
            if "_episode" not in ref_info:
                assert not info["_episode"].any(), where
        else:
            assert ("_episode" in info) == ("_episode" in ref_info), where
        if "_episode" in ref_info:
            done = ref_info["_episode"]
            np.testing.assert_array_equal(info["_episode"].numpy(), done, err_msg=where)
            np.testing.assert_allclose(info["episode"]["r"].numpy()[done], ref_info["episode"]["r"][done], atol=1e-4, err_msg=where)
            np.testing.assert_array_equal(info["episode"]["l"].numpy()[done], ref_info["episode"]["l"][done], err_msg=where)

        if resetting.any():
            assert (reward.numpy()[resetting] == 0).all() and not term.numpy()[resetting].any() and not trunc.numpy()[resetting].any()
            assert_within(env.state[torch.as_tensor(resetting)], *INITIAL_RANGES[env_id])
            # re-sync: half the reset sub-envs keep the torch env's draw, half start broad
            state = env.state.numpy().copy()
            fresh = resetting & (rng.random(n) < 0.5)
            state[fresh] = broad_states(env_id, rng, n)[fresh]
            env.set_state(state, mask=torch.as_tensor(resetting))
            for i in np.flatnonzero(resetting):
                subenvs[i].unwrapped.state = state[i].copy()

        counts["terminated"] += int(ref_term.sum())
        counts["truncated"] += int(ref_trunc.sum())
        counts["episodes"] += int(ref_info.get("_episode", np.zeros(1)).sum())
        resetting = ref_term | ref_trunc
    ref.close()
    # the run must have exercised both ways an episode ends (Pendulum never terminates)
    assert counts["truncated"] > 0 and counts["episodes"] > 0, counts
    assert counts["terminated"] > 0 or env_id == "Pendulum-v1", counts


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_float32_one_step_matches_gymnasium(env_id: str) -> None:
    """The default float32 path: one step from many states agrees with Gymnasium."""
    n = 256
    rng = np.random.default_rng(1)
    env = make_torch_env(env_id, n, "cpu", seed=0)
    states = broad_states(env_id, rng, n)
    actions = random_actions(env_id, env.single_action_space, rng, n)
    env.set_state(states)
    obs, reward, term, _, _ = env.step(torch.as_tensor(actions))
    assert obs.dtype == torch.float32 and reward.dtype == torch.float32 and term.dtype == torch.bool
    ref = gym.make(env_id).unwrapped
    for i in range(n):
        ref.reset(seed=i)  # clears per-episode bookkeeping (CartPole's steps_beyond_terminated)
        ref.state = states[i].astype(np.float64)
        ref_obs, ref_reward, ref_term, _, _ = ref.step(actions[i])
        np.testing.assert_allclose(obs[i].numpy(), ref_obs, rtol=1e-5, atol=1e-4, err_msg=f"{env_id} env {i}")
        assert abs(float(reward[i]) - ref_reward) < 1e-4 and bool(term[i]) == ref_term, (i, float(reward[i]), ref_reward)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_and_limits_match_gymnasium(env_id: str) -> None:
    env = make_torch_env(env_id, 3, "cpu")
    ref = gym.make(env_id)
    assert env.single_observation_space == ref.observation_space
    assert env.single_action_space == ref.action_space
    assert env.max_episode_steps == gym.spec(env_id).max_episode_steps
    assert env.observation_space == gym.vector.utils.batch_space(ref.observation_space, 3)
    assert env.action_space == gym.vector.utils.batch_space(ref.action_space, 3)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_draws_from_initial_ranges_and_seed_reproduces(env_id: str) -> None:
    n = 4096
    env = make_torch_env(env_id, n, "cpu", seed=3)
    obs, info = env.reset(seed=7)
    assert info == {} and obs.shape == (n,) + env.single_observation_space.shape and obs.dtype == torch.float32
    low, high = INITIAL_RANGES[env_id]
    assert_within(env.state, low, high)
    spread = env.state.amax(0) - env.state.amin(0)
    width = torch.tensor(high) - torch.tensor(low)
    assert torch.allclose(spread, width.float(), rtol=0.01, atol=0), (spread, width)  # spans the whole range

    again, _ = make_torch_env(env_id, n, "cpu").reset(seed=7)
    torch.testing.assert_close(obs, again, rtol=0, atol=0)
    other, _ = env.reset(seed=8)
    assert not torch.equal(obs, other)
    # no seed: the stream continues, so a second reset differs from the first
    first, _ = env.reset(seed=7)
    second, _ = env.reset()
    torch.testing.assert_close(first, obs, rtol=0, atol=0)
    assert not torch.equal(first, second)


def test_reset_options_bounds() -> None:
    env = make_torch_env("CartPole-v1", 1000, "cpu", seed=0)
    env.reset(options={"low": -0.2, "high": 0.2})
    assert_within(env.state, [-0.2] * 4, [0.2] * 4)
    assert float(env.state.abs().max()) > 0.15
    pendulum = make_torch_env("Pendulum-v1", 1000, "cpu", seed=0)
    pendulum.reset(options={"x_init": 0.5, "y_init": 0.25})
    assert_within(pendulum.state, [-0.5, -0.25], [0.5, 0.25])
    with pytest.raises(ValueError):
        env.reset(options={"low": 1.0, "high": -1.0})


def test_trajectories_reproducible_across_autoresets() -> None:
    """Same seed and actions: identical trajectories, autoreset draws included."""
    runs = []
    for _ in range(2):
        env = make_torch_env("CartPole-v1", 64, "cpu", seed=11)
        obs, _ = env.reset()
        actions = torch.Generator().manual_seed(5)
        trajectory = [obs]
        for _ in range(100):
            obs, *_ = env.step(torch.randint(0, 2, (64,), generator=actions))
            trajectory.append(obs)
        runs.append(torch.stack(trajectory))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_next_step_autoreset_semantics() -> None:
    """Done step: true final obs and the episode's reward. Next step: reset obs,
    reward 0, terminated/truncated False, the action ignored. Other sub-envs step on."""
    falling = [0.0, 0.0, 0.2, 2.0]  # pole past 12 degrees after one step
    upright = [0.0, 0.0, 0.0, 0.0]
    results = []
    for reset_step_action in (0, 1):
        env = make_torch_env("CartPole-v1", 2, "cpu", seed=0)
        env.reset()
        env.set_state(torch.tensor([falling, upright]))
        obs, reward, term, trunc, info = env.step(torch.tensor([1, 1]))
        assert term.tolist() == [True, False] and trunc.tolist() == [False, False]
        assert reward.tolist() == [1.0, 1.0]
        assert float(obs[0, 2]) > 0.2  # the final observation, not a reset one
        assert info["_episode"].tolist() == [True, False]
        assert info["episode"]["r"].tolist() == [1.0, 0.0] and info["episode"]["l"].tolist() == [1, 0]

        obs, reward, term, trunc, info = env.step(torch.tensor([reset_step_action, 1]))
        assert reward.tolist() == [0.0, 1.0] and term.tolist() == [False, False] and trunc.tolist() == [False, False]
        assert bool((obs[0].abs() <= 0.05).all())  # a fresh initial state
        assert env.elapsed_steps.tolist() == [0, 2] and info == {}
        results.append(obs)
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)  # action 0 or 1: same reset

    # the first real step of the new episode counts as step 1 again
    _, reward, _, _, _ = env.step(torch.tensor([0, 0]))
    assert env.elapsed_steps.tolist() == [1, 3] and reward.tolist() == [1.0, 1.0]


def test_truncation_and_episode_statistics() -> None:
    env = make_torch_env("Pendulum-v1", 3, "cpu", seed=0, max_episode_steps=4)
    env.reset()
    returns = torch.zeros(3, dtype=torch.float32)
    for t in range(1, 5):
        _, reward, term, trunc, info = env.step(torch.zeros(3, 1))
        returns += reward
        assert not term.any()
        assert trunc.all() == (t == 4) and ("episode" in info) == (t == 4)
    torch.testing.assert_close(info["episode"]["r"], returns)
    assert info["episode"]["l"].tolist() == [4, 4, 4] and info["_episode"].all()
    _, reward, _, trunc, info = env.step(torch.zeros(3, 1))  # the reset step
    assert reward.tolist() == [0.0, 0.0, 0.0] and not trunc.any() and info == {}
    for _ in range(3):
        _, _, _, trunc, info = env.step(torch.zeros(3, 1))
    assert not trunc.any()
    _, reward, _, trunc, info = env.step(torch.zeros(3, 1))
    assert trunc.all() and info["episode"]["l"].tolist() == [4, 4, 4]  # the reset step is not counted


def test_reset_mask_resets_only_masked() -> None:
    env = make_torch_env("MountainCar-v0", 3, "cpu", seed=0)
    env.reset()
    env.set_state(torch.tensor([[0.1, 0.01], [0.2, 0.02], [0.3, 0.03]]))
    env.step(torch.tensor([1, 1, 1]))
    before = env.state.clone()
    env.reset(options={"reset_mask": torch.tensor([False, True, False])})
    assert torch.equal(env.state[[0, 2]], before[[0, 2]])
    assert env.elapsed_steps.tolist() == [1, 0, 1] and float(env.state[1, 1]) == 0.0


def test_actions_accepted_as_numpy_and_wrong_count_rejected() -> None:
    env = make_torch_env("Pendulum-v1", 4, "cpu", seed=0)
    env.reset()
    obs, *_ = env.step(np.zeros((4, 1), dtype=np.float32))
    assert isinstance(obs, torch.Tensor)
    with pytest.raises(ValueError, match="one action per sub-env"):
        env.step(torch.zeros(3, 1))
    with pytest.raises(RuntimeError, match="reset"):
        make_torch_env("CartPole-v1", 2, "cpu").step(torch.zeros(2, dtype=torch.long))


def test_env_options_pass_through() -> None:
    env = make_torch_env("CartPole-v1", 2, "cpu", seed=0, sutton_barto_reward=True)
    env.reset()
    env.set_state(torch.tensor([[0.0, 0.0, 0.2, 2.0], [0.0, 0.0, 0.0, 0.0]]))
    _, reward, term, _, _ = env.step(torch.tensor([1, 1]))
    assert term.tolist() == [True, False] and reward.tolist() == [-1.0, 0.0]
    assert make_torch_env("Pendulum-v1", 1, "cpu", g=9.81).g == 9.81
    assert make_torch_env("Acrobot-v1", 1, "cpu", dtype="float64").dtype == torch.float64


def test_factory_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="LunarLander-v3") as excinfo:
        make_torch_env("LunarLander-v3", 4, "cpu")
    assert excinfo.value.key == "id"
    for env_id in ENV_IDS:
        assert env_id in excinfo.value.message
    with pytest.raises(ConfigError) as excinfo:
        make_torch_env("CartPole-v1", 4, "cpu", no_such_option=1)
    assert excinfo.value.key == "make_kwargs"
    with pytest.raises(ConfigError) as excinfo:
        make_torch_env("CartPole-v1", 0, "cpu")
    assert excinfo.value.key == "num_envs"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError) as excinfo:
            make_torch_env("CartPole-v1", 4, "cuda")
        assert excinfo.value.key == "device"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_runs_on_cuda(env_id: str) -> None:
    n = 1024
    env = make_torch_env(env_id, n, "cuda", seed=0, max_episode_steps=20)
    obs, _ = env.reset()
    assert obs.device.type == "cuda" and env.state.device.type == "cuda"
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(45):  # past the time limit twice: autoresets and statistics on the device
        actions = random_actions(env_id, env.single_action_space, rng, n)
        obs, reward, term, trunc, info = env.step(torch.as_tensor(actions, device="cuda"))
        assert all(x.device.type == "cuda" for x in (obs, reward, term, trunc))
        if "episode" in info:
            assert info["episode"]["r"].device.type == "cuda" and info["_episode"].device.type == "cuda"
            episodes += int(info["_episode"].sum())
    assert episodes >= n
    # one step from the same states agrees with the float64 CPU env
    cpu = make_torch_env(env_id, n, "cpu", seed=0, dtype=torch.float64)
    cpu.set_state(env.state.cpu())
    env.set_state(env.state.clone())  # clears pending autoresets on the CUDA side too
    actions = random_actions(env_id, env.single_action_space, rng, n)
    obs, reward, *_ = env.step(torch.as_tensor(actions, device="cuda"))
    cpu_obs, cpu_reward, *_ = cpu.step(torch.as_tensor(actions))
    torch.testing.assert_close(obs.cpu(), cpu_obs, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(reward.cpu().double(), cpu_reward, rtol=1e-5, atol=1e-4)

"""Recurrent policies (network.recurrent): the sequence forward pass re-runs exactly what
collection did, resets block state and gradient at episode starts, padding never reaches a
loss, and a recurrent run trains, checkpoints, resumes and is evaluated with its own state."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import run_cli, run_cli_in_process
from rlexp.networks import ActorCritic
from rlexp.networks.recurrent import RecurrentCore
from rlexp.data.rollout import Sequences, sequence_minibatches

SMALL = ("hparams=ppo_lstm_cartpole_novel", "logger=none", "progress=false", "eval.every_steps=0", "eval.episodes=2")


def collected_trainer(compose_cfg, tmp_path, *overrides):
    """A trainer that has collected two rollouts (the second starts from a carried state)."""
    from rlexp.run.trainer import Trainer

    trainer = Trainer(compose_cfg(*SMALL, *overrides), tmp_path)
    trainer.collector.reset(seed=0)
    for _ in range(2):
        trainer.collector.collect()
    return trainer, trainer.collector.bootstrap_value()


@pytest.mark.parametrize("core", ["lstm", "gru"])
def test_sequence_forward_reproduces_collection(compose_cfg, tmp_path, core):
    # 64 steps per env of an untrained policy on CartPole: episodes of ~10-40 steps, so every
    # sequence crosses several resets (and the autoreset steps Gymnasium inserts)
    trainer, _ = collected_trainer(compose_cfg, tmp_path, f"network.recurrent={core}", "algo.n_steps=64", "algo.batch_size=128")
    rollout = trainer.rollout
    assert int(rollout.starts[1:].sum()) >= 8
    assert not bool(rollout.states[0].eq(0).all()), "the second rollout starts from the carried state"
    batch = rollout.batch()
    with torch.no_grad():
        log_prob, _, value = trainer.policy.evaluate_actions(batch.obs, batch.actions, batch.seq)
    assert len(batch) == int(rollout.valid_env.sum()) < 64 * 8  # autoreset steps left out
    torch.testing.assert_close(log_prob, batch.log_probs, atol=1e-5, rtol=0)
    torch.testing.assert_close(value, batch.values, atol=1e-5, rtol=0)
    # chunks of 16 steps re-run from the state stored at their first step give the same numbers
    seen = 0
    for minibatch in sequence_minibatches(rollout, 16, 64, generator=torch.Generator().manual_seed(0)):
        assert minibatch.seq.mask.shape == (16, 4)
        with torch.no_grad():
            log_prob, _, value = trainer.policy.evaluate_actions(minibatch.obs, minibatch.actions, minibatch.seq)
        torch.testing.assert_close(log_prob, minibatch.log_probs, atol=1e-5, rtol=0)
        torch.testing.assert_close(value, minibatch.values, atol=1e-5, rtol=0)
        seen += len(minibatch)
    assert seen == len(batch)
    trainer.close()


def test_starts_are_the_steps_after_autoreset(compose_cfg, tmp_path):
    """A state is zeroed before the first observation of each episode: the step after
    Gymnasium's autoreset step (valid=False), and at the first step after the collector's reset."""
    trainer, _ = collected_trainer(compose_cfg, tmp_path, "algo.n_steps=64", "algo.batch_size=128")
    rollout = trainer.rollout
    invalid = ~rollout.valid_env
    torch.testing.assert_close(rollout.starts[1:], invalid[:-1])
    trainer.close()


def hand_built(core: str, hidden: int = 8):
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (3,))
    policy = ActorCritic(space, gym.spaces.Discrete(2), recurrent=core, recurrent_size=hidden, hidden_sizes=[16])
    steps, n = 6, 2
    obs = torch.randn(steps, n, 3, requires_grad=True)
    starts = torch.zeros(steps, n, dtype=torch.bool)
    starts[3, 0] = True  # env 0: a new episode at step 3; env 1 runs on
    state = torch.randn(n, policy.state_rows, hidden)
    return policy, obs, starts, state


@pytest.mark.parametrize("core", ["lstm", "gru"])
def test_no_gradient_crosses_an_episode_start(core):
    policy, obs, starts, state = hand_built(core)
    mask = torch.zeros_like(starts)
    mask[3:, 0] = True  # a loss on env 0's new episode only
    seq = Sequences(obs, starts, state, mask)
    log_prob, _, value = policy.evaluate_actions(None, torch.zeros(int(mask.sum()), dtype=torch.long), seq)
    (log_prob.sum() + value.sum()).backward()
    grad = obs.grad
    assert grad[:3, 0].abs().sum() == 0  # the previous episode of env 0: nothing
    assert grad[3:, 0].abs().sum() > 0
    assert grad[:, 1].abs().sum() == 0  # the other env takes no part
    # and without the start, the same loss does reach back
    obs.grad = None
    starts[3, 0] = False
    log_prob, _, value = policy.evaluate_actions(None, torch.zeros(int(mask.sum()), dtype=torch.long), Sequences(obs, starts, state, mask))
    (log_prob.sum() + value.sum()).backward()
    assert obs.grad[:3, 0].abs().sum() > 0


def test_a_start_is_a_zero_state():
    """After a start the outputs equal a fresh run from zeros, whatever came before."""
    core = RecurrentCore("lstm", 3, 5, num_layers=2)
    x = torch.randn(7, 2, 3)
    starts = torch.zeros(7, 2, dtype=torch.bool)
    starts[4] = True
    out, _ = core(x, torch.randn(2, core.rows, 5), starts)
    fresh, _ = core(x[4:], torch.zeros(2, core.rows, 5), torch.zeros(3, 2, dtype=torch.bool))
    torch.testing.assert_close(out[4:], fresh)
    # one step at a time (collection) equals the whole sequence at once (the update)
    state, outs = torch.randn(2, core.rows, 5), []
    whole, final = core(x, state, starts)
    for t in range(7):
        out_t, state = core(x[t : t + 1], state, starts[t : t + 1])
        outs.append(out_t)
    torch.testing.assert_close(torch.cat(outs), whole)
    torch.testing.assert_close(state, final)


def test_padding_never_changes_a_loss(compose_cfg, tmp_path):
    """Steps outside the mask (autoreset steps) may hold anything: the PPO loss is the same."""
    trainer, _ = collected_trainer(compose_cfg, tmp_path, "algo.n_steps=64", "algo.batch_size=128")
    rollout = trainer.rollout
    invalid = ~rollout.valid_env
    assert bool(invalid.any())
    batch = rollout.batch()
    torch.manual_seed(0)
    before = {k: float(v.detach()) for k, v in trainer.algo.loss(batch).items()}
    rollout.obs[invalid] = torch.randn(int(invalid.sum()), rollout.obs.shape[-1]) * 100
    rollout.actions[invalid] = 1 - rollout.actions[invalid]
    rollout.advantages[invalid] = 1e6
    rollout.returns[invalid] = -1e6
    after = {k: float(v.detach()) for k, v in trainer.algo.loss(rollout.batch()).items()}
    assert before == pytest.approx(after, abs=1e-6)
    trainer.close()


def test_one_update_trains_both_cores(compose_cfg, tmp_path):
    """One PPO update through the sequence forward pass changes the actor's and the critic's
    LSTM weights; its first minibatch re-runs the collecting policy (KL 0); the numpy fast path,
    which is feed-forward only, stays off."""
    trainer, last_value = collected_trainer(compose_cfg, tmp_path)
    assert trainer.backend is None
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    metrics = trainer.algo.update(trainer.rollout, last_value, progress_remaining=1.0)
    after = trainer.policy.state_dict()
    for name in ("actor_core.rnn.weight_hh_l0", "critic_core.rnn.weight_hh_l0"):
        assert not torch.equal(before[name], after[name]), name
    assert metrics["train/first_minibatch_kl"] == pytest.approx(0.0, abs=1e-6)  # the re-run is the collecting policy
    trainer.close()


@pytest.mark.parametrize("override, message", [
    ("network.recurrent=rnn", "network.recurrent: must be null, lstm or gru, got 'rnn'"),
    ("network.recurrent_size=0", "network.recurrent_size: must be a positive int, got 0"),
    ("network.recurrent_layers=0", "network.recurrent_layers: must be a positive int, got 0"),
    ("algo.sequence_length=5", "algo.sequence_length: must divide n_steps = 32"),
    ("fast_cpu=true", "fast_cpu: cannot be used here: it implements feed-forward policies only"),
    ("env.id=Acrobot-v1 env.mask_velocity=true", None),
])
def test_bad_settings_fail_in_one_line(tmp_path, override, message):
    """The command's main() in this process (conftest.run_cli_in_process), but for the first case,
    started as a command of its own."""
    run = run_cli if override == "network.recurrent=rnn" else run_cli_in_process
    result = run(*SMALL, "total_steps=64", *override.split(), f"hydra.run.dir={tmp_path / 'run'}")
    if message is None:  # Acrobot's velocities are known: that one runs
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("rlexp-train: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_mask_velocity_unknown_env_and_observations(compose_cfg):
    from rlexp.builders import build
    from rlexp.errors import ConfigError

    cfg = compose_cfg("env=cartpole", "env.mask_velocity=true")
    env = build("env", cfg.env).make(num_envs=2)
    obs, _ = env.reset(seed=3)
    full = gym.make("CartPole-v1")
    first, _ = full.reset(seed=3)
    np.testing.assert_array_equal(obs[0], first[[0, 2]])  # x and theta: the velocities are gone
    assert env.single_observation_space.shape == (2,)
    env.close()
    with pytest.raises(ConfigError, match="mask_velocity: knows the velocity entries of .*not 'FrozenLake-v1'"):
        build("env", compose_cfg("env=frozenlake", "env.mask_velocity=true").env)


def play_with_predict(agent, seed: int, episodes: int, carry: bool = True) -> tuple[np.ndarray, list]:
    """(returns, actions of every step) of one CartPole-v1 episode per env (seeds seed, seed+1, ...,
    as a vector env's reset(seed) gives them), played by ``agent.predict`` on the position entries
    with the state it returns passed back at every step (``carry=False``: a fresh state at every
    step); the batch keeps its size (an ended env's rows are ignored)."""
    envs = [gym.make("CartPole-v1") for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns, done, played = np.zeros(episodes), np.zeros(episodes, dtype=bool), []
    state, starts = None, np.ones(episodes, dtype=bool)
    while not done.all():
        actions, state = agent.predict(obs[:, [0, 2]], state=state if carry else None, episode_start=starts)
        starts = np.zeros(episodes, dtype=bool) if carry else starts
        played.append([int(a) if not d else None for a, d in zip(actions, done)])
        for i, env in enumerate(envs):
            if not done[i]:
                obs[i], reward, terminated, truncated, _ = env.step(int(actions[i]))
                returns[i] += reward
                done[i] = terminated or truncated
    return returns, played


def test_recurrent_run_checkpoints_resumes_and_evaluates(tmp_path):
    run = tmp_path / "run"
    first = run_cli_in_process(*SMALL, "total_steps=1024", "checkpoint.every_updates=1", f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr
    assert json.loads((run / "summary.json").read_text())["steps"] == 1024
    again = run_cli_in_process(f"resume={run}", "total_steps=2048")
    assert again.returncode == 0, again.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2048 and summary["status"] == "finished"

    import rlexp

    agent = rlexp.load(run)
    returns = agent.evaluate(episodes=3, seed=5)
    # the episodes evaluate played are those the agent plays when it carries its own state from
    # step to step through predict (on plain CartPole-v1 without the velocities, the same seeds)
    assert returns.shape == (3,)
    carried, _ = play_with_predict(agent, seed=5, episodes=3)
    np.testing.assert_array_equal(returns, carried)
    # After 2048 steps the greedy actions hardly hang on the state (often one action throughout),
    # so the same once more with large random weights in the actor's core, torso and head, where
    # they do: dropping the state plays other games
    torch.manual_seed(0)
    policy = agent.policy
    with torch.no_grad():
        for param in policy.actor_core.parameters():
            param.normal_(0.0, 1.0)
        for layer in [*policy.actor_body.modules(), policy.action_head.output_layer]:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, 1.0)
                layer.bias.zero_()
    carried, carried_actions = play_with_predict(agent, seed=5, episodes=3)
    _, stateless_actions = play_with_predict(agent, seed=5, episodes=3, carry=False)
    assert carried_actions != stateless_actions, "the test's policy does not depend on its state"
    np.testing.assert_array_equal(agent.evaluate(episodes=3, seed=5), carried)
    # rlexp-eval plays the same episodes with a state per eval env: the same return (its main() in this process)
    out = run_cli_in_process(str(run), "episodes=3", "seed=5", module="rlexp.cli.evaluate")
    assert out.returncode == 0, out.stderr
    assert f"return {returns.mean():.2f} +/- {returns.std():.2f} over 3 deterministic episodes" in out.stdout
    # predict carries the state it is given, as SB3's recurrent predict
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    action, state = agent.predict(obs[[0, 2]], state=None, episode_start=True)
    assert action in (0, 1) and state is not None
    _, state2 = agent.predict(obs[[0, 2]], state=state, episode_start=False)
    assert not torch.equal(torch.as_tensor(state2), torch.as_tensor(state))

"""Several agents: PettingZoo's Parallel and AEC games as rows of a batch (rlexp/envs/multiagent.py)
and self-play against past selves (rlexp/run/selfplay.py), on toy games with hand-worked answers
(tests/ma_toys.py) and on connect_four."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

import rlexp  # noqa: E402
from rlexp.config import compose_config  # noqa: E402
from rlexp.data.returns import gae  # noqa: E402
from rlexp.envs.multiagent import PettingZooSpec, connect_four_lookahead, winning_columns  # noqa: E402
from rlexp.run.checkpoint import load_checkpoint  # noqa: E402
from rlexp.run.trainer import Trainer  # noqa: E402

from conftest import ROOT, run_cli_in_process  # noqa: E402

QUIET = ["logger=none", "progress=false", "diagnostics=off"]


def test_a_shared_policy_learns_to_act_on_what_only_the_other_agent_sees(tmp_path):
    # the listener's reward depends on a bit only the speaker sees: 1 when they read each
    # other (the optimum), 0.5 when the listener guesses (ma_toys.SpeakerListener)
    result = rlexp.train(["env=pettingzoo", "env.id=ma_toys:SpeakerListener", "env.num_envs=8", "total_steps=40000",
                          "algo.n_steps=64", "algo.batch_size=256", "algo.gamma=0.9", "eval.every_steps=40000",
                          "eval.episodes=100", "seed=3", *QUIET], run_dir=tmp_path / "run")
    assert result["eval_return_mean"] >= 0.95, result["eval_return_mean"]


@pytest.mark.slow  # the default suite checks the routing (the next test) and shared-policy learning
def test_two_mapped_policies_learn_to_talk_to_each_other(tmp_path):
    # the speaker and the listener each with a network of its own (env.policies)
    result = rlexp.train(["env=pettingzoo", "env.id=ma_toys:SpeakerListener", "env.policies=[speaker:talk,listener:hear]",
                          "env.num_envs=8", "total_steps=40000", "algo.n_steps=64", "algo.batch_size=256", "algo.gamma=0.9",
                          "eval.every_steps=40000", "eval.episodes=100", "seed=3", *QUIET], run_dir=tmp_path / "run")
    assert result["eval_return_mean"] >= 0.95, result["eval_return_mean"]
    assert result.summary["info_metrics"]["eval/return/talk"] >= 0.95


@contextlib.contextmanager
def rollout_of(tmp_path, *overrides):
    """A trainer of ``env=pettingzoo`` with ``overrides`` that has collected one rollout (closed after)."""
    trainer = Trainer(compose_config(["env=pettingzoo", *overrides, *QUIET]), tmp_path / "run")
    try:
        trainer.collector.reset(seed=0)
        trainer.collector.collect()
        yield trainer
    finally:
        trainer.close()


def test_an_agent_that_leaves_is_out_of_the_loss_until_the_game_restarts(tmp_path):
    # one game of two rows: the stayer plays steps 0-4 (1 a step), the leaver steps 0-1 (10 a
    # step); step 5 is the game's reset. Rows of a departed agent are stored as invalid.
    with rollout_of(tmp_path, "env.id=ma_toys:EarlyLeaver", "env.num_envs=1", "env.agent_id_input=false",
                    "algo.n_steps=12", "algo.batch_size=12", "total_steps=24") as trainer:
        rollout = trainer.rollout
        valid = rollout.valid_env.cpu().numpy().astype(int)
        stayer, leaver = [1, 1, 1, 1, 1, 0] * 2, [1, 1, 0, 0, 0, 0] * 2
        assert valid[:, 0].tolist() == stayer and valid[:, 1].tolist() == leaver
        rewards = rollout.rewards_env.cpu().numpy()
        assert rewards[:, 0].tolist() == [1, 1, 1, 1, 1, 0] * 2
        assert rewards[:, 1][valid[:, 1] == 1].tolist() == [10] * 4
        # the batch the losses see holds the valid rows only: 2 x (5 + 2)
        assert int(rollout.valid_env.sum()) == 14
        batch = rollout.batch()
        assert len(batch.actions) == 14
        # Monte Carlo targets (V = 0, lambda = 1, gamma 0.5): nothing crosses the leaver's end
        zeros = torch.zeros_like(rollout.rewards_env)
        ends = rollout.terminated_env | rollout.truncated_env
        returns = gae(rollout.rewards_env, zeros, zeros, rollout.terminated_env, ends, 0.5, 1.0).cpu().numpy()
        assert returns[0, 1] == 15.0 and returns[1, 1] == 10.0
        assert returns[0, 0] == pytest.approx(1 + 0.5 + 0.25 + 0.125 + 0.0625)


def test_an_agent_that_joins_late_plays_from_the_step_after_it_arrives(tmp_path):
    # the late agent is absent at reset, arrives with step 1's observation and plays steps 2-3;
    # step 4 is the game's reset
    with rollout_of(tmp_path, "env.id=ma_toys:LateJoiner", "env.num_envs=1", "env.agent_id_input=false",
                    "algo.n_steps=10", "algo.batch_size=10", "total_steps=20") as trainer:
        valid = trainer.rollout.valid_env.cpu().numpy().astype(int)
        assert valid[:, 0].tolist() == [1, 1, 1, 1, 0] * 2
        assert valid[:, 1].tolist() == [0, 0, 1, 1, 0] * 2
        rewards = trainer.rollout.rewards_env.cpu().numpy()
        assert rewards[:, 1][valid[:, 1] == 1].tolist() == [10] * 4


def test_each_mapped_policy_learns_from_its_own_rows_only(tmp_path):
    with rollout_of(tmp_path, "env.id=ma_toys:SpeakerListener", "env.policies=[speaker:talk,listener:hear]", "env.num_envs=4",
                    "algo.n_steps=16", "algo.batch_size=64", "total_steps=128") as trainer:
        policy = trainer.policy
        assert sorted(policy.policies) == ["hear", "talk"]
        batch = trainer.rollout.batch()
        assert policy.names == ["hear", "talk"]  # the one-hot's order: the policies' names sorted
        speaker_rows = batch.obs["policy"][:, 1] == 1
        assert int(speaker_rows.sum()) == len(speaker_rows) // 2
        # the rows the one-hot gives "talk" are the ones whose "talk" entry the env filled: the speaker's
        assert (batch.obs["talk"][speaker_rows] != 0).any(dim=1).all() and (batch.obs["talk"][~speaker_rows] == 0).all()
        assert (batch.obs["hear"][~speaker_rows] != 0).any(dim=1).all() and (batch.obs["hear"][speaker_rows] == 0).all()
        for rows, learner, other in ((speaker_rows, "talk", "hear"), (~speaker_rows, "hear", "talk")):
            policy.zero_grad(set_to_none=True)
            obs = {key: value[rows] for key, value in batch.obs.items()}
            log_prob, entropy, value = policy.evaluate_actions(obs, batch.actions[rows])
            (log_prob.sum() + entropy.sum() + value.sum()).backward()
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.policies[learner].parameters())
            assert all(p.grad is None for p in policy.policies[other].parameters())
        # the merged batch equals each policy run on its own rows, in the batch's order
        with torch.no_grad():
            log_prob, _, value = policy.evaluate_actions(batch.obs, batch.actions)
            talk = policy.policies["talk"].evaluate_actions(batch.obs["talk"][speaker_rows], batch.actions[speaker_rows])
        assert torch.equal(log_prob[speaker_rows], talk[0]) and torch.equal(value[speaker_rows], talk[2])
        before = {name: [p.clone() for p in net.parameters()] for name, net in policy.policies.items()}
        trainer.algo.update(trainer.rollout, trainer.collector.bootstrap_value(), progress_remaining=1.0)
        for name, net in policy.policies.items():  # one update moves both
            assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name


def test_per_agent_and_team_returns_reach_the_records(tmp_path):
    result = rlexp.train(["env=pettingzoo", "env.id=ma_toys:EarlyLeaver", "env.num_envs=2", "total_steps=512",
                          "algo.n_steps=32", "algo.batch_size=64", "eval.every_steps=512", "eval.episodes=2", *QUIET],
                         run_dir=tmp_path / "run")
    info = result.summary["info_metrics"] if "info_metrics" in result.summary else result.summary
    flat = {k: v for k, v in info.items() if "return/" in k}
    assert flat["rollout/return/stayer"] == 5.0 and flat["rollout/return/leaver"] == 20.0
    assert flat["rollout/return/team"] == 25.0
    assert flat["eval/return/leaver"] == 20.0
    # a trained run plays whole games from Python: one return per agent of each game
    returns = rlexp.load(result).evaluate(episodes=3)
    assert sorted(returns.tolist()) == [5.0] * 3 + [20.0] * 3


def test_a_centralised_critic_reads_the_global_state_and_the_actor_does_not():
    pytest.importorskip("mpe2")
    from rlexp.builders import build

    spec = PettingZooSpec(id="mpe2.simple_spread_v3", num_envs=2, critic_input="global_state",
                          make_kwargs={"N": 3, "max_cycles": 25, "continuous_actions": False})
    env = spec.make()
    try:
        space = env.single_observation_space
        assert space["observation"].shape == (18,) and space["agent_id"].shape == (3,) and space["state"].shape == (54,)
        obs, _ = env.reset(seed=0)
        # every row of a game carries that game's state: its three agents' observations side by side
        assert np.array_equal(obs["state"][0], np.concatenate([obs["observation"][i] for i in range(3)]))
        assert np.array_equal(obs["state"][1], obs["state"][2]) and not np.array_equal(obs["state"][2], obs["state"][3])
        cfg = compose_config(["env=simple_spread"])
        policy = build("network", cfg.network, observation_space=space, action_space=env.single_action_space)
        batch = {k: torch.as_tensor(v) for k, v in obs.items()}
        moved = dict(batch, state=batch["state"] + torch.randn_like(batch["state"]))
        with torch.no_grad():
            assert torch.equal(policy.distribution(batch).logits, policy.distribution(moved).logits)
            empty = policy.initial_state(6)
            starts = torch.ones(6, dtype=torch.bool)
            assert not torch.allclose(policy.value(batch, empty, starts), policy.value(moved, empty, starts))
    finally:
        env.close()


def nim_env(num_envs=2, opponent="random"):
    spec = PettingZooSpec(id="ma_toys:Nim", num_envs=num_envs, opponent=opponent)
    env = spec.make(training=False)
    env.unwrapped.record_moves = True
    return spec, env


def test_turn_based_games_alternate_movers_and_the_learner_s_seat():
    _, env = nim_env(num_envs=2)
    inner = env.unwrapped
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=5)
    games: list[tuple[str, list, float, int]] = []
    learner_moves = np.zeros(2, int)
    returns = np.zeros(2)
    ended = np.zeros(2, bool)
    for _ in range(60):
        mask = obs["action_mask"]
        action = (rng.random(mask.shape) * mask).argmax(axis=1)
        seats = list(inner.learner)
        obs, reward, terminated, truncated, info = env.step(action)
        returns += reward
        for c in range(2):
            if ended[c]:  # the autoreset step: a new game (the opponent may have opened it)
                assert reward[c] == 0 and not terminated[c]
                ended[c] = False
                continue
            learner_moves[c] += 1
            if terminated[c]:
                games.append((seats[c], list(inner.moves[c]), float(returns[c]), int(learner_moves[c])))
                assert info["_episode"][c] and info["episode"]["r"][c] == returns[c]
            if terminated[c] or truncated[c]:
                returns[c], learner_moves[c], ended[c] = 0.0, 0, True
    assert len(games) >= 10
    for seat, moves, ret, n_learner in games:
        movers = [agent for agent, _ in moves]
        assert all(a != b for a, b in zip(movers, movers[1:])), movers  # turns alternate
        assert movers[0] == "player_0"
        assert sum(take + 1 for _, take in moves) == 7  # every stone taken, the last by the winner
        assert ret == (1.0 if movers[-1] == seat else -1.0)  # the learner won iff it took the last
        assert n_learner == movers.count(seat)  # only the learner's moves were steps of its row
    seats = [seat for seat, *_ in games]
    assert {"player_0", "player_1"} <= set(seats)  # the learner plays both seats


def test_the_lookahead_player_wins_when_it_can_and_blocks_when_it_must():
    rng = np.random.default_rng(0)
    board = np.zeros((2, 6, 7, 2), np.int8)
    board[0, 5, 0:3, 0] = 1  # the mover has three in the bottom row: column 3 wins
    board[0, 4, 0:2, 1] = 1
    board[1, 5, 4, 0] = 1
    board[1, 3:6, 6, 1] = 1  # the opponent has three up column 6: block there
    mask = np.ones((2, 7), np.int8)
    for _ in range(10):
        assert connect_four_lookahead({"observation": board, "action_mask": mask}, rng).tolist() == [3, 6]
    assert winning_columns(board[1:, :, :, 1], board[1:].any(axis=3))[0].tolist() == [False] * 6 + [True]


def four_through(pieces, filled, col):
    """By hand: does a piece dropped in ``col`` make four in a row through it?"""
    rows = np.flatnonzero(~filled[:, col])
    if rows.size == 0:
        return False
    row = rows.max()
    board = pieces.copy()
    board[row, col] = True
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        count = 1
        for sign in (1, -1):
            r, c = row + sign * dr, col + sign * dc
            while 0 <= r < 6 and 0 <= c < 7 and board[r, c]:
                count, r, c = count + 1, r + sign * dr, c + sign * dc
        if count >= 4:
            return True
    return False


def test_the_batched_win_check_agrees_with_a_cell_by_cell_one():
    rng = np.random.default_rng(0)
    boards = []
    while len(boards) < 300:  # positions of legal games that nobody has won yet
        board = np.zeros((6, 7, 2), bool)
        for k in range(int(rng.integers(0, 30))):
            col = int(rng.integers(7))
            rows = np.flatnonzero(~board.any(axis=2)[:, col])
            if rows.size and not four_through(board[..., k % 2], board.any(axis=2), col):
                board[rows.max(), col, k % 2] = True
        boards.append(board)
    boards = np.stack(boards)
    for plane in (0, 1):
        got = winning_columns(boards[..., plane], boards.any(axis=3))
        want = [[four_through(b[..., plane], b.any(axis=2), c) for c in range(7)] for b in boards]
        assert got.tolist() == want
    assert np.asarray(want).any()  # some positions do have a winning move


def test_a_scripted_opponent_plays_in_the_env():
    # ma_toys-free: connect four against the lookahead; the learner playing random loses most games
    spec = PettingZooSpec(id="pettingzoo.classic.connect_four_v3", num_envs=20,
                          opponent="rlexp.envs.multiagent:connect_four_lookahead")
    env = spec.make(training=False)
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=0)
    outcomes = []
    while len(outcomes) < 40:
        mask = obs["action_mask"]
        obs, reward, terminated, truncated, info = env.step((rng.random(mask.shape) * mask).argmax(axis=1))
        if "_episode" in info:
            outcomes += info["episode"]["r"][info["_episode"]].tolist()
    env.close()
    assert np.mean(np.asarray(outcomes) < 0) > 0.7


def test_self_play_trains_and_reports_rates_per_opponent(tmp_path):
    result = rlexp.train(["env=pettingzoo", "env.id=ma_toys:Nim", "env.num_envs=8", "total_steps=4096", "algo.n_steps=64",
                          "algo.batch_size=128", "selfplay.snapshot_every=2", "selfplay.pool_size=3",
                          "selfplay.latest_share=0.4", "selfplay.opponents=[pool,pool,random]", "eval.every_steps=4096",
                          "eval.episodes=50", "logger=tensorboard", "progress=false", "diagnostics=off"], run_dir=tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    pool = state["selfplay"]["pool"]
    assert [entry["update"] for entry in pool] == [4, 6, 8]  # 8 updates, one snapshot every 2, the last 3 kept
    assert result["eval_return_mean"] > 0.0  # against random players it wins more than it loses
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"selfplay/elo", "selfplay/win_rate/random", "selfplay/win_rate/pool", "selfplay/win_rate/latest",
            "rollout/win", "eval/win"} <= tags
    # rlexp-eval against any opponent: random, a function, or a trained run (here the run itself)
    for opponent in ("random", "ma_toys:take_one", str(tmp_path / "run")):
        out = run_cli_in_process(str(tmp_path / "run"), "episodes=40", f"opponent={opponent}", module="rlexp.cli.evaluate")
        assert out.returncode == 0, out.stderr
        rates = {key: float(out.stdout.split(f"; {key} ")[1].split(";")[0]) for key in ("win", "draw", "loss")}
        assert rates["draw"] == 0.0 and rates["win"] + rates["loss"] == pytest.approx(1.0), out.stdout
    from rlexp.run.episodes import load_trained

    policy, env, _ = load_trained(tmp_path / "run" / "checkpoints" / "last.pt", torch.device("cpu"), num_envs=2,
                                  env_overrides=[f"env.opponent={tmp_path / 'run'}"])
    opponent = env.unwrapped.opponents.network(0)  # the run's own weights play the other seat
    assert all(torch.equal(a, b) for a, b in zip(opponent.state_dict().values(), state["policy"].values()))
    env.close()
    wrong = run_cli_in_process(str(tmp_path / "run"), f"opponent={tmp_path / 'nowhere'}", module="rlexp.cli.evaluate")
    assert wrong.returncode != 0 and "env.opponent" in wrong.stderr and "Traceback" not in wrong.stderr


def test_the_snapshot_pool_survives_a_kill_and_resume(tmp_path):
    run = tmp_path / "run"
    args = ["env=pettingzoo", "env.id=ma_toys:Nim", "env.num_envs=4", "total_steps=1000000", "algo.n_steps=32",
            "algo.batch_size=64", "algo.n_epochs=1", "selfplay.snapshot_every=1", "selfplay.pool_size=3",
            "checkpoint.every_updates=1", "eval.every_steps=1000000", *QUIET, f"hydra.run.dir={run}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "rlexp.cli.train", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if last.exists():
                try:
                    if load_checkpoint(last)["updates"] >= 4:
                        break
                except Exception:  # noqa: BLE001 - caught between the temporary file and its rename: read again
                    pass
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint after 4 updates in 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = load_checkpoint(last)
    assert len(saved["selfplay"]["pool"]) == 3
    cfg = compose_config([*args[:-1], f"resume={run}", "total_steps=" + str(saved["global_step"] + 2 * 128)])
    trainer = Trainer(cfg, run)
    try:
        sp = trainer.selfplay
        assert sp.elo == saved["selfplay"]["elo"]
        assert [e["update"] for e in sp.pool] == [e["update"] for e in saved["selfplay"]["pool"]]
        for entry, kept in zip(sp.pool, saved["selfplay"]["pool"]):
            for name, tensor in entry["net"].state_dict().items():
                assert torch.equal(tensor, kept["policy"][name])
        first = saved["updates"]
        trainer.fit()
        assert [e["update"] for e in trainer.selfplay.pool] == [first, first + 1, first + 2]
    finally:
        trainer.close()


def test_agents_with_different_spaces_cannot_share_a_policy(tmp_path):
    pytest.importorskip("mpe2")
    result = run_cli_in_process("env=pettingzoo", "env.id=mpe2.simple_adversary_v3", "total_steps=64", *QUIET,
                                f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "env.id" in lines[0] and "different observation spaces" in lines[0], result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_connect_four_self_play_beats_random_and_the_lookahead(tmp_path, seed):
    run = tmp_path / "run"
    rlexp.train(["hparams=ppo_connect_four_selfplay", f"seed={seed}", *QUIET], run_dir=run)
    for opponent, at_least in (("random", 0.9), ("rlexp.envs.multiagent:connect_four_lookahead", 0.6)):
        result = run_cli_in_process(str(run), "episodes=1000", f"env.opponent={opponent}", module="rlexp.cli.evaluate")
        assert result.returncode == 0, result.stderr
        win = float(result.stdout.split("; win ")[1].split(";")[0])
        assert win >= at_least, (opponent, result.stdout)

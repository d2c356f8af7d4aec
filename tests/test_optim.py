"""rlexp.algos.optim.RMSpropTFLike, TensorFlow's RMSprop (the RL Zoo's Atari A2C), against
steps worked out by hand, and beside torch's RMSprop where the two differ."""

import pytest
import torch

import rlexp
from rlexp.algos.optim import RMSpropTFLike


def positions(optimizer_class, grads, **kwargs):
    """Where one weight starting at 0 is after each of the given gradients (lr 0.1, alpha 0.99, eps 1e-5)."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = optimizer_class([weight], **{"lr": 0.1, "alpha": 0.99, "eps": 1e-5, **kwargs})
    out = []
    for grad in grads:
        weight.grad = torch.tensor([grad])
        optimizer.step()
        out.append(weight.item())
    return out


def test_the_average_starts_at_one_and_eps_is_inside_the_root():
    # v1 = 0.99 * 1 + 0.01 * 2^2 = 1.03;        w1 = -0.1 * 2 / sqrt(1.03 + 1e-5) = -0.1970649
    # v2 = 0.99 * 1.03 + 0.01 * 1^2 = 1.0297;   w2 = w1 - 0.1 * 1 / sqrt(1.0297 + 1e-5) = -0.2956117
    assert positions(RMSpropTFLike, [2.0, 1.0]) == pytest.approx([-0.1970649, -0.2956117], abs=1e-6)


def test_eps_is_added_under_the_root():
    # alpha 0 keeps only the last gradient: v = g^2 = 1e-6, so the step is
    # 0.1 * 1e-3 / sqrt(1e-6 + 1e-5) = 0.0301511 (torch's: 0.1 * 1e-3 / (1e-3 + 1e-5) = 0.0990099)
    assert positions(RMSpropTFLike, [1e-3], alpha=0.0)[0] == pytest.approx(-0.0301511, abs=1e-7)
    assert positions(torch.optim.RMSprop, [1e-3], alpha=0.0)[0] == pytest.approx(-0.0990099, abs=1e-7)


def test_momentum_carries_the_scaled_step():
    # b1 = 2 / sqrt(1.03001) = 1.970649; b2 = 0.9 * b1 + 1 / sqrt(1.02971) = 2.759052
    assert positions(RMSpropTFLike, [2.0, 1.0], momentum=0.9) == pytest.approx([-0.1970649, -0.4729701], abs=1e-6)


def test_torch_rmsprop_takes_ten_times_the_rate_on_its_first_step():
    """The difference the class is for: torch's average starts at 0, so the first step is
    0.1 * g / (sqrt(0.01 * g^2) + 1e-5), close to 10 x 0.1 whatever the gradient's size:
    0.99995 for g = 2, 0.1 * 0.01 / (0.001 + 1e-5) = 0.990099 for g = 0.01."""
    assert positions(torch.optim.RMSprop, [2.0])[0] == pytest.approx(-0.99995, abs=1e-5)
    assert positions(torch.optim.RMSprop, [0.01])[0] == pytest.approx(-0.990099, abs=1e-6)
    assert positions(RMSpropTFLike, [0.01])[0] == pytest.approx(-0.1 * 0.01 / (0.99 + 1e-6 + 1e-5) ** 0.5, abs=1e-9)


def test_a_bad_value_names_itself(tmp_path):
    with pytest.raises(ValueError, match="alpha"):
        RMSpropTFLike([torch.nn.Parameter(torch.zeros(1))], alpha=1.0)
    # through the config: one line naming the group and why (was: Hydra's first line only,
    # "Error in call to target 'rlexp.algos.a2c.A2C':", the reason lost)
    with pytest.raises(rlexp.ConfigError, match=r"^algo: .*alpha must be in \[0, 1\) \(got 1.5\)$"):
        rlexp.train(["algo=a2c", "algo.optimizer._target_=rlexp.algos.optim.RMSpropTFLike", "algo.optimizer.alpha=1.5",
                     "total_steps=100", "progress=false"], run_dir=tmp_path / "run")


def test_a2c_trains_with_it_and_checkpoints_its_state(tmp_path):
    overrides = ["algo=a2c", "algo.optimizer._target_=rlexp.algos.optim.RMSpropTFLike", "env.num_envs=4",
                 "eval.episodes=2", "progress=false"]
    run = rlexp.train([*overrides, "total_steps=400"], run_dir=tmp_path / "run")
    assert run["status"] == "finished" and run["steps"] == 400
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    saved = state["optimizer"]["state"]
    steps = {int(s["step"]) for s in saved.values()}
    assert steps == {400 // (4 * 5)}  # one optimizer step per rollout of 4 envs x 5 steps
    assert all(bool((s["square_avg"] > 0).all()) for s in saved.values())

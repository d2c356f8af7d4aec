"""network.init: how the layers start (rlexp.networks.encoders.INITS), and ortho_init, its older
name, still meaning what it meant."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlexp.errors import ConfigError
from rlexp.networks import ActorCritic

OBS = gym.spaces.Box(-1, 1, (400,), np.float32)  # a flattened 10x10x4 MinAtar frame
ACTIONS = gym.spaces.Discrete(3)


def net(**kwargs):
    torch.manual_seed(0)
    return ActorCritic(OBS, ACTIONS, hidden_sizes=[256, 256], activation="relu", **kwargs)


def linears(policy):
    return [m for m in policy.modules() if isinstance(m, nn.Linear)]


def test_lecun_normal_is_flax_s_truncated_normal_with_gymnax_blines_biases():
    policy = net(init="lecun_normal")
    layers = linears(policy)
    assert len(layers) == 6  # two bodies of two layers, the policy's and the value's outputs
    for layer in layers:
        w = layer.weight.detach().double()
        fan_in = w.shape[1]
        # variance 1/fan_in (flax rescales the truncated normal to keep it): 256x400 draws
        # estimate it within a few percent; orthogonal's gain sqrt(2) would read 2/fan_in
        target = 1.0 / fan_in
        if w.numel() > 1000:
            assert w.var().item() == pytest.approx(target, rel=0.08)
        # truncated at two standard deviations of the untruncated normal
        bound = 2 * math.sqrt(target) / 0.87962566103423978
        assert w.abs().max().item() <= bound + 1e-9
        b = layer.bias.detach()
        assert b.min().item() >= 0.0 and b.max().item() < 0.05
    big = layers[0].bias.detach()
    assert big.mean().item() == pytest.approx(0.025, abs=0.005)  # uniform in [0, 0.05)
    # the heads are drawn alike: the policy's output is not shrunk as orthogonal's 0.01 gain does
    head = policy.action_head.output_layer.weight.detach()
    assert head.std().item() > 0.03


def test_orthogonal_is_sb3_s_gains_and_zero_biases():
    policy = net(init="orthogonal")
    first = policy.actor_body[0].weight.detach().double()  # 256 x 400: orthonormal rows times sqrt(2)
    assert torch.allclose(first @ first.T, 2.0 * torch.eye(256, dtype=torch.float64), atol=1e-5)
    head = policy.action_head.output_layer.weight.detach().double()
    assert torch.allclose(head @ head.T, 1e-4 * torch.eye(3, dtype=torch.float64), atol=1e-9)
    value = policy.value_head.weight.detach().double()
    assert value.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert all(float(layer.bias.detach().abs().max()) == 0.0 for layer in linears(policy))


def test_torch_leaves_pytorch_s_own_init():
    policy = net(init="torch")
    for layer in linears(policy):  # nn.Linear's kaiming_uniform(a=sqrt(5)): |w| <= 1/sqrt(fan_in), biases too
        bound = 1.0 / math.sqrt(layer.weight.shape[1])
        assert float(layer.weight.abs().max()) <= bound and float(layer.bias.abs().max()) <= bound
        assert float(layer.bias.abs().max()) > 0.0


def test_ortho_init_keeps_its_meaning_and_a_disagreement_names_init():
    assert net().init == "orthogonal"
    assert net(ortho_init=False).init == "torch"
    assert net(init="orthogonal", ortho_init=False).init == "torch"  # the config's default init, an SB3-style override
    assert net(ortho_init=True).init == "orthogonal"
    with pytest.raises(ConfigError, match="network.init"):
        net(init="lecun_normal", ortho_init=True)
    with pytest.raises(ConfigError, match="init: must be one of orthogonal, lecun_normal, torch"):
        net(init="xavier")


def test_the_config_key_reaches_the_network(compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg("network=mlp", "network.init=lecun_normal")
    policy = instantiate(cfg.network, OBS, ACTIONS)
    assert policy.init == "lecun_normal"
    assert float(policy.value_head.bias) > 0.0  # uniform in [0, 0.05): zero under orthogonal

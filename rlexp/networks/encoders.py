"""Encoders: what turns an observation into a flat feature vector, chosen by its space.

| observation space                         | encoder                                              |
| ----------------------------------------- | ---------------------------------------------------- |
| 1-D Box (and any Box that is no image)    | the values as floats, flattened                      |
| image Box: HxWxC, CxHxW or HxW; uint8, bool, or floats in [0, 1] | a CNN (Nature CNN from 36 px, a small 3x3 CNN below) |
| Discrete(n, start)                        | one-hot of size n                                    |
| MultiDiscrete(nvec, start)                | one one-hot per entry, concatenated                  |
| MultiBinary                               | the bits as floats                                   |
| Dict / Tuple, nested too                  | one encoder per entry, features concatenated in the space's order |

The MLP torso that follows the encoder (``mlp``) and the orthogonal initialisation the PPO
implementations share live here too. Observations arrive in their storage dtype
(rlexp.data.observations): uint8 pixels are scaled by 1/255 here, on the training device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlexp.errors import ConfigError, require

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}
ENCODERS = ("auto", "flatten", "cnn")
#: the smallest image side the Nature CNN takes (8x8 stride 4, 4x4 stride 2, 3x3 stride 1)
NATURE_MIN_SIDE = 36
#: an image needs both spatial sides at least this long (a 3x3 board reads better flattened)
IMAGE_MIN_SIDE = 4


def mlp(in_features: int, hidden_sizes: Sequence[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_features, size), ACTIVATIONS[activation]()]
        in_features = size
    return nn.Sequential(*layers)


#: network.init: how the linear and convolution layers start
#:   orthogonal    SB3's and CleanRL's: orthogonal weights (gain sqrt(2) in the bodies, 0.01 at the
#:                 policy's output, 1 at the value's), zero biases
#:   lecun_normal  flax's default (gymnax-blines' networks): weights from a normal of variance
#:                 1 / fan_in truncated at two standard deviations, biases uniform in [0, 0.05)
#:                 as gymnax-blines' MLPs set them; every layer alike, the heads included
#:   torch         each layer's own PyTorch init, untouched
INITS = ("orthogonal", "lecun_normal", "torch")
# the standard deviation of a unit normal truncated to [-2, 2]: flax divides by it so that the
# truncated draws keep the variance asked for
_TRUNCATED_STD = 0.87962566103423978


def orthogonal_init(module: nn.Module, gain: float) -> None:
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)


def lecun_normal_init(module: nn.Module, bias_high: float = 0.05) -> None:
    """Weights ~ normal(0, 1/fan_in) truncated at 2 standard deviations (flax's lecun_normal),
    biases ~ uniform[0, bias_high) (gymnax-blines' ``bias_init``)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            fan_in = layer.weight[0].numel()
            std = (1.0 / fan_in) ** 0.5 / _TRUNCATED_STD
            nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)
            nn.init.uniform_(layer.bias, 0.0, bias_high)


# -- which space is an image ------------------------------------------------------------

def image_layout(space: gym.Space) -> Optional[str]:
    """"HWC", "CHW" or "HW" where ``space`` is an image, else None.

    An image is a 2-D or 3-D Box of uint8 (0..255), bools, or floats bounded to [0, 1], with
    both spatial sides >= IMAGE_MIN_SIDE. Channels are the smallest axis; a tie (10x10x10
    MinAtar frames) reads as channels last, Gymnasium's convention.
    """
    if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (2, 3):
        return None
    if space.dtype == np.uint8 or space.dtype == np.bool_:
        pass
    elif np.issubdtype(space.dtype, np.floating):
        if not (np.all(space.low >= 0) and np.all(space.high <= 1)):
            return None
    else:
        return None
    shape = space.shape
    if len(shape) == 2:
        return "HW" if min(shape) >= IMAGE_MIN_SIDE else None
    if shape[2] <= min(shape[0], shape[1]) and min(shape[0], shape[1]) >= IMAGE_MIN_SIDE:
        return "HWC"
    if shape[0] < min(shape[1], shape[2]) and min(shape[1], shape[2]) >= IMAGE_MIN_SIDE:
        return "CHW"
    return None


# -- encoder settings --------------------------------------------------------------------

@dataclass
class CnnSpec:
    """The CNN's layers; all three lists null = sized by the image (Nature CNN from 36 px,
    else two 3x3 convolutions that keep the size)."""

    channels: Optional[Sequence[int]] = None
    kernels: Optional[Sequence[int]] = None
    strides: Optional[Sequence[int]] = None
    features: int = 512

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.channels, self.kernels, self.strides)]
        require(all(given) or not any(given), "cnn", "set cnn.channels, cnn.kernels and cnn.strides together, or none of them")
        if all(given):
            n = len(self.channels)
            require(n >= 1 and len(self.kernels) == n and len(self.strides) == n, "cnn",
                    f"cnn.channels, cnn.kernels and cnn.strides need the same length >= 1, got {list(self.channels)}, "
                    f"{list(self.kernels)}, {list(self.strides)}")
            require(min(self.channels) >= 1 and min(self.kernels) >= 1 and min(self.strides) >= 1, "cnn",
                    "cnn.channels, cnn.kernels and cnn.strides must be positive")
        require(self.features >= 1, "cnn.features", f"must be >= 1, got {self.features}")

    def layers(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(channels, kernel, stride, padding) per convolution for an image of this size."""
        if self.channels is not None:
            return [(int(c), int(k), int(s), 0) for c, k, s in zip(self.channels, self.kernels, self.strides)]
        if min(height, width) >= NATURE_MIN_SIDE:
            return [(32, 8, 4, 0), (64, 4, 2, 0), (64, 3, 1, 0)]
        return [(16, 3, 1, 1), (32, 3, 1, 1)]


# -- the encoders ------------------------------------------------------------------------

class FlattenEncoder(nn.Module):
    """A Box's values as float32, one row per observation (no copy for a float32 1-D Box)."""

    def __init__(self, space: gym.spaces.Box):
        super().__init__()
        self.out_features = int(np.prod(space.shape, dtype=np.int64))
        self.passthrough = len(space.shape) == 1

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs if obs.dtype == torch.float32 else obs.float()
        return obs if self.passthrough else obs.reshape(obs.shape[0], -1)


class OneHotEncoder(nn.Module):
    """Discrete(n, start) or MultiDiscrete(nvec, start): one one-hot block per entry."""

    def __init__(self, space: gym.Space):
        super().__init__()
        if isinstance(space, gym.spaces.Discrete):
            sizes, starts = np.array([space.n]), np.array([space.start])
        else:
            sizes, starts = np.asarray(space.nvec).reshape(-1), np.asarray(space.start).reshape(-1)
        self.out_features = int(sizes.sum())
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # where entry i's one-hot block begins, minus its start: index = value + shift
        self.register_buffer("shift", torch.as_tensor(offsets - starts, dtype=torch.int64), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        index = obs.reshape(obs.shape[0], -1).long() + self.shift
        out = torch.zeros(obs.shape[0], self.out_features, device=obs.device)
        return out.scatter_(1, index, 1.0)


class BinaryEncoder(nn.Module):
    def __init__(self, space: gym.spaces.MultiBinary):
        super().__init__()
        self.out_features = int(np.prod(space.shape, dtype=np.int64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.reshape(obs.shape[0], -1).float()


class CnnEncoder(nn.Module):
    """Convolutions with ReLU, then a linear layer to ``spec.features`` with ReLU (the Nature
    CNN of Mnih et al. 2015 by default). uint8 input is scaled by 1/255; HWC is permuted to CHW."""

    def __init__(self, space: gym.spaces.Box, layout: str, spec: CnnSpec):
        super().__init__()
        shape = space.shape
        self.layout, self.scale = layout, space.dtype == np.uint8
        # uint8 pixels are scaled by 1/255; a uint8 image whose space declares smaller bounds
        # (MiniGrid's object, colour and state codes, once rlexp.envs.minigrid declares them)
        # is scaled by 1/high, per element, so that every channel spans [0, 1]
        high = np.asarray(space.high, dtype=np.float32)
        per_element = self.scale and bool((high < 255).any())
        if per_element:
            scale = 1.0 / np.maximum(high, 1.0)
            scale = scale[None] if layout == "HW" else scale.transpose(2, 0, 1) if layout == "HWC" else scale
        self.register_buffer("per_element_scale", torch.as_tensor(scale) if per_element else None, persistent=False)
        chw = (1, *shape) if layout == "HW" else (shape[2], shape[0], shape[1]) if layout == "HWC" else tuple(shape)
        channels, height, width = chw
        layers: list[nn.Module] = []
        for out_channels, kernel, stride, padding in spec.layers(height, width):
            layers += [nn.Conv2d(channels, out_channels, kernel, stride, padding), nn.ReLU()]
            channels = out_channels
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            try:
                flat = self.convs(torch.zeros(1, *chw)).shape[1]
            except RuntimeError:
                raise ConfigError("cnn", f"the convolutions do not fit a {height}x{width} image; use smaller kernels or strides") from None
        self.linear = nn.Sequential(nn.Linear(flat, spec.features), nn.ReLU())
        self.out_features = spec.features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.unsqueeze(1) if self.layout == "HW" else obs.permute(0, 3, 1, 2) if self.layout == "HWC" else obs
        # channels-last memory (NHWC), as the weights (ActorCritic converts them): on the CPU the
        # Nature CNN's forward + backward on 256 Atari frames takes 121 ms instead of 164. The cast
        # to float32 writes that layout in the same pass, and the scaling then works in place on
        # the copy: half the time of cast, scale and relayout as three passes (256 Atari frames)
        copied = obs.dtype != torch.float32  # else .to() may return obs itself, which must not change
        x = x.to(torch.float32, memory_format=torch.channels_last)
        if self.per_element_scale is not None:
            x = x.mul_(self.per_element_scale) if copied else x * self.per_element_scale
        elif self.scale:
            x = x.mul_(1.0 / 255.0) if copied else x * (1.0 / 255.0)
        return self.linear(self.convs(x))


class DictEncoder(nn.Module):
    """One encoder per entry of a Dict (in the space's key order) or Tuple; features concatenated."""

    def __init__(self, space: gym.Space, encoder: Union[str, Mapping[str, str]], cnn: CnnSpec, path: str):
        super().__init__()
        if isinstance(space, gym.spaces.Dict):
            self.keys: list = list(space.spaces)
            if isinstance(encoder, Mapping):  # one choice per top-level entry, auto for the rest
                unknown = sorted(set(encoder) - set(map(str, self.keys)))
                require(not unknown, "encoder", f"no observation entry {', '.join(unknown)}; the entries are: {', '.join(map(str, self.keys))}")
                kinds = {str(k): encoder.get(str(k), "auto") for k in self.keys}
            else:
                kinds = {str(k): encoder for k in self.keys}
            parts = {str(k): make_encoder(space.spaces[k], kinds[str(k)], cnn, f"{path}.{k}" if path else str(k)) for k in self.keys}
        else:
            self.keys = list(range(len(space.spaces)))
            parts = {str(i): make_encoder(sub, encoder, cnn, f"{path}[{i}]") for i, sub in enumerate(space.spaces)}
        require(len(parts) > 0, "env.obs_keys", f"the observation space {space} has no entries to encode")
        self.parts = nn.ModuleDict(parts)
        self.out_features = sum(part.out_features for part in self.parts.values())

    def forward(self, obs) -> torch.Tensor:
        return torch.cat([self.parts[str(k)](obs[k]) for k in self.keys], dim=1)


class EntryEncoder(nn.Module):
    """Reads one entry of a Dict observation with that entry's own encoder (an observation that
    carries an action mask beside the env's own observation: the mask is not encoded)."""

    def __init__(self, key: str, inner: nn.Module):
        super().__init__()
        self.key, self.inner = key, inner
        self.out_features = inner.out_features

    def forward(self, obs) -> torch.Tensor:
        return self.inner(obs[self.key])


def make_encoder(space: gym.Space, encoder: Union[str, Mapping[str, str]] = "auto", cnn: Optional[CnnSpec] = None,
                 path: str = "") -> nn.Module:
    """The encoder for ``space``: ``auto`` gives images a CNN and flattens the rest; ``flatten``
    flattens images too; ``cnn`` insists on a CNN for every Box (it must be an image). For a
    Dict space, a mapping chooses per entry (``{image: cnn, direction: flatten}``)."""
    cnn = cnn or CnnSpec()
    if isinstance(encoder, Mapping):
        require(isinstance(space, gym.spaces.Dict) and not path, "encoder",
                f"a choice per entry needs Dict observations; {'entry ' + repr(path) if path else 'this env'} gives {space}")
        for kind in encoder.values():
            require(kind in ENCODERS, "encoder", f"must be one of {', '.join(ENCODERS)} per entry, got {kind!r}")
    else:
        require(encoder in ENCODERS, "encoder", f"must be one of {', '.join(ENCODERS)}, got {encoder!r}")
    where = f"observation entry {path!r}" if path else "observation space"
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        return DictEncoder(space, encoder, cnn, path)
    if isinstance(space, gym.spaces.Box):
        layout = image_layout(space)
        if encoder == "cnn" and layout is None:
            raise ConfigError("encoder", f"cnn needs an image ({where} is {space}); use network.encoder=auto or flatten")
        if layout is not None and encoder != "flatten":
            return CnnEncoder(space, layout, cnn)
        return FlattenEncoder(space)
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        return OneHotEncoder(space)
    if isinstance(space, gym.spaces.MultiBinary):
        return BinaryEncoder(space)
    hint = "leave it out with env.obs_keys=[...]" if path else "wrap the env to give Box, Discrete, MultiDiscrete, MultiBinary, Dict or Tuple observations"
    raise ConfigError("env.id", f"{where} {space} ({type(space).__name__}) has no encoder in rlexp; {hint}")


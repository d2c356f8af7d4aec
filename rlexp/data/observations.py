"""Observations as tensors in their own dtype, for any Gymnasium observation space.

A Box of uint8 pixels stays uint8 (four times smaller in the rollout; the network scales it
on the training device), a Discrete observation is an int64 index, and Dict and Tuple
observations are dicts and tuples of such tensors ("trees"), nested as the space is. The
helpers here make, fill, flatten and index those trees the same way whatever their shape,
so the rollout, the trainer and evaluation never ask which space they hold.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import gymnasium as gym
import numpy as np
import torch

Tree = Union[torch.Tensor, dict, tuple]

#: the Dict observation entry an action mask travels in (PettingZoo's name; rlexp.envs.masks writes it)
MASK_KEY = "action_mask"
#: the Dict observation entry a centralised critic reads and the actor does not (the game's global
#: state, rlexp.envs.multiagent's env.critic_input=global_state), and the agent's one-hot index beside it
STATE_KEY = "state"
AGENT_ID_KEY = "agent_id"
#: the Dict observation entry that says which of several policies plays a row (a one-hot over the
#: policies; rlexp.envs.multiagent's env.policies): each policy's own observation is the entry of its name
POLICY_KEY = "policy"


def is_mask_space(space: gym.Space) -> bool:
    """Whether ``space`` is an observation carrying an action mask as rlexp.envs.masks writes it:
    a Dict with a 1-D bool Box entry ``action_mask`` (one flag per choice)."""
    if not isinstance(space, gym.spaces.Dict) or MASK_KEY not in space.spaces:
        return False
    sub = space.spaces[MASK_KEY]
    return isinstance(sub, gym.spaces.Box) and sub.dtype == np.bool_ and len(sub.shape) == 1


def tree_map(fn: Callable[..., Any], tree: Any, *others: Any) -> Any:
    """``fn`` applied to every leaf of ``tree`` (and the matching leaves of ``others``)."""
    if isinstance(tree, dict):
        return {key: tree_map(fn, value, *(other[key] for other in others)) for key, value in tree.items()}
    if isinstance(tree, tuple):
        return tuple(tree_map(fn, value, *(other[i] for other in others)) for i, value in enumerate(tree))
    return fn(tree, *others)


def leaf_dtype(space: gym.Space) -> torch.dtype:
    """How one observation of ``space`` is stored: uint8 and bool images as they are, indices as
    int64, everything else as float32."""
    if isinstance(space, gym.spaces.Box):
        if space.dtype == np.uint8:
            return torch.uint8
        if space.dtype == np.bool_:
            return torch.bool
        return torch.float32
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        return torch.int64
    if isinstance(space, gym.spaces.MultiBinary):
        return torch.uint8
    raise TypeError(f"no tensor form for {space}")


def encodable(space: gym.Space) -> bool:
    """Whether rlexp has a tensor form (and so an encoder) for every entry of ``space``."""
    if isinstance(space, gym.spaces.Dict):
        return all(encodable(sub) for sub in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return all(encodable(sub) for sub in space.spaces)
    return isinstance(space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary))


def leaf_shape(space: gym.Space) -> tuple[int, ...]:
    return () if isinstance(space, gym.spaces.Discrete) else tuple(space.shape)


def empty(space: gym.Space | tuple[int, ...], lead: tuple[int, ...], device: torch.device) -> Tree:
    """Zeros for ``lead`` (e.g. n_steps x num_envs) observations of ``space``; a plain shape
    tuple gives a float32 tensor of that observation shape."""
    if isinstance(space, gym.spaces.Dict):
        return {key: empty(sub, lead, device) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(empty(sub, lead, device) for sub in space.spaces)
    if not isinstance(space, gym.Space):
        return torch.zeros(tuple(lead) + tuple(space), device=device)
    return torch.zeros(tuple(lead) + leaf_shape(space), dtype=leaf_dtype(space), device=device)


def to_tensor(obs: Any, space: gym.Space, device: torch.device) -> Tree:
    """A batch of observations from a vector env (numpy, or tensors from a torch-native env) as
    tensors on ``device`` in their storage dtype. No copy where nothing changes."""
    if isinstance(space, gym.spaces.Dict):
        return {key: to_tensor(obs[key], sub, device) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(to_tensor(obs[i], sub, device) for i, sub in enumerate(space.spaces))
    return torch.as_tensor(obs, dtype=leaf_dtype(space)).to(device, non_blocking=True)


def assign(buffer: Tree, index: Any, value: Tree) -> None:
    """buffer[index] = value, leaf by leaf."""
    if isinstance(buffer, torch.Tensor):
        buffer[index] = value
    else:
        tree_map(lambda b, v: b.__setitem__(index, v), buffer, value)


def lead_shape(tree: Tree, dims: int) -> tuple[int, ...]:
    """The first ``dims`` sizes that every leaf of ``tree`` shares (e.g. time and batch)."""
    while not isinstance(tree, torch.Tensor):
        tree = next(iter(tree.values())) if isinstance(tree, dict) else tree[0]
    return tuple(tree.shape[:dims])

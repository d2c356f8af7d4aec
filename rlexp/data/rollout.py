"""Preallocated rollout storage and the one ``Batch`` type the algorithms consume.

Policy-side tensors (observations, actions, log-probs, values) live on the training
device and are written in place each step. Observations keep their own dtype (uint8
images stay uint8) and their structure (a Dict observation is a dict of tensors; see
rlexp.data.observations). Environment-side results (rewards,
terminations, truncations) arrive as numpy arrays; they are written into numpy
buffers and moved to the device once per rollout, not once per step.

A step is *valid* unless it is the autoreset step that Gymnasium's NEXT_STEP mode
inserts after an episode ends (reset observation, reward 0, action ignored). Invalid
steps take part in the GAE recursion only as a barrier and never reach a loss.

For a policy that carries a state (a recurrent one: its state is not empty) the rollout also
keeps, per step, the state before the step and whether the step starts an episode; a batch
then carries its steps as sequences too (``Batch.seq``, :class:`Sequences`) and
:meth:`Rollout.minibatches` cuts chunks of env sequences (:func:`sequence_minibatches`)
rather than shuffled single steps. This module is the one place outside rlexp.networks
that tells the two kinds of policy apart.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, NamedTuple, Optional

import numpy as np
import torch

from rlexp.data.observations import Tree, assign, empty, tree_map


class Sequences(NamedTuple):
    """A batch as sequences: what a recurrent policy needs to re-run it.

    obs: (T, N, ...) observations; starts: (T, N) episode starts; state: (N, rows, hidden), the
    state each sequence began with (before starts[0] applies); mask: (T, N), the steps the
    batch's flat fields hold, in time-major order (``x[mask]``). Steps outside the mask
    (Gymnasium's autoreset steps, padding) run through the core but reach no loss.
    """

    obs: Tree
    starts: torch.Tensor
    state: torch.Tensor
    mask: torch.Tensor

    def to_flat(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.mask]


class Batch(NamedTuple):
    obs: Tree
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    seq: Optional[Sequences] = None  # recurrent policies: the same steps as sequences

    def __len__(self) -> int:
        return self.log_probs.shape[0]

    def select(self, index: torch.Tensor) -> "Batch":
        """Some of the steps (feed-forward batches: steps taken out of sequences have no state)."""
        assert self.seq is None, "sequence batches are split by sequence_minibatches"
        return Batch(*(tree_map(lambda x: x[index], field) for field in self[:6]))

    def flat_fields(self) -> tuple[Any, ...]:
        """The per-step fields (everything but ``seq``)."""
        return tuple(self[:6])

    def evaluate_actions(self, policy: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``policy.evaluate_actions`` on these steps: (log_prob, entropy, value) of the actions
        taken (a recurrent policy re-runs ``seq``, a feed-forward one reads the flat steps)."""
        return policy.evaluate_actions(self.obs, self.actions, self.seq)


class Rollout:
    def __init__(
        self,
        n_steps: int,
        num_envs: int,
        observation: Any,
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        device: torch.device,
        env_device: torch.device | None = None,
        state_shape: tuple[int, ...] = (0,),
    ):
        self.n_steps, self.num_envs, self.device = n_steps, num_envs, device
        shape = (n_steps, num_envs)
        # ``observation``: the env's single observation space, or a shape (float32 observations)
        self.obs = empty(observation, shape, device)
        self.actions = torch.zeros(shape + tuple(action_shape), dtype=action_dtype, device=device)
        self.log_probs = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        if self.device.type == "cpu" and isinstance(self.obs, torch.Tensor) and self.obs.dtype == torch.float32:  # numpy views: the CPU fast path (rlexp.algos.ppo_fast_cpu) writes numpy
            self.policy_np = tuple(x.numpy() for x in (self.obs, self.actions, self.log_probs, self.values))
        # environment results: written through numpy views on the CPU (gymnasium envs),
        # or as tensors on the env's device (torch-native envs)
        env_device = torch.device(env_device) if env_device is not None else torch.device("cpu")
        self.rewards_env = torch.zeros(shape, device=env_device)
        self.terminated_env = torch.zeros(shape, dtype=torch.bool, device=env_device)
        self.truncated_env = torch.zeros(shape, dtype=torch.bool, device=env_device)
        self.valid_env = torch.ones(shape, dtype=torch.bool, device=env_device)
        if env_device.type == "cpu":
            self.rewards_np, self.terminated_np = self.rewards_env.numpy(), self.terminated_env.numpy()
            self.truncated_np, self.valid_np = self.truncated_env.numpy(), self.valid_env.numpy()
        self.advantages = torch.zeros(shape, device=device)
        self.returns = torch.zeros(shape, device=device)
        # a policy with a state (state_shape: one env's, e.g. rows x hidden; (0,): none): the
        # state before each step, and whether the step starts an episode (zeroed before it)
        self.stateful = math.prod(state_shape) > 0
        if self.stateful:
            self.states = torch.zeros(shape + tuple(state_shape), device=device)
            self.starts = torch.zeros(shape, dtype=torch.bool, device=device)

    def store_state(self, t: int, state: torch.Tensor, starts: Any) -> None:
        if self.stateful:  # an empty state has nothing to re-run from
            self.states[t], self.starts[t] = state, torch.as_tensor(starts)

    def store_policy(self, t: int, obs, action, log_prob, value) -> None:
        if isinstance(action, np.ndarray):  # numpy in, numpy views: no tensor wrapping per step
            obs_np, actions_np, log_probs_np, values_np = self.policy_np
            obs_np[t], actions_np[t], log_probs_np[t], values_np[t] = obs, action, log_prob, value
        else:
            assign(self.obs, t, obs)
            self.actions[t], self.log_probs[t], self.values[t] = action, log_prob, value

    def store_env(self, t: int, reward, terminated, truncated, valid) -> None:
        if isinstance(reward, np.ndarray):  # numpy assignment: cheaper than wrapping in tensors
            self.rewards_np[t], self.terminated_np[t], self.truncated_np[t], self.valid_np[t] = reward, terminated, truncated, valid
        else:
            self.rewards_env[t], self.terminated_env[t], self.truncated_env[t], self.valid_env[t] = reward, terminated, truncated, valid

    def env_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rewards, terminated, episode_end, valid) on the device, one copy per rollout."""
        to = lambda x: x.to(self.device)  # noqa: E731  (no copy when already there)
        return to(self.rewards_env), to(self.terminated_env), to(self.terminated_env | self.truncated_env), to(self.valid_env)

    def batch(self, mask: Optional[torch.Tensor] = None) -> Batch:
        """The steps of ``mask`` ((n_steps, num_envs); default: all valid steps), flattened over
        time and environments; for a recurrent policy also as whole env sequences."""
        mask = self.valid_env.to(self.device) if mask is None else mask
        flat = lambda x: x[mask]  # noqa: E731  (time-major, as the sequences' to_flat)
        seq = Sequences(self.obs, self.starts, self.states[0], mask) if self.stateful else None
        return Batch(
            tree_map(flat, self.obs), flat(self.actions), flat(self.log_probs), flat(self.values), flat(self.advantages), flat(self.returns),
            seq,
        )


    def minibatches(self, batch: Batch, batch_size: int, sequence_length: int, count: Optional[int] = None) -> Iterator[Batch]:
        """One epoch's shuffled minibatches of ``batch`` (this rollout's): of single steps, or,
        for a policy with a state, of env sequences ``sequence_length`` long. ``count``: cut the
        steps into exactly that many (a data-parallel run's ranks agree on it); sequences
        come in a number that depends on the rollout's shape alone."""
        if self.stateful:
            return sequence_minibatches(self, sequence_length, batch_size)
        return minibatches(batch, batch_size, count=count)


def minibatches(batch: Batch, batch_size: int, generator: torch.Generator | None = None, count: Optional[int] = None) -> Iterator[Batch]:
    """Shuffled minibatches of ``batch_size``; the last one takes the remainder.

    The number of valid transitions varies from rollout to rollout (autoreset steps
    are dropped), so a short remainder is folded into the previous minibatch rather
    than producing a tiny, noisy gradient step.
    """
    n = len(batch)
    n_full = max(round(n / batch_size), 1) if count is None else count
    if count is not None:  # sizes follow from the count (a data-parallel rank's share)
        batch_size = n // count
    if n_full == 1:  # one minibatch is the whole batch: its order cannot change a mean
        yield batch
        return
    device = batch.log_probs.device
    if generator is None and device.type == "cuda":  # drawn there: a host draw of 100k+ indices and its copy cost ~1 ms
        order = torch.randperm(n, device=device)
    else:
        order = torch.randperm(n, generator=generator, device="cpu").to(device)
    for i in range(n_full):
        end = n if i == n_full - 1 else (i + 1) * batch_size
        yield batch.select(order[i * batch_size : end])


def sequence_minibatches(rollout: Rollout, length: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Batch]:
    """Recurrent PPO's minibatches: each env's rollout cut into chunks of ``length`` steps,
    shuffled, about ``batch_size / length`` chunks per minibatch (the last takes the remainder).
    A chunk re-runs from the state stored at its first step; its autoreset steps run through
    the core but are left out of the flat fields, so they reach no loss."""
    steps, envs = rollout.n_steps, rollout.num_envs
    device = rollout.device
    per_env = steps // length
    n_chunks = per_env * envs
    per_batch = max(round(batch_size / length), 1)
    n_batches = max(round(n_chunks / per_batch), 1)
    order = torch.randperm(n_chunks, generator=generator, device="cpu").to(device)
    valid = rollout.valid_env.to(device)
    offsets = torch.arange(length, device=device).unsqueeze(1)  # (L, 1)
    for i in range(n_batches):
        end = n_chunks if i == n_batches - 1 else (i + 1) * per_batch
        chunk = order[i * per_batch : end]
        first, env = (chunk % per_env) * length, chunk // per_env  # (M,)
        index = (first.unsqueeze(0) + offsets, env)  # (L, M) steps of M env sequences
        mask = valid[index]
        if not bool(mask.any()):
            continue
        seq = Sequences(tree_map(lambda x, i=index: x[i], rollout.obs), rollout.starts[index], rollout.states[first, env], mask)
        fields = (rollout.actions, rollout.log_probs, rollout.values, rollout.advantages, rollout.returns)
        yield Batch(tree_map(seq.to_flat, seq.obs), *(seq.to_flat(x[index]) for x in fields), seq)

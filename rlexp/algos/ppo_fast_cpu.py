"""PPO's CPU backend, the fast path (``fast_cpu``): the actor-critic's forward pass and PPO's gradient
step written out by hand in numpy, on the policy's own parameters.

Why it exists: at the sizes RL trains on a CPU (a minibatch of 256, two layers of 64)
an eager PyTorch gradient step is ~150 operator calls, each paying several
microseconds of dispatch and autograd bookkeeping, and torch's float32 tanh takes
~34 us on 256x64 values where numpy's takes ~3 us. The same step written out (the
forward pass, the PPO loss's gradient derived by hand, gradient clipping and Adam) is
about 100 numpy calls and runs about 3x faster (0.31 vs 0.98 ms at the RL Zoo's CartPole
settings); collection's per-step policy call takes half the time (91 vs 178 us for 8
envs). ``scripts/profile_update.py`` (with ``fast_cpu=false`` for the other) shows both.

Nothing else changes: the policy's parameters are re-pointed into one contiguous
float32 buffer that numpy reads and writes in place, so the nn.Module (evaluation,
checkpoints, GAE's bootstrap value) sees every step; Adam's moments live in flat
buffers whose slices *are* the torch optimizer's state tensors, so checkpoints have
the same form whichever path trained and either path resumes the other's.

The autograd path (PPO.loss + OnPolicyAlgorithm.gradient_step) is the specification:
tests/test_fast_cpu.py checks this file's losses, gradients and Adam steps against it.
Supported: PPO with Adam on the CPU; separate actor and critic MLPs with tanh or ReLU;
a Categorical, diagonal Gaussian or gSDE head. ``fast_cpu=auto`` (the default) uses
it wherever it applies, ``true`` insists (and says why not), ``false`` never uses it.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from rlexp.errors import ConfigError
from rlexp.networks.actor_critic import ActorCritic
from rlexp.networks.encoders import FlattenEncoder
from rlexp.networks.heads import CategoricalHead, GaussianHead, StateDependentNoiseHead

#: one row of numbers per gradient step, in this order (the keys PPO.loss + gradient_step give)
STEP_KEYS = (
    "loss/policy", "loss/value", "loss/entropy", "loss/total",
    "train/entropy", "train/approx_kl", "train/clip_fraction", "train/grad_norm",
)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def unsupported_reason(policy: nn.Module, optimizer: Any, device: torch.device, compiled: bool) -> Optional[str]:
    """Why the fast path cannot train this policy and optimizer, or None when it can.
    (PPO itself decides that the algorithm is plain PPO: see PPO.enable_fast_cpu.)"""
    group = optimizer.param_groups[0] if optimizer is not None and len(optimizer.param_groups) == 1 else {}
    checks = [
        (device.type == "cpu", f"it runs on the CPU only (device is {device})"),
        (not compiled, "compile=true compiles the autograd loss instead"),
        (not getattr(policy, "masked", False), "it has no invalid-action masks (env.action_mask=none turns them off)"),
        (policy.initial_state(1).numel() == 0, "it implements feed-forward policies only; network.recurrent needs fast_cpu=auto or false"),
        (type(policy) is ActorCritic, "it needs rlexp's ActorCritic network"),
        (type(getattr(policy, "actor_encoder", None)) is FlattenEncoder and policy.actor_encoder.passthrough
         and type(policy.critic_encoder) is FlattenEncoder, "it takes 1-D Box observations only (no CNN, one-hot or Dict encoders)"),
        (getattr(policy, "precision", "fp32") == "fp32", "it computes in float32 only (network.precision=bf16 needs autograd)"),
        (len(getattr(policy, "actor_body", ())) > 0, "it needs at least one hidden layer (network.hidden_sizes)"),
        (not getattr(policy, "shared", True), "network.shared=true is not supported"),
        (getattr(policy, "activation", None) in ("tanh", "relu"), "network.activation must be tanh or relu"),
        (type(getattr(policy, "action_head", None)) in (CategoricalHead, GaussianHead, StateDependentNoiseHead),
         "it knows rlexp's Categorical, Gaussian and gSDE heads only"),
        (type(optimizer) is torch.optim.Adam, f"it implements Adam only (optimizer is {type(optimizer).__name__})"),
        (bool(group) and group.get("weight_decay", 0) == 0 and not group.get("amsgrad") and not group.get("maximize"),
         "Adam with weight_decay, amsgrad or maximize is not supported"),
        (bool(group) and list(group.get("params", [])) == list(policy.parameters()), "the optimizer must hold exactly the policy's parameters"),
    ]
    return next((why for ok, why in checks if not ok), None)


def select(required: bool, policy: nn.Module, optimizer: Any, device: torch.device, compiled: bool) -> Optional["FastActorCritic"]:
    """The fast path for this policy and optimizer; None where it does not apply, unless
    ``required`` (fast_cpu=true), which then says why not."""
    why = unsupported_reason(policy, optimizer, device, compiled)
    if why is None:
        return FastActorCritic(policy, optimizer)
    if not required:
        return None
    raise ConfigError("fast_cpu", f"cannot be used here: {why} (fast_cpu=auto falls back to autograd)")


#: products of at most this many multiply-adds run in numpy: no BLAS starts threads for so
#: little work (OpenBLAS's own threshold is 4x higher), and numpy's call costs a third of torch's
SMALL_PRODUCT = 65536


def _mm(a: np.ndarray, b: np.ndarray, out: Optional[np.ndarray] = None, bias: Optional[np.ndarray] = None) -> np.ndarray:
    """a @ b (+ bias). Larger products go through torch (no copies) so that they use torch's
    BLAS and its thread count (``torch_threads``), not numpy's, which picks its own."""
    if a.shape[0] * a.shape[1] * b.shape[1] <= SMALL_PRODUCT:
        result = np.matmul(a, b, out=out)
        if bias is not None:
            result += bias
        return result
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    if out is not None:
        torch.mm(ta, tb, out=torch.from_numpy(out))
        return out
    return (torch.addmm(torch.from_numpy(bias), ta, tb) if bias is not None else torch.mm(ta, tb)).numpy()


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def _flatten_into(tensors: list[torch.Tensor], flat: torch.Tensor) -> list[torch.Tensor]:
    """Copy each tensor into its slice of ``flat``; return the slices (shaped as the tensors)."""
    views, offset = [], 0
    for t in tensors:
        view = flat[offset: offset + t.numel()].view_as(t)
        view.copy_(t.detach())
        views.append(view)
        offset += t.numel()
    return views


class FastActorCritic:
    """numpy forward passes and PPO gradient steps on an ActorCritic's (shared) weights."""

    def __init__(self, policy: nn.Module, optimizer: torch.optim.Adam):
        self.policy, self.optimizer = policy, optimizer
        self.params = list(policy.parameters())
        total = sum(p.numel() for p in self.params)
        # parameters re-pointed into one buffer: torch and numpy share every number
        flat = torch.zeros(total)
        with torch.no_grad():
            for param, view in zip(self.params, _flatten_into(self.params, flat)):
                param.data = view
        self.flat = flat.numpy()
        self.grad = np.zeros(total, dtype=np.float32)
        self.exp_avg, self.exp_avg_sq = torch.zeros(total), torch.zeros(total)
        self.step_count = 0
        self._offsets = np.cumsum([0] + [p.numel() for p in self.params])
        # each parameter's .grad is its slice of the gradient buffer: whoever reads gradients
        # (the TensorBoard records) reads them as on the autograd path
        grad = torch.from_numpy(self.grad)
        for param, a, b in zip(self.params, self._offsets[:-1], self._offsets[1:]):
            param.grad = grad[a:b].view_as(param)
        # each parameter's slices of the moment buffers: what Adam's state must hold
        self._moments = [(self.exp_avg[a:b].view_as(p), self.exp_avg_sq[a:b].view_as(p))
                         for p, a, b in zip(self.params, self._offsets[:-1], self._offsets[1:])]
        self._layers = {id(p): i for i, p in enumerate(self.params)}
        self.relu = policy.activation == "relu"
        self.continuous = policy.is_continuous
        self.sde = hasattr(policy.action_head, "reset_noise")  # gSDE: log_std is (features, actions)
        head = policy.action_head.output_layer
        self.actor = self._linear_layers(policy.actor_body) + [self._pair(head)]
        self.critic = self._linear_layers(policy.critic_body) + [self._pair(policy.value_head)]
        self.log_std = self._np(policy.action_head.log_std) if self.continuous else None
        self.attach_optimizer_state()

    # -- parameters and gradients as numpy views -------------------------------------
    def _np(self, param: torch.Tensor) -> np.ndarray:
        return param.data.numpy()

    def _grad_of(self, param: torch.Tensor) -> np.ndarray:
        i = self._layers[id(param)]
        return self.grad[self._offsets[i]: self._offsets[i + 1]].reshape(param.shape)

    def _pair(self, linear: nn.Linear) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self._np(linear.weight), self._np(linear.bias), self._grad_of(linear.weight), self._grad_of(linear.bias)

    def _linear_layers(self, body: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        return [self._pair(layer) for layer in body if isinstance(layer, nn.Linear)]

    def attach_optimizer_state(self) -> None:
        """Make Adam's per-parameter state slices of the flat moment buffers, taking over
        any values already there (a resumed checkpoint's). Cheap when already attached."""
        states = [self.optimizer.state.get(p) for p in self.params]
        if all(s and s.get("exp_avg") is m for s, (m, _) in zip(states, self._moments)):
            return
        step = max((float(s["step"]) for s in states if s and "step" in s), default=0.0)
        self.step_count = int(step)
        for param, state, (m, v) in zip(self.params, states, self._moments):
            if state and "exp_avg" in state:
                m.copy_(state["exp_avg"])
                v.copy_(state["exp_avg_sq"])
            else:
                m.zero_()
                v.zero_()
            self.optimizer.state[param] = {"step": torch.tensor(step), "exp_avg": m, "exp_avg_sq": v}

    def sync_step_count(self) -> None:
        """Write the step count into every parameter's Adam state (once per update)."""
        for param in self.params:
            self.optimizer.state[param]["step"].fill_(float(self.step_count))

    # -- forward passes ---------------------------------------------------------------
    def _activate(self, h: np.ndarray) -> np.ndarray:
        return np.maximum(h, 0, out=h) if self.relu else np.tanh(h, out=h)

    def _body(self, layers: list, x: np.ndarray) -> list[np.ndarray]:
        """Hidden activations [x, h1, ..., hk] (the output layer is not applied)."""
        outs = [x]
        for weight, bias, _, _ in layers[:-1]:
            outs.append(self._activate(_mm(outs[-1], weight.T, bias=bias)))
        return outs

    @staticmethod
    def _out(layer: tuple, h: np.ndarray) -> np.ndarray:
        return _mm(h, layer[0].T, bias=layer[1])

    def values(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        return self._out(self.critic[-1], self._body(self.critic, obs)[-1])[:, 0]

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample actions for a batch of observations: (action, log_prob, value), drawing
        the randomness from torch's generator (so ``seed`` fixes it as on the other path)."""
        obs = np.asarray(obs, dtype=np.float32)
        n = obs.shape[0]
        latent = self._body(self.actor, obs)[-1]
        out = self._out(self.actor[-1], latent)
        value = self.values(obs)
        if self.sde:
            return self._act_sde(latent, out) + (value,)
        if self.continuous:
            std = np.exp(self.log_std)
            noise = torch.randn(out.shape).numpy()
            action = out + std * noise
            log_prob = (-0.5 * noise * noise - self.log_std - HALF_LOG_2PI).sum(axis=1)
            return action, log_prob, value
        log_softmax = _log_softmax(out)
        cdf = np.exp(log_softmax).cumsum(axis=1)
        u = torch.rand(n, 1).numpy()
        action = np.minimum((u > cdf).sum(axis=1), out.shape[1] - 1)
        return action, log_softmax[np.arange(n), action], value

    def act_step(self, obs: np.ndarray, state: torch.Tensor, starts: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
        """The collector's act (rlexp.run.collector.Act): numpy in, numpy out, stored as numpy
        in the rollout's buffers; the (empty) state passes through."""
        action, log_prob, value = self.act(obs)
        return obs, action, log_prob, value, state

    def _act_sde(self, latent: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """gSDE's sample, a = mu(s) + z(s) @ E, with the head's own noise matrices E and
        its schedule for renewing them (StateDependentNoiseHead.sample)."""
        noise = self.policy.action_head.noise_for_sample(latent.shape[0]).numpy()
        action = mean + np.matmul(latent[:, None, :], noise)[:, 0]
        var = _mm(latent * latent, np.exp(2.0 * self.log_std)) + 1e-6
        diff = action - mean
        log_prob = (-0.5 * diff * diff / var - 0.5 * np.log(var) - HALF_LOG_2PI).sum(axis=1)
        return action, log_prob

    # -- one PPO gradient step ----------------------------------------------------------
    def ppo_step(
        self,
        batch: tuple[np.ndarray, ...],
        *,
        clip_range: float,
        clip_range_vf: Optional[float],
        ent_coef: float,
        vf_coef: float,
        normalize_advantage: bool,
        max_grad_norm: Optional[float],
        lr: float,
        kl_limit: Optional[float] = None,
    ) -> Optional[np.ndarray]:
        """Loss, gradient, clipping and Adam for one minibatch, as PPO.loss and
        gradient_step compute them. Returns the STEP_KEYS row, or None without stepping
        when the minibatch's approximate KL exceeds ``kl_limit`` (target_kl's early stop)."""
        obs, actions, old_log_probs, old_values, advantages, returns = batch
        n = obs.shape[0]
        actor_h = self._body(self.actor, obs)
        critic_h = self._body(self.critic, obs)
        head_out = self._out(self.actor[-1], actor_h[-1])
        value = self._out(self.critic[-1], critic_h[-1])[:, 0]

        # log pi(a|s) and the mean entropy of the head's distribution
        if self.sde:  # variance (z^2) @ sigma^2 per sample, z detached: no gradient to the body
            latent_sq = actor_h[-1] * actor_h[-1]
            sigma_sq = np.exp(2.0 * self.log_std)
            var = _mm(latent_sq, sigma_sq) + 1e-6
            inv_var = 1.0 / var
            diff = actions - head_out
            z2 = diff * diff * inv_var  # ((a - mu) / sigma(s))^2
            half_log_var = 0.5 * np.log(var)
            log_prob = (-0.5 * z2 - half_log_var - HALF_LOG_2PI).sum(axis=1)
            entropy_mean = float((0.5 + HALF_LOG_2PI + half_log_var).sum()) / n
        elif self.continuous:
            inv_var = np.exp(-2.0 * self.log_std)
            diff = actions - head_out
            z2 = diff * diff * inv_var  # ((a - mu) / sigma)^2
            log_prob = (-0.5 * z2 - self.log_std - HALF_LOG_2PI).sum(axis=1)
            entropy_mean = float((0.5 + HALF_LOG_2PI + self.log_std).sum())  # the same for every state
        else:
            log_softmax = _log_softmax(head_out)
            probs = np.exp(log_softmax)
            rows = np.arange(n)
            log_prob = log_softmax[rows, actions]
            entropy = -(probs * log_softmax).sum(axis=1)
            entropy_mean = float(entropy.sum()) / n

        if normalize_advantage and n > 1:  # unbiased std, as torch's
            centred = advantages - float(advantages.sum()) / n
            advantages = centred * (1.0 / (math.sqrt(float(np.square(centred).sum()) / (n - 1)) + 1e-8))
        log_ratio = log_prob - old_log_probs
        ratio = np.exp(log_ratio)
        approx_kl = float(((ratio - 1) - log_ratio).sum()) / n
        if kl_limit is not None and approx_kl > kl_limit:
            return None
        unclipped = ratio * advantages
        clipped = np.clip(ratio, 1 - clip_range, 1 + clip_range) * advantages
        policy_loss = -float(np.minimum(unclipped, clipped).sum()) / n
        clip_fraction = float(np.count_nonzero(np.abs(ratio - 1) > clip_range)) / n

        err = value - returns
        if clip_range_vf is None:
            value_loss = float(np.square(err).sum()) / n
            d_value = err * (2.0 * vf_coef / n)
        else:
            delta = value - old_values
            err_clipped = old_values + np.clip(delta, -clip_range_vf, clip_range_vf) - returns
            e1, e2 = err * err, err_clipped * err_clipped
            value_loss = float(np.maximum(e1, e2).sum()) / n
            g1, g2 = 2 * err, 2 * err_clipped * (np.abs(delta) <= clip_range_vf)
            # torch.max's gradient goes to the larger error, split evenly on a tie
            d_value = np.where(e1 > e2, g1, np.where(e2 > e1, g2, 0.5 * (g1 + g2))) * (vf_coef / n)

        # d loss / d log pi: the surrogate's gradient flows where the unclipped term is the minimum
        d_log_prob = np.where(unclipped <= clipped, advantages, 0.0) * ratio * (-1.0 / n)
        grad = self.grad
        if self.sde:
            d_out = (d_log_prob[:, None] * inv_var) * diff
            # d/d var of log pi: (z2 - 1) / (2 var); of the entropy bonus: -ent_coef / (2 var n)
            d_var = (d_log_prob[:, None] * (z2 - 1.0) - ent_coef / n) * (0.5 * inv_var)
            g_log_std = self._grad_of(self.policy.action_head.log_std)
            g_log_std[:] = _mm(latent_sq.T, d_var.astype(np.float32, copy=False)) * (2.0 * sigma_sq)
        elif self.continuous:
            d_out = (d_log_prob[:, None] * inv_var) * diff
            d_log_std = (d_log_prob[:, None] * (z2 - 1.0)).sum(axis=0) - ent_coef
            self._grad_of(self.policy.action_head.log_std)[:] = d_log_std
        else:
            d_out = probs * -d_log_prob[:, None]
            d_out[rows, actions] += d_log_prob
            if ent_coef:
                d_out += (ent_coef / n) * probs * (log_softmax + entropy[:, None])
        self._backward(self.actor, actor_h, d_out.astype(np.float32, copy=False))
        self._backward(self.critic, critic_h, d_value.astype(np.float32, copy=False)[:, None])

        grad_norm = math.sqrt(float(np.square(grad).sum()))
        if max_grad_norm is not None:
            coef = max_grad_norm / (grad_norm + 1e-6)
            if coef < 1.0:
                grad *= np.float32(coef)
        self._adam(lr)
        weighted_value, weighted_entropy = vf_coef * value_loss, -ent_coef * entropy_mean
        total = policy_loss + weighted_value + weighted_entropy
        return np.array([policy_loss, weighted_value, weighted_entropy, total, entropy_mean, approx_kl, clip_fraction, grad_norm])

    def _backward(self, layers: list, hidden: list[np.ndarray], d_out: np.ndarray) -> None:
        """Gradients of every layer of one MLP from d loss / d output (into self.grad)."""
        weight, _, g_weight, g_bias = layers[-1]
        _mm(d_out.T, hidden[-1], out=g_weight)
        d_h = d_out * weight if d_out.shape[1] == 1 else _mm(d_out, weight)  # the value head: an outer product
        d_out.sum(axis=0, out=g_bias)
        for i in range(len(layers) - 2, -1, -1):
            h = hidden[i + 1]
            if self.relu:
                d_h *= h > 0
            else:
                d_h *= 1 - h * h
            weight, _, g_weight, g_bias = layers[i]
            _mm(d_h.T, hidden[i], out=g_weight)
            d_h.sum(axis=0, out=g_bias)
            if i > 0:
                d_h = _mm(d_h, weight)

    def _adam(self, lr: float) -> None:
        """torch.optim.Adam's update (no weight decay) on the flat buffers."""
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        self.step_count += 1
        t = self.step_count
        m, v, g = self.exp_avg.numpy(), self.exp_avg_sq.numpy(), self.grad
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        denom = np.sqrt(v)
        denom *= 1 / math.sqrt(1 - beta2 ** t)
        denom += eps
        step = m / denom
        step *= lr / (1 - beta1 ** t)
        self.flat -= step

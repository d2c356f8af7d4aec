"""The actor-critic the algorithms train: encoder torsos for the actor and the critic, an
action head chosen by the action space and a value head; and its recurrent form, with an
LSTM or GRU core between the encoder and the torso (rlexp.networks.recurrent)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional, Sequence

import gymnasium as gym
import torch
from torch import nn

from rlexp.errors import ConfigError, require
from rlexp.networks.encoders import ACTIVATIONS, INITS, CnnSpec, EntryEncoder, lecun_normal_init, make_encoder, mlp, orthogonal_init
from rlexp.networks.heads import make_action_head
from rlexp.networks.recurrent import CORES, RecurrentCore
from rlexp.data.observations import AGENT_ID_KEY, MASK_KEY, POLICY_KEY, STATE_KEY, Tree, is_mask_space, lead_shape, tree_map

#: network.precision: float32 throughout, or the encoders and torsos in bfloat16 autocast
PRECISIONS = ("fp32", "bf16")

if TYPE_CHECKING:  # the batch type the algorithms hand over (rlexp.data.rollout imports no network)
    from rlexp.data.rollout import Sequences


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (a GPU from Ampere on; a CPU with
    AVX512-BF16 or AMX, as oneDNN reports it). Elsewhere autocast to bfloat16 still runs,
    emulated, and is slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a private query: absent from some builds
            return False
    return False


def resolve_init(init: Optional[str], ortho_init: Optional[bool]) -> str:
    """network.init from the config: ``ortho_init`` is its older, SB3-style name (true: orthogonal,
    false: torch) and still works; given both, they must agree unless init is the default."""
    require(init is None or init in INITS, "init", f"must be one of {', '.join(INITS)}, got {init!r}")
    if ortho_init is None:
        return init or "orthogonal"
    old = "orthogonal" if ortho_init else "torch"
    if init not in (None, "orthogonal", old):
        raise ConfigError("init", f"network.init={init} and network.ortho_init={ortho_init} disagree: "
                                  "set network.init only (ortho_init is its old name)")
    return old


class ActorCritic(nn.Module):
    """A policy pi(a|s) and a state-value V(s): encoder -> MLP torso -> heads, separate for
    the actor and the critic or one shared encoder and torso (``shared``).

    The encoder is chosen by the observation space (rlexp.networks.encoders: a CNN for
    images, one-hots for discrete entries, one encoder per Dict/Tuple entry), the action
    head by the action space (rlexp.networks.heads). ``hidden_sizes`` may be empty: the
    heads then read the encoder's features (the Atari setting, a CNN straight into them).

    Orthogonal init follows the PPO implementation details everyone copies: sqrt(2)
    for hidden layers, 0.01 for the policy output (near-uniform initial policy) and
    1 for the value output.

    ``recurrent="lstm"`` or ``"gru"`` builds a :class:`RecurrentActorCritic` instead, so every
    config names this one ``_target_``.

    An observation that carries an action mask (a Dict with a bool ``action_mask`` entry, as
    rlexp.envs.masks writes it) masks the action head everywhere the policy acts or is
    evaluated: sampling, the mode, log-probabilities and entropy in the update (with the mask
    stored beside the observation at collection). The encoders do not read the mask unless
    ``mask_input``.

    ``precision="bf16"`` runs the encoders and torsos under ``torch.autocast`` in bfloat16
    (mixed precision: the weights, the gradients and the optimizer stay float32) and hands
    float32 features to the heads, so log-probabilities, ratios and values are float32. It
    pays where convolutions dominate, on GPUs and on CPUs with bfloat16 units (AVX512-BF16,
    AMX): the Nature CNN's forward and backward pass ran 2.5x faster on this project's CPU
    (docs/benchmark.md).
    """

    def __new__(cls, *args: Any, recurrent: Optional[str] = None, **kwargs: Any):
        space = args[0] if args else kwargs.get("observation_space")
        if cls is ActorCritic and isinstance(space, gym.spaces.Dict) and POLICY_KEY in space.spaces:
            cls = PolicyMap  # rows of several policies (env.policies): one ActorCritic per policy
        elif cls is ActorCritic and recurrent is not None:
            cls = RecurrentActorCritic
        return super().__new__(cls)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared: bool = False,
        init: Optional[str] = None,
        ortho_init: Optional[bool] = None,
        log_std_init: Optional[float] = None,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        encoder: str | dict[str, str] = "auto",
        cnn: Optional[dict[str, Any]] = None,
        recurrent: Optional[str] = None,
        recurrent_size: int = 256,
        recurrent_layers: int = 1,
        precision: str = "fp32",
        mask_input: bool = False,
    ):
        super().__init__()
        init = resolve_init(init, ortho_init)
        require(precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        hidden_sizes = [int(h) for h in hidden_sizes]
        require(all(h >= 1 for h in hidden_sizes), "hidden_sizes", f"must be a list of positive ints (empty: the heads read the encoder), got {hidden_sizes}")
        require(activation in ACTIVATIONS, "activation", f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if log_std_init is not None and not isinstance(action_space, gym.spaces.Box):
            raise ConfigError("log_std_init", f"applies to continuous (Box) action spaces only; this env's actions are {action_space}")
        try:
            cnn_spec = CnnSpec(**(cnn or {}))
        except TypeError as e:
            raise ConfigError("cnn", str(e).replace("CnnSpec.__init__() ", "")) from None
        self.shared, self.activation = shared, activation
        self.is_continuous = isinstance(action_space, gym.spaces.Box)
        #: whether the observations carry an action mask (rlexp.envs.masks) for the action head
        self.masked = is_mask_space(observation_space)
        if self.masked and isinstance(action_space, gym.spaces.Box):
            raise ConfigError("env.action_mask", f"masks apply to discrete actions; this env's actions are {action_space}: set env.action_mask=none")
        #: a centralised critic: V reads the observation's ``state`` entry (and the agent's index), the actor never does
        self.central = isinstance(observation_space, gym.spaces.Dict) and STATE_KEY in observation_space.spaces
        if self.central:
            require(not shared and recurrent is None, "shared" if shared else "recurrent",
                    "a centralised critic (env.critic_input=global_state) needs separate feed-forward actor and critic: "
                    "network.shared=false network.recurrent=null")
            actor_space = gym.spaces.Dict({k: v for k, v in observation_space.spaces.items() if k != STATE_KEY})
            critic_space = gym.spaces.Dict({k: v for k, v in observation_space.spaces.items() if k in (STATE_KEY, AGENT_ID_KEY)})
        else:
            actor_space = critic_space = observation_space
        self.actor_encoder = self._make_encoder(actor_space, encoder, cnn_spec, mask_input)
        self.critic_encoder = self.actor_encoder if shared else self._make_encoder(critic_space, encoder, cnn_spec, mask_input)
        # the torso reads the recurrent core's output where there is one
        features = self.actor_encoder.out_features if recurrent is None else recurrent_size
        self.actor_body = mlp(features, hidden_sizes, activation)
        critic_features = self.critic_encoder.out_features if recurrent is None else recurrent_size
        self.critic_body = self.actor_body if shared else mlp(critic_features, hidden_sizes, activation)
        out = hidden_sizes[-1] if hidden_sizes else features
        self.action_head = make_action_head(action_space, out, 0.0 if log_std_init is None else log_std_init, use_sde, sde_sample_freq)
        self.value_head = nn.Linear(out, 1)
        self.init = init
        if init == "lecun_normal":
            lecun_normal_init(self)
        elif init == "orthogonal":
            orthogonal_init(self.actor_encoder, math.sqrt(2))
            orthogonal_init(self.critic_encoder, math.sqrt(2))
            orthogonal_init(self.actor_body, math.sqrt(2))
            orthogonal_init(self.critic_body, math.sqrt(2))
            orthogonal_init(self.action_head.output_layer, 0.01)
            orthogonal_init(self.value_head, 1.0)
        for module in self.modules():  # convolution weights in channels-last memory, as their input (CnnEncoder)
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)

    def _make_encoder(self, space: gym.Space, encoder: Any, cnn_spec: CnnSpec, mask_input: bool) -> nn.Module:
        """The encoder of ``space``; with an action mask, of the entries other than the mask
        (one entry left: that entry's own encoder) unless ``mask_input``."""
        if not self.masked or mask_input:
            return make_encoder(space, encoder, cnn_spec)
        rest = {key: sub for key, sub in space.spaces.items() if key != MASK_KEY}
        if len(rest) == 1:
            (key, sub), = rest.items()
            if isinstance(encoder, dict) or hasattr(encoder, "keys"):
                encoder = dict(encoder).get(key, "auto")
            return EntryEncoder(key, make_encoder(sub, encoder, cnn_spec))
        return make_encoder(gym.spaces.Dict(rest), encoder, cnn_spec)

    def mask_of(self, obs: Any) -> Optional[torch.Tensor]:
        """The action mask a batch of observations carries (None without masks)."""
        return obs[MASK_KEY] if self.masked else None

    def _low_precision(self, fn: Any, x: Any) -> torch.Tensor:
        """``fn(x)``, under bfloat16 autocast where ``precision="bf16"``; float32 out either way."""
        if self.precision == "fp32":
            return fn(x)
        with torch.autocast(self.value_head.weight.device.type, dtype=torch.bfloat16):
            out = fn(x)
        return out.float()

    def _trunk(self, encoder: nn.Module, body: nn.Module, obs: Any) -> torch.Tensor:
        """Encoder then MLP torso: the features a head reads."""
        return self._low_precision(lambda x: body(encoder(x)), obs)

    def _features(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        actor = self._trunk(self.actor_encoder, self.actor_body, obs)
        critic = actor if self.shared else self._trunk(self.critic_encoder, self.critic_body, obs)
        return actor, critic

    # -- the policy interface: every policy (this one and RecurrentActorCritic) answers these --------
    # A policy carries a state per environment, empty here ((N, 0): nothing to carry), an LSTM's
    # or GRU's in RecurrentActorCritic; ``starts`` (N,) says where an episode begins (the state is
    # zeroed there). Callers pass both along and never ask which kind of policy they hold.
    def initial_state(self, batch_size: int, device: Any = None) -> torch.Tensor:
        """The state of every environment before its first step: nothing, for a feed-forward policy."""
        device = device if device is not None else self.value_head.weight.device
        return torch.zeros(batch_size, 0, device=device)

    def act(self, obs: Any, state: torch.Tensor, starts: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions for a batch of observations: (action, log_prob, value, new state)."""
        actor, critic = self._features(obs)
        dist = self.action_head(actor, self.mask_of(obs))
        action = self.action_head.sample(dist)
        return action, self.action_head.log_prob(dist, action), self.value_head(critic).squeeze(-1), state

    def value(self, obs: Any, state: torch.Tensor, starts: Any) -> torch.Tensor:
        """V(s) of a batch of observations (the bootstrap value at the end of a rollout)."""
        return self.value_head(self._trunk(self.critic_encoder, self.critic_body, obs)).squeeze(-1)

    def predict(self, obs: Any, state: torch.Tensor, starts: Any, deterministic: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, new state): the distribution's mode, or a sample."""
        dist = self.action_head(self._trunk(self.actor_encoder, self.actor_body, obs), self.mask_of(obs))
        return (self.action_head.mode(dist) if deterministic else self.action_head.sample(dist)), state

    def evaluate_actions(self, obs: Any, actions: torch.Tensor, seq: Optional["Sequences"] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log_prob, entropy, value) of given actions under the current parameters (``seq``:
        the batch as sequences, which only a recurrent policy reads)."""
        actor, critic = self._features(obs)
        dist = self.action_head(actor, self.mask_of(obs))
        return self.action_head.log_prob(dist, actions), self.action_head.entropy(dist), self.value_head(critic).squeeze(-1)

    def distribution(self, obs: Any, seq: Optional["Sequences"] = None) -> Any:
        """The policy's action distribution on a batch of observations."""
        return self.action_head(self._trunk(self.actor_encoder, self.actor_body, obs), self.mask_of(obs))

    def reset_noise(self, batch_size: int) -> None:
        """Start a rollout: draw fresh gSDE noise matrices (nothing to do for other heads)."""
        if hasattr(self.action_head, "reset_noise"):
            self.action_head.reset_noise(batch_size)


class RecurrentActorCritic(ActorCritic):
    """ActorCritic with a recurrent core between the encoder and the MLP torso. The actor and
    the critic each have a core, or (``shared``) one core feeds both.

    The same interface as ActorCritic; here the state is the cores' (N, rows, hidden) and
    ``evaluate_actions`` re-runs the batch's sequences from the state stored at their start. ``ActorCritic(recurrent="lstm", ...)`` builds one of these (see
    ``ActorCritic.__new__``), so the configs keep one ``_target_``.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, *, recurrent: str, recurrent_size: int = 256,
                 recurrent_layers: int = 1, shared: bool = False, **kwargs: Any):
        require(recurrent in CORES, "recurrent", f"must be null, lstm or gru, got {recurrent!r}")
        require(isinstance(recurrent_size, int) and recurrent_size >= 1, "recurrent_size", f"must be a positive int, got {recurrent_size!r}")
        require(isinstance(recurrent_layers, int) and recurrent_layers >= 1, "recurrent_layers",
                f"must be a positive int, got {recurrent_layers!r}")
        super().__init__(observation_space, action_space, shared=shared, recurrent=recurrent, recurrent_size=recurrent_size, **kwargs)
        features = self.actor_encoder.out_features
        orthogonal = self.init == "orthogonal"  # else the cores keep PyTorch's own init
        self.actor_core = RecurrentCore(recurrent, features, recurrent_size, recurrent_layers, orthogonal)
        self.critic_core = self.actor_core if shared else RecurrentCore(recurrent, features, recurrent_size, recurrent_layers, orthogonal)
        self.recurrent = recurrent
        self.actor_rows = self.actor_core.rows
        self.state_rows = self.actor_rows * (1 if shared else 2)

    def initial_state(self, batch_size: int, device: Any = None) -> torch.Tensor:
        """Zeros: the state of every environment before its first step."""
        device = device if device is not None else next(self.parameters()).device
        return torch.zeros(batch_size, self.state_rows, self.actor_core.hidden_size, device=device)

    # -- the sequence forward pass -----------------------------------------------------
    def _encode(self, encoder: nn.Module, obs: Tree) -> torch.Tensor:
        """(T, N, ...) observations through an encoder that takes (batch, ...). With
        ``precision="bf16"`` only the encoder runs in bfloat16: the core and torso stay float32."""
        lead = lead_shape(obs, 2)
        flat = self._low_precision(encoder, tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), obs))
        return flat.reshape(*lead, -1)

    def sequence_features(self, obs: Tree, state: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(actor features, critic features, final state) of (T, N, ...) observations."""
        actor_state, critic_state = state[:, : self.actor_rows], state[:, self.actor_rows:]
        actor_out, actor_state = self.actor_core(self._encode(self.actor_encoder, obs), actor_state, starts)
        actor = self.actor_body(actor_out)
        if self.shared:
            return actor, actor, actor_state
        critic_out, critic_state = self.critic_core(self._encode(self.critic_encoder, obs), critic_state, starts)
        return actor, self.critic_body(critic_out), torch.cat([actor_state, critic_state], dim=1)

    def _step(self, obs: Tree, state: torch.Tensor, starts: Any):
        """One step of N envs: obs (N, ...), starts (N,) -> (actor, critic) features (N, F) and the new state.
        ``starts`` may come as the env's numpy flags: it becomes a tensor here, not per step in the collector."""
        starts = torch.as_tensor(starts, device=state.device)
        actor, critic, state = self.sequence_features(tree_map(lambda x: x.unsqueeze(0), obs), state, starts.unsqueeze(0))
        return actor[0], critic[0], state

    # -- what the trainer, the algorithms and evaluation call --------------------------
    def act(self, obs: Tree, state: torch.Tensor, starts: Any):
        """Sample actions for one step: (action, log_prob, value, new state)."""
        actor, critic, state = self._step(obs, state, starts)
        dist = self.action_head(actor, self.mask_of(obs))
        action = self.action_head.sample(dist)
        return action, self.action_head.log_prob(dist, action), self.value_head(critic).squeeze(-1), state

    def value(self, obs: Tree, state: torch.Tensor, starts: Any) -> torch.Tensor:
        _, critic, _ = self._step(obs, state, starts)
        return self.value_head(critic).squeeze(-1)

    def predict(self, obs: Tree, state: torch.Tensor, starts: Any, deterministic: bool = True):
        """(action, new state) for one step."""
        actor, _, state = self._step(obs, state, starts)
        dist = self.action_head(actor, self.mask_of(obs))
        return (self.action_head.mode(dist) if deterministic else self.action_head.sample(dist)), state

    def evaluate_actions(self, obs: Any, actions: torch.Tensor, seq: Optional["Sequences"] = None):
        """(log_prob, entropy, value) of the batch's actions, re-running its sequences."""
        if seq is None:
            raise ValueError("a recurrent policy evaluates sequences: the batch has no `seq`")
        actor, critic, _ = self.sequence_features(seq.obs, seq.state, seq.starts)
        dist = self.action_head(seq.to_flat(actor), self.mask_of(obs))
        value = self.value_head(seq.to_flat(critic)).squeeze(-1)
        return self.action_head.log_prob(dist, actions), self.action_head.entropy(dist), value

    def distribution(self, obs: Any, seq: Optional["Sequences"] = None):
        if seq is None:
            raise ValueError("a recurrent policy evaluates sequences: the batch has no `seq`")
        actor, _, _ = self.sequence_features(seq.obs, seq.state, seq.starts)
        return self.action_head(seq.to_flat(actor), self.mask_of(obs))


class PolicyMap(ActorCritic):
    """Several policies behind the one policy interface: rows of a batch played by different
    policies (rlexp.envs.multiagent's ``env.policies``: agent groups, each with its own network).
    The observation is a Dict: a one-hot ``policy`` entry says which policy plays the row, and
    each policy reads the entry of its name (zeros in the other rows). Every call splits the
    batch by policy, runs each policy on its own rows only, and puts the results back in the
    batch's order, so no row's loss reaches another policy's parameters. The network config
    applies to each policy. Discrete actions (Categorical heads), feed-forward."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, recurrent: Optional[str] = None, **kwargs: Any):
        nn.Module.__init__(self)
        require(recurrent is None, "recurrent", "separate policies per agent group (env.policies) are feed-forward; set network.recurrent=null")
        require(isinstance(action_space, gym.spaces.Discrete), "env.policies",
                f"separate policies take Discrete actions; this game's are {action_space}")
        spaces = observation_space.spaces
        self.names = sorted(key for key in spaces if key != POLICY_KEY)  # the order of the one-hot ``policy`` entry
        self.policies = nn.ModuleDict({name: ActorCritic(spaces[name], action_space, **kwargs) for name in self.names})
        self.precision, self.masked, self.shared, self.central = "fp32", False, False, False

    def rows(self, obs: Any) -> list[tuple[nn.Module, Any, torch.Tensor]]:
        """(policy, its rows' observations, their indices) for every policy with rows in the batch."""
        which = obs[POLICY_KEY].argmax(dim=-1)
        out = []
        for i, name in enumerate(self.names):
            index = torch.nonzero(which == i).squeeze(-1)
            if index.numel():
                out.append((self.policies[name], obs[name].index_select(0, index), index))
        return out

    @staticmethod
    def merged(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Per-policy results put back in the batch's row order (differentiable): every row has
        exactly one policy, so the parts' indices are a permutation of the rows."""
        index = torch.cat([i for i, _ in parts])
        return torch.cat([v for _, v in parts]).index_select(0, torch.argsort(index))

    def initial_state(self, batch_size: int, device: Any = None) -> torch.Tensor:
        device = device if device is not None else next(self.parameters()).device
        return torch.zeros(batch_size, 0, device=device)

    def act(self, obs: Any, state: torch.Tensor, starts: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        outs = [(index, policy.act(sub, state[:0], starts)) for policy, sub, index in self.rows(obs)]
        action, log_prob, value = (self.merged([(i, out[k]) for i, out in outs]) for k in range(3))
        return action, log_prob, value, state

    def value(self, obs: Any, state: torch.Tensor, starts: Any) -> torch.Tensor:
        return self.merged([(index, policy.value(sub, state[:0], starts)) for policy, sub, index in self.rows(obs)])

    def predict(self, obs: Any, state: torch.Tensor, starts: Any, deterministic: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [(index, policy.predict(sub, state[:0], starts, deterministic)[0]) for policy, sub, index in self.rows(obs)]
        return self.merged(parts), state

    def evaluate_actions(self, obs: Any, actions: torch.Tensor, seq: Optional["Sequences"] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outs = [(index, policy.evaluate_actions(sub, actions.index_select(0, index))) for policy, sub, index in self.rows(obs)]
        return tuple(self.merged([(i, out[k]) for i, out in outs]) for k in range(3))

    def distribution(self, obs: Any, seq: Optional["Sequences"] = None) -> Any:
        from torch.distributions import Categorical

        parts = [(index, policy.distribution(sub).logits) for policy, sub, index in self.rows(obs)]
        return Categorical(logits=self.merged(parts), validate_args=False)

    def reset_noise(self, batch_size: int) -> None:
        pass

"""Structured-config schemas: the types of every group, checked by Hydra at compose time.

Values live in conf/*.yaml (the only place defaults live); these dataclasses only say
which keys exist and what type each holds, so ``algo.n_epochs=abc`` or a misspelt key
fails before any work starts and names the key. Each group file pulls its schema in
with ``defaults: [/schema/<group>/<name>@_here_, _self_]``. A new algorithm may ship
without a schema; it then gets no type checks but works the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class AlgoSchema:
    _target_: str = MISSING
    learning_rate: float = MISSING
    lr_schedule: str = MISSING
    lr_warmup: float = MISSING
    n_steps: int = MISSING
    gamma: float = MISSING
    gae_lambda: float = MISSING
    ent_coef: float = MISSING
    vf_coef: float = MISSING
    max_grad_norm: Optional[float] = MISSING
    normalize_advantage: bool = MISSING
    optimizer: Any = MISSING


@dataclass
class PPOSchema(AlgoSchema):
    batch_size: int = MISSING
    n_epochs: int = MISSING
    clip_range: float = MISSING
    clip_range_schedule: str = MISSING
    clip_range_vf: Optional[float] = MISSING
    target_kl: Optional[float] = MISSING
    sequence_length: Optional[int] = None  # recurrent policies: chunk length of a minibatch's sequences


@dataclass
class A2CSchema(AlgoSchema):
    """A2C takes exactly the keys every GAE-based algorithm shares."""


@dataclass
class MonteCarloSchema:
    """REINFORCE and its baseline variant: no GAE (no gae_lambda), complete episodes."""

    _target_: str = MISSING
    learning_rate: float = MISSING
    lr_schedule: str = MISSING
    lr_warmup: float = MISSING
    n_steps: int = MISSING
    gamma: float = MISSING
    ent_coef: float = MISSING
    max_grad_norm: Optional[float] = MISSING
    normalize_returns: bool = MISSING
    optimizer: Any = MISSING


@dataclass
class ReinforceSchema(MonteCarloSchema):
    """Plain REINFORCE takes exactly the shared Monte Carlo keys."""


@dataclass
class ReinforceBaselineSchema(MonteCarloSchema):
    vf_coef: float = MISSING
    normalize_advantage: bool = MISSING


@dataclass
class EnvSchema:
    _target_: str = MISSING
    id: str = MISSING
    num_envs: int = MISSING
    backend: str = MISSING
    vectorization: str = MISSING
    normalize_obs: bool = MISSING
    normalize_reward: bool = MISSING
    clip_obs: Optional[float] = MISSING
    clip_reward: Optional[float] = MISSING
    max_episode_steps: Optional[int] = MISSING
    make_kwargs: Dict[str, Any] = field(default_factory=dict)
    obs_keys: Optional[List[str]] = None
    mask_velocity: bool = False
    action_mask: str = "auto"  # auto | obs | info | method | none (rlexp.envs.masks)
    info_metrics: Any = None  # [key, ...] or {key: mean|sum|max|min}: info values logged at episode ends


@dataclass
class AtariEnvSchema(EnvSchema):
    """env=atari (rlexp.envs.atari.AtariSpec): the standard Atari preprocessing."""

    noop_max: int = MISSING
    frame_skip: int = MISSING
    screen_size: int = MISSING
    frame_stack: int = MISSING
    fire_reset: bool = MISSING
    episodic_life: bool = MISSING
    sign_rewards: bool = MISSING
    repeat_action_probability: float = MISSING
    full_action_space: bool = MISSING
    threads: int = MISSING


@dataclass
class PettingZooEnvSchema(EnvSchema):
    """env=pettingzoo (rlexp.envs.multiagent.PettingZooSpec): PettingZoo games, one row per agent or per learner seat."""

    api: str = "auto"  # auto | parallel | aec
    agent_id_input: bool = True
    critic_input: str = "own"  # own | global_state
    policies: List[str] = field(default_factory=list)  # ["<agent-name pattern>:<policy name>", ...]
    opponent: str = "random"  # turn-based games: random | package.module:function


@dataclass
class SelfPlaySchema:
    snapshot_every: int = 10
    pool_size: int = 8
    latest_share: float = 0.5
    opponents: List[str] = field(default_factory=lambda: ["pool"])
    elo_k: float = 16.0


@dataclass
class CnnSchema:
    channels: Optional[List[int]] = None
    kernels: Optional[List[int]] = None
    strides: Optional[List[int]] = None
    features: int = 512


@dataclass
class NetworkSchema:
    _target_: str = MISSING
    hidden_sizes: List[int] = MISSING
    activation: str = MISSING
    shared: bool = MISSING
    init: str = "orthogonal"  # orthogonal | lecun_normal | torch (rlexp.networks.encoders.INITS)
    ortho_init: Optional[bool] = None  # init's older, SB3-style name: true = orthogonal, false = torch
    log_std_init: Optional[float] = MISSING
    use_sde: bool = MISSING
    sde_sample_freq: int = MISSING
    encoder: Any = "auto"  # auto | flatten | cnn, or {entry: kind} for Dict observations
    cnn: CnnSchema = field(default_factory=CnnSchema)
    recurrent: Optional[str] = None  # null | lstm | gru
    recurrent_size: int = 256
    recurrent_layers: int = 1
    precision: str = "fp32"  # fp32 | bf16 (encoders and torsos in bfloat16 autocast)
    mask_input: bool = False  # action masks: the encoders also read the mask (by default it only masks the head)


@dataclass
class DiagnosticsSchema:
    mode: str = MISSING
    window: int = MISSING
    entropy_collapse_fraction: float = MISSING
    early_fraction: float = MISSING
    max_approx_kl: float = MISSING
    max_approx_kl_once: float = MISSING
    warmup_fraction: float = MISSING
    max_best_explained_variance: float = MISSING
    flat_return_fraction: float = MISSING
    max_entropy_fraction: float = MISSING
    first_ratio_tolerance: float = MISSING
    max_abs_reward: float = MISSING
    max_abs_value_target: float = MISSING


@dataclass
class TensorBoardLoggerSchema:
    _target_: str = MISSING
    subdir: str = MISSING
    flush_secs: int = MISSING
    histogram_every: int = MISSING


@dataclass
class MLflowLoggerSchema:
    _target_: str = MISSING
    tracking_uri: str = MISSING
    experiment: Optional[str] = MISSING
    artifacts: List[str] = MISSING


@dataclass
class WandbLoggerSchema:
    _target_: str = MISSING
    project: str = MISSING
    entity: Optional[str] = MISSING
    mode: str = MISSING
    histogram_every: int = MISSING
    artifacts: List[str] = MISSING


@dataclass
class EvalSchema:
    every_steps: int = MISSING
    episodes: int = MISSING
    deterministic: bool = MISSING
    stop_at: Optional[float] = MISSING
    device: str = MISSING
    video: bool = MISSING
    video_frames: int = MISSING


@dataclass
class CheckpointSchema:
    every_updates: int = MISSING


@dataclass
class DistributedSchema:
    nproc: int = MISSING
    backend: str = MISSING


@dataclass
class RunSchema:
    seed: int = MISSING
    device: str = MISSING
    total_steps: int = MISSING
    torch_threads: int = MISSING
    compile: bool = MISSING
    fast_cpu: Any = MISSING  # auto | true | false
    progress: bool = MISSING
    log_interval: int = MISSING
    resume: Optional[str] = MISSING
    eval: EvalSchema = field(default_factory=EvalSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    distributed: DistributedSchema = field(default_factory=DistributedSchema)
    selfplay: SelfPlaySchema = field(default_factory=SelfPlaySchema)
    algo: Any = MISSING
    env: Any = MISSING
    network: Any = MISSING
    logger: Any = MISSING  # {name: {_target_: ...}} for each chosen logger; a saved run may hold one node with a _target_
    diagnostics: Any = None  # absent from configs saved before it existed
    callbacks: Any = MISSING  # a list of {_target_: ...} nodes (rlexp.run.callbacks.Callback subclasses)


GROUP_SCHEMAS = {
    "algo": {
        "ppo": PPOSchema,
        "a2c": A2CSchema,
        "reinforce": ReinforceSchema,
        "reinforce_baseline": ReinforceBaselineSchema,
        "common": AlgoSchema,
    },
    "env": {"env": EnvSchema, "atari": AtariEnvSchema, "pettingzoo": PettingZooEnvSchema},
    "network": {"mlp": NetworkSchema},
    "logger": {"tensorboard": TensorBoardLoggerSchema, "mlflow": MLflowLoggerSchema, "wandb": WandbLoggerSchema},
    "diagnostics": {"diagnostics": DiagnosticsSchema},
}


def register_schemas() -> None:
    """Put every schema in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunSchema)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=node)


register_schemas()


def run_name(env_id: Any) -> str:
    """The env part of a run directory's name: a short, filesystem-safe form of ``env.id``
    (``MiniGrid-DoorKey-5x5-v0`` -> ``minigrid-doorkey-5x5-v0``, ``ALE/Pong-v5`` -> ``pong-v5``,
    ``MinAtar/Breakout-v1`` -> ``minatar-breakout-v1``, ``my.pkg:Maze-v0`` -> ``maze-v0``,
    ``pettingzoo.classic.connect_four_v3`` -> ``connect_four_v3``).
    The ``ALE/`` namespace is dropped (every Atari id has it); any other namespace stays as a
    prefix. conf/config.yaml names run and multirun job directories with it:
    ``${rlexp.run_name:${env.id}}``."""
    import re

    text = str(env_id).rpartition(":")[2]  # a module-qualified id: the module is not the env
    namespace, _, name = text.rpartition("/")
    if namespace.upper() != "ALE" and namespace:
        name = f"{namespace}-{name}"
    elif "." in name:  # a PettingZoo game module (mpe2.simple_spread_v3): the game's own name
        name = name.rpartition(".")[2]
    return re.sub(r"[^a-z0-9_]+", "-", name.lower()).strip("-_") or "env"  # no dots, slashes or spaces


def job_number() -> int | None:
    """This job's number in a multirun (``hydra.job.num``); None in a single run, a run started
    from Python, or outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    mode = OmegaConf.select(hydra_cfg, "mode", default=None)
    if mode is None or getattr(mode, "name", str(mode)) != "MULTIRUN":
        return None
    return OmegaConf.select(hydra_cfg, "job.num", default=None)


#: config groups rlexp-train --help leaves out: Hydra's own and the schemas above (internal)
HIDDEN_GROUPS = ("hydra", "schema")


def config_groups() -> str:
    """The config groups a user picks from, one line each (``algo: a2c, ppo, ...``), as
    Hydra's ``$APP_CONFIG_GROUPS`` lists them but without the internal ``schema/*`` groups:
    rlexp-train --help's template (conf/config.yaml) shows this."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    loader = GlobalHydra.instance().config_loader()
    lines = []

    def walk(parent: str) -> None:
        for group in sorted(loader.list_groups(parent)):
            name = f"{parent}/{group}" if parent else group
            if name.split("/")[0] in HIDDEN_GROUPS:
                continue
            options = sorted(loader.get_group_options(name, ObjectType.CONFIG))
            if options:
                lines.append(f"{name}: {', '.join(options)}")
            walk(name)

    walk("")
    return "\n".join(lines)


def register_resolvers() -> None:
    """OmegaConf resolvers the conf/ tree uses (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("rlexp.run_name"):
        OmegaConf.register_new_resolver("rlexp.run_name", run_name)
    if not OmegaConf.has_resolver("rlexp.config_groups"):
        OmegaConf.register_new_resolver("rlexp.config_groups", config_groups)


register_resolvers()


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(overrides: Sequence[str] = ()) -> Any:
    """The run config that ``rlexp-train <overrides>`` would get, composed outside a Hydra
    app (benchmarks, profiling)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def with_current_defaults(cfg: Any) -> Any:
    """A run's config with the run-level keys it predates (a run saved by an older rlexp, which
    resume composes as it was saved) taken from today's conf/config.yaml, the one place their
    defaults live; a config that has them all comes back as it is."""
    from omegaconf import OmegaConf

    base = OmegaConf.load(CONF_DIR / "config.yaml")
    for key in ("defaults", "hydra"):
        base.pop(key, None)
    absent = object()
    lacking = [key for key in leaf_keys(base) if OmegaConf.select(cfg, key, default=absent) is absent]
    if not lacking:
        return cfg
    filled = OmegaConf.merge(base, OmegaConf.to_container(cfg))
    OmegaConf.set_struct(filled, True)
    return filled


def leaf_keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for key, value in node.items_ex(resolve=False):
        path = f"{prefix}{key}"
        keys += leaf_keys(value, path + ".") if isinstance(value, DictConfig) else [path]
    return keys

"""Dataclass schemas of the configs, registered in Hydra's ConfigStore.

Each YAML file in ``conf/`` lists its schema first in its defaults list (e.g.
``callbacks/step_decay.yaml`` starts with ``- step_decay_schema``), so a misspelled or
unknown key fails when the config is composed, with Hydra naming the key. Each schema
holds exactly the constructor arguments of its ``_target_`` (tests check this).

Keyed groups (``callbacks``, ``logger``) hold ``{name: object}`` so several files can be
selected at once (``callbacks: [step_decay, warmup]``); their schemas are keyed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# --------------------------------------------------------------------------- callbacks


@dataclass
class StepDecayConf:
    _target_: str = "lr_callbacks.StepDecay"
    step_size: int = MISSING
    gamma: float = 0.1
    interval: str = "epoch"


@dataclass
class ExponentialDecayConf:
    _target_: str = "lr_callbacks.ExponentialDecay"
    gamma: float | None = None
    k: float | None = None
    interval: str = "epoch"


@dataclass
class CosineAnnealingConf:
    _target_: str = "lr_callbacks.CosineAnnealing"
    T_max: int = MISSING
    eta_min: float = 0.0
    interval: str = "epoch"


@dataclass
class CosineWarmRestartsConf:
    _target_: str = "lr_callbacks.CosineWarmRestarts"
    T_0: int = MISSING
    T_mult: int = 1
    eta_min: float = 0.0
    interval: str = "epoch"


@dataclass
class CyclicLRConf:
    _target_: str = "lr_callbacks.CyclicLR"
    base_lr: Any = MISSING  # float or one per param group
    max_lr: Any = MISSING
    step_size_up: int = MISSING
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    interval: str = "step"


@dataclass
class OneCycleConf:
    _target_: str = "lr_callbacks.OneCycle"
    max_lr: Any = MISSING  # float, one per group, or null (each group's base LR)
    total_steps: int | None = None
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    interval: str = "step"


@dataclass
class ReduceOnPlateauConf:
    _target_: str = "lr_callbacks.ReduceOnPlateau"
    monitor: str = MISSING
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: Any = 0.0  # float or one per param group
    eps: float = 1e-8
    interval: str = "epoch"


@dataclass
class WarmupConf:
    _target_: str = "lr_callbacks.Warmup"
    duration: int = MISSING
    start_factor: float = 0.0
    interval: str = "step"
    shape: str = "linear"


@dataclass
class SpikeAdaptiveLRConf:
    _target_: str = "lr_callbacks.SpikeAdaptiveLR"
    monitor: str | None = None
    threshold: float = 1.1
    decay: Any = "halve"  # "halve", "sqrt" or a float factor
    min_lr: float = 1e-6
    interval: str = "epoch"
    detector: str | None = None
    z_threshold: float | None = None
    ema: float | None = None
    warmup: int | None = None
    reactions: Any = None  # None (the interval's defaults), a name or a list of names
    recovery_patience: int | None = None
    recovery_factor: float = 2.0
    rollback: bool = False
    nan_policy: str = "spike"
    grad_norm: bool = False
    record_path: str | None = None
    sync_every: int | None = None
    snapshot_every: int | None = None
    tail: float | None = None


@dataclass
class SignAlternationConf:
    _target_: str = "lr_callbacks.SignAlternation"
    pattern: str = "alternate"
    period: int = 1
    negative_scale: float = 1.0
    interval: str = "epoch"


@dataclass
class LRFinderConf:
    _target_: str = "lr_callbacks.LRFinder"
    min_lr: float = 1e-7
    max_lr: float = 10.0
    num_steps: int = 100
    mode: str = "exponential"
    smoothing: float = 0.98
    diverge_threshold: float = 4.0
    suggestion: str = "race"
    apply: bool = True
    run_at_start: bool = True
    run_at_epoch: Any = None  # int or list of epochs
    curvature_scale: float = 0.5
    monitor: str | None = None
    save_dir: str | None = None
    save_png: bool = True
    budget_steps: int = 300
    race_candidates: int = 5
    probe_batches: int = 4
    train_steps: int | None = None


@dataclass
class LearningRateMonitorConf:
    _target_: str = "lightning.pytorch.callbacks.LearningRateMonitor"
    logging_interval: str | None = None
    log_momentum: bool = False
    log_weight_decay: bool = False


@dataclass
class ModelCheckpointConf:
    _target_: str = "lightning.pytorch.callbacks.ModelCheckpoint"
    dirpath: str | None = None
    filename: str | None = None
    monitor: str | None = None
    verbose: bool = False
    save_last: bool | None = None
    save_top_k: int = 1
    save_on_exception: bool = False
    save_weights_only: bool = False
    mode: str = "min"
    auto_insert_metric_name: bool = True
    every_n_train_steps: int | None = None
    train_time_interval: Any = None
    every_n_epochs: int | None = None
    save_on_train_epoch_end: bool | None = None
    enable_version_counter: bool = True


#: file name in conf/callbacks/ -> schema
CALLBACK_SCHEMAS: dict[str, type] = {
    "step_decay": StepDecayConf,
    "exponential_decay": ExponentialDecayConf,
    "cosine_annealing": CosineAnnealingConf,
    "cosine_warm_restarts": CosineWarmRestartsConf,
    "cyclic_lr": CyclicLRConf,
    "one_cycle": OneCycleConf,
    "reduce_on_plateau": ReduceOnPlateauConf,
    "warmup": WarmupConf,
    "spike_adaptive": SpikeAdaptiveLRConf,
    "sign_alternation": SignAlternationConf,
    "lr_finder": LRFinderConf,
    "lr_monitor": LearningRateMonitorConf,
    "model_checkpoint": ModelCheckpointConf,
}

# --------------------------------------------------------------------------- optimizers (partial)


@dataclass
class SGDConf:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.001
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    maximize: bool = False
    foreach: bool | None = None
    differentiable: bool = False
    fused: bool | None = None


@dataclass
class AdamConf:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 0.001
    betas: Any = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    foreach: bool | None = None
    maximize: bool = False
    capturable: bool = False
    differentiable: bool = False
    fused: bool | None = None
    decoupled_weight_decay: bool = False


@dataclass
class AdamWConf:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 0.001
    betas: Any = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    amsgrad: bool = False
    maximize: bool = False
    foreach: bool | None = None
    capturable: bool = False
    differentiable: bool = False
    fused: bool | None = None


@dataclass
class RMSpropConf:
    _target_: str = "torch.optim.RMSprop"
    _partial_: bool = True
    lr: float = 0.01
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False
    capturable: bool = False
    foreach: bool | None = None
    maximize: bool = False
    differentiable: bool = False


OPTIMIZER_SCHEMAS: dict[str, type] = {"sgd": SGDConf, "adam": AdamConf, "adamw": AdamWConf, "rmsprop": RMSpropConf}

# --------------------------------------------------------------------------- tasks


@dataclass
class LinearRegressionTaskConf:
    _target_: str = "experiments.tasks.LinearRegressionTask"
    in_features: int = 1
    init_std: float = 0.01


@dataclass
class XORTaskConf:
    _target_: str = "experiments.tasks.XORTask"
    hidden_dim: int = 4
    batch_norm: bool = False
    he_init: bool = False
    converge_loss: float | None = 0.1
    converge_accuracy: float | None = 1.0


@dataclass
class ContinualAutoencoderTaskConf:
    _target_: str = "experiments.tasks.ContinualAutoencoderTask"
    input_dim: int = 784
    hidden_dim: int = 64
    adapt_threshold: float = 0.02
    output_activation: str = "sigmoid"


@dataclass
class TrajectoryTaskConf:
    _target_: str = "experiments.tasks.TrajectoryTask"
    optimizers: dict[str, Any] | None = None  # name -> partial optimizer
    start: list[float] = field(default_factory=lambda: [5.0, 4.0])
    curvature: list[float] = field(default_factory=lambda: [1.0, 10.0])


TASK_SCHEMAS: dict[str, type] = {
    "regression": LinearRegressionTaskConf,
    "xor": XORTaskConf,
    "autoencoder": ContinualAutoencoderTaskConf,
    "trajectories": TrajectoryTaskConf,
}

# --------------------------------------------------------------------------- data


@dataclass
class _LoaderConf:
    batch_size: int | None = None
    eval_batch_size: int | None = None
    shuffle: bool = True
    seed: int = 0


@dataclass
class LinearDataConf(_LoaderConf):
    _target_: str = "experiments.data.LinearDataModule"
    n: int = 100
    noise: float = 0.0
    slope: float = 2.0
    n_eval: int = 100


@dataclass
class HousingDataConf(_LoaderConf):
    _target_: str = "experiments.data.HousingDataModule"
    data_home: str | None = None
    test_size: float = 0.2
    split_seed: int = 42
    val_fraction: float = 0.0
    batch_size: int | None = 32


@dataclass
class XORDataConf(_LoaderConf):
    _target_: str = "experiments.data.XORDataModule"
    repeats: int = 1
    noise: float = 0.0


@dataclass
class GaussianClassesDataConf(_LoaderConf):
    _target_: str = "experiments.data.GaussianClassesDataModule"
    n: int = 1000
    n_eval: int = 200
    dim: int = 784
    low_mean: float = 0.2
    high_mean: float = 0.8
    std: float = 0.1
    phase: str = "pretrain"


@dataclass
class StepsDataConf:
    _target_: str = "experiments.data.StepsDataModule"
    steps_per_epoch: int = 50


DATA_SCHEMAS: dict[str, type] = {
    "linear": LinearDataConf,
    "housing": HousingDataConf,
    "xor": XORDataConf,
    "gaussian_classes": GaussianClassesDataConf,
    "steps": StepsDataConf,
}

# --------------------------------------------------------------------------- trainer, logger, adapt


@dataclass
class TrainerConf:
    """``lightning.pytorch.Trainer`` arguments; ``callbacks``, ``logger`` and ``enable_checkpointing`` are set by ``train()``."""

    _target_: str = "lightning.pytorch.Trainer"
    accelerator: Any = "auto"
    strategy: Any = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    precision: Any = None
    fast_dev_run: Any = False
    max_epochs: int | None = None
    min_epochs: int | None = None
    max_steps: int = -1
    min_steps: int | None = None
    max_time: Any = None
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    limit_predict_batches: Any = None
    overfit_batches: float = 0.0
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int | None = None
    log_every_n_steps: int | None = None
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str | None = None
    deterministic: Any = None
    benchmark: bool | None = None
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    profiler: Any = None
    detect_anomaly: bool = False
    barebones: bool = False
    plugins: Any = None
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = 0
    default_root_dir: str | None = None
    enable_autolog_hparams: bool = True
    model_registry: str | None = None


@dataclass
class TensorBoardLoggerConf:
    _target_: str = "lightning.pytorch.loggers.TensorBoardLogger"
    save_dir: str = MISSING
    name: str | None = "tensorboard"
    version: Any = ""
    log_graph: bool = False
    default_hp_metric: bool = False
    prefix: str = ""
    sub_dir: str | None = None


@dataclass
class CSVLoggerConf:
    _target_: str = "lightning.pytorch.loggers.CSVLogger"
    save_dir: str = MISSING
    name: str | None = "csv"
    version: Any = ""
    prefix: str = ""
    flush_logs_every_n_steps: int = 100


@dataclass
class AdaptConf:
    """Second phase of a continual-learning run: its own optimizer, callbacks, batch size and length."""

    max_epochs: int = MISSING
    batch_size: int | None = None
    optimizer: Any = None
    callbacks: Any = None


def register_configs() -> None:
    """Registers every schema as ``<group>/<name>_schema`` in the ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for name, schema in CALLBACK_SCHEMAS.items():
        cs.store(group="callbacks", name=f"{name}_schema", node={name: schema})
    for group, table in (("optimizer", OPTIMIZER_SCHEMAS), ("task", TASK_SCHEMAS), ("data", DATA_SCHEMAS)):
        for name, schema in table.items():
            cs.store(group=group, name=f"{name}_schema", node=schema)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConf)
    cs.store(group="logger", name="tensorboard_schema", node={"tensorboard": TensorBoardLoggerConf})
    cs.store(group="logger", name="csv_schema", node={"csv": CSVLoggerConf})
    cs.store(group="adapt", name="adapt_schema", node=AdaptConf)

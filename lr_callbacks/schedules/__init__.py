"""Schedules: the pure functions of ``t`` (:mod:`~lr_callbacks.schedules.functions`) and the callbacks that
drive an optimizer's scheduled LR with them (:mod:`~lr_callbacks.schedules.callbacks`,
:mod:`~lr_callbacks.schedules.plateau`)."""

from lr_callbacks.schedules.callbacks import (
    CosineAnnealing,
    CosineWarmRestarts,
    CyclicLR,
    ExponentialDecay,
    OneCycle,
    StepDecay,
    WarmupStableDecay,
)
from lr_callbacks.schedules.functions import (
    AnnealStrategy,
    CyclicMode,
    DecayShape,
    cosine_annealing,
    cosine_warm_restarts,
    cyclic,
    exponential_decay,
    one_cycle,
    step_decay,
    warm_restart_position,
    warmup_stable_decay,
)
from lr_callbacks.schedules.plateau import ReduceOnPlateau

__all__ = [
    "AnnealStrategy",
    "CosineAnnealing",
    "CosineWarmRestarts",
    "CyclicLR",
    "CyclicMode",
    "DecayShape",
    "ExponentialDecay",
    "OneCycle",
    "ReduceOnPlateau",
    "StepDecay",
    "WarmupStableDecay",
    "cosine_annealing",
    "cosine_warm_restarts",
    "cyclic",
    "exponential_decay",
    "one_cycle",
    "step_decay",
    "warm_restart_position",
    "warmup_stable_decay",
]

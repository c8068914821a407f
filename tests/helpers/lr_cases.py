"""Every time-driven schedule and modifier, each with an independent reference for its LR at time ``t``.

The references are torch's schedulers where torch has one (stepped to ``t`` on a dummy optimizer with the
same base LRs), and the documented formula where it has none (sign alternation, cosine warmup).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.optim import lr_scheduler as torch_sched

from lr_callbacks import (
    CosineAnnealing,
    CosineWarmRestarts,
    CyclicLR,
    ExponentialDecay,
    OneCycle,
    SignAlternation,
    StepDecay,
    Warmup,
)
from tests.helpers.tiny import loader, tiny_trainer

TorchFactory = Callable[[torch.optim.Optimizer, list[float], int], Any]


@dataclass(frozen=True)
class Case:
    """One callback configuration and its reference.

    Attributes:
        id: Test id.
        make: ``interval -> callback``.
        torch: ``(optimizer, bases, total) -> torch scheduler`` (``total``: the run's length in ``t`` units).
        factor: For modifiers without a torch counterpart: ``lr = base * factor(t)``.
    """

    id: str
    make: Callable[[str], Callback]
    torch: TorchFactory | None = None
    factor: Callable[[float], float] | None = None

    def __str__(self) -> str:
        return self.id

    def fractional(self, interval: str) -> bool:
        return interval == "step" and self.id.startswith("sgdr")

    def times(self, interval: str, n_steps: int, steps_per_epoch: int) -> list[float]:
        """``t`` at each training step of a run."""
        if interval == "epoch":
            return [float(k // steps_per_epoch) for k in range(n_steps)]
        if self.fractional(interval):
            return [k // steps_per_epoch + (k % steps_per_epoch) / steps_per_epoch for k in range(n_steps)]
        return [float(k) for k in range(n_steps)]

    def reference(self, bases: Sequence[float], times: Sequence[float]) -> list[list[float]]:
        """The LR of each group (base LRs ``bases``) at each time in ``times``."""
        if self.factor is not None:
            return [[b * self.factor(t) for b in bases] for t in times]
        assert self.torch is not None
        make, total = self.torch, int(max(times)) + 1
        return torch_lrs(lambda optimizer: make(optimizer, list(bases), total), bases, times)


def torch_lrs(
    make: Callable[[torch.optim.Optimizer], Any], bases: Sequence[float], times: Sequence[float]
) -> list[list[float]]:
    """The LR of each group (base LRs ``bases``) at each time in ``times`` from the torch scheduler ``make(optimizer)``:
    chained ``step()`` once per whole unit of time, and ``CosineAnnealingWarmRestarts.step(t)`` for its fractional
    epochs."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in bases]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, bases)])
    out, t_now = [], 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
        scheduler = make(optimizer)
        for t in times:
            if isinstance(scheduler, torch_sched.CosineAnnealingWarmRestarts):
                if t != t_now:
                    scheduler.step(t)
                    t_now = t
            else:
                while t_now < t:
                    scheduler.step()
                    t_now += 1
            out.append([g["lr"] for g in optimizer.param_groups])
    return out


def _linear_warmup(o: torch.optim.Optimizer, bases: list[float], total: int) -> Any:
    return torch_sched.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=5)


CASES: list[Case] = [
    Case("step-decay", lambda i: StepDecay(3, 0.5, interval=i), lambda o, b, n: torch_sched.StepLR(o, 3, 0.5)),
    Case(
        "exp-gamma",
        lambda i: ExponentialDecay(gamma=0.9, interval=i),
        lambda o, b, n: torch_sched.ExponentialLR(o, 0.9),
    ),
    Case(
        "exp-k",
        lambda i: ExponentialDecay(k=0.05, interval=i),
        lambda o, b, n: torch_sched.ExponentialLR(o, math.exp(-0.05)),
    ),
    Case(
        "cosine",
        lambda i: CosineAnnealing(T_max=16, eta_min=1e-4, interval=i),
        lambda o, b, n: torch_sched.CosineAnnealingLR(o, T_max=16, eta_min=1e-4),
    ),
    Case(
        "sgdr",
        lambda i: CosineWarmRestarts(T_0=1, T_mult=2, eta_min=1e-4, interval=i),
        lambda o, b, n: torch_sched.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=2, eta_min=1e-4),
    ),
    Case(
        "cyclic",
        lambda i: CyclicLR(1e-3, 0.05, step_size_up=2, step_size_down=3, mode="triangular2", interval=i),
        lambda o, b, n: torch_sched.CyclicLR(
            o, 1e-3, 0.05, step_size_up=2, step_size_down=3, mode="triangular2", cycle_momentum=False
        ),
    ),
    Case(
        "one-cycle",
        lambda i: OneCycle(max_lr=None, pct_start=0.5, interval=i),
        lambda o, b, n: torch_sched.OneCycleLR(o, max_lr=b, total_steps=n, pct_start=0.5, cycle_momentum=False),
    ),
    Case("warmup", lambda i: Warmup(5, start_factor=0.25, interval=i), _linear_warmup),
    Case(
        "warmup-cosine",
        lambda i: Warmup(4, start_factor=0.1, interval=i, shape="cosine"),
        factor=lambda t: 0.1 + 0.9 * (1 - math.cos(math.pi * min(t, 4) / 4)) / 2,
    ),
    Case(
        "sign",
        lambda i: SignAlternation(period=2, negative_scale=0.3, interval=i),
        factor=lambda t: 1.0 if (int(t) // 2) % 2 == 0 else -0.3,
    ),
]
CASE_IDS = [c.id for c in CASES]


class PerOptimizerLRs(Callback):
    """The LRs every optimizer steps with, per optimizer (index in ``trainer.optimizers``), in step order."""

    def __init__(self) -> None:
        self.lrs: dict[int, list[list[float]]] = {}
        self.lr_types: set[type] = set()

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        idx = next(i for i, o in enumerate(trainer.optimizers) if o is optimizer)
        self.lrs.setdefault(idx, []).append([g["lr"] for g in optimizer.param_groups])
        self.lr_types.update(type(g["lr"]) for g in optimizer.param_groups)


def fit_per_optimizer(
    module: pl.LightningModule, callbacks: list, epochs: int, batches: int, **kwargs: Any
) -> tuple[PerOptimizerLRs, pl.Trainer]:
    """Fit ``module`` for ``epochs`` epochs of ``batches`` batches of 8 (seed 0) with ``callbacks``; return the
    LRs every optimizer stepped with, and the trainer."""
    torch.manual_seed(0)
    recorder = PerOptimizerLRs()
    trainer = tiny_trainer([*callbacks, recorder], **{"max_epochs": epochs, **kwargs})
    trainer.fit(module, loader(n=8 * batches))
    return recorder, trainer


def assert_lrs_close(got: Sequence[Sequence[float]], want: Sequence[Sequence[float]], rel: float = 1e-12) -> None:
    """Relative 1e-12, or absolute 1e-15 near zero (torch steps some schedules recursively)."""
    assert len(got) == len(want), (len(got), len(want))
    for k, (g_row, w_row) in enumerate(zip(got, want)):
        assert len(g_row) == len(w_row)
        for g, w in zip(g_row, w_row):
            assert abs(g - w) <= max(rel * abs(w), 1e-15), f"step {k}: {list(g_row)} != {list(w_row)}"

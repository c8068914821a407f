"""Per-step overhead of each schedule callback, against a bare Lightning step and a torch scheduler.

Two figures per schedule, both medians:

- ``step``: the wall time between consecutive ``on_train_batch_start`` calls of a real ``Trainer.fit`` on a
  tiny model; configurations are interleaved within each repeat so they share the machine's noise.
- ``hook``: the time spent in the callback's own per-step hooks, timed directly over many calls. It is the
  overhead itself, free of the step-to-step noise that dwarfs it on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from lr_callbacks import (
    CosineAnnealing,
    CosineWarmRestarts,
    CyclicLR,
    ExponentialDecay,
    OneCycle,
    ReduceOnPlateau,
    StepDecay,
)


class _Tiny(pl.LightningModule):
    def __init__(self, torch_scheduler: bool = False) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 1)
        self.torch_scheduler = torch_scheduler

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=False)
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.01)
        if not self.torch_scheduler:
            return optimizer
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.9)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class _Batches:
    """Pre-made batches as one iterable (a plain list would read as a list of dataloaders)."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _StepClock(Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.stamps.append(time.perf_counter())

    def step_times(self, warmup: int = 10) -> list[float]:
        return [b - a for a, b in zip(self.stamps[warmup:], self.stamps[warmup + 1 :])]


SCHEDULES: dict[str, Callable[[int], Callback]] = {
    "StepDecay": lambda n: StepDecay(50, 0.9, interval="step"),
    "ExponentialDecay": lambda n: ExponentialDecay(gamma=0.999, interval="step"),
    "CosineAnnealing": lambda n: CosineAnnealing(T_max=n, interval="step"),
    "CosineWarmRestarts": lambda n: CosineWarmRestarts(T_0=1, T_mult=2, interval="step"),
    "CyclicLR": lambda n: CyclicLR(1e-3, 0.1, step_size_up=25, interval="step"),
    "OneCycle": lambda n: OneCycle(0.1, total_steps=n, interval="step"),
    "ReduceOnPlateau": lambda n: ReduceOnPlateau("loss", patience=5, interval="step"),
}


def _fit(n_steps: int, callback: Callback | None, torch_scheduler: bool = False) -> tuple[list[float], pl.Trainer]:
    torch.manual_seed(0)
    batches = [(torch.randn(16, 8), torch.randn(16, 1)) for _ in range(n_steps)]
    clock = _StepClock()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock] + ([callback] if callback is not None else []),
    )
    trainer.fit(_Tiny(torch_scheduler), _Batches(batches))
    return clock.step_times(), trainer


def _hook_seconds(callback: Callback, trainer: pl.Trainer, calls: int = 2000) -> float:
    """Median seconds per optimizer step spent in the callback's per-step hooks."""
    module, optimizer = trainer.lightning_module, trainer.optimizers[0]
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(calls):
            callback.on_train_batch_start(trainer, module, None, i)
            callback.on_before_optimizer_step(trainer, module, optimizer)
            callback.on_train_batch_end(trainer, module, None, None, i)
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def run(args: argparse.Namespace) -> None:
    n_steps, repeats = args.steps, args.repeats
    configs: dict[str, Callable[[], tuple[list[float], pl.Trainer]]] = {
        "bare Lightning": lambda: _fit(n_steps, None),
        "torch StepLR (interval=step)": lambda: _fit(n_steps, None, torch_scheduler=True),
    }
    callbacks: dict[str, Callback] = {}
    for name, make in SCHEDULES.items():
        configs[name] = lambda make=make, name=name: _fit(n_steps, callbacks.setdefault(name, make(n_steps)))
    step_times: dict[str, list[float]] = {name: [] for name in configs}
    trainers: dict[str, pl.Trainer] = {}
    for _ in range(repeats):
        for name, fit in configs.items():
            callbacks.pop(name, None)
            times, trainers[name] = fit()
            step_times[name].append(statistics.median(times))

    bare = statistics.median(step_times["bare Lightning"])
    torch_sched = statistics.median(step_times["torch StepLR (interval=step)"])
    print(f"tiny model (Linear 8->1, batch 16, SGD), {n_steps} steps x {repeats} repeats, medians")
    header = f"{'configuration':<30}{'step us':>10}{'vs bare':>10}{'vs torch':>10}{'hook us':>10}{'hook/bare':>11}"
    print(header)
    print("-" * len(header))
    for name in configs:
        step = statistics.median(step_times[name])
        hook, share = "", ""
        if name in callbacks:
            seconds = _hook_seconds(callbacks[name], trainers[name])
            hook, share = f"{seconds * 1e6:10.2f}", f"{seconds / bare * 100:10.2f}%"
        print(f"{name:<30}{step * 1e6:10.1f}{step / bare:10.3f}{step / torch_sched:10.3f}{hook:>10}{share:>11}")
    print("step ratios carry the machine's step-to-step noise; 'hook/bare' is the callback's own cost.")

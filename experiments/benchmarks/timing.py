"""What every benchmark times with: one intra-op thread, pre-made batches, a step clock and the tiny model."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

WARMUP_STEPS = 10
"""Steps at the start of each run left out of the step-time median."""
BARE_TRAINER: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}
"""Trainer arguments of a timed or benchmarked run: the CPU, no logger, checkpoints, progress bar or summary."""


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run fastest, and least disturbed by other processes, on one intra-op thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Batches:
    """Pre-made batches as one iterable (a plain list would read as a list of dataloaders)."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StepClock(Callback):
    """Stamps every batch start; :meth:`median_step` is the median time between two, after the warmup."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.stamps.append(time.perf_counter())

    def median_step(self, warmup: int = WARMUP_STEPS) -> float:
        stamps = self.stamps[warmup:]
        return statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


class TinyLinear(pl.LightningModule):
    """Linear 8->1, MSE, SGD at 0.01: the model the per-step costs are quoted on.

    ``torch_scheduler`` adds a step-interval ``StepLR`` (the torch baseline); ``log_loss`` logs the loss each step
    (what ``ReduceOnPlateau`` and a ``monitor`` read).
    """

    def __init__(self, torch_scheduler: bool = False, log_loss: bool = False) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 1)
        self.torch_scheduler = torch_scheduler
        self.log_loss = log_loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        if self.log_loss:
            self.log("loss", loss, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.01)
        if not self.torch_scheduler:
            return optimizer
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.9)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

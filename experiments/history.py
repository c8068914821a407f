"""Per-epoch (and per-step LR) history of a fit, kept in memory for ``metrics.json``."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override


def _lr_keys(trainer: pl.Trainer) -> list[tuple[str, int, int]]:
    """``(name, optimizer index, group index)``: ``lr`` for the first group, ``lr/o{j}g{i}`` for the others."""
    keys = []
    for j, opt in enumerate(trainer.optimizers):
        for i in range(len(opt.param_groups)):
            keys.append(("lr" if (i, j) == (0, 0) else f"lr/o{j}g{i}", j, i))
    return keys


class HistoryCallback(Callback):
    """Records every scalar in ``trainer.callback_metrics`` and the LR of every param group.

    ``history[key]`` is a list with one value per training epoch (NaN where a key was
    missing that epoch). The per-epoch LR is the one used by the epoch's first optimizer
    step. ``history["lr_step"]`` holds the LR of the first param group at every optimizer
    step (the LR the step used), when ``record_steps`` is on.

    Args:
        record_steps: also record the per-step LR.
    """

    def __init__(self, record_steps: bool = True) -> None:
        self.record_steps = record_steps
        self.rows: list[dict[str, float]] = []
        self.lr_step: list[float] = []
        self._epoch_lr: dict[str, float] | None = None

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_lr = None

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._epoch_lr is None:
            self._epoch_lr = self._read_lrs(trainer)
        if self.record_steps and optimizer is trainer.optimizers[0]:
            self.lr_step.append(float(optimizer.param_groups[0]["lr"]))

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = {"epoch": float(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                row[key] = float(value)
        row.update(self._epoch_lr or self._read_lrs(trainer))
        self.rows.append(row)

    @staticmethod
    def _read_lrs(trainer: pl.Trainer) -> dict[str, float]:
        return {k: float(trainer.optimizers[j].param_groups[i]["lr"]) for k, j, i in _lr_keys(trainer)}

    def history(self) -> dict[str, list[float]]:
        """Column view: ``{key: [value per epoch]}`` plus ``lr_step``."""
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        out = {k: [row.get(k, math.nan) for row in self.rows] for k in keys}
        if self.record_steps:
            out["lr_step"] = list(self.lr_step)
        return out

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "lr_step": self.lr_step}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
        self.lr_step = list(state_dict.get("lr_step", []))

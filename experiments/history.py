"""Per-epoch (and per-step LR) history of a fit, kept in memory for ``metrics.json``.

The recorder is driven by :class:`experiments.tasks.base.BaseTask`'s own hooks rather than
being a separate callback: Lightning dispatches every hook to every callback on every
step, which costs a few percent of a small model's step.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch


def lr_keys(trainer: pl.Trainer) -> list[tuple[str, int, int]]:
    """``(name, optimizer index, group index)``: ``lr`` for the first group, ``lr/o{j}g{i}`` for the others."""
    keys = []
    for j, opt in enumerate(trainer.optimizers):
        for i in range(len(opt.param_groups)):
            keys.append(("lr" if (i, j) == (0, 0) else f"lr/o{j}g{i}", j, i))
    return keys


class HistoryRecorder:
    """Records every scalar in ``trainer.callback_metrics`` and the LR of every param group.

    ``history()[key]`` has one value per training epoch (NaN where a key was missing that
    epoch; ``val*`` keys are NaN in epochs without validation). The per-epoch LR is the one
    the epoch's first optimizer step used. ``lr_step`` holds the first group's LR at every
    optimizer step of the first optimizer.

    Args:
        record_steps: also record the per-step LR.
    """

    def __init__(self, record_steps: bool = True) -> None:
        self.record_steps = record_steps
        self.reset()

    def reset(self) -> None:
        """Forgets everything (a new fit)."""
        self.rows: list[dict[str, float]] = []
        self.lr_step: list[float] = []
        self._epoch_lr: dict[str, float] | None = None
        self._validated = False

    def epoch_start(self) -> None:
        """Call at ``on_train_epoch_start``."""
        self._epoch_lr = None
        self._validated = False

    def before_optimizer_step(self, trainer: pl.Trainer, optimizer: torch.optim.Optimizer) -> None:
        """Call at ``on_before_optimizer_step`` (after the LR callbacks have set the LR)."""
        if self._epoch_lr is None:
            self._epoch_lr = self._read_lrs(trainer)
        if self.record_steps and optimizer is trainer.optimizers[0]:
            self.lr_step.append(float(optimizer.param_groups[0]["lr"]))

    def validation_end(self, trainer: pl.Trainer) -> None:
        """Call at ``on_validation_epoch_end``."""
        self._validated = self._validated or not trainer.sanity_checking

    def epoch_end(self, trainer: pl.Trainer) -> None:
        """Call at ``on_train_epoch_end``: stores this epoch's row."""
        row = {"epoch": float(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith("val") and not self._validated:
                continue  # stale value from an earlier validation
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                row[key] = float(value)
        row.update(self._epoch_lr or self._read_lrs(trainer))
        self.rows.append(row)

    @staticmethod
    def _read_lrs(trainer: pl.Trainer) -> dict[str, float]:
        return {k: float(trainer.optimizers[j].param_groups[i]["lr"]) for k, j, i in lr_keys(trainer)}

    def history(self) -> dict[str, list[float]]:
        """Column view ``{key: [value per epoch]}``, plus ``lr_step``."""
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        out = {k: [row.get(k, math.nan) for row in self.rows] for k in keys}
        if self.record_steps:
            out["lr_step"] = list(self.lr_step)
        return out

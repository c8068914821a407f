"""Reduce the scheduled LR when a logged metric stops improving."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

from lr_callbacks._checks import check_choice, check_number, per_group
from lr_callbacks.core import Interval, Schedule, apply_lr

Mode = Literal["min", "max"]
ThresholdMode = Literal["rel", "abs"]


class ReduceOnPlateau(Schedule):
    """Multiply the scheduled LR by ``factor`` once ``monitor`` has not improved for ``patience`` checks.

    Follows ``torch.optim.lr_scheduler.ReduceLROnPlateau`` exactly. The metric is read from
    ``trainer.callback_metrics`` at the end of each training epoch (after that epoch's validation), or
    after each optimizer step with ``interval="step"``; the reduction applies from the next epoch/step.
    Rank zero decides and broadcasts, so every rank keeps the same LR. With ``interval="step"`` the
    metric is read on the host after every optimizer step, as ``ReduceLROnPlateau.step(metric)`` does.

    **Resuming mid-epoch.** The state (best value, counters, reduced LRs) is checkpointed, but Lightning does
    not checkpoint the partial epoch aggregate of a logged metric: resumed from a checkpoint taken inside
    an epoch (``ModelCheckpoint(every_n_train_steps=...)``), a training metric logged with ``on_epoch=True``
    covers only the batches after the resume for that epoch, and a checkpoint taken at an epoch's last
    batch resumes after that epoch's end without running it. The callback warns at such a resume
    (``interval="epoch"``); checkpoints at epoch ends continue exactly.

    Args:
        monitor: Name of a logged metric.
        mode: ``"min"`` or ``"max"``.
        factor: Reduction factor, in ``(0, 1)``.
        patience: Checks without improvement to tolerate.
        threshold: Minimal change that counts as an improvement.
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: Checks to wait after a reduction before counting again.
        min_lr: Floor on the LR's magnitude, one value or one per param group.
        eps: Reductions smaller than this are skipped.
        interval: ``"epoch"`` or ``"step"``.

    Raises:
        ValueError: For an unknown ``mode``/``threshold_mode`` or an out-of-range number.
        MisconfigurationException: If ``monitor`` is not among the logged metrics when it is read.

    Example::

        >>> from lr_callbacks import ReduceOnPlateau
        >>> ReduceOnPlateau(monitor="val_loss", factor=0.5, patience=5)
        ReduceOnPlateau(monitor='val_loss', mode='min', interval='epoch')
    """

    MODES: tuple[str, ...] = get_args(Mode)
    THRESHOLD_MODES: tuple[str, ...] = get_args(ThresholdMode)
    _time_driven = False

    IDENTITY = ("monitor", "mode", "interval")

    def __init__(
        self,
        monitor: str,
        mode: Mode = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: ThresholdMode = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
        interval: Interval = "epoch",
    ) -> None:
        super().__init__(interval)
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"`monitor` must be the name of a logged metric, got {monitor!r}.")
        self.monitor = monitor
        self.mode = check_choice("mode", mode, self.MODES)
        self.factor = check_number("factor", factor, gt=0, lt=1)
        self.patience = check_number("patience", patience, ge=0, integer=True)
        self.threshold = check_number("threshold", threshold, ge=0)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, self.THRESHOLD_MODES)
        self.cooldown = check_number("cooldown", cooldown, ge=0, integer=True)
        for value in min_lr if isinstance(min_lr, Sequence) else [min_lr]:
            check_number("min_lr", value, ge=0)
        self.min_lr = min_lr
        self.eps = check_number("eps", eps, ge=0)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad = 0
        self.cooldown_counter = 0
        # Each param group's LR as a fraction of its base LR, per optimizer; a group not listed (yet) is at 1.
        self.scales: list[list[float]] = []
        self._last_step = 0
        self._legacy_lrs: list[list[float]] | None = None

    def is_better(self, current: float) -> bool:
        if self.mode == "min":
            bound = self.best * (1.0 - self.threshold) if self.threshold_mode == "rel" else self.best - self.threshold
            return current < bound
        bound = self.best * (1.0 + self.threshold) if self.threshold_mode == "rel" else self.best + self.threshold
        return current > bound

    def observe(self, current: float) -> bool:
        """Feed one value of the metric; return whether the LR is to be reduced."""
        if self.is_better(current):
            self.best = current
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad = 0
            return True
        return False

    def _reduce(self, bases: Sequence[Sequence[float]]) -> None:
        """Multiply every group's LR by ``factor``, floored at ``min_lr``, unless it changes by ``eps`` or less
        (torch's rule, applied to the LR the group has now: ``base * scale``)."""
        for i, row in enumerate(bases):
            if i == len(self.scales):
                self.scales.append([])
            scales = self.scales[i]
            scales.extend([1.0] * (len(row) - len(scales)))
            floors = self._floors(len(row))
            for g, base in enumerate(row):
                old = base * scales[g]
                new = math.copysign(max(abs(old) * self.factor, floors[g]), old)
                if abs(old) - abs(new) > self.eps and base != 0:
                    scales[g] = new / base

    def _floors(self, n_groups: int) -> list[float]:
        if isinstance(self.min_lr, Sequence) and len(self.min_lr) != n_groups:
            raise MisconfigurationException(
                f"ReduceOnPlateau got one `min_lr` per param group ({len(self.min_lr)}), but the optimizer now has "
                f"{n_groups} (a group was added during the fit, by BaseFinetuning for one). Give one `min_lr` for "
                "every group."
            )
        return per_group("min_lr", self.min_lr, n_groups)

    @override
    def _check_trainer(self, trainer: pl.Trainer) -> None:
        finetuning = [type(cb).__name__ for cb in trainer.callbacks if isinstance(cb, BaseFinetuning)]
        if finetuning and isinstance(self.min_lr, Sequence):
            raise MisconfigurationException(
                f"{finetuning[0]} adds param groups during the fit, and ReduceOnPlateau's `min_lr` has one value per "
                "group present at the start. Give a single `min_lr`, which applies to every group, added ones too."
            )

    def _check(self, trainer: pl.Trainer) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise MisconfigurationException(
                f"ReduceOnPlateau(monitor={self.monitor!r}) found no such metric; logged metrics are "
                f"{sorted(trainer.callback_metrics)}. Log it with `self.log({self.monitor!r}, ...)`."
            )
        reduce = self.observe(float(value))
        if trainer.world_size > 1:
            # Rank zero's decision (and bookkeeping) is the one every rank follows.
            self.load_state_dict(trainer.strategy.broadcast(self.state_dict()))
            reduce = bool(trainer.strategy.broadcast(reduce))
        if reduce:
            apply_lr(trainer)  # a group added since the last write takes its base first
            self._reduce([[g["initial_lr"] for g in opt.param_groups] for opt in trainer.optimizers])
            apply_lr(trainer)

    @override
    def _replay_check(self, value: float, bases: Sequence[Sequence[float]]) -> bool:
        reduce = self.observe(value)
        if reduce:
            self._reduce(bases)
        return reduce

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_step = trainer.global_step
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        # Saved at a batch end (not the epoch's end): Lightning resumes inside that epoch.
        if self.interval == "epoch" and progress.ready > progress.completed:
            rank_zero_warn(self._resume_warning(trainer.current_epoch, progress.ready, trainer.num_training_batches))

    def _resume_warning(self, epoch: int, batches: int, epoch_length: int | float) -> str:
        start = f"ReduceOnPlateau(monitor={self.monitor!r}): resuming from a checkpoint taken after batch {batches}"
        if batches >= epoch_length:
            return (
                f"{start}, the last of epoch {epoch - 1}, before that epoch ended. Lightning resumes with epoch "
                f"{epoch} and does not run the end of epoch {epoch - 1}, so its plateau check does not happen and the "
                "LR may differ from an uninterrupted run. Save checkpoints at epoch ends for an exact continuation."
            )
        return (
            f"{start} of epoch {epoch}. Lightning does not checkpoint a metric's partial epoch aggregate: if "
            f"{self.monitor!r} is aggregated over the training epoch (`self.log(..., on_epoch=True)` in "
            f"`training_step`), its epoch-{epoch} value covers only the batches after the resume, and the LR may "
            "differ from an uninterrupted run. A metric computed at the epoch's end (e.g. by validation) is not "
            "affected; for a training aggregate, save checkpoints at epoch ends for an exact continuation."
        )

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "epoch":
            self._check(trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Only batches that ended with an optimizer step count under gradient accumulation.
        if self.interval == "step" and trainer.global_step != self._last_step:
            self._last_step = trainer.global_step
            self._check(trainer)

    @override
    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        scales = self.scales
        if optimizer_idx < len(scales) and group_idx < len(scales[optimizer_idx]):
            return base_lr * scales[optimizer_idx][group_idx]
        return base_lr

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "num_bad": self.num_bad,
            "cooldown_counter": self.cooldown_counter,
            "scales": [list(row) for row in self.scales],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best", self.best)
        self.num_bad = state_dict.get("num_bad", self.num_bad)
        self.cooldown_counter = state_dict.get("cooldown_counter", self.cooldown_counter)
        self.scales = [list(row) for row in state_dict.get("scales", self.scales)]
        # A checkpoint of an earlier version keeps the reduced LRs themselves: scaled once the bases are known.
        self._legacy_lrs = state_dict.get("lrs") if "scales" not in state_dict else None

    @override
    def _prepare(self, trainer: pl.Trainer) -> None:
        legacy, self._legacy_lrs = self._legacy_lrs, None
        if legacy is not None:
            bases = [[g["initial_lr"] for g in opt.param_groups] for opt in trainer.optimizers]
            self.scales = [[lr / b if b else 1.0 for lr, b in zip(lrs, row)] for lrs, row in zip(legacy, bases)]

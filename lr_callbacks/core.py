"""The one rule that decides every learning rate, and the only code that writes ``param_group["lr"]``.

For every optimizer param group ``g``::

    lr_g = scheduled_g * prod(active modifier factors)

``scheduled_g`` comes from at most one :class:`Schedule` callback (the group's base LR ``initial_lr``
when there is none). :class:`Modifier` callbacks contribute factors. The product is taken in a canonical
order, so the result is bit-identical whatever order the callbacks were given to the ``Trainer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from lr_callbacks._checks import check_choice

if TYPE_CHECKING:
    from torch.optim import Optimizer

INTERVALS = ("epoch", "step")


class LRContributor(Callback):
    """Base of every callback that takes part in the LR rule.

    Subclasses keep their contribution for the current time ``t`` and call :func:`apply_lr` after
    changing it. ``t`` is the epoch index (``interval="epoch"``, updated at epoch start) or the
    optimizer-step index (``interval="step"``, updated before each batch, so gradient accumulation
    windows share one value).

    Args:
        interval: ``"epoch"`` or ``"step"``.

    Raises:
        ValueError: If ``interval`` is not one of :attr:`INTERVALS`.
    """

    INTERVALS = INTERVALS

    def __init__(self, interval: str = "epoch") -> None:
        self.interval = check_choice("interval", interval, INTERVALS)
        self._t: float = 0.0

    def _identity(self) -> dict[str, Any]:
        """The arguments that tell two instances apart; they make the ``state_key``."""
        return {"interval": self.interval}

    @property
    @override
    def state_key(self) -> str:
        return cached_state_key(self, self._identity)

    def _time(self, trainer: pl.Trainer, batch_idx: int) -> float:
        """The current ``t`` for a ``"step"`` interval; subclasses may return fractional epochs."""
        return float(trainer.global_step)

    def _advance(self, trainer: pl.Trainer, t: float) -> None:
        """Move the contribution to time ``t``; subclasses extend this."""
        self._t = t

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_lr_setup(trainer)
        capture_base_lrs(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "epoch":
            self._advance(trainer, float(trainer.current_epoch))
            apply_lr(trainer)

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.interval == "step":
            self._advance(trainer, self._time(trainer, batch_idx))
            apply_lr(trainer)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        # One contributor logs the LRs, after every contributor has written for this step.
        if lr_contributors(trainer)[0] is self and should_log(trainer):
            log_metrics(trainer, current_lrs(trainer))


class Schedule(LRContributor):
    """A callback that decides ``scheduled_g``, the LR before modifiers. At most one per optimizer."""

    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        """The scheduled LR of one param group at the current ``t``, from its base LR."""
        raise NotImplementedError


class Modifier(LRContributor):
    """A callback that multiplies the scheduled LR by a factor."""

    def lr_factor(self, optimizer_idx: int, group_idx: int) -> float:
        """The factor for one param group at the current ``t``."""
        raise NotImplementedError


class TimeModifier(Modifier):
    """A modifier whose factor is a pure function of ``t``: it keeps no state and resumes exactly.

    Subclasses implement :meth:`factor`; it is logged under :attr:`LOG_NAME` whenever it moves.
    """

    LOG_NAME = "factor"

    def factor(self, t: float) -> float:
        """The factor at time ``t``, the same for every param group."""
        raise NotImplementedError

    @override
    def lr_factor(self, optimizer_idx: int, group_idx: int) -> float:
        return self.factor(self._t)

    @override
    def _advance(self, trainer: pl.Trainer, t: float) -> None:
        super()._advance(trainer, t)
        if self.interval == "epoch" or should_log(trainer):
            log_metrics(trainer, {self.LOG_NAME: self.factor(t)})


def cached_state_key(callback: Callback, identity: Callable[[], dict[str, Any]]) -> str:
    """``callback``'s state key, built once: Lightning reads it around every hook call of every step."""
    key = callback.__dict__.get("_state_key")
    if key is None:
        key = callback.__dict__["_state_key"] = callback._generate_state_key(**identity())
    return key


def lr_contributors(trainer: pl.Trainer) -> list[LRContributor]:
    return [cb for cb in trainer.callbacks if isinstance(cb, LRContributor)]


def _split(trainer: pl.Trainer) -> tuple[Schedule | None, list[Modifier]]:
    schedules, modifiers = [], []
    for cb in trainer.callbacks:
        if isinstance(cb, Schedule):
            schedules.append(cb)
        elif isinstance(cb, Modifier):
            modifiers.append(cb)
    # A canonical order makes the floating-point product independent of the callback order.
    modifiers.sort(key=lambda m: (type(m).__name__, m.state_key))
    return (schedules[0] if schedules else None), modifiers


def check_lr_setup(trainer: pl.Trainer) -> None:
    """Raise on configurations the LR rule cannot honour.

    Raises:
        MisconfigurationException: For two schedule callbacks, or for any of our callbacks beside a torch
            LR scheduler returned from ``configure_optimizers``.
    """
    schedules = [type(cb).__name__ for cb in trainer.callbacks if isinstance(cb, Schedule)]
    if len(schedules) > 1:
        raise MisconfigurationException(
            f"At most one schedule callback may drive an optimizer, got {schedules}. "
            "Keep one schedule and express the rest as modifiers (Warmup, SpikeAdaptiveLR, SignAlternation)."
        )
    if trainer.lr_scheduler_configs:
        torch_schedulers = [type(c.scheduler).__name__ for c in trainer.lr_scheduler_configs]
        ours = [type(cb).__name__ for cb in lr_contributors(trainer)]
        raise MisconfigurationException(
            f"`configure_optimizers` returned torch LR scheduler(s) {torch_schedulers}, but {ours} also set the LR. "
            "Both would write `param_group['lr']`; return only the optimizer and use a schedule callback instead."
        )


def capture_base_lrs(trainer: pl.Trainer) -> None:
    """Keep each group's LR at fit start as its base LR, ``group["initial_lr"]`` (the torch/Lightning key)."""
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])


def apply_lr(trainer: pl.Trainer) -> None:
    """Write ``lr_g = scheduled_g * prod(modifier factors)`` into every param group of every optimizer."""
    schedule, modifiers = _split(trainer)
    for opt_idx, optimizer in enumerate(trainer.optimizers):
        groups = optimizer.param_groups
        for g, group in enumerate(groups):
            base = group.setdefault("initial_lr", group["lr"])
            lr = schedule.scheduled_lr(base, opt_idx, g, len(groups)) if schedule is not None else base
            for modifier in modifiers:
                lr *= modifier.lr_factor(opt_idx, g)
            group["lr"] = lr


def lr_names(optimizers: Sequence[Optimizer]) -> list[list[str]]:
    """Lightning's ``LearningRateMonitor`` names: ``lr-<Optimizer>[-<n>][/pgN | /<group name>]``."""
    seen: dict[type, int] = {}
    names = []
    for optimizer in optimizers:
        cls = type(optimizer)
        seen[cls] = seen.get(cls, 0) + 1
        base = f"lr-{cls.__name__}" + (f"-{seen[cls] - 1}" if seen[cls] > 1 else "")
        groups = optimizer.param_groups
        group_names = []
        for g, group in enumerate(groups):
            if len(groups) > 1:
                group_names.append(f"{base}/{group.get('name', f'pg{g + 1}')}")
            else:
                group_names.append(f"{base}/{group['name']}" if group.get("name") else base)
        names.append(group_names)
    return names


def current_lrs(trainer: pl.Trainer) -> dict[str, float]:
    """The LR of every group, keyed by Lightning's ``lr-<Optimizer>[/pgN]`` names."""
    out = {}
    for names, optimizer in zip(lr_names(trainer.optimizers), trainer.optimizers):
        for name, group in zip(names, optimizer.param_groups):
            out[name] = float(group["lr"])
    return out


def should_log(trainer: pl.Trainer) -> bool:
    """Log at Lightning's cadence (``log_every_n_steps``), and always on an epoch's first step."""
    if not trainer.loggers:
        return False
    first_of_epoch = trainer.global_step == trainer.current_epoch * optimizer_steps_per_epoch(trainer)
    return trainer.global_step % max(trainer.log_every_n_steps, 1) == 0 or first_of_epoch


def optimizer_steps_per_epoch(trainer: pl.Trainer) -> int:
    """Optimizer steps in one epoch (the last accumulation window may be short); -1 when unknown."""
    batches = trainer.num_training_batches
    if not isinstance(batches, int) or batches <= 0:
        return -1
    accumulate = trainer.accumulate_grad_batches
    return -(-batches // accumulate)


def log_metrics(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Send scalars to every logger of the trainer at the current optimizer step; no logger, no-op."""
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


def write_lrs(
    optimizers: Sequence[Optimizer],
    lrs: Sequence[Sequence[float]],
    initial_lrs: Sequence[Sequence[float]] | None = None,
) -> None:
    """Write ``lrs[i][g]`` into param group ``g`` of ``optimizers[i]`` (and ``initial_lrs[i][g]`` as its base LR).

    Outside the LR rule only the LR finder sets LRs: each step of its sweep and races, its exact restore and its
    suggestion go through here, so this module stays the only code that writes ``param_group["lr"]``.
    """
    for i, optimizer in enumerate(optimizers):
        if len(lrs[i]) != len(optimizer.param_groups):
            raise ValueError(f"`lrs[{i}]` has {len(lrs[i])} values for {len(optimizer.param_groups)} param groups.")
        for g, group in enumerate(optimizer.param_groups):
            group["lr"] = lrs[i][g]
            if initial_lrs is not None:
                group["initial_lr"] = initial_lrs[i][g]

"""Schedule callbacks: each evaluates one pure function from :mod:`lr_callbacks.schedules` at ``t``."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from lr_callbacks._checks import check_choice, check_number, per_group
from lr_callbacks.core import Interval, Schedule, optimizer_steps_per_epoch, run_length
from lr_callbacks.schedules import functions as schedules
from lr_callbacks.schedules.functions import AnnealStrategy, CyclicMode, DecayShape


class _ClosedFormSchedule(Schedule):
    """A schedule whose LR is a pure function of ``t``; it has no state of its own to checkpoint."""


def refuse_absolute_bounds_beside_finetuning(schedule: Schedule, trainer: pl.Trainer, argument: str) -> None:
    """Raise if a ``BaseFinetuning`` callback would add param groups to a schedule that sets absolute LRs.

    Such a schedule ignores a group's base LR, so a group added mid-fit could not keep the LR it was added with;
    torch's ``CyclicLR`` and ``OneCycleLR`` fail on it too.
    """
    finetuning = [type(cb).__name__ for cb in trainer.callbacks if isinstance(cb, BaseFinetuning)]
    if finetuning:
        raise MisconfigurationException(
            f"{finetuning[0]} adds param groups during the fit, and {type(schedule).__name__}'s `{argument}` sets "
            "absolute LRs that ignore the LR a group is added with. "
            + (
                "Use `max_lr=None` (each group's own LR is its peak) beside it."
                if argument == "max_lr" and isinstance(schedule, OneCycle)
                else f"Use another schedule beside {finetuning[0]}, or add the groups in `configure_optimizers`."
            )
        )


class _RunLengthSchedule(_ClosedFormSchedule):
    """A closed-form schedule over ``total_steps``; ``None`` means the length of the run, read from the trainer
    when training starts (``estimated_stepping_batches`` for ``"step"``, ``max_epochs`` for ``"epoch"``)."""

    total_steps: int | None
    _total: int | None = None

    @override
    def _prepare(self, trainer: pl.Trainer) -> None:
        if self.total_steps is None:
            try:
                self.set_run_length(*run_length(trainer))
            except ValueError as error:  # the trainer's configuration, not an argument of ours, is at fault
                raise MisconfigurationException(
                    f"{type(self).__name__}: {error} A run bounded by `max_time` (or a Timer) alone has no length."
                ) from None

    @override
    def set_run_length(self, steps: float, epochs: float) -> None:
        if self.total_steps is None:
            estimate = steps if self.interval == "step" else epochs
            if estimate is None or estimate == float("inf") or estimate < 2:
                raise ValueError(
                    f"`total_steps=None` needs a finite length of at least 2 {self.interval}s from the trainer "
                    f"(got {estimate!r}); set `total_steps` or the trainer's `max_epochs`/`max_steps`."
                )
            self._total = int(estimate)
            self._check_length(self._total)

    def _check_length(self, total: int) -> None:
        """Raise if the schedule's phases do not fit in ``total``."""

    def _length(self) -> int:
        if self._total is None:
            raise RuntimeError(f"{type(self).__name__}(total_steps=None) learns its length when training starts.")
        return self._total


class StepDecay(_ClosedFormSchedule):
    """Multiply the LR by ``gamma`` every ``step_size`` epochs or steps: ``lr = base * gamma ** (t // step_size)``.

    Matches ``torch.optim.lr_scheduler.StepLR``.

    Args:
        step_size: Period of the decay, in units of ``interval``.
        gamma: Multiplicative factor, ``> 0``.
        interval: ``"epoch"`` or ``"step"`` (optimizer steps).

    Raises:
        ValueError: If ``step_size < 1``, ``gamma <= 0`` or ``interval`` is unknown.

    Example::

        >>> from lr_callbacks import StepDecay
        >>> StepDecay(step_size=30, gamma=0.1)
        StepDecay(step_size=30, gamma=0.1, interval='epoch')
    """

    IDENTITY = ("step_size", "gamma", "interval")

    def __init__(self, step_size: int, gamma: float = 0.1, interval: Interval = "epoch") -> None:
        super().__init__(interval)
        self.step_size = check_number("step_size", step_size, ge=1, integer=True)
        self.gamma = check_number("gamma", gamma, gt=0)

    @override
    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        return schedules.step_decay(self._t, base_lr, self.step_size, self.gamma)


class ExponentialDecay(_ClosedFormSchedule):
    """Exponential decay, ``lr = base * gamma ** t``, or the continuous form ``lr = base * exp(-k t)``.

    Give exactly one of ``gamma`` and ``k`` (``gamma = exp(-k)``). Matches ``ExponentialLR``.

    Args:
        gamma: Per-``t`` factor, ``> 0``.
        k: Decay rate, ``>= 0``.
        interval: ``"epoch"`` or ``"step"``.

    Raises:
        ValueError: If both or neither of ``gamma`` and ``k`` are given, or either is out of range.

    Example::

        >>> from lr_callbacks import ExponentialDecay
        >>> ExponentialDecay(k=0.05)
        ExponentialDecay(gamma=None, k=0.05, interval='epoch')
    """

    IDENTITY = ("gamma", "k", "interval")

    def __init__(self, gamma: float | None = None, k: float | None = None, interval: Interval = "epoch") -> None:
        super().__init__(interval)
        if (gamma is None) == (k is None):
            raise ValueError(f"Give exactly one of `gamma` and `k`, got gamma={gamma!r}, k={k!r}.")
        self.gamma = None if gamma is None else check_number("gamma", gamma, gt=0)
        self.k = None if k is None else check_number("k", k, ge=0)

    @override
    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        return schedules.exponential_decay(self._t, base_lr, self.gamma, self.k)


class CosineAnnealing(_ClosedFormSchedule):
    """Cosine annealing from the base LR to ``eta_min`` over ``T_max``, then held at ``eta_min``.

    Matches the closed form of ``CosineAnnealingLR`` for ``t <= T_max``.

    Args:
        T_max: Length of the anneal, in units of ``interval``.
        eta_min: Final LR.
        interval: ``"epoch"`` or ``"step"``.

    Raises:
        ValueError: If ``T_max < 1`` or ``eta_min`` is not a finite number.

    Example::

        >>> from lr_callbacks import CosineAnnealing
        >>> CosineAnnealing(T_max=50, eta_min=1e-3)
        CosineAnnealing(T_max=50, eta_min=0.001, interval='epoch')
    """

    IDENTITY = ("T_max", "eta_min", "interval")

    def __init__(self, T_max: int, eta_min: float = 0.0, interval: Interval = "epoch") -> None:
        super().__init__(interval)
        self.T_max = check_number("T_max", T_max, ge=1, integer=True)
        self.eta_min = check_number("eta_min", eta_min)

    @override
    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        return schedules.cosine_annealing(self._t, base_lr, self.T_max, self.eta_min)


class CosineWarmRestarts(_ClosedFormSchedule):
    """SGDR: cosine annealing with warm restarts after ``T_0``, ``T_0 * T_mult``, ... epochs.

    With ``interval="step"``, ``t`` is the fractional epoch ``epoch + i / n`` (``i`` the optimizer step in
    the epoch, ``n`` the optimizer steps per epoch), as with ``CosineAnnealingWarmRestarts.step(epoch + i / n)``.

    Args:
        T_0: First period, in epochs.
        T_mult: Integer growth of the period after each restart.
        eta_min: Lowest LR.
        interval: ``"epoch"`` or ``"step"``.

    Raises:
        ValueError: If ``T_0 < 1`` or ``T_mult`` is not an integer ``>= 1``.

    Example::

        >>> from lr_callbacks import CosineWarmRestarts
        >>> CosineWarmRestarts(T_0=10, T_mult=2, eta_min=1e-3)
        CosineWarmRestarts(T_0=10, T_mult=2, eta_min=0.001, interval='epoch')
    """

    IDENTITY = ("T_0", "T_mult", "eta_min", "interval")

    def __init__(self, T_0: int, T_mult: int = 1, eta_min: float = 0.0, interval: Interval = "epoch") -> None:
        super().__init__(interval)
        self.T_0 = check_number("T_0", T_0, ge=1, integer=True)
        self.T_mult = check_number("T_mult", T_mult, ge=1, integer=True)
        self.eta_min = check_number("eta_min", eta_min)
        self._steps_per_epoch = 0

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._steps_per_epoch = 0
        super().on_train_start(trainer, pl_module)

    @override
    def _time(self, trainer: pl.Trainer, batch_idx: int) -> float:
        steps_per_epoch = self._steps_per_epoch
        if batch_idx == 0 or steps_per_epoch < 1:  # read once per epoch
            steps_per_epoch = self._steps_per_epoch = optimizer_steps_per_epoch(trainer)
        if steps_per_epoch < 1:
            raise MisconfigurationException(
                "CosineWarmRestarts(interval='step') steps through fractional epochs and needs a train dataloader "
                "with a known length; use interval='epoch' for an iterable of unknown length."
            )
        return trainer.current_epoch + (batch_idx // trainer.accumulate_grad_batches) / steps_per_epoch

    @override
    def time_of_step(self, step: int, steps_per_epoch: int) -> float:
        if self.interval == "epoch":
            return float(step // steps_per_epoch)
        return step // steps_per_epoch + (step % steps_per_epoch) / steps_per_epoch

    @override
    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        return schedules.cosine_warm_restarts(self._t, base_lr, self.T_0, self.T_mult, self.eta_min)


class CyclicLR(_ClosedFormSchedule):
    """Cyclical learning rates between ``base_lr`` and ``max_lr`` (LR only; momentum is left alone).

    Matches ``torch.optim.lr_scheduler.CyclicLR(cycle_momentum=False)``. ``base_lr`` and ``max_lr`` may be
    one value for every param group or a sequence with one per group.

    Args:
        base_lr: Lower bound of the cycle.
        max_lr: Upper bound of the cycle, ``>= base_lr``.
        step_size_up: Steps (or epochs) from ``base_lr`` up to ``max_lr``.
        step_size_down: Steps back down; ``None`` means ``step_size_up``.
        mode: One of :attr:`MODES`.
        gamma: Per-``t`` factor of ``"exp_range"``, in ``(0, 1]``.
        interval: ``"step"`` (the usual for cyclical LRs) or ``"epoch"``.

    Raises:
        ValueError: For an unknown ``mode``, ``max_lr < base_lr``, step sizes ``< 1`` or ``gamma`` out of range.

    Example::

        >>> from lr_callbacks import CyclicLR
        >>> CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=10)  # doctest: +NORMALIZE_WHITESPACE
        CyclicLR(base_lr=0.001, max_lr=0.1, step_size_up=10, step_size_down=None, mode='triangular', gamma=1.0,
                 interval='step')
    """

    MODES = schedules.CYCLIC_MODES

    IDENTITY = ("base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma", "interval")

    def __init__(
        self,
        base_lr: float | Sequence[float],
        max_lr: float | Sequence[float],
        step_size_up: int,
        step_size_down: int | None = None,
        mode: CyclicMode = "triangular",
        gamma: float = 1.0,
        interval: Interval = "step",
    ) -> None:
        super().__init__(interval)
        self.base_lr = base_lr
        self.max_lr = max_lr
        n = max(len(v) if isinstance(v, Sequence) else 1 for v in (base_lr, max_lr))
        for i, (lo, hi) in enumerate(zip(per_group("base_lr", base_lr, n), per_group("max_lr", max_lr, n))):
            check_number("base_lr", lo)
            check_number("max_lr", hi)
            if hi < lo:
                raise ValueError(f"`max_lr` must be >= `base_lr`, got max_lr={hi} < base_lr={lo} (group {i}).")
        self.step_size_up = check_number("step_size_up", step_size_up, ge=1, integer=True)
        self.step_size_down = (
            None if step_size_down is None else check_number("step_size_down", step_size_down, ge=1, integer=True)
        )
        self.mode = check_choice("mode", mode, self.MODES)
        self.gamma = check_number("gamma", gamma, gt=0, le=1)
        self._bounds: dict[int, tuple[list[float], list[float]]] = {}  # per number of groups

    @override
    def _check_trainer(self, trainer: pl.Trainer) -> None:
        refuse_absolute_bounds_beside_finetuning(self, trainer, "base_lr")

    @override
    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        bounds = self._bounds.get(n_groups)
        if bounds is None:
            bounds = self._bounds[n_groups] = (
                per_group("base_lr", self.base_lr, n_groups),
                per_group("max_lr", self.max_lr, n_groups),
            )
        lo, hi = bounds[0][group_idx], bounds[1][group_idx]
        return schedules.cyclic(self._t, lo, hi, self.step_size_up, self.step_size_down, self.mode, self.gamma)


class OneCycle(_RunLengthSchedule):
    """The 1cycle policy: warm up to ``max_lr``, then anneal to ``max_lr / div_factor / final_div_factor``.

    Matches ``torch.optim.lr_scheduler.OneCycleLR(cycle_momentum=False)``.

    Args:
        max_lr: Peak LR: one value, one per param group, or ``None`` for each group's own base LR
            (so a suggestion applied by :class:`~lr_callbacks.LRFinder` becomes the peak).
        total_steps: Length of the cycle in units of ``interval``; ``None`` means the trainer's
            ``estimated_stepping_batches`` (``"step"``) or ``max_epochs`` (``"epoch"``), read when training
            starts. Past it the final LR holds.
        pct_start: Fraction of the cycle spent increasing, in ``(0, 1)``.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        div_factor: ``initial_lr = max_lr / div_factor``.
        final_div_factor: ``final_lr = initial_lr / final_div_factor``.
        three_phase: Use the symmetric three-phase variant.
        interval: ``"step"`` or ``"epoch"``.

    Raises:
        ValueError: For out-of-range arguments or an unknown ``anneal_strategy``.

    Example::

        >>> from lr_callbacks import OneCycle
        >>> OneCycle(max_lr=0.1, total_steps=1000)  # doctest: +NORMALIZE_WHITESPACE
        OneCycle(max_lr=0.1, total_steps=1000, pct_start=0.3, anneal_strategy='cos', div_factor=25.0,
                 final_div_factor=10000.0, three_phase=False, interval='step')
    """

    ANNEAL_STRATEGIES = schedules.ANNEAL_STRATEGIES

    IDENTITY = (
        "max_lr",
        "total_steps",
        "pct_start",
        "anneal_strategy",
        "div_factor",
        "final_div_factor",
        "three_phase",
        "interval",
    )

    def __init__(
        self,
        max_lr: float | Sequence[float] | None,
        total_steps: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: AnnealStrategy = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        interval: Interval = "step",
    ) -> None:
        super().__init__(interval)
        if max_lr is not None:
            for value in max_lr if isinstance(max_lr, Sequence) else [max_lr]:
                check_number("max_lr", value)
        self.max_lr = max_lr
        self.total_steps = None if total_steps is None else check_number("total_steps", total_steps, ge=2, integer=True)
        self.pct_start = check_number("pct_start", pct_start, gt=0, lt=1)
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, self.ANNEAL_STRATEGIES)
        self.div_factor = check_number("div_factor", div_factor, gt=0)
        self.final_div_factor = check_number("final_div_factor", final_div_factor, gt=0)
        self.three_phase = bool(three_phase)
        self._total = self.total_steps
        self._peaks: dict[int, list[float]] = {}  # per number of groups
        if self.total_steps is not None:
            self._check_length(self.total_steps)

    @override
    def _check_trainer(self, trainer: pl.Trainer) -> None:
        if self.max_lr is not None:
            refuse_absolute_bounds_beside_finetuning(self, trainer, "max_lr")

    @override
    def _check_length(self, total: int) -> None:
        if self.pct_start * total <= 1:
            raise ValueError(
                f"`pct_start`={self.pct_start} of {total} {self.interval}s leaves no warm-up phase; "
                "raise `pct_start` or `total_steps`."
            )

    @override
    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        if self.max_lr is None:
            peak = base_lr
        else:
            peaks = self._peaks.get(n_groups)
            if peaks is None:
                peaks = self._peaks[n_groups] = per_group("max_lr", self.max_lr, n_groups)
            peak = peaks[group_idx]
        return schedules.one_cycle(
            self._t,
            peak,
            self._length(),
            self.pct_start,
            self.anneal_strategy,
            self.div_factor,
            self.final_div_factor,
            self.three_phase,
        )


class WarmupStableDecay(_RunLengthSchedule):
    """Warmup-stable-decay (WSD): a linear warmup, a stable phase at the base LR, then a decay to ``eta_min``.

    Over ``total_steps``: the LR ramps from ``start_factor * base`` up to the base over ``warmup_steps``, holds the
    base, and decays over the last ``decay_steps`` with the chosen ``shape`` (linear, cosine or 1-sqrt); from
    ``total_steps`` on it holds ``eta_min``. The closed form is
    :func:`~lr_callbacks.schedules.functions.warmup_stable_decay`. The stable phase lets a run be extended or
    branched into decays of different lengths; the peak LR is each group's base LR (an :class:`~lr_callbacks.LRFinder`
    suggestion, say).

    Args:
        warmup_steps: Length of the warmup, ``>= 0``, in units of ``interval``.
        decay_steps: Length of the decay, ``>= 1``.
        total_steps: Length of the whole schedule, ``>= warmup_steps + decay_steps``; ``None`` means the run's
            length, read when training starts (``estimated_stepping_batches`` or ``max_epochs``).
        start_factor: The LR at ``t = 0`` as a fraction of the base, in ``[0, 1]``.
        eta_min: The LR at the end of the decay.
        shape: The decay's shape, one of :attr:`SHAPES`.
        interval: ``"step"`` or ``"epoch"``.

    Raises:
        ValueError: For an unknown ``shape``, out-of-range numbers, or phases longer than ``total_steps``.

    Example:
        >>> from lr_callbacks import WarmupStableDecay
        >>> WarmupStableDecay(warmup_steps=100, decay_steps=200, shape="1-sqrt")  # doctest: +NORMALIZE_WHITESPACE
        WarmupStableDecay(warmup_steps=100, decay_steps=200, total_steps=None, start_factor=0.0, eta_min=0.0,
                          shape='1-sqrt', interval='step')
    """

    SHAPES = schedules.DECAY_SHAPES
    IDENTITY = ("warmup_steps", "decay_steps", "total_steps", "start_factor", "eta_min", "shape", "interval")

    def __init__(
        self,
        warmup_steps: int,
        decay_steps: int,
        total_steps: int | None = None,
        start_factor: float = 0.0,
        eta_min: float = 0.0,
        shape: DecayShape = "linear",
        interval: Interval = "step",
    ) -> None:
        super().__init__(interval)
        self.warmup_steps = check_number("warmup_steps", warmup_steps, ge=0, integer=True)
        self.decay_steps = check_number("decay_steps", decay_steps, ge=1, integer=True)
        self.total_steps = None if total_steps is None else check_number("total_steps", total_steps, ge=1, integer=True)
        self.start_factor = float(check_number("start_factor", start_factor, ge=0, le=1))
        self.eta_min = check_number("eta_min", eta_min)
        self.shape = check_choice("shape", shape, self.SHAPES)
        self._total = self.total_steps
        if self.total_steps is not None:
            self._check_length(self.total_steps)

    @override
    def _check_length(self, total: int) -> None:
        if self.warmup_steps + self.decay_steps > total:
            raise ValueError(
                f"`warmup_steps` + `decay_steps` = {self.warmup_steps} + {self.decay_steps} must be at most the "
                f"schedule's length, {total} {self.interval}s; shorten them or lengthen `total_steps` (or the run)."
            )

    @override
    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        return schedules.warmup_stable_decay(
            self._t,
            base_lr,
            self.warmup_steps,
            self.decay_steps,
            self._length(),
            self.start_factor,
            self.eta_min,
            self.shape,
        )

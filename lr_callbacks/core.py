"""The one rule that decides every learning rate, and the only code that writes ``param_group["lr"]``.

For every optimizer param group ``g``::

    lr_g = scheduled_g * prod(active modifier factors)

``scheduled_g`` comes from at most one :class:`Schedule` callback (the group's base LR ``initial_lr``
when there is none). :class:`Modifier` callbacks contribute factors. The product is taken in a canonical
order, so the result is bit-identical whatever order the callbacks were given to the ``Trainer``.

:func:`compute_lrs` is the rule as a pure function of the contributors' current state; :func:`apply_lr`
evaluates the same rule and writes it into the optimizers.

**What ``t`` counts.** With ``interval="epoch"``, ``t`` is the epoch index. With ``interval="step"``, it
is the training-step index of :func:`step_index`: one per optimizer step under automatic optimization
(a gradient-accumulation window counts once), one per training batch under manual optimization, however
many ``optimizer.step()`` calls that batch makes. It is the step Lightning gives loggers for
``self.log`` and ``LearningRateMonitor`` and the unit of ``trainer.estimated_stepping_batches``.

**When the LR is written.** Every contributor moves to the current ``t`` in its hook; the last contributor
in the trainer's callback list then writes once: at fit/epoch start and, when a contributor follows a
step clock, before each training step. Data-driven contributors (plateau, spike) write again after the
checks that change their contribution.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import lightning.pytorch as pl
from lightning.pytorch.callbacks import (
    BatchSizeFinder,
    Callback,
    GradientAccumulationScheduler,
    LearningRateFinder,
    LearningRateMonitor,
    StochasticWeightAveraging,
)
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from lr_callbacks._checks import check_choice

if TYPE_CHECKING:
    from torch.optim import Optimizer

#: What ``t`` counts; a ``Literal`` so that LightningCLI (jsonargparse) checks it when parsing.
Interval = Literal["epoch", "step"]
INTERVALS: tuple[str, ...] = get_args(Interval)


class IdentifiedCallback(Callback):
    """A callback whose ``state_key`` and ``repr`` come from the constructor arguments named in
    :attr:`IDENTITY`, each kept as an attribute of the same name.

    Example:
        >>> from lr_callbacks import StepDecay
        >>> StepDecay.IDENTITY
        ('step_size', 'gamma', 'interval')
        >>> StepDecay(step_size=30)
        StepDecay(step_size=30, gamma=0.1, interval='epoch')
        >>> StepDecay(step_size=30).state_key
        "StepDecay{'step_size': 30, 'gamma': 0.1, 'interval': 'epoch'}"
    """

    #: The constructor arguments that tell two instances apart, in the order they are shown.
    IDENTITY: ClassVar[tuple[str, ...]] = ()

    def _identity(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.IDENTITY}

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self._identity().items())
        return f"{type(self).__name__}({args})"

    @property
    @override
    def state_key(self) -> str:
        # Built once: Lightning reads it around every hook call of every step.
        key = self.__dict__.get("_state_key")
        if key is None:
            key = self.__dict__["_state_key"] = self._generate_state_key(**self._identity())
        return key


class LRContributor(IdentifiedCallback):
    """Base of every callback that takes part in the LR rule.

    Subclasses keep their contribution for the current time ``t``. Time-driven ones (schedules, warmup,
    sign) are moved by the base hooks; data-driven ones (``_time_driven = False``) change on their own
    checks and call :func:`apply_lr` after changing. ``t`` is the epoch index (``interval="epoch"``, set at
    epoch start) or the training-step index of :func:`step_index` (``interval="step"``, set before each
    step, so gradient-accumulation windows share one value).

    Args:
        interval: ``"epoch"`` or ``"step"``.

    Raises:
        ValueError: If ``interval`` is not one of :attr:`INTERVALS`.

    Example:
        >>> from lr_callbacks import StepDecay
        >>> per_epoch = StepDecay(step_size=2, interval="epoch")  # 4 training steps per epoch
        >>> [per_epoch.time_of_step(k, steps_per_epoch=4) for k in (0, 3, 4, 9)]
        [0.0, 0.0, 1.0, 2.0]
    """

    INTERVALS = INTERVALS
    IDENTITY: ClassVar[tuple[str, ...]] = ("interval",)
    # Whether the contribution is a function of ``t`` (then a "step" interval rewrites the LR every step).
    _time_driven: bool = True
    _plan: LRPlan | None = None
    # Set with the plan: whether this contributor's batch-start hook has nothing to do in this fit.
    _idle_batch_start: bool = False

    def __init__(self, interval: Interval = "epoch") -> None:
        self.interval = check_choice("interval", interval, INTERVALS)
        self._t: float = 0.0

    def __getstate__(self) -> dict[str, Any]:
        # The plan belongs to one fit of one trainer (and holds its callback list); a copy builds its own.
        state = self.__dict__.copy()
        state.pop("_plan", None)
        return state

    # --- time ---------------------------------------------------------------------------------------

    def _time(self, trainer: pl.Trainer, batch_idx: int) -> float:
        """The current ``t`` for a ``"step"`` interval; subclasses may return fractional epochs."""
        return float(step_index(trainer))

    @property
    def t(self) -> float:
        """The current time: the epoch index, the training-step index, or a fractional epoch."""
        return self._t

    def time_of_step(self, step: int, steps_per_epoch: int) -> float:
        """``t`` at training step ``step`` of a run with ``steps_per_epoch`` steps per epoch (no trainer needed)."""
        if self.interval == "epoch":
            return float(step // steps_per_epoch)
        return float(step)

    def set_time(self, t: float) -> None:
        """Move the contribution to time ``t``, without side effects.

        It is the only way ``t`` moves, in a fit and in a preview alike; a subclass that caches what
        depends on ``t`` extends it (and calls ``super().set_time(t)``).
        """
        self._t = t

    def _advance(self, trainer: pl.Trainer, t: float) -> None:
        """Move to time ``t`` during a fit; the library's subclasses add side effects such as logging."""
        self.set_time(t)

    def _prepare(self, trainer: pl.Trainer) -> None:
        """Read what the trainer knows only once training starts; called before each fit's first LR write.

        It runs after the checkpoint is restored and the train dataloader is set up (reading
        ``trainer.estimated_stepping_batches`` in ``on_fit_start`` would set the dataloader up before
        Lightning restores its position, and a resumed run would start the epoch over).
        """

    def set_run_length(self, steps: float, epochs: float) -> None:
        """Learn the length of the run, for a contribution that depends on it (a no-op here).

        Called before the first LR write of a fit (after a checkpoint is restored) and by a preview.
        A schedule with an argument such as ``total_steps=None`` overrides it.

        Args:
            steps: Training steps of the whole run (``trainer.estimated_stepping_batches``).
            epochs: Epochs of the run (``trainer.max_epochs``).
        """

    def _replay_check(self, value: float, bases: Sequence[Sequence[float]]) -> bool:
        """Take one value of the monitored quantity as the fit's check would, with no trainer (for a preview).

        Data-driven contributors that can be foreseen implement it with the same decision code their check
        uses; :func:`lr_callbacks.preview` reports the others as unforeseeable.

        Args:
            value: The monitored value at this check.
            bases: Base LR of each param group, one row per optimizer.

        Returns:
            Whether the contribution changed.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot replay its check without a trainer.")

    def _replay_obstacle(self) -> str | None:
        """Why :meth:`_replay_check` cannot stand in for this contributor's checks as configured; ``None`` if it can
        (as for every contributor that implements it, unless it says otherwise)."""
        if type(self)._replay_check is LRContributor._replay_check:
            return "it has no check to replay without a trainer"
        return None

    def _check_trainer(self, trainer: pl.Trainer) -> None:
        """Raise a ``MisconfigurationException`` for a trainer this contributor cannot serve (a no-op here)."""

    # --- hooks --------------------------------------------------------------------------------------

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            run_lr_callbacks_first(trainer)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_lr_setup(trainer)
        self._check_trainer(trainer)
        capture_base_lrs(trainer)
        # Built anew at the first write of this fit, after the checkpoint is restored.
        _PLANS.pop(trainer, None)
        self._plan = None

    def _current_plan(self, trainer: pl.Trainer) -> LRPlan:
        plan = self._plan
        if plan is None or not plan.is_current(trainer):
            plan = lr_plan(trainer)
        return plan

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Also after a mid-epoch resume, where Lightning does not call `on_train_epoch_start`.
        if self.interval == "epoch":
            self.set_time(float(trainer.current_epoch))
        plan = self._current_plan(trainer)
        # With a step clock the first batch writes; the step clock is not restored before then.
        if plan.last is self and not plan.writes_each_step:
            plan.write(trainer.optimizers)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "epoch":
            self._advance(trainer, float(trainer.current_epoch))
        elif self._time_driven:
            self.set_time(self._time(trainer, 0))
        plan = self._current_plan(trainer)
        if plan.last is self:
            plan.write(trainer.optimizers)
            # LearningRateMonitor's cadence for epoch schedulers: each epoch's start
            if not plan.writes_each_step and plan.logs_lrs and trainer.loggers:
                log_metrics(trainer, current_lrs(trainer))

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # LRPlan.is_current and _current_plan, inlined: this runs for every contributor before every batch.
        plan = self._plan
        if (
            self._idle_batch_start
            and plan is not None
            and plan.callbacks is trainer.callbacks
            and plan.n_callbacks == len(trainer.callbacks)
        ):
            return  # only the plan's last contributor moves the step clocks, writes and logs
        if plan is None or plan.callbacks is not trainer.callbacks or plan.n_callbacks != len(trainer.callbacks):
            plan = lr_plan(trainer)
        if plan.last is not self or not plan.writes_each_step:
            return
        if batch_idx % trainer.accumulate_grad_batches:
            return  # inside an accumulation window: same step, same LR
        for contributor in plan.step_clocked:
            contributor._advance(trainer, contributor._time(trainer, batch_idx))
        plan.write(trainer.optimizers)
        # LearningRateMonitor's (and self.log's) cadence for step schedulers
        if plan.logs_lrs and should_log(trainer):
            log_metrics(trainer, current_lrs(trainer))


class Schedule(LRContributor):
    """A callback that decides ``scheduled_g``, the LR before modifiers. At most one per trainer.

    To write one: call ``super().__init__(interval)``, keep each constructor argument as an attribute of
    the same name and list those that tell two instances apart in :attr:`IDENTITY`, and implement
    :meth:`scheduled_lr` as a pure function of :attr:`t` and the group's base LR. A schedule whose length
    comes from the trainer overrides :meth:`set_run_length`. The rest (hooks, resume, logging, preview,
    composition with modifiers) is the base class's.

    Example:
        >>> class Halving(Schedule):
        ...     IDENTITY = ("interval",)
        ...     def scheduled_lr(self, base_lr, optimizer_idx, group_idx, n_groups):
        ...         return base_lr * 0.5 ** int(self.t)
        >>> schedule = Halving(interval="epoch")
        >>> schedule.set_time(2.0)
        >>> schedule.scheduled_lr(0.1, optimizer_idx=0, group_idx=0, n_groups=1)
        0.025
    """

    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        """The scheduled LR of one param group at the current ``t``, from its base LR."""
        raise NotImplementedError


class Modifier(LRContributor):
    """A callback that multiplies the scheduled LR by a factor, possibly a different one per param group.

    A factor that is a pure function of ``t`` is best written as a :class:`TimeModifier`. Data-driven
    modifiers (the library's spike handling) set ``_time_driven = False`` and call :func:`apply_lr` when
    their factor changes.
    """

    def lr_factor(self, optimizer_idx: int, group_idx: int) -> float:
        """The factor for one param group at the current ``t``."""
        raise NotImplementedError


class TimeModifier(Modifier):
    """A modifier whose factor is a pure function of ``t``: it keeps no state and resumes exactly.

    Subclasses implement :meth:`factor` (and list their identity arguments in :attr:`IDENTITY`); it is
    evaluated once per ``t`` and logged under :attr:`LOG_NAME` at each epoch start (``interval="epoch"``) or
    at the trainer's logging cadence (``interval="step"``).

    Example:
        >>> class Brake(TimeModifier):
        ...     LOG_NAME = "brake"
        ...     def factor(self, t):
        ...         return 0.1 if t >= 100 else 1.0
        >>> brake = Brake(interval="step")
        >>> brake.set_time(120.0)
        >>> brake.lr_factor(optimizer_idx=0, group_idx=0)
        0.1
    """

    LOG_NAME = "factor"
    _factor: float | None = None

    def factor(self, t: float) -> float:
        """The factor at time ``t``, the same for every param group."""
        raise NotImplementedError

    @override
    def lr_factor(self, optimizer_idx: int, group_idx: int) -> float:
        if self._factor is None:
            self._factor = self.factor(self._t)
        return self._factor

    @override
    def set_time(self, t: float) -> None:
        self._t = t
        self._factor = self.factor(t)

    @override
    def _advance(self, trainer: pl.Trainer, t: float) -> None:
        self.set_time(t)
        if trainer.loggers and (self.interval == "epoch" or should_log(trainer)):
            log_metrics(trainer, {self.LOG_NAME: self.lr_factor(0, 0)})


# --- the rule ----------------------------------------------------------------------------------------


def canonical_order(modifiers: Sequence[Modifier]) -> list[Modifier]:
    """``modifiers`` in the order their factors are multiplied: by class name, then state key.

    A fixed order makes the floating-point product independent of the order the callbacks were given in.
    """
    return sorted(modifiers, key=lambda m: (type(m).__name__, m.state_key))


#: A schedule's ``scheduled_lr`` and the modifiers' ``lr_factor`` methods, as the rule calls them.
ScheduledLR = Callable[[float, int, int, int], float]
LRFactor = Callable[[int, int], float]


def rule(scheduled: ScheduledLR | None, factors: Sequence[LRFactor], base: float, i: int, g: int, n: int) -> float:
    """The LR of group ``g`` (of ``n``) of optimizer ``i``: ``scheduled * prod(factors)``, factors in the order given.

    The one copy of the rule's arithmetic: :func:`compute_lrs` and :meth:`LRPlan.write` both call it, with the
    schedule's ``scheduled_lr`` (``None``: the base LR) and the modifiers' ``lr_factor`` methods.
    """
    lr = base if scheduled is None else scheduled(base, i, g, n)
    for factor in factors:
        lr *= factor(i, g)
    return lr


def rule_methods(schedule: Schedule | None, modifiers: Sequence[Modifier]) -> tuple[ScheduledLR | None, list[LRFactor]]:
    """What :func:`rule` calls for ``schedule`` and ``modifiers`` (in :func:`canonical_order`)."""
    return (None if schedule is None else schedule.scheduled_lr), [m.lr_factor for m in canonical_order(modifiers)]


def compute_lrs(
    bases: Sequence[Sequence[float]], schedule: Schedule | None = None, modifiers: Sequence[Modifier] = ()
) -> list[list[float]]:
    """The LR rule as a pure function: the LR of every group from its base LR and the contributors' state.

    Each contributor is evaluated at its current ``t`` (move it with ``set_time``). :func:`apply_lr`
    computes exactly this during a fit, so a replay that moves the same contributors through the same
    times gets the trainer's LRs to the bit.

    Args:
        bases: Base LR of each param group, one row per optimizer.
        schedule: The schedule, or ``None`` to start from the base LRs.
        modifiers: The modifiers, in any order.

    Returns:
        The LR of each param group, one row per optimizer.

    Example:
        >>> from lr_callbacks import StepDecay, Warmup
        >>> decay, warmup = StepDecay(step_size=2, gamma=0.5), Warmup(duration=4, start_factor=0.2)
        >>> for c in (decay, warmup):
        ...     c.set_time(3.0)
        >>> compute_lrs([[0.1, 0.02]], decay, [warmup])
        [[0.04000000000000001, 0.008]]
    """
    scheduled, factors = rule_methods(schedule, modifiers)
    return [
        [rule(scheduled, factors, base, i, g, len(row)) for g, base in enumerate(row)] for i, row in enumerate(bases)
    ]


#: The key, in each param group, of the LR this package wrote last: a group whose ``lr`` differs from it was
#: written by someone else since (another callback, or a group added mid-fit has none), and is rebased.
WRITTEN = "written_lr"


@dataclass(eq=False)
class LRPlan:
    """What :func:`apply_lr` needs from a trainer's callbacks, worked out once per fit.

    Attributes:
        schedule: The trainer's schedule callback, if any.
        modifiers: Its modifier callbacks in :func:`canonical_order`.
        contributors: Every :class:`LRContributor`, in callback order.
        last: The last contributor in callback order: it writes and logs after all others have moved.
        writes_each_step: Whether some time-driven contributor follows the step clock (then the last contributor
            moves every step clock and writes before each training step).
        logs_lrs: Whether the contributors log the LRs (not beside a ``LearningRateMonitor``, which does).
    """

    schedule: Schedule | None
    modifiers: tuple[Modifier, ...]
    contributors: tuple[LRContributor, ...]
    last: LRContributor | None
    writes_each_step: bool
    callbacks: list[Callback] = field(repr=False)
    n_callbacks: int = field(repr=False)
    logs_lrs: bool = True
    names: dict[tuple, list[list[str]]] = field(default_factory=dict, repr=False)
    #: each time-driven contributor's ``t`` at the last write (``None`` before the first)
    times: list[float] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.scheduled, self.factors = rule_methods(self.schedule, self.modifiers)
        self.timed = tuple(c for c in self.contributors if c._time_driven)
        #: the contributors that follow the step clock, moved before each step by the last contributor
        self.step_clocked = tuple(c for c in self.timed if c.interval == "step")

    def is_current(self, trainer: pl.Trainer) -> bool:
        """Whether the trainer still has the callbacks this plan was built from."""
        callbacks = trainer.callbacks
        return self.callbacks is callbacks and self.n_callbacks == len(callbacks)

    def write(self, optimizers: Sequence[Optimizer]) -> None:
        """Write the :func:`rule` into every param group, from each group's base LR ``initial_lr``.

        A group added since the last write (it has no ``initial_lr``), or whose LR another callback wrote since,
        is first rebased: its base becomes the one for which the rule gives that LR at the last write's time, so
        the LR it was given stays the LR at that time and every later change of the rule applies relative to it,
        as torch's chained schedulers compose with such writes.
        """
        scheduled, factors = self.scheduled, self.factors
        for i, optimizer in enumerate(optimizers):
            groups = optimizer.param_groups
            n = len(groups)
            for g, group in enumerate(groups):
                base = group.get("initial_lr")
                lr = group["lr"]
                if base is None or lr != group.get(WRITTEN, lr):
                    base = self._rebase(optimizers, i, g, lr)
                group["lr"] = group[WRITTEN] = rule(scheduled, factors, base, i, g, n)
        self.times = [c._t for c in self.timed]

    def _rebase(self, optimizers: Sequence[Optimizer], i: int, g: int, lr: float) -> float:
        """Set group ``g`` of optimizer ``i``'s base so that the rule gives ``lr`` at the last write's time."""
        group = optimizers[i].param_groups[g]
        n = len(optimizers[i].param_groups)
        timed = self.timed
        now = [c._t for c in timed]
        if self.times is not None:
            for contributor, t in zip(timed, self.times):
                contributor.set_time(t)
        try:
            offset = rule(self.scheduled, self.factors, 0.0, i, g, n)
            slope = rule(self.scheduled, self.factors, 1.0, i, g, n) - offset
        finally:
            for contributor, t in zip(timed, now):
                contributor.set_time(t)
        # A rule that ignores the base (absolute bounds, a zero factor) cannot take the LR over: it keeps its base.
        base = (lr - offset) / slope if slope != 0 else group.get("initial_lr", lr)
        group["initial_lr"] = base
        return base


_PLANS: weakref.WeakKeyDictionary[pl.Trainer, LRPlan] = weakref.WeakKeyDictionary()


def lr_plan(trainer: pl.Trainer) -> LRPlan:
    """The trainer's :class:`LRPlan`, built on first use in a fit and again if its callback list changes.

    Building it calls each contributor's ``_prepare``.
    """
    plan = _PLANS.get(trainer)
    if plan is None or not plan.is_current(trainer):
        callbacks = trainer.callbacks
        contributors = tuple(cb for cb in callbacks if isinstance(cb, LRContributor))
        schedule = next((cb for cb in contributors if isinstance(cb, Schedule)), None)
        modifiers = tuple(canonical_order([cb for cb in contributors if isinstance(cb, Modifier)]))
        plan = _PLANS[trainer] = LRPlan(
            schedule=schedule,
            modifiers=modifiers,
            contributors=contributors,
            last=contributors[-1] if contributors else None,
            writes_each_step=any(c.interval == "step" and c._time_driven for c in contributors),
            callbacks=callbacks,
            n_callbacks=len(callbacks),
            logs_lrs=not any(isinstance(cb, LearningRateMonitor) for cb in callbacks),
        )
        for contributor in contributors:
            contributor._plan = plan
            contributor._idle_batch_start = contributor is not plan.last or not plan.writes_each_step
            contributor._prepare(trainer)
    return plan


def lr_contributors(trainer: pl.Trainer) -> list[LRContributor]:
    """Every :class:`LRContributor` among the trainer's callbacks, in callback order."""
    return [cb for cb in trainer.callbacks if isinstance(cb, LRContributor)]


def check_lr_setup(trainer: pl.Trainer) -> None:
    """Raise on configurations the LR rule cannot honour.

    Raises:
        MisconfigurationException: For two schedule callbacks, for any of our callbacks beside a torch LR scheduler
            returned from ``configure_optimizers`` or beside ``StochasticWeightAveraging``.
    """
    check_one_schedule(trainer.callbacks)
    swa = [type(cb).__name__ for cb in trainer.callbacks if isinstance(cb, StochasticWeightAveraging)]
    if swa:
        ours = [type(cb).__name__ for cb in lr_contributors(trainer)]
        raise MisconfigurationException(
            f"{swa[0]} anneals the LR itself from `swa_epoch_start` on (torch's SWALR, to `swa_lrs`), and {ours} "
            "would overwrite its LR every epoch. Use StochasticWeightAveraging with a torch scheduler returned from "
            "`configure_optimizers` (Lightning swaps SWALR in for it), or leave it out."
        )
    if trainer.lr_scheduler_configs:
        torch_schedulers = [type(c.scheduler).__name__ for c in trainer.lr_scheduler_configs]
        ours = [type(cb).__name__ for cb in lr_contributors(trainer)]
        raise MisconfigurationException(
            f"`configure_optimizers` returned torch LR scheduler(s) {torch_schedulers}, but {ours} also set the LR. "
            "Both would write `param_group['lr']`; return only the optimizer and use a schedule callback instead."
        )


def run_lr_callbacks_first(trainer: pl.Trainer) -> None:
    """Move the trainer's :class:`LRContributor` callbacks before its others (after Lightning's tuner callbacks),
    keeping the order within each kind.

    A torch scheduler is stepped by the loop before the next epoch's or step's callback hooks run; running first
    gives other callbacks the same view: ``LearningRateMonitor``, ``BackboneFinetuning`` and
    ``GradientAccumulationScheduler`` read the LR of the epoch or step about to run, whatever order the callbacks
    were passed in. The list is replaced, not edited in place, so a hook being called meanwhile is not disturbed.
    """
    callbacks = trainer.callbacks
    tuners = [cb for cb in callbacks if isinstance(cb, (BatchSizeFinder, LearningRateFinder))]
    ours = [cb for cb in callbacks if isinstance(cb, LRContributor)]
    rest = [cb for cb in callbacks if not isinstance(cb, (BatchSizeFinder, LearningRateFinder, LRContributor))]
    ordered = tuners + ours + rest
    if any(a is not b for a, b in zip(ordered, callbacks)):
        trainer.callbacks = ordered


def check_one_schedule(callbacks: Sequence[Callback]) -> None:
    """Raise if more than one of ``callbacks`` is a :class:`Schedule`.

    Raises:
        MisconfigurationException: For two schedule callbacks.
    """
    schedules = [type(cb).__name__ for cb in callbacks if isinstance(cb, Schedule)]
    if len(schedules) > 1:
        raise MisconfigurationException(
            f"At most one schedule callback may drive an optimizer, got {schedules}. "
            "Keep one schedule and express the rest as modifiers (Warmup, SpikeAdaptiveLR, SignAlternation)."
        )


def capture_base_lrs(trainer: pl.Trainer) -> None:
    """Keep each group's LR at fit start as its base LR, ``group["initial_lr"]`` (the torch/Lightning key)."""
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])


def apply_lr(trainer: pl.Trainer) -> None:
    """Write ``lr_g = scheduled_g * prod(modifier factors)`` into every param group of every optimizer.

    The same arithmetic as :func:`compute_lrs`, with the contributors of :func:`lr_plan`.
    """
    lr_plan(trainer).write(trainer.optimizers)


# --- time and logging --------------------------------------------------------------------------------


def step_index(trainer: pl.Trainer) -> int:
    """The training-step index that ``interval="step"`` counts, and the step our logs are written at.

    It is Lightning's own training-step counter, the step ``self.log`` and ``LearningRateMonitor`` log at:
    under automatic optimization it counts optimizer steps (an accumulation window once) and equals
    ``trainer.global_step`` at each batch start; under manual optimization it counts training batches,
    whereas ``global_step`` counts every ``optimizer.step()`` call of every optimizer. Lightning keeps it
    in its checkpoints but exposes it only as an attribute of the training epoch loop.
    """
    return trainer.fit_loop.epoch_loop._batches_that_stepped


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
    optimizers = trainer.optimizers
    cache = lr_plan(trainer).names
    key = tuple((id(o), len(o.param_groups)) for o in optimizers)
    names = cache.get(key)
    if names is None:
        names = cache[key] = lr_names(optimizers)
    out = {}
    for row, optimizer in zip(names, optimizers):
        for name, group in zip(row, optimizer.param_groups):
            out[name] = float(group["lr"])
    return out


def should_log(trainer: pl.Trainer) -> bool:
    """Whether to log before the current training step: ``self.log``'s and ``LearningRateMonitor``'s rule,
    ``(step + 1) % log_every_n_steps == 0`` (or the trainer is stopping), at :func:`step_index` ``step``."""
    n = trainer.log_every_n_steps
    if not trainer.loggers or n == 0:
        return False
    return (step_index(trainer) + 1) % n == 0 or trainer.should_stop


def run_length(trainer: pl.Trainer) -> tuple[float, float]:
    """The training steps and the epochs the fit will run: ``inf`` where the trainer sets no bound.

    The steps are ``trainer.estimated_stepping_batches``, except beside a ``GradientAccumulationScheduler``, whose
    accumulation changes with the epoch: then each epoch counts its own optimizer steps (capped by ``max_steps``).
    """
    epochs = trainer.max_epochs
    epochs_bound = math.inf if epochs is None or epochs < 0 else float(epochs)
    steps = float(trainer.estimated_stepping_batches)
    scheduler = next((cb for cb in trainer.callbacks if isinstance(cb, GradientAccumulationScheduler)), None)
    batches = trainer.num_training_batches
    if scheduler is not None and math.isfinite(epochs_bound) and isinstance(batches, int) and batches > 0:
        counted = sum(-(-batches // scheduler.get_accumulate_grad_batches(e)) for e in range(int(epochs_bound)))
        steps = float(counted if trainer.max_steps < 0 else min(counted, trainer.max_steps))
    return steps, epochs_bound


def optimizer_steps_per_epoch(trainer: pl.Trainer) -> int:
    """Training steps in one epoch (the last accumulation window may be short); -1 when unknown."""
    batches = trainer.num_training_batches
    if not isinstance(batches, int) or batches <= 0:
        return -1
    accumulate = trainer.accumulate_grad_batches
    return -(-batches // accumulate)


def log_metrics(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Send scalars to every logger of the trainer at the current :func:`step_index`; no logger, no-op."""
    loggers = trainer.loggers
    if not loggers:
        return
    step = step_index(trainer)
    for logger in loggers:
        logger.log_metrics(metrics, step=step)


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
            if WRITTEN in group:  # the rule's mark follows, so this write is not taken for another callback's
                group[WRITTEN] = lrs[i][g]
            if initial_lrs is not None:
                group["initial_lr"] = initial_lrs[i][g]

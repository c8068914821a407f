"""SpikeAdaptiveLR: watch the loss for spikes and react (back off the LR, skip the update, roll back, record)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast, get_args

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lr_callbacks._checks import check_choice, check_number
from lr_callbacks.core import Interval, Modifier, apply_lr, lr_names, should_log
from lr_callbacks.spike.detectors import RatioDetector, SpikeDetector, TailDetector, ZScoreDetector
from lr_callbacks.spike.reactions import SpikeRecord, TrainingState, drop_update, grad_scaler

# The choices, as ``Literal`` types so that LightningCLI (jsonargparse) checks them when parsing.
DecayName = Literal["halve", "sqrt"]
NanPolicy = Literal["spike", "ignore", "raise"]
DetectorName = Literal["ratio", "zscore", "tail"]
Reaction = Literal["backoff", "skip", "rollback", "record"]
_DECAY_FACTORS = {"halve": 0.5, "sqrt": math.sqrt(0.5)}


class SpikeAdaptiveLR(Modifier):
    """Watch the training loss for spikes and react: shrink the LR (the seed's rule), skip the update, roll back.

    **The seed's rule (the defaults).** After each epoch the value ``L_t`` is read: the mean of that epoch's
    training-step losses (taken from what ``training_step`` returns, so nothing has to be logged), or the
    logged metric ``monitor`` (read at the end of the training epoch, after that epoch's validation). A
    *spike* is ``L_{t-1} > 0 and L_t / L_{t-1} > threshold``. On a spike the scale ``s_g`` of every param
    group becomes ``max(s_g * decay, min_lr / |base_lr_g|)`` (never more than it was), and the new LR applies
    from the next epoch. The baseline ``L_{t-1}`` is then ``L_t``, spike or not. With no schedule and no other
    modifier this is the seed's rule ``lr <- max(lr * decay, min_lr)``. (The seed measures each batch's loss
    just after that batch's update; a training-step loss is measured just before it. The rule is the same;
    its input is shifted by one update.)

    **The floor.** ``min_lr`` bounds what the spike scale alone can take away: the scale never goes below
    ``min_lr / |base_lr_g|``. A schedule or another modifier underneath may still take the LR itself lower;
    the spike scale never adds to that. A spike never raises the LR, even if the base LR is already below
    ``min_lr`` (where the seed's ``max`` would).

    **Step level** (``interval="step"``). The loss of every optimizer step is checked *before* that step's
    update (the micro-batch losses of an accumulation window are averaged), so a reaction can still stop the
    update. Step losses are noisy, so this interval has its own defaults, :attr:`STEP_DEFAULTS`: the tail
    detector (:class:`~lr_callbacks.spike.detectors.TailDetector`), which works on the log of the loss and
    learns how far the task's own calm steps stray: a spike is a step ``tail`` times further above the running
    level than any calm step so far (in log terms, with a floor of ``z_threshold`` robust deviations), a rise
    that stays above that record for a few steps, or a loss ``10^4`` times its level; and at least
    ``threshold`` × that level; after ``warmup`` steps. The reactions are ``("rollback", "record")`` with the
    rollback copy refreshed every ``snapshot_every`` calm steps. ``detector="zscore"``
    (:class:`~lr_callbacks.spike.detectors.ZScoreDetector`: ``z_threshold`` standard deviations above an EMA of
    the loss) is the earlier step rule, for losses that can be ``<= 0``. The values, in :attr:`STEP_DEFAULTS`
    and :attr:`DETECTOR_DEFAULTS`, were chosen on the development seeds of ``lr-benchmark spikes`` (see
    ``docs/spikes.md`` for when to pick which reaction). Any of them can be set explicitly, with either interval.

    **Reactions** (``reactions``, combinable):

    * ``"backoff"``: the seed's LR decay above, with recovery after ``recovery_patience`` calm checks in a row
      (the scale grows by ``recovery_factor``, capped at 1). A step-level backoff applies from the next step.
    * ``"skip"`` (step level, automatic optimization): this step's update is dropped. The gradients are
      removed before ``optimizer.step()``, and torch optimizers leave a parameter without a gradient untouched,
      so weights, momentum, Adam moments and step counts after the step are bit-identical to those before it.
      The step still counts for ``global_step`` and ``interval="step"`` schedules.
    * ``"rollback"``: the model's parameters and buffers, the optimizers' state and the grad scaler's state
      go back to the copy taken at the last refresh (at train start before any). The copy is refreshed at
      calm checks whose index ``t`` is a multiple of ``snapshot_every``; at step level it is taken before that
      step's update, so a rollback also undoes the updates since (which may have caused the spike, as a
      too-high LR does) and drops the current one. The copy lives on the model's device and is saved in
      checkpoints, so it doubles their size. ``rollback=True`` adds this reaction.
    * ``"record"`` (step level): the batch indices of the spike are written to ``record_path`` (default
      ``<default_root_dir>/skip_batches.json``) as a JSON list, the format of Lightning's
      :class:`~lightning.pytorch.callbacks.SpikeDetection`, so a restart can skip them; with rollback the
      batches of the step before are added too, as Lightning lists ``b-1, b``. (Indices count within their
      epoch, as Lightning's do.) ``skip_batches_steps.json`` beside it lists each spike's optimizer step,
      epoch, batches, value and reactions.

    **Non-finite values** (``nan_policy``): ``"spike"`` counts one as a spike and keeps it out of the
    statistics, ``"ignore"`` skips the check, ``"raise"`` raises. A NaN never reaches the LR.

    **Distributed.** The value is reduced (mean) over ranks before the check (one all-reduce per step, which
    hands every rank the same bits; epoch values are also broadcast from rank 0), so every rank takes the same
    decision from the same loss: the one the averaged gradient descends. A spike on one rank shows in that
    mean divided by the world size. A mid-epoch checkpoint keeps the partial epoch sum of all ranks.

    **No host sync on accelerators.** With ``interval="step"`` and automatic optimization on a GPU, the
    statistic, the decision, ``"skip"`` and ``"rollback"`` stay on the device: the decision is a 0-d tensor
    and the update is undone after ``optimizer.step()`` by ``torch.where`` from a copy of the parameters and
    optimizer state (so ``"skip"`` keeps one copy there, as ``"rollback"`` does). Decisions are read back
    every ``sync_every`` steps (default: the trainer's ``log_every_n_steps``), and only then do ``"backoff"``,
    recovery, ``"record"``, logging and :attr:`spikes` catch up; the LR thus backs off up to ``sync_every``
    steps late. On the CPU (``sync_every=1``) everything acts at the step itself. Manual optimization,
    ``precision="16-mixed"`` (torch's GradScaler reads its inf check back every step anyway),
    ``nan_policy="raise"`` and optimizer state that is not on the device (Adam's ``step`` counters unless
    ``capturable=True`` or ``fused=True``) use the host path.

    **Mixed precision.** Under ``"16-mixed"`` the loss is unscaled before the check and the gradient norm is
    taken after Lightning unscales the gradients. When the GradScaler skips an optimizer step (inf/NaN
    gradients), that step still counts (``global_step`` moves, as do ``"step"`` schedules) and its loss enters
    the detector like any other: it was measured on the current weights. A skip or rollback of ours also puts
    the scaler's scale and growth tracker back, so the batch counts as never seen (a scaler backoff caused
    by that batch is undone with it).

    **Manual optimization.** The value is ``training_step``'s return value (a tensor, or the ``"loss"`` of a
    dict) or the logged ``monitor``, read after the batch, so step-level checks run after the batch's updates:
    ``"skip"`` is refused there, and ``"rollback"`` restores the state from before the spiking batch's updates.

    **Cost.** The epoch rule adds one in-place add per batch (into a buffer of the loss's dtype, at least
    float32, allocated once) and no host read; the step level reads one float per step on the CPU.

    **Logging** (through the trainer's loggers, at every epoch check, and for step checks at every spike and at
    the logging cadence): ``spike_detected`` (0/1), ``spike_loss``, ``spike_skip`` and ``spike_rollback``
    (0/1, when those reactions are on) and each group's scale as ``spike_scale-<Optimizer>[/pgN]``. In
    TensorBoard each reaction shows as a chart resting at 0 with a mark at 1 on the step where it fired.

    Args:
        monitor: A logged metric to watch; ``None`` means the training-step loss.
        threshold: Ratio to the baseline (``"ratio"``) or to the mean (``"zscore"``) above which a value may be a
            spike, ``> 1``.
        decay: ``"halve"`` (``* 0.5``), ``"sqrt"`` (``* sqrt(0.5)``), or a factor in ``(0, 1)``.
        min_lr: Floor on the LR magnitude the spike scale alone can reach, ``>= 0``.
        interval: ``"epoch"`` or ``"step"``: how often the value is checked.
        detector: One of :attr:`DETECTORS`; ``None`` picks ``"ratio"`` for epochs, ``"zscore"`` for steps.
        z_threshold: Standard deviations above the mean for ``"zscore"``; for ``"tail"`` the floor of its bar, in
            robust deviations of the log-loss; ``None``: :attr:`DETECTOR_DEFAULTS`.
        ema: Weight of the past in the baseline, in ``[0, 1)``: for ``"ratio"`` ``None`` (or 0) compares with the
            previous value; for ``"zscore"`` and ``"tail"`` it weighs the mean and the spread, ``None``:
            :attr:`DETECTOR_DEFAULTS`.
        warmup: Values seen before the first ``"zscore"`` or ``"tail"`` decision; ``None``: :attr:`DETECTOR_DEFAULTS`.
        reactions: Any of :attr:`REACTIONS`; ``None``: ``("backoff",)`` for epochs, :attr:`STEP_DEFAULTS` for
            steps.
        recovery_patience: Calm checks in a row before the scale grows back; ``None`` never recovers.
        recovery_factor: Growth of the scale on recovery, ``> 1``.
        rollback: Add the ``"rollback"`` reaction.
        nan_policy: One of :attr:`NAN_POLICIES`.
        grad_norm: Also watch the total gradient norm (before clipping) with a second detector of the same
            kind; either one spiking is a spike.
        record_path: File (or folder) for ``"record"``; ``None``: the trainer's ``default_root_dir``.
        sync_every: Steps between reading decisions back to the host on an accelerator, ``>= 1``; ``None``:
            1 on the CPU, ``log_every_n_steps`` elsewhere.
        snapshot_every: Refresh the rollback copy at calm checks whose index is a multiple of this, ``>= 1``;
            ``None``: 1 for epochs, :attr:`STEP_DEFAULTS` for steps.
        tail: For ``"tail"``: how many times its bar (the largest calm excursion so far, in log terms) one step
            must rise to be a spike, ``> 1``; ``None``: :attr:`DETECTOR_DEFAULTS`.

    Attributes:
        spikes: ``t`` of every spike (epoch or optimizer-step index).
        events: One dict per spike: step, epoch, batches, value, reactions taken.
        steps_lost: Optimizer updates computed and then dropped (skip) or undone (rollback).
        scales: The spike scale of each param group of each optimizer.

    Raises:
        ValueError: For an out-of-range number, an unknown name, or a reaction the interval cannot take.
        MisconfigurationException: If ``monitor`` is not among the logged metrics when it is read, or
            ``"skip"`` is asked of a manually optimized module.
        RuntimeError: With ``nan_policy="raise"``, when the value is not finite.

    Example::

        >>> from lr_callbacks import SpikeAdaptiveLR
        >>> SpikeAdaptiveLR(threshold=1.1, decay="sqrt")
        SpikeAdaptiveLR(monitor=None, threshold=1.1, decay='sqrt', interval='epoch')
        >>> guard = SpikeAdaptiveLR(interval="step")
        >>> guard.detector_name, guard.tail, guard.z_threshold, guard.ema, guard.warmup
        ('tail', 2.5, 3.0, 0.95, 50)
        >>> guard.reactions, guard.snapshot_every
        (('rollback', 'record'), 20)
    """

    # The factor moves at checks, not with t: the base hooks need not rewrite the LR every step for it.
    _time_driven = False
    DECAYS: dict[str, float] = {name: _DECAY_FACTORS[name] for name in get_args(DecayName)}
    NAN_POLICIES: tuple[str, ...] = get_args(NanPolicy)
    DETECTORS: tuple[str, ...] = get_args(DetectorName)
    REACTIONS: tuple[str, ...] = get_args(Reaction)
    EPOCH_DEFAULTS: dict[str, Any] = {"detector": "ratio", "reactions": ("backoff",), "snapshot_every": 1}
    STEP_DEFAULTS: dict[str, Any] = {"detector": "tail", "reactions": ("rollback", "record"), "snapshot_every": 20}
    #: The numbers of the step detectors when not given.
    DETECTOR_DEFAULTS: dict[str, dict[str, Any]] = {
        "zscore": {"z_threshold": 6.0, "ema": 0.95, "warmup": 50},
        "tail": {"tail": 2.5, "z_threshold": 3.0, "ema": 0.95, "warmup": 50},
    }

    IDENTITY = ("monitor", "threshold", "decay", "interval")

    def __init__(
        self,
        monitor: str | None = None,
        threshold: float = 1.1,
        decay: DecayName | float = "halve",
        min_lr: float = 1e-6,
        interval: Interval = "epoch",
        detector: DetectorName | None = None,
        z_threshold: float | None = None,
        ema: float | None = None,
        warmup: int | None = None,
        reactions: Reaction | Sequence[Reaction] | None = None,
        recovery_patience: int | None = None,
        recovery_factor: float = 2.0,
        rollback: bool = False,
        nan_policy: NanPolicy = "spike",
        grad_norm: bool = False,
        record_path: str | None = None,
        sync_every: int | None = None,
        snapshot_every: int | None = None,
        tail: float | None = None,
    ) -> None:
        super().__init__(interval)
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"`monitor` must be None or the name of a logged metric, got {monitor!r}.")
        self.monitor = monitor
        self.threshold = check_number("threshold", threshold, gt=1)
        if not (decay in self.DECAYS if isinstance(decay, str) else _is_fraction(decay)):
            raise ValueError(f"`decay` must be one of {list(self.DECAYS)} or a float in (0, 1), got {decay!r}.")
        self.decay = decay
        self.decay_factor: float = self.DECAYS[decay] if isinstance(decay, str) else float(decay)
        self.min_lr = check_number("min_lr", min_lr, ge=0)
        defaults = self.STEP_DEFAULTS if self.interval == "step" else self.EPOCH_DEFAULTS
        name = defaults["detector"] if detector is None else detector
        self.detector_name: str = check_choice("detector", name, self.DETECTORS)
        self.z_threshold: float | None = None
        self.warmup: int | None = None
        self.tail: float | None = None
        if self.detector_name == "ratio":
            for arg, value in (("z_threshold", z_threshold), ("warmup", warmup), ("tail", tail)):
                if value is not None:
                    raise ValueError(
                        f"`{arg}` applies to the step detectors ('zscore', 'tail') only, "
                        f"got {arg}={value!r} with 'ratio'."
                    )
            self.ema = 0.0 if ema is None else check_number("ema", ema, ge=0, lt=1)
        else:
            zs = self.DETECTOR_DEFAULTS[self.detector_name]
            self.z_threshold = check_number(
                "z_threshold", zs["z_threshold"] if z_threshold is None else z_threshold, gt=0
            )
            self.ema = check_number("ema", zs["ema"] if ema is None else ema, gt=0, lt=1)
            self.warmup = check_number("warmup", zs["warmup"] if warmup is None else warmup, ge=1, integer=True)
            if self.detector_name == "tail":
                self.tail = check_number("tail", zs["tail"] if tail is None else tail, gt=1)
            elif tail is not None:
                raise ValueError(f"`tail` applies to detector='tail' only, got tail={tail!r} with 'zscore'.")
        self.reactions: tuple[str, ...] = self._check_reactions(
            defaults["reactions"] if reactions is None else reactions
        )
        if not isinstance(rollback, bool):
            raise ValueError(f"`rollback` must be True or False, got {rollback!r}.")
        if rollback and "rollback" not in self.reactions:
            self.reactions = (*self.reactions, "rollback")
        self.rollback = "rollback" in self.reactions
        self.recovery_patience = (
            None
            if recovery_patience is None
            else check_number("recovery_patience", recovery_patience, ge=1, integer=True)
        )
        self.recovery_factor = check_number("recovery_factor", recovery_factor, gt=1)
        self.nan_policy = check_choice("nan_policy", nan_policy, self.NAN_POLICIES)
        if not isinstance(grad_norm, bool):
            raise ValueError(f"`grad_norm` must be True or False, got {grad_norm!r}.")
        self.grad_norm = grad_norm
        if record_path is not None and (not isinstance(record_path, str) or not record_path):
            raise ValueError(f"`record_path` must be None or a file or folder path, got {record_path!r}.")
        self.sync_every = None if sync_every is None else check_number("sync_every", sync_every, ge=1, integer=True)
        every = defaults["snapshot_every"] if snapshot_every is None else snapshot_every
        self.snapshot_every: int = check_number("snapshot_every", every, ge=1, integer=True)

        self.detector: SpikeDetector = self._make_detector()
        self.grad_detector: SpikeDetector | None = self._make_detector() if grad_norm else None
        self.record = SpikeRecord(record_path)
        # The spike scale of each param group of each optimizer; None until fit starts.
        self.scales: list[list[float]] | None = None
        self.calm = 0
        self.spikes: list[int] = []  # t of every spike, in interval units
        self.steps_lost = 0  # optimizer updates computed and then dropped or undone by skip and rollback
        self.events: list[dict[str, Any]] = []
        self.snapshot: TrainingState | None = None
        # Epoch mean: one buffer (the loss's dtype, at least float32), one in-place add per batch.
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        self._loss_dtype: torch.dtype | None = None
        self._loss_reduced = False
        # Step level: the training-step index (batches that stepped an optimizer; under automatic optimization
        # this is global_step). Counted here: the trainer's counters are chains of properties.
        self._step = 0
        self._step_from_checkpoint: int | None = None
        self._steps_this_batch = 0
        self._step_loss: torch.Tensor | None = None
        self._step_count = 0
        self._window: list[int] = []
        self._previous_window: list[int] = []
        self._tracks_window = False
        # The fast path: a spike decided before backward (its value), the weights' reaction taken after it.
        self._spiked: float | None = None
        self._struck: tuple[float, list[str], int] | None = None
        self._checked = False
        self._last_batch = -1
        self._apply_after_step = False
        self._scaler_after_step: dict[str, Any] | None = None
        self._snapshot_step = 0
        # Per fit: how the value is read and where decisions live.
        self._pre_update = False
        self._plain = True
        self._accumulate = 1
        self._world = 1
        self._scaler: Any = None
        self._loggers = False
        self._on_device = False
        self._fast = False
        self._reads_backward = False
        self._sync = 1
        self._pre: TrainingState | None = None
        self._select: tuple[TrainingState, list[torch.Tensor], torch.Tensor] | None = None
        self._flags: torch.Tensor | None = None
        self._slots: list[dict[str, Any]] = []
        self._pending_state: dict[str, Any] | None = None

    def _check_reactions(self, reactions: str | Sequence[str]) -> tuple[str, ...]:
        items = (reactions,) if isinstance(reactions, str) else tuple(reactions)
        for r in items:
            if r not in self.REACTIONS:
                raise ValueError(f"`reactions` must hold names from {list(self.REACTIONS)}, got {r!r}.")
        if self.interval == "epoch":
            step_only = [r for r in items if r in ("skip", "record")]
            if step_only:
                raise ValueError(f"`reactions` {step_only} act on single optimizer steps and need interval='step'.")
        return tuple(dict.fromkeys(items))

    def _make_detector(self) -> SpikeDetector:
        if self.detector_name == "ratio":
            return RatioDetector(self.threshold, self.ema)
        # set in __init__ whenever the detector is not "ratio"
        z, warmup = cast(float, self.z_threshold), cast(int, self.warmup)
        if self.detector_name == "tail":
            return TailDetector(tail=cast(float, self.tail), z=z, threshold=self.threshold, ema=self.ema, warmup=warmup)
        return ZScoreDetector(z, self.threshold, self.ema, warmup)

    @property
    def baseline(self) -> float | None:
        """The value the next one is compared with: the ratio baseline, or the step detector's running level
        (the z-score detector's mean, the tail detector's ``exp`` of its mean log)."""
        state = self.detector.state_dict()
        if "baseline" in state:
            return state["baseline"]
        if not state["count"]:
            return None
        return math.exp(state["mean"]) if isinstance(self.detector, TailDetector) else state["mean"]

    # --- the LR factor -------------------------------------------------------------------------------------

    @override
    def lr_factor(self, optimizer_idx: int, group_idx: int) -> float:
        return 1.0 if self.scales is None else self.scales[optimizer_idx][group_idx]

    def _decay(self, bases: Sequence[Sequence[float]]) -> None:
        """Shrink every group's scale by ``decay_factor``, floored at ``min_lr / |base LR|`` (never raised)."""
        for row, scales in zip(bases, self.scales or []):
            for g, base_lr in enumerate(row):
                base = abs(base_lr)
                floor = self.min_lr / base if base > 0 else 0.0
                scales[g] = min(scales[g], max(scales[g] * self.decay_factor, floor))

    def _recover(self) -> None:
        for scales in self.scales or []:
            for g, s in enumerate(scales):
                scales[g] = min(1.0, s * self.recovery_factor)

    def _recovery_due(self) -> bool:
        """After a calm check was counted: grow the scales back if ``recovery_patience`` calm checks have passed."""
        if self.recovery_patience is not None and self.calm >= self.recovery_patience and "backoff" in self.reactions:
            self._recover()
            self.calm = 0
            return True
        return False

    def _spike_scales(self, bases: Sequence[Sequence[float]]) -> bool:
        """What a spike does to the LR factor: counts, and backs off with ``"backoff"``; True if the scales moved."""
        self.calm = 0
        if "backoff" in self.reactions:
            self._decay(bases)
            return True
        return False

    @override
    def _replay_check(self, value: float, bases: Sequence[Sequence[float]]) -> bool:
        """The check of a fit on a scripted value (for :func:`lr_callbacks.preview`): the same detector, NaN policy,
        backoff, floor and recovery. Skip, rollback and record act on the weights, which a script has no need of
        (a rollback's hold of the seed rule's baseline excepted, which is replayed)."""
        if self.scales is None or [len(s) for s in self.scales] != [len(row) for row in bases]:
            self.scales = [[1.0] * len(row) for row in bases]
        spike = self._decide(value, None)
        if spike is None:
            return False
        if not spike:
            self.calm += 1
            return self._recovery_due()
        if self.rollback and isinstance(self.detector, RatioDetector):
            self.detector.hold()
        return self._spike_scales(bases)

    def _replay_obstacle(self) -> str | None:
        if self.grad_detector is not None:
            return "it also watches the gradient norm (grad_norm=True), which depends on the weights"
        return None

    # --- reading the value ---------------------------------------------------------------------------------

    def _accumulate_epoch(self, outputs: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            if not isinstance(outputs, Mapping):
                return
            loss = outputs.get("loss")
            if not isinstance(loss, torch.Tensor):
                return
        if loss.requires_grad or loss.dim():
            loss = loss.detach().reshape(())
        buf = self._loss_sum
        if buf is None:
            dtype = self._loss_dtype or torch.promote_types(loss.dtype, torch.float32)
            buf = self._loss_sum = torch.zeros((), dtype=dtype, device=loss.device)
        buf.add_(loss)
        self._loss_count += 1

    def _read_epoch(self, trainer: pl.Trainer) -> float | None:
        """The epoch's value, the same on every rank; ``None`` when there is nothing to read."""
        strategy = trainer.strategy
        if self.monitor is not None:
            return self._read_monitor(trainer, broadcast=True)
        dtype = _reduction_dtype(strategy.root_device)
        if self._loss_sum is not None:
            total = self._loss_sum.to(device=strategy.root_device, dtype=dtype, copy=True)
            self._loss_sum.zero_()
        else:
            total = torch.zeros((), dtype=dtype, device=strategy.root_device)
        # Lightning hands back each loss divided by the accumulation count; undo that once, on the sum.
        if trainer.lightning_module.automatic_optimization and trainer.accumulate_grad_batches != 1:
            total = total * trainer.accumulate_grad_batches
        count = torch.tensor(float(self._loss_count), dtype=dtype, device=total.device)
        self._loss_count = 0
        if trainer.world_size > 1:
            total, count = strategy.reduce(torch.stack([total, count]), reduce_op="sum").unbind()
        if float(count) == 0:
            rank_zero_warn(
                "SpikeAdaptiveLR found no training-step loss to monitor: return the loss from `training_step` "
                "or pass `monitor`. The check is skipped."
            )
            return None
        # One value for every rank, whatever the reduction's rounding.
        return float(strategy.broadcast(float(total / count)))

    def _read_monitor(self, trainer: pl.Trainer, broadcast: bool) -> Any:
        metric = trainer.callback_metrics.get(self.monitor)  # type: ignore[arg-type]
        if metric is None:
            raise MisconfigurationException(
                f"SpikeAdaptiveLR(monitor={self.monitor!r}) found no such metric; logged metrics are "
                f"{sorted(trainer.callback_metrics)}. Log it with `self.log({self.monitor!r}, ...)`."
            )
        strategy = trainer.strategy
        tensor = torch.as_tensor(metric).to(device=strategy.root_device, dtype=_reduction_dtype(strategy.root_device))
        if trainer.world_size > 1:
            tensor = strategy.reduce(tensor, reduce_op="mean")
        if not broadcast:
            return tensor
        return float(strategy.broadcast(float(tensor)))

    def _read_step(self, trainer: pl.Trainer, as_tensor: bool) -> Any:
        """This step's loss (and gradient norm): host floats, or 0-d tensors with ``as_tensor``; ``None`` if none.

        Under DDP the pair is averaged over ranks in one reduction.
        """
        if self.monitor is not None:
            value = self._read_monitor(trainer, broadcast=False)
        else:
            loss, count = self._step_loss, self._step_count
            if loss is None:
                return None
            self._step_loss, self._step_count = None, 0
            if self._plain and count == 1 and not as_tensor:
                return loss.item(), None
            tensor_path = as_tensor or self._world > 1
            value = loss.detach().to(_reduction_dtype(loss.device)) if tensor_path else float(loss)
            if self._accumulate != 1 or count != 1:
                value = value * self._accumulate / count
            if self._scaler is not None:
                value = value / self._scaler.get_scale()
        norm = self._grad_norm(trainer) if self.grad_detector is not None else None
        if self._world > 1:
            device = trainer.strategy.root_device
            values = [value] if norm is None else [value, norm]
            stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])
            reduced = trainer.strategy.reduce(stacked, reduce_op="mean")
            value, norm = reduced[0], (None if norm is None else reduced[1])
        if as_tensor:
            return value, norm
        return float(value), (None if norm is None else float(norm))

    @staticmethod
    def _grad_norm(trainer: pl.Trainer) -> torch.Tensor:
        grads = [
            p.grad for opt in trainer.optimizers for g in opt.param_groups for p in g["params"] if p.grad is not None
        ]
        if not grads:
            return torch.zeros((), dtype=torch.float64, device=trainer.strategy.root_device)
        return torch.nn.utils.get_total_norm(grads).to(torch.float64)

    # --- deciding and reacting on the host -----------------------------------------------------------------

    def _decide(self, value: float, norm: float | None) -> bool | None:
        """The decision on the host; ``None`` when ``nan_policy`` says to skip the check."""
        if not (math.isfinite(value) and (norm is None or math.isfinite(norm))):
            if self.nan_policy == "raise":
                raise RuntimeError(f"SpikeAdaptiveLR: the monitored value is {value} (gradient norm {norm}).")
            if self.nan_policy == "ignore":
                return None
        spike = self.detector.check(value)
        if norm is not None and self.grad_detector is not None:
            spike = self.grad_detector.check(norm) or spike
        return spike

    def _react(self, trainer: pl.Trainer, spike: bool, t: int, applied: int, value: float, batches: list[int]) -> bool:
        """Carry out the reactions on the host; returns whether the LR scales changed.

        ``applied`` counts the optimizer updates in the live state now (the step being checked not included).
        """
        if not spike:
            return self._calm(trainer, t, applied, value)
        taken, lost = self._strike(trainer, applied)
        return self._bookkeep(trainer, spike, t, value, batches, taken, lost)

    def _strike(self, trainer: pl.Trainer, applied: int) -> tuple[list[str], int]:
        """The reactions on the weights at a spike (rollback, else skip): what was taken and the updates lost."""
        if self.rollback and self.snapshot is not None:
            self.snapshot.restore(trainer)
            if isinstance(self.detector, RatioDetector):
                self.detector.hold()
            if self._pre_update:
                drop_update(trainer.optimizers)
                self._scaler_after_step = self.snapshot.scaler
            return ["rollback"], applied + int(self._pre_update) - self.snapshot.step
        if "skip" in self.reactions and self._pre_update:
            if self._scaler is not None:
                self._scaler_after_step = self._scaler.state_dict()
            drop_update(trainer.optimizers)
            return ["skip"], 1
        return [], 0

    def _suspect(self) -> bool:
        """Whether the last calm check still lay beyond what a detector counts as calm (no rollback copy then)."""
        return self.detector.suspect or (self.grad_detector is not None and self.grad_detector.suspect)

    def _calm(self, trainer: pl.Trainer, t: int, applied: int | None, value: float) -> bool:
        """A calm check: refresh the rollback copy when due (on the host, given ``applied``), count, log."""
        if applied is not None and self.rollback and t % self.snapshot_every == 0 and not self._suspect():
            if self.snapshot is None:
                self.snapshot = TrainingState()
            self.snapshot.capture(trainer, applied)
        self.calm += 1
        return self._calm_rest(trainer, t, value)

    def _calm_rest(self, trainer: pl.Trainer, t: int, value: float) -> bool:
        """After a calm check was counted: recovery when due, and the resting log at the logging cadence."""
        changed = self._recovery_due()
        if self._loggers and (self.interval == "epoch" or should_log(trainer)):
            self._log(trainer, t if self.interval == "step" else trainer.global_step, value, False, [])
        return changed

    def _bookkeep(
        self, trainer: pl.Trainer, spike: bool, t: int, value: float, batches: list[int], taken: list[str], lost: int
    ) -> bool:
        """Everything after the weights were handled: LR scale, counters, record, log. True if the scale moved."""
        if not spike:
            return self._calm(trainer, t, None, value)
        self.spikes.append(t)
        self.steps_lost += lost
        changed = self._spike_scales([[g["initial_lr"] for g in opt.param_groups] for opt in trainer.optimizers])
        if changed:
            taken.append("backoff")
        step = t if self.interval == "step" else trainer.global_step
        event = {
            "step": step,
            "epoch": trainer.current_epoch,
            "batches": list(batches),
            "value": value,
            "reactions": list(taken),
        }
        self.events.append(event)
        if "record" in self.reactions:
            skip = (self._previous_window if "rollback" in taken else []) + list(batches)
            self.record.add(event, skip, write=trainer.is_global_zero)
        rank_zero_info(
            f"SpikeAdaptiveLR: spike at {self.interval} {t} (value {value:.6g}); reactions {taken}; "
            f"spike scale {self.scales}."
        )
        if self._loggers:
            self._log(trainer, step, value, True, taken)
        return changed

    def _log(self, trainer: pl.Trainer, step: int, value: float, spike: bool, taken: list[str]) -> None:
        metrics = {"spike_detected": float(spike)}
        if math.isfinite(value):
            metrics["spike_loss"] = value
        for reaction in ("skip", "rollback"):
            if reaction in self.reactions:
                metrics[f"spike_{reaction}"] = float(reaction in taken)
        for names, scales in zip(lr_names(trainer.optimizers), self.scales or []):
            for name, s in zip(names, scales):
                metrics[name.replace("lr-", "spike_scale-", 1)] = s
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    # --- the device path -----------------------------------------------------------------------------------

    def _check_on_device(self, trainer: pl.Trainer, t: int) -> bool:
        """Decide this step on the device; ``False`` if the run's state cannot follow a device-side decision."""
        needs_copy = self.rollback or "skip" in self.reactions
        keeper = (self.snapshot if self.rollback else self._pre) or TrainingState()
        live = keeper.live_tensors(trainer) if needs_copy else []
        if needs_copy and not TrainingState.device_ready(trainer, live, trainer.strategy.root_device):
            rank_zero_warn(
                "SpikeAdaptiveLR: some optimizer state is not a tensor on the model's device (e.g. Adam's `step` "
                "without `capturable=True` or `fused=True`), so skip/rollback cannot follow a decision kept on the "
                "device; decisions are read back every step instead."
            )
            self._on_device = False
            self._read_back(trainer)
            return False
        read = self._read_step(trainer, as_tensor=True)
        if read is None:
            return True
        value, norm = read
        spike = self.detector.check_tensor(value)
        suspect = self.detector.suspect_tensor()
        if norm is not None and self.grad_detector is not None:
            spike = spike | self.grad_detector.check_tensor(norm)
            other = self.grad_detector.suspect_tensor()
            suspect = other if suspect is None else (suspect if other is None else suspect | other)
        if self.nan_policy == "ignore":
            spike = spike & torch.isfinite(value)
        if needs_copy:
            self._prepare_select(trainer, keeper, live, spike, suspect, t)
        if self._flags is None or self._flags.shape[1] < self._sync or self._flags.device != value.device:
            self._flags = torch.zeros((3, self._sync), dtype=torch.float64, device=value.device)
        slot = len(self._slots)
        self._flags[0, slot].copy_(spike)
        self._flags[1, slot].copy_(value)
        if suspect is not None:
            self._flags[2, slot].copy_(suspect)
        self._slots.append(
            {
                "t": t,
                "epoch": trainer.current_epoch,
                "batches": list(self._window),
                "previous": list(self._previous_window),
            }
        )
        return True

    def _prepare_select(
        self,
        trainer: pl.Trainer,
        keeper: TrainingState,
        live: list[torch.Tensor],
        spike: torch.Tensor,
        suspect: torch.Tensor | None,
        t: int,
    ) -> None:
        """Keep the copy that this step's update falls back to where ``spike`` holds, without reading ``spike``.

        A suspect step does not refresh the rollback copy either (its update still applies).
        """
        if not keeper.matches(live):  # first use, or the optimizer state just appeared
            keeper.capture(trainer, t)
        elif not self.rollback:
            torch._foreach_copy_(keeper.copies(), live)
        elif t % self.snapshot_every == 0:
            keeper.keep_unless(live, spike if suspect is None else spike | suspect)  # refreshed at calm steps
        if self.rollback:
            self.snapshot = keeper
            if isinstance(self.detector, RatioDetector):
                self.detector.hold_if(spike)
        else:
            self._pre = keeper
        self._select = (keeper, live, spike)

    def _read_back(self, trainer: pl.Trainer) -> None:
        """Read the pending device decisions back (one host read) and let the host bookkeeping catch up."""
        if not self._slots or self._flags is None:
            return
        flags, values, suspects = self._flags[:, : len(self._slots)].tolist()
        changed = False
        for slot, flag, value, suspect in zip(self._slots, flags, values, suspects):
            spike = flag > 0
            taken: list[str] = []
            lost = 0
            self._previous_window = slot["previous"]
            if spike and self.rollback:
                taken.append("rollback")
                lost = slot["t"] + 1 - self._snapshot_step
            elif spike and "skip" in self.reactions:
                taken.append("skip")
                lost = 1
            elif self.rollback and slot["t"] % self.snapshot_every == 0 and not suspect > 0:
                self._snapshot_step = slot["t"]
            changed = self._bookkeep(trainer, spike, slot["t"], value, slot["batches"], taken, lost) or changed
        self._slots = []
        if self.snapshot is not None:
            self.snapshot.step = self._snapshot_step
        if changed:
            apply_lr(trainer)

    # --- hooks ---------------------------------------------------------------------------------------------

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        shape = [len(opt.param_groups) for opt in trainer.optimizers]
        if self.scales is None or [len(s) for s in self.scales] != shape:
            self.scales = [[1.0] * n for n in shape]
        automatic = pl_module.automatic_optimization
        if "skip" in self.reactions and not automatic:
            raise MisconfigurationException(
                "SpikeAdaptiveLR's 'skip' reaction drops an update before `optimizer.step()`, but under manual "
                "optimization `training_step` steps the optimizer before the callback sees the loss. "
                "Use reactions=('rollback',) (it undoes the spiking batch's update) or ('backoff',)."
            )
        self._pre_update = self.interval == "step" and automatic
        self._accumulate = trainer.accumulate_grad_batches if self._pre_update else 1
        self._world = trainer.world_size
        self._scaler = grad_scaler(trainer) if self._pre_update else None
        self._loggers = bool(trainer.loggers)
        self._plain = self._world == 1 and self._scaler is None and self._accumulate == 1 and self.grad_detector is None
        device = trainer.strategy.root_device
        self._sync = self.sync_every or (1 if device.type == "cpu" else max(1, trainer.log_every_n_steps))
        self._on_device = self._pre_update and self._sync > 1 and self._scaler is None and self.nan_policy != "raise"
        self._reads_backward = self._pre_update and self.monitor is None
        self._fast = (
            self._pre_update
            and not self._on_device
            and self._plain
            and self.monitor is None
            and self.nan_policy == "spike"
        )
        self._tracks_window = self._pre_update and not self._fast  # manual optimization: at batch end
        self._spiked = self._struck = None
        self._checked = False
        if "record" in self.reactions:
            self.record.resolve(trainer.default_root_dir)
        if self._loss_sum is not None and self._loss_sum.device != device:
            self._loss_sum = self._loss_sum.to(device)
        if self._loss_reduced and trainer.global_rank != 0:
            # The checkpoint holds the partial epoch sum of all ranks; rank 0 carries it on.
            self._loss_sum, self._loss_count = None, 0
        self._loss_reduced = False
        if self.snapshot is not None:
            self.snapshot.forget_live()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._step_from_checkpoint is not None:
            self._step, self._step_from_checkpoint = self._step_from_checkpoint, None
        else:
            self._step = trainer.global_step if pl_module.automatic_optimization else 0
        if self._pending_state is not None:
            self._restore_pending(trainer)
        # The weights training starts from are the first "good" ones (after a resume, the checkpoint's copy).
        if self.rollback and self.snapshot is None:
            self.snapshot = TrainingState()
            self.snapshot.capture(trainer, trainer.global_step)
        self._snapshot_step = self.snapshot.step if self.snapshot is not None else trainer.global_step
        if self.scales is not None and any(s != 1.0 for scales in self.scales for s in scales):
            apply_lr(trainer)

    @override
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if self._fast:  # the common case, decided here and acted on after backward, in few Python operations
            self._checked = True
            value = loss.item()
            detector = self.detector
            if detector.check(value):
                self._spiked = value
                return
            t = self._step
            if self.rollback and t % self.snapshot_every == 0 and not detector.suspect:
                snapshot = self.snapshot
                if snapshot is None:
                    snapshot = self.snapshot = TrainingState()
                snapshot.capture(trainer, t)
            self.calm += 1
            if self.recovery_patience is not None or self._loggers:
                self._apply_after_step = self._calm_rest(trainer, t, value)
            return
        if self._tracks_window:  # the batches of this step, for the record (the hooks' batch_idx)
            self._window.append(trainer.fit_loop.epoch_loop.batch_idx)
        if not self._reads_backward:
            return
        if self._step_loss is None:
            self._step_loss = loss  # read (detached) at the optimizer step
        elif self._step_count == 1:
            dtype = torch.promote_types(loss.dtype, torch.float32)
            self._step_loss = self._step_loss.detach().to(dtype) + loss.detach()
        else:
            self._step_loss.add_(loss.detach())
        self._step_count += 1

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._fast:
            value = self._spiked
            if value is not None:
                self._spiked = None
                self._struck = (value, *self._strike(trainer, self._step))
            return
        self._steps_this_batch += 1
        if not self._pre_update:
            return
        t = self._step
        if self._on_device and self._check_on_device(trainer, t):
            return
        read = self._read_step(trainer, as_tensor=False)
        if read is None:
            return
        value, norm = read
        spike = self._decide(value, norm)
        if spike is not None:
            self._apply_after_step = self._react(trainer, spike, t, t, value, self._window)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._fast:
            if not self._checked:
                return
            self._checked = False
            struck = self._struck
            if struck is not None:
                self._struck = None
                value, taken, lost = struck
                self._previous_window = [self._last_batch]
                if self._bookkeep(trainer, True, self._step, value, [batch_idx], taken, lost):
                    self._apply_after_step = True
            if self._apply_after_step:
                apply_lr(trainer)
                self._apply_after_step = False
            self._step += 1
            self._last_batch = batch_idx
            return
        if self.interval == "epoch":
            if self.monitor is None:
                self._accumulate_epoch(outputs)
            return
        if not self._pre_update:
            self._window.append(batch_idx)
        stepped = self._steps_this_batch
        if not stepped:
            return  # within an accumulation window
        self._steps_this_batch = 0
        if self._pre_update:
            if (
                self._select is not None
                or self._scaler_after_step is not None
                or self._on_device
                or self._apply_after_step
            ):
                self._after_step(trainer)
        else:
            self._check_after_step(trainer, outputs, self._step, trainer.global_step)
        self._step += 1
        self._previous_window, self._window = self._window, []

    def _after_step(self, trainer: pl.Trainer) -> None:
        if self._select is not None:
            keeper, live, spike = self._select
            keeper.select(live, spike)
            self._select = None
        if self._scaler_after_step is not None:
            if self._scaler is not None:
                self._scaler.load_state_dict(self._scaler_after_step)
            self._scaler_after_step = None
        if self._on_device and (self._step + 1) % self._sync == 0:
            self._read_back(trainer)
        if self._apply_after_step:
            apply_lr(trainer)
            self._apply_after_step = False

    def _check_after_step(self, trainer: pl.Trainer, outputs: Any, t: int, applied: int) -> None:
        """Manual optimization: the batch's return value (or ``monitor``), read after its updates."""
        if self.monitor is None:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if not isinstance(loss, torch.Tensor):
                return
            self._step_loss, self._step_count = loss, 1
        read = self._read_step(trainer, as_tensor=False)
        if read is None:
            return
        value, norm = read
        spike = self._decide(value, norm)
        if spike is not None and self._react(trainer, spike, t, applied, value, self._window):
            apply_lr(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "step":
            if self._on_device:
                self._read_back(trainer)
            return
        value = self._read_epoch(trainer)
        if value is None:
            return
        spike = self._decide(value, None)
        t = trainer.current_epoch
        if spike is not None and self._react(trainer, spike, t, trainer.global_step, value, []):
            apply_lr(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._on_device:
            self._read_back(trainer)

    # --- state ---------------------------------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        pending = None
        if self._slots and self._flags is not None:
            pending = {"slots": list(self._slots), "flags": self._flags[:, : len(self._slots)].tolist()}
        loss_sum = self._loss_sum
        return {
            "scales": self.scales,
            "baseline": self.baseline,
            "detector": self.detector.state_dict(),
            "grad_detector": None if self.grad_detector is None else self.grad_detector.state_dict(),
            "calm": self.calm,
            "spikes": list(self.spikes),
            "steps_lost": self.steps_lost,
            "events": list(self.events),
            "record": self.record.state_dict(),
            "snapshot": None if self.snapshot is None else self.snapshot.state_dict(),
            "pending": pending,
            "loss_sum": None if loss_sum is None else float(loss_sum),
            "loss_dtype": None if loss_sum is None else str(loss_sum.dtype).removeprefix("torch."),
            "loss_count": self._loss_count,
            "step": self._step,
        }

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Under DDP each rank holds its own partial epoch sum; the checkpoint keeps their total (all ranks call this).
        if self.interval != "epoch" or self.monitor is not None or trainer.world_size == 1:
            return
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is None:
            return
        device = trainer.strategy.root_device
        local = torch.tensor([state["loss_sum"] or 0.0, float(state["loss_count"])], dtype=torch.float64, device=device)
        total, count = trainer.strategy.reduce(local, reduce_op="sum").tolist()
        state.update(loss_sum=total, loss_count=int(count), loss_reduced=True)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scales = state_dict.get("scales", self.scales)
        if "detector" in state_dict:
            self.detector.load_state_dict(state_dict["detector"])
        elif isinstance(self.detector, RatioDetector):  # checkpoints from before the detectors
            self.detector.load_state_dict({"baseline": state_dict.get("baseline")})
        if self.grad_detector is not None and state_dict.get("grad_detector"):
            self.grad_detector.load_state_dict(state_dict["grad_detector"])
        self.calm = state_dict.get("calm", self.calm)
        self.spikes = list(state_dict.get("spikes", self.spikes))
        self.steps_lost = state_dict.get("steps_lost", self.steps_lost)
        self.events = list(state_dict.get("events", self.events))
        self.record.load_state_dict(state_dict.get("record", {}))
        snapshot = state_dict.get("snapshot")
        if snapshot is not None:
            self.snapshot = TrainingState.from_state_dict(snapshot)
        self._pending_state = state_dict.get("pending")
        loss_sum, dtype = state_dict.get("loss_sum"), state_dict.get("loss_dtype")
        self._loss_dtype = getattr(torch, dtype) if dtype else None
        self._loss_sum = None if loss_sum is None else torch.tensor(loss_sum, dtype=self._loss_dtype or torch.float64)
        self._loss_count = state_dict.get("loss_count", self._loss_count)
        self._loss_reduced = bool(state_dict.get("loss_reduced", False))
        self._step_from_checkpoint = state_dict.get("step")

    def _restore_pending(self, trainer: pl.Trainer) -> None:
        pending, self._pending_state = self._pending_state, None
        if not pending or not pending.get("slots"):
            return
        device = trainer.strategy.root_device
        self._flags = torch.zeros((3, max(self._sync, len(pending["slots"]))), dtype=torch.float64, device=device)
        rows = torch.tensor(pending["flags"], dtype=torch.float64)  # two rows in checkpoints without suspects
        self._flags[: len(rows), : len(pending["slots"])] = rows
        self._slots = list(pending["slots"])


def _reduction_dtype(device: torch.device) -> torch.dtype:
    """float64 for exact sums across steps and ranks; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _is_fraction(value: Any) -> bool:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return is_number and 0.0 < value < 1.0

"""The machinery shared by the spike callbacks: reading the monitored value, deciding, reacting, checkpointing.

:class:`SpikeEngine` is not used directly. :class:`~lr_callbacks.spike.adaptive.SpikeAdaptiveLR` (the seed's epoch
rule) and :class:`~lr_callbacks.spike.guard.SpikeGuard` (step-level detection and reactions) check their arguments
and hand it settings that are already valid; their docstrings describe the behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lr_callbacks.core import Interval, Modifier, apply_lr, lr_names, should_log
from lr_callbacks.spike.detectors import RatioDetector, SpikeDetector, has_device_path
from lr_callbacks.spike.reactions import SpikeRecord, TrainingState, drop_update, grad_scaler

# The choices, as ``Literal`` types so that LightningCLI (jsonargparse) checks them when parsing.
NanPolicy = Literal["spike", "ignore", "raise"]
Reaction = Literal["backoff", "skip", "rollback", "record"]
NAN_POLICIES: tuple[str, ...] = get_args(NanPolicy)
REACTIONS: tuple[str, ...] = get_args(Reaction)


class SpikeEngine(Modifier):
    """Watch a monitored value (by default the training loss) at epoch or step level and react to spikes.

    The LR factor of every param group is its *spike scale* (1 until a backoff). Subclasses set the arguments up.
    """

    # The factor moves at checks, not with t: the base hooks need not rewrite the LR every step for it.
    _time_driven = False
    NAN_POLICIES = NAN_POLICIES
    REACTIONS = REACTIONS

    def __init__(
        self,
        *,
        interval: Interval,
        monitor: str | None,
        detector: SpikeDetector,
        grad_detector: SpikeDetector | None,
        reactions: tuple[str, ...],
        decay_factor: float,
        min_lr: float,
        recovery_patience: int | None,
        recovery_factor: float,
        nan_policy: str,
        record_path: str | None,
        sync_every: int | None,
        snapshot_every: int,
    ) -> None:
        super().__init__(interval)
        self.monitor = monitor
        self.detector = detector
        self.grad_detector = grad_detector
        self.reactions = reactions
        self.rollback = "rollback" in reactions
        self.decay_factor = decay_factor
        self.min_lr = min_lr
        self.recovery_patience = recovery_patience
        self.recovery_factor = recovery_factor
        self.nan_policy = nan_policy
        self.sync_every = sync_every
        self._snapshot_every = snapshot_every
        self.record = SpikeRecord(record_path)
        # The spike scale of each param group of each optimizer; None until fit starts.
        self.scales: list[list[float]] | None = None
        self.calm = 0
        self.spikes: list[int] = []  # t of every spike, in interval units
        self.steps_lost = 0  # optimizer updates computed and then dropped or undone by skip and rollback
        self.events: list[dict[str, Any]] = []
        self.snapshot: TrainingState | None = None
        # Epoch mean: the batches' losses kept as they come (a list append per batch), summed into one buffer (the
        # loss's dtype, at least float32) every FOLD of them and when the epoch is read or saved.
        self._losses: list[torch.Tensor] = []
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
        self._skipped_at: int | None = None  # t of the last spike that was skipped (skip + rollback)
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

    @property
    def baseline(self) -> float | None:
        """The value the next one is compared with: the detector's ``level`` (the ratio rule's baseline, the
        z-score detector's mean, the tail detector's ``exp`` of its mean log, the median detector's median)."""
        return getattr(self.detector, "level", None)

    # --- the LR factor -------------------------------------------------------------------------------------

    @override
    def lr_factor(self, optimizer_idx: int, group_idx: int) -> float:
        scales = self.scales
        if scales is None or optimizer_idx >= len(scales):
            return 1.0
        row = scales[optimizer_idx]
        return row[group_idx] if group_idx < len(row) else 1.0  # a group added since the last spike starts at 1

    def _grow_scales(self, shape: Sequence[int]) -> list[list[float]]:
        """The scales, one per param group of ``shape`` (groups per optimizer): a group added mid-fit (e.g. by
        ``BackboneFinetuning``) gets scale 1, the others keep theirs; a different set of optimizers starts over."""
        scales = self.scales
        if scales is None or len(scales) != len(shape) or any(len(row) > n for row, n in zip(scales, shape)):
            scales = self.scales = [[1.0] * n for n in shape]
        for row, n in zip(scales, shape):
            row.extend([1.0] * (n - len(row)))
        return scales

    def _decay(self, bases: Sequence[Sequence[float]]) -> None:
        """Shrink every group's scale by ``decay_factor``, floored at ``min_lr / |base LR|`` (never raised)."""
        for row, scales in zip(bases, self._grow_scales([len(row) for row in bases])):
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
        self._grow_scales([len(row) for row in bases])
        spike = self._decide(value, None)
        if spike is None:
            return False
        if not spike:
            self.calm += 1
            return self._recovery_due()
        if self.rollback:
            _hold(self.detector)
        return self._spike_scales(bases)

    def _replay_obstacle(self) -> str | None:
        if self.grad_detector is not None:
            return "it also watches the gradient norm (a grad_detector), which depends on the weights"
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
        losses = self._losses
        losses.append(loss)
        if len(losses) >= _FOLD:
            self._fold_losses()

    def _fold_losses(self) -> None:
        """Add the losses kept since the last fold to the epoch's sum (one vectorized sum)."""
        losses = self._losses
        if not losses:
            return
        buf = self._loss_sum
        if buf is None:
            dtype = self._loss_dtype or torch.promote_types(losses[0].dtype, torch.float32)
            buf = self._loss_sum = torch.zeros((), dtype=dtype, device=losses[0].device)
        buf.add_(torch.stack(losses).to(buf.dtype).sum())
        self._loss_count += len(losses)
        losses.clear()

    def _read_epoch(self, trainer: pl.Trainer) -> float | None:
        """The epoch's value, the same on every rank; ``None`` when there is nothing to read."""
        strategy = trainer.strategy
        if self.monitor is not None:
            return self._read_monitor(trainer, broadcast=True)
        dtype = _reduction_dtype(strategy.root_device)
        self._fold_losses()
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
                f"{type(self).__name__} found no training-step loss to monitor: return the loss from `training_step` "
                "or pass `monitor`. The check is skipped."
            )
            return None
        # One value for every rank, whatever the reduction's rounding.
        return float(strategy.broadcast(float(total / count)))

    def _read_monitor(self, trainer: pl.Trainer, broadcast: bool) -> Any:
        metric = trainer.callback_metrics.get(self.monitor)  # type: ignore[arg-type]
        if metric is None:
            raise MisconfigurationException(
                f"{type(self).__name__}(monitor={self.monitor!r}) found no such metric; logged metrics are "
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
                raise RuntimeError(f"{type(self).__name__}: the monitored value is {value} (gradient norm {norm}).")
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
        taken, lost = self._strike(trainer, applied, t)
        return self._bookkeep(trainer, spike, t, value, batches, taken, lost)

    def _strike(self, trainer: pl.Trainer, applied: int, t: int) -> tuple[list[str], int]:
        """The reactions on the weights at a spike: what was taken and the updates lost.

        Rollback, else skip; with both, a lone spike is skipped and one right after a skipped spike rolls back (the
        damage then came from an update before the first, as a too-high LR does).
        """
        skip = "skip" in self.reactions and self._pre_update
        if self.rollback and self.snapshot is not None and (not skip or self._skipped_at == t - 1):
            self._skipped_at = None
            self.snapshot.restore(trainer)
            _hold(self.detector)
            if self._pre_update:
                drop_update(trainer.optimizers)
                self._scaler_after_step = self.snapshot.scaler
            return ["rollback"], applied + int(self._pre_update) - self.snapshot.step
        if skip:
            self._skipped_at = t
            if self._scaler is not None:
                self._scaler_after_step = self._scaler.state_dict()
            drop_update(trainer.optimizers)
            return ["skip"], 1
        return [], 0

    def _suspect(self) -> bool:
        """Whether the last calm check still lay beyond what a detector counts as calm (no rollback copy then)."""
        return bool(getattr(self.detector, "suspect", False)) or (
            self.grad_detector is not None and bool(getattr(self.grad_detector, "suspect", False))
        )

    def _calm(self, trainer: pl.Trainer, t: int, applied: int | None, value: float) -> bool:
        """A calm check: refresh the rollback copy when due (on the host, given ``applied``), count, log."""
        if applied is not None and self.rollback and t % self._snapshot_every == 0 and not self._suspect():
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
        # a group added since the last LR write has no base yet: its LR is its base
        bases = [[g.get("initial_lr", g["lr"]) for g in opt.param_groups] for opt in trainer.optimizers]
        changed = self._spike_scales(bases)
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
            f"{type(self).__name__}: spike at {self.interval} {t} (value {value:.6g}); reactions {taken}; "
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
                f"{type(self).__name__}: some optimizer state is not a tensor on the model's device (e.g. Adam's "
                "`step` without `capturable=True` or `fused=True`), so skip/rollback cannot follow a decision kept "
                "on the device; decisions are read back every step instead."
            )
            self._on_device = False
            self._read_back(trainer)
            return False
        read = self._read_step(trainer, as_tensor=True)
        if read is None:
            return True
        value, norm = read
        spike = self.detector.check_tensor(value)
        suspect = _suspect_tensor(self.detector)
        if norm is not None and self.grad_detector is not None:
            spike = spike | self.grad_detector.check_tensor(norm)
            other = _suspect_tensor(self.grad_detector)
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
        elif t % self._snapshot_every == 0:
            keeper.keep_unless(live, spike if suspect is None else spike | suspect)  # refreshed at calm steps
        if self.rollback:
            self.snapshot = keeper
            hold_if = getattr(self.detector, "hold_if", None)
            if hold_if is not None:
                hold_if(spike)
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
            elif self.rollback and slot["t"] % self._snapshot_every == 0 and not suspect > 0:
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
        self._grow_scales([len(opt.param_groups) for opt in trainer.optimizers])
        automatic = pl_module.automatic_optimization
        if "skip" in self.reactions and not automatic:
            raise MisconfigurationException(
                f"{type(self).__name__}'s 'skip' reaction drops an update before `optimizer.step()`, but under manual "
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
        self._on_device = (
            self._pre_update
            and self._sync > 1
            and self._scaler is None
            and self.nan_policy != "raise"
            and not (self.rollback and "skip" in self.reactions)  # which of the two depends on the step before
            and all(has_device_path(d) for d in (self.detector, self.grad_detector) if d is not None)
        )
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
        self._losses.clear()
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
            if self.rollback and t % self._snapshot_every == 0 and not getattr(detector, "suspect", False):
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
                self._struck = (value, *self._strike(trainer, self._step, self._step))
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
        self._fold_losses()
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
            "step": self._step if self._step_from_checkpoint is None else self._step_from_checkpoint,
            "skipped_at": self._skipped_at,
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
        self._losses.clear()
        self._loss_count = state_dict.get("loss_count", self._loss_count)
        self._loss_reduced = bool(state_dict.get("loss_reduced", False))
        self._step_from_checkpoint = state_dict.get("step")
        self._skipped_at = state_dict.get("skipped_at")

    def _restore_pending(self, trainer: pl.Trainer) -> None:
        pending, self._pending_state = self._pending_state, None
        if not pending or not pending.get("slots"):
            return
        device = trainer.strategy.root_device
        self._flags = torch.zeros((3, max(self._sync, len(pending["slots"]))), dtype=torch.float64, device=device)
        rows = torch.tensor(pending["flags"], dtype=torch.float64)  # two rows in checkpoints without suspects
        self._flags[: len(rows), : len(pending["slots"])] = rows
        self._slots = list(pending["slots"])


#: losses kept per batch before they are summed into the epoch's buffer
_FOLD = 256


def _reduction_dtype(device: torch.device) -> torch.dtype:
    """float64 for exact sums across steps and ranks; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _hold(detector: Any) -> None:
    """Put a detector's statistics back to before its last check, if it can (the seed rule after a rollback)."""
    hold = getattr(detector, "hold", None)
    if hold is not None:
        hold()


def _suspect_tensor(detector: Any) -> torch.Tensor | None:
    suspect = getattr(detector, "suspect_tensor", None)
    return None if suspect is None else suspect()

"""Spike-detection adaptive LR: shrink the LR when the monitored loss jumps, as in the seed study."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lr_callbacks._checks import check_choice, check_number
from lr_callbacks.core import Modifier, apply_lr, log_metrics, lr_names, should_log


class SpikeAdaptiveLR(Modifier):
    """Multiply the LR by ``decay`` whenever the monitored loss spikes; the factor is a per-group *spike scale*.

    After each epoch (``interval="epoch"``) the value ``L_t`` is read: by default the mean of that epoch's
    training-step losses (taken from what ``training_step`` returns, so nothing has to be logged), or the
    logged metric ``monitor`` (read at the end of the training epoch, after that epoch's validation). A *spike* is ``L_{t-1} > 0 and L_t / L_{t-1} > threshold``. On a spike the
    scale ``s_g`` of every param group becomes ``max(s_g * decay, min_lr / |base_lr_g|)`` (never more than
    it was), and the new LR applies from the next epoch. The baseline ``L_{t-1}`` is then ``L_t``, spike or
    not. With no schedule and no other modifier this is the seed's rule ``lr <- max(lr * decay, min_lr)``.
    (The seed measures each batch's loss just after that batch's update; a training-step loss is measured
    just before it. The rule is the same; its input is shifted by one update.)

    **The floor.** ``min_lr`` bounds what the spike scale alone can take away: the scale never goes below
    ``min_lr / |base_lr_g|``, so ``|base_lr_g| * s_g >= min_lr``. A schedule or another modifier underneath
    may still take the LR itself lower (e.g. cosine annealing to 0); the spike scale never adds to that.
    A spike never raises the LR, even if the base LR is already below ``min_lr`` (where the seed's ``max``
    would).

    **Extensions** (all off by default):

    * ``interval="step"``: check after every optimizer step (micro-batch losses of one accumulation window
      are averaged). Step losses are noisy; use it with ``ema``.
    * ``ema``: compare against an exponential moving average of past values, ``b <- ema*b + (1-ema)*L``,
      instead of the previous value.
    * ``recovery_patience``: after that many calm checks in a row, grow the scale by ``recovery_factor``
      (capped at 1), and count again.
    * ``rollback=True``: on a spike, also restore the model weights and the optimizer state (deep copies,
      bit-identical) saved at the last calm check (or at train start); the baseline then stays at that
      check's value. The copy is retaken after every calm check (every step with ``interval="step"``), lives
      on the model's device and is saved in checkpoints, so it doubles their size.
    * ``nan_policy``: what a non-finite value does. ``"spike"`` (default) counts it as a spike and keeps
      the last finite baseline, ``"ignore"`` skips the check, ``"raise"`` raises. A NaN never reaches the LR.

    Across ranks the loss sum and count (or the monitored metric) are reduced, and rank zero's value is
    broadcast, so every rank takes the same decision.

    Logged through the trainer's loggers at each check: ``spike_detected`` (0/1), ``spike_loss`` (finite
    values), ``spike_rollback`` (0/1, with ``rollback=True``) and the scale of each group as
    ``spike_scale-<Optimizer>[/pgN]`` (the ``lr-...`` name of :class:`~lightning.pytorch.callbacks.LearningRateMonitor`
    with ``lr`` replaced).

    Args:
        monitor: A logged metric to watch; ``None`` means the mean training-step loss.
        threshold: Ratio ``L_t / L_{t-1}`` above which a value is a spike, ``> 1``.
        decay: ``"halve"`` (``* 0.5``), ``"sqrt"`` (``* sqrt(0.5)``), or a factor in ``(0, 1)``.
        min_lr: Floor on the LR magnitude the spike scale alone can reach, ``>= 0``.
        interval: ``"epoch"`` or ``"step"``: how often the value is checked.
        ema: Weight of the past in an EMA baseline, in ``[0, 1)``; ``None`` compares with the previous value.
        recovery_patience: Calm checks in a row before the scale grows back; ``None`` never recovers.
        recovery_factor: Growth of the scale on recovery, ``> 1``.
        rollback: Restore the last calm weights and optimizer state on a spike.
        nan_policy: One of :attr:`NAN_POLICIES`.

    Raises:
        ValueError: For an out-of-range number or an unknown ``decay``/``interval``/``nan_policy``.
        MisconfigurationException: If ``monitor`` is not among the logged metrics when it is read.
        RuntimeError: With ``nan_policy="raise"``, when the value is not finite.

    Example::

        >>> from lr_callbacks import SpikeAdaptiveLR
        >>> SpikeAdaptiveLR(threshold=1.1, decay="sqrt")
        SpikeAdaptiveLR(monitor=None, threshold=1.1, decay='sqrt', min_lr=1e-06, interval='epoch')
    """

    DECAYS: dict[str, float] = {"halve": 0.5, "sqrt": math.sqrt(0.5)}
    NAN_POLICIES = ("spike", "ignore", "raise")

    def __init__(
        self,
        monitor: str | None = None,
        threshold: float = 1.1,
        decay: str | float = "halve",
        min_lr: float = 1e-6,
        interval: str = "epoch",
        ema: float | None = None,
        recovery_patience: int | None = None,
        recovery_factor: float = 2.0,
        rollback: bool = False,
        nan_policy: str = "spike",
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
        self.ema = None if ema is None else check_number("ema", ema, ge=0, lt=1)
        self.recovery_patience = (
            None if recovery_patience is None else check_number("recovery_patience", recovery_patience, ge=1, integer=True)
        )
        self.recovery_factor = check_number("recovery_factor", recovery_factor, gt=1)
        if not isinstance(rollback, bool):
            raise ValueError(f"`rollback` must be True or False, got {rollback!r}.")
        self.rollback = rollback
        self.nan_policy = check_choice("nan_policy", nan_policy, self.NAN_POLICIES)

        # The spike scale of each param group of each optimizer; None until fit starts.
        self.scales: list[list[float]] | None = None
        self.baseline: float | None = None
        self.calm = 0
        self.spikes: list[int] = []  # t of every spike, in interval units
        self.snapshot: dict[str, Any] | None = None
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        self._last_step = 0

    def __repr__(self) -> str:
        return (
            f"SpikeAdaptiveLR(monitor={self.monitor!r}, threshold={self.threshold}, decay={self.decay!r}, "
            f"min_lr={self.min_lr}, interval={self.interval!r})"
        )

    @override
    def _identity(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "threshold": self.threshold, "decay": self.decay, "interval": self.interval}

    # --- the rule -------------------------------------------------------------------------------------

    @override
    def lr_factor(self, optimizer_idx: int, group_idx: int) -> float:
        return 1.0 if self.scales is None else self.scales[optimizer_idx][group_idx]

    def is_spike(self, value: float) -> bool:
        """The seed's test against the current baseline: ``L_{t-1} > 0 and L_t / L_{t-1} > threshold``."""
        if not math.isfinite(value):
            return True
        return self.baseline is not None and self.baseline > 0 and value / self.baseline > self.threshold

    def _decay(self, trainer: pl.Trainer) -> None:
        for optimizer, scales in zip(trainer.optimizers, self.scales or []):
            for g, group in enumerate(optimizer.param_groups):
                base = abs(group["initial_lr"])
                floor = self.min_lr / base if base > 0 else 0.0
                scales[g] = min(scales[g], max(scales[g] * self.decay_factor, floor))

    def _recover(self) -> None:
        for scales in self.scales or []:
            for g, s in enumerate(scales):
                scales[g] = min(1.0, s * self.recovery_factor)

    def _update_baseline(self, value: float) -> None:
        if self.ema is None or self.baseline is None:
            self.baseline = value
        else:
            self.baseline = self.ema * self.baseline + (1.0 - self.ema) * value

    # --- reading the value ------------------------------------------------------------------------------

    def _accumulate(self, trainer: pl.Trainer, outputs: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach()
        if trainer.lightning_module.automatic_optimization:
            # Lightning hands back the loss divided by the accumulation count; undo that.
            loss = loss * trainer.accumulate_grad_batches
        loss = loss.to(_reduction_dtype(loss.device)).reshape(())
        self._loss_sum = loss if self._loss_sum is None else self._loss_sum.to(loss) + loss
        self._loss_count += 1

    def _read(self, trainer: pl.Trainer) -> float | None:
        """The monitored value, the same on every rank; ``None`` when there is nothing to read."""
        strategy = trainer.strategy
        if self.monitor is None:
            total = self._loss_sum
            count = self._loss_count
            self._loss_sum, self._loss_count = None, 0
            if total is None:
                total = torch.zeros((), dtype=_reduction_dtype(strategy.root_device), device=strategy.root_device)
            total = strategy.reduce(total, reduce_op="sum")
            count_t = torch.tensor(float(count), dtype=total.dtype, device=total.device)
            count_t = strategy.reduce(count_t, reduce_op="sum")
            if float(count_t) == 0:
                rank_zero_warn(
                    "SpikeAdaptiveLR found no training-step loss to monitor: return the loss from `training_step` "
                    "or pass `monitor`. The check is skipped."
                )
                return None
            value = float(total / count_t)
        else:
            metric = trainer.callback_metrics.get(self.monitor)
            if metric is None:
                raise MisconfigurationException(
                    f"SpikeAdaptiveLR(monitor={self.monitor!r}) found no such metric; logged metrics are "
                    f"{sorted(trainer.callback_metrics)}. Log it with `self.log({self.monitor!r}, ...)`."
                )
            tensor = torch.as_tensor(metric).to(device=strategy.root_device, dtype=_reduction_dtype(strategy.root_device))
            value = float(strategy.reduce(tensor, reduce_op="mean"))
        # One value for every rank, whatever the reduction's rounding.
        return float(strategy.broadcast(value))

    # --- the check --------------------------------------------------------------------------------------

    def _check(self, trainer: pl.Trainer, t: int) -> None:
        value = self._read(trainer)
        if value is None:
            return
        finite = math.isfinite(value)
        if not finite and self.nan_policy == "raise":
            raise RuntimeError(f"SpikeAdaptiveLR: the monitored value is {value} at {self.interval} {t}.")
        if not finite and self.nan_policy == "ignore":
            return
        spike = self.is_spike(value)
        previous = self.baseline
        rolled_back = False
        if spike:
            self._decay(trainer)
            self.calm = 0
            self.spikes.append(t)
            if self.rollback and self.snapshot is not None:
                self._restore(trainer)
                rolled_back = True
            elif finite:
                self._update_baseline(value)
            rank_zero_info(
                f"SpikeAdaptiveLR: spike at {self.interval} {t} (value {value:.6g} after {previous}); "
                f"spike scale now {self.scales}{', weights rolled back' if rolled_back else ''}."
            )
        else:
            self._update_baseline(value)
            self.calm += 1
            if self.recovery_patience is not None and self.calm >= self.recovery_patience:
                self._recover()
                self.calm = 0
            if self.rollback:
                self.snapshot = self._take_snapshot(trainer)
        apply_lr(trainer)
        if self.interval == "epoch" or spike or should_log(trainer):
            self._log(trainer, value, spike, rolled_back)

    def _log(self, trainer: pl.Trainer, value: float, spike: bool, rolled_back: bool) -> None:
        metrics = {"spike_detected": float(spike)}
        if math.isfinite(value):
            metrics["spike_loss"] = value
        if self.rollback:
            metrics["spike_rollback"] = float(rolled_back)
        for names, scales in zip(lr_names(trainer.optimizers), self.scales or []):
            for name, s in zip(names, scales):
                metrics[name.replace("lr-", "spike_scale-", 1)] = s
        log_metrics(trainer, metrics)

    # --- rollback ---------------------------------------------------------------------------------------

    @staticmethod
    def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        return [p for group in optimizer.param_groups for p in group["params"]]

    def _take_snapshot(self, trainer: pl.Trainer) -> dict[str, Any]:
        model = {k: v.detach().clone() for k, v in trainer.lightning_module.state_dict().items()}
        optimizers = [
            [copy.deepcopy(opt.state[p]) if p in opt.state else None for p in self._params(opt)]
            for opt in trainer.optimizers
        ]
        return {"model": model, "optimizers": optimizers}

    def _restore(self, trainer: pl.Trainer) -> None:
        assert self.snapshot is not None
        trainer.lightning_module.load_state_dict(self.snapshot["model"])
        for opt, states in zip(trainer.optimizers, self.snapshot["optimizers"]):
            for p, state in zip(self._params(opt), states):
                if state is None:
                    opt.state.pop(p, None)
                    continue
                # Adam's "step" stays where torch keeps it; every other tensor goes to the parameter's device.
                opt.state[p] = {
                    k: v.clone().to(p.device) if isinstance(v, torch.Tensor) and k != "step" else copy.deepcopy(v)
                    for k, v in state.items()
                }

    # --- hooks ------------------------------------------------------------------------------------------

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        shape = [len(opt.param_groups) for opt in trainer.optimizers]
        if self.scales is None or [len(s) for s in self.scales] != shape:
            self.scales = [[1.0] * n for n in shape]

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_step = trainer.global_step
        # The weights training starts from are the first "good" ones (after a resume, the checkpoint's copy).
        if self.rollback and self.snapshot is None:
            self.snapshot = self._take_snapshot(trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor is None:
            self._accumulate(trainer, outputs)
        # Only batches that end with an optimizer step count under gradient accumulation.
        if self.interval == "step" and trainer.global_step != self._last_step:
            self._last_step = trainer.global_step
            self._check(trainer, trainer.global_step - 1)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "epoch":
            self._check(trainer, trainer.current_epoch)

    # --- state ------------------------------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "scales": self.scales,
            "baseline": self.baseline,
            "calm": self.calm,
            "spikes": list(self.spikes),
            "snapshot": self.snapshot,
            "loss_sum": None if self._loss_sum is None else float(self._loss_sum),
            "loss_count": self._loss_count,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scales = state_dict.get("scales", self.scales)
        self.baseline = state_dict.get("baseline", self.baseline)
        self.calm = state_dict.get("calm", self.calm)
        self.spikes = list(state_dict.get("spikes", self.spikes))
        self.snapshot = state_dict.get("snapshot", self.snapshot)
        loss_sum = state_dict.get("loss_sum")
        self._loss_sum = None if loss_sum is None else torch.tensor(loss_sum, dtype=torch.float64)
        self._loss_count = state_dict.get("loss_count", self._loss_count)


def _reduction_dtype(device: torch.device) -> torch.dtype:
    """float64 for exact sums across steps and ranks; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _is_fraction(value: Any) -> bool:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return is_number and 0.0 < value < 1.0

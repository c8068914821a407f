"""SpikeAdaptiveLR: the seed's rule, which backs off the LR after an epoch whose loss spiked."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from lr_callbacks._checks import check_choice, check_number
from lr_callbacks.core import Interval
from lr_callbacks.spike.detectors import RatioDetector, SpikeDetector, TailDetector, ZScoreDetector
from lr_callbacks.spike.engine import NAN_POLICIES, NanPolicy, SpikeEngine
from lr_callbacks.spike.reactions import DECAYS, Backoff, DecayName, decay_factor

#: The keyword arguments of the step level, deprecated: ``SpikeGuard`` takes them (see ``_guard_arguments``).
DEPRECATED_STEP_ARGUMENTS = (
    "detector", "z_threshold", "warmup", "reactions", "grad_norm", "record_path", "sync_every", "snapshot_every",
    "tail",
)  # fmt: skip


class SpikeAdaptiveLR(SpikeEngine):
    """Back off the LR after an epoch whose loss spiked: the seed's rule, with opt-in extensions.

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

    **Extensions** (off by default):

    * ``ema``: the baseline is an exponential moving average ``b <- ema * b + (1 - ema) * L`` of the past values
      instead of the previous one.
    * ``recovery_patience``: after that many calm epochs in a row the scale grows by ``recovery_factor``, capped at 1.
    * ``rollback``: at a spike, the model's parameters and buffers, the optimizers' state and the grad scaler's
      state also go back to the copy taken at the end of the last calm epoch (at train start before any), and the
      baseline stays where it was. The copy lives on the model's device and is saved in checkpoints.
    * ``nan_policy``: a non-finite value counts as a spike (``"spike"``), is skipped (``"ignore"``), or raises
      (``"raise"``). A NaN never reaches the LR.

    **Step level.** Checking every optimizer step, with skip, rollback and record reactions, is the job of
    :class:`~lr_callbacks.spike.guard.SpikeGuard`. ``interval="step"`` and the step-level keyword arguments of
    earlier versions (``detector``, ``z_threshold``, ``warmup``, ``reactions``, ``grad_norm``, ``record_path``,
    ``sync_every``, ``snapshot_every``, ``tail``) still work for this release: they build the equivalent guard and
    warn with a ``FutureWarning`` that names the ``SpikeGuard(...)`` to write instead.

    **Distributed.** The epoch's value is reduced over ranks and broadcast from rank 0, so every rank takes the same
    decision. A mid-epoch checkpoint keeps the partial epoch sum of all ranks.

    **Cost.** One in-place add per batch (into a buffer of the loss's dtype, at least float32, allocated once) and
    no host read until the epoch's end.

    **Logging** (through the trainer's loggers, at every epoch check): ``spike_detected`` (0/1), ``spike_loss``,
    ``spike_rollback`` (0/1, with ``rollback``) and each group's scale as ``spike_scale-<Optimizer>[/pgN]``.

    Args:
        monitor: A logged metric to watch; ``None`` means the mean training-step loss.
        threshold: Ratio to the baseline above which a value is a spike, ``> 1``.
        decay: ``"halve"`` (``* 0.5``), ``"sqrt"`` (``* sqrt(0.5)``), or a factor in ``(0, 1)``.
        min_lr: Floor on the LR magnitude the spike scale alone can reach, ``>= 0``.
        interval: ``"epoch"``; ``"step"`` is deprecated (use :class:`~lr_callbacks.spike.guard.SpikeGuard`).
        ema: Weight of the past in the baseline, in ``[0, 1)``; 0 compares with the previous value.
        recovery_patience: Calm epochs in a row before the scale grows back, ``>= 1``; ``None`` never recovers.
        recovery_factor: Growth of the scale on recovery, ``> 1``.
        rollback: Also restore the weights and optimizer state of the last calm epoch at a spike.
        nan_policy: One of :attr:`NAN_POLICIES`.
        **deprecated: The step-level arguments of earlier versions (see *Step level*).

    Attributes:
        spikes: The epoch index of every spike.
        events: One dict per spike: step, epoch, value, reactions taken.
        steps_lost: Optimizer updates undone by rollback.
        scales: The spike scale of each param group of each optimizer.

    Raises:
        ValueError: For a value out of its range or an unknown name; the message names the argument and what is
            allowed.
        MisconfigurationException: If ``monitor`` is not among the logged metrics when it is read.
        RuntimeError: With ``nan_policy="raise"``, when the value is not finite.

    Example::

        >>> from lr_callbacks import SpikeAdaptiveLR
        >>> SpikeAdaptiveLR(threshold=1.1, decay="sqrt")  # doctest: +NORMALIZE_WHITESPACE
        SpikeAdaptiveLR(monitor=None, threshold=1.1, decay='sqrt', min_lr=1e-06, interval='epoch', ema=0.0,
                        recovery_patience=None, recovery_factor=2.0, rollback=False, nan_policy='spike')
    """

    DECAYS: dict[str, float] = DECAYS
    NAN_POLICIES: tuple[str, ...] = NAN_POLICIES
    IDENTITY = (
        "monitor", "threshold", "decay", "min_lr", "interval", "ema", "recovery_patience", "recovery_factor",
        "rollback", "nan_policy",
    )  # fmt: skip

    def __init__(
        self,
        monitor: str | None = None,
        threshold: float = 1.1,
        decay: DecayName | float = "halve",
        min_lr: float = 1e-6,
        interval: Interval = "epoch",
        ema: float = 0.0,
        recovery_patience: int | None = None,
        recovery_factor: float = 2.0,
        rollback: bool = False,
        nan_policy: NanPolicy = "spike",
        **deprecated: Any,
    ) -> None:
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"`monitor` must be None or the name of a logged metric, got {monitor!r}.")
        unknown = sorted(set(deprecated) - set(DEPRECATED_STEP_ARGUMENTS))
        if unknown:
            raise TypeError(f"SpikeAdaptiveLR() got unexpected keyword argument(s) {unknown}.")
        self.monitor = monitor
        self.threshold = check_number("threshold", threshold, gt=1)
        factor = decay_factor(decay)
        self.decay = decay
        self.min_lr = check_number("min_lr", min_lr, ge=0)
        self.ema = check_number("ema", ema, ge=0, lt=1)
        policy = Backoff(decay, min_lr, recovery_patience, recovery_factor)
        if not isinstance(rollback, bool):
            raise ValueError(f"`rollback` must be True or False, got {rollback!r}.")
        check_choice("nan_policy", nan_policy, self.NAN_POLICIES)
        self.step_options = dict(sorted(deprecated.items()))
        if check_choice("interval", interval, self.INTERVALS) == "step":
            guard = self._deprecated_guard(rollback, nan_policy, policy, deprecated)
            super().__init__(
                interval="step",
                monitor=monitor,
                detector=guard.detector,
                grad_detector=guard.grad_detector,
                reactions=guard.reactions,
                decay_factor=factor,
                min_lr=policy.min_lr,
                recovery_patience=policy.recovery_patience,
                recovery_factor=policy.recovery_factor,
                nan_policy=nan_policy,
                record_path=guard.record_path,
                sync_every=guard.sync_every,
                snapshot_every=guard.snapshot_every or 1,
            )
        else:
            reactions = self._epoch_reactions(rollback, deprecated)
            super().__init__(
                interval="epoch",
                monitor=monitor,
                detector=RatioDetector(self.threshold, self.ema),
                grad_detector=None,
                reactions=reactions,
                decay_factor=factor,
                min_lr=policy.min_lr,
                recovery_patience=policy.recovery_patience,
                recovery_factor=policy.recovery_factor,
                nan_policy=nan_policy,
                record_path=None,
                sync_every=None,
                snapshot_every=1,
            )

    def _identity(self) -> dict[str, Any]:
        identity = super()._identity()
        if self.step_options:  # deprecated arguments tell instances apart too
            identity["step_options"] = self.step_options
        return identity

    def _epoch_reactions(self, rollback: bool, deprecated: dict[str, Any]) -> tuple[str, ...]:
        """The epoch rule's reactions: backoff, and rollback when asked (also through the deprecated arguments)."""
        for name, value in deprecated.items():
            if name == "detector" and value == "ratio":
                continue
            if name == "reactions":
                items = (value,) if isinstance(value, str) else tuple(value)
                step_only = [r for r in items if r not in ("backoff", "rollback")]
                if step_only:
                    raise ValueError(f"`reactions` {step_only} act on single optimizer steps: use SpikeGuard.")
                if "backoff" not in items:
                    raise ValueError(f"`reactions` {list(items)}: the epoch rule always backs off the LR.")
                rollback = rollback or "rollback" in items
                continue
            if name == "snapshot_every" and value == 1:
                continue
            raise ValueError(
                f"`{name}` applies to step-level guarding, got {name}={value!r} with interval='epoch': "
                "use SpikeGuard for step-level detection."
            )
        if deprecated:
            _warn(f"SpikeAdaptiveLR's {sorted(deprecated)} are deprecated: write SpikeAdaptiveLR(rollback=True) "
                  "for the reactions ('backoff', 'rollback') and drop the others.")  # fmt: skip
        return ("backoff", "rollback") if rollback else ("backoff",)

    def _deprecated_guard(self, rollback: bool, nan_policy: str, policy: Backoff, options: dict[str, Any]) -> Any:
        """The ``SpikeGuard`` that ``interval="step"`` stands for (warned about), as earlier versions configured it."""
        from lr_callbacks.spike.guard import SpikeGuard

        kwargs, expression = _guard_arguments(self, rollback, nan_policy, policy, options)
        guard = SpikeGuard(**kwargs)
        _warn(f"SpikeAdaptiveLR(interval='step', ...) is deprecated and will be removed in the next release; write "
              f"{expression} instead (from lr_callbacks import SpikeGuard), which is the same guard; "
              "SpikeGuard()'s own defaults catch more spikes (see the Spikes page of the docs).")  # fmt: skip
        return guard


def _guard_arguments(
    spike: SpikeAdaptiveLR, rollback: bool, nan_policy: str, policy: Backoff, options: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """The ``SpikeGuard`` keyword arguments of a deprecated step-level ``SpikeAdaptiveLR``, and their source text."""
    from lr_callbacks.spike.guard import SpikeGuard

    name = options.get("detector") or "tail"
    check_choice("detector", name, ("ratio", "zscore", "tail"))
    settings: dict[str, Any] = {}
    if spike.threshold != 1.1:
        settings["threshold"] = spike.threshold
    if name == "ratio":
        for arg in ("z_threshold", "warmup", "tail"):
            if options.get(arg) is not None:
                raise ValueError(f"`{arg}` applies to the detectors 'zscore' and 'tail', got {arg}={options[arg]!r}.")
        settings["ema"] = spike.ema
        cls: type[SpikeDetector] = RatioDetector
    else:
        if spike.ema:
            settings["ema"] = spike.ema
        for arg, key in (("z_threshold", "z"), ("warmup", "warmup"), ("tail", "tail")):
            if options.get(arg) is not None:
                if arg == "tail" and name != "tail":
                    raise ValueError(f"`tail` applies to the detector 'tail', got tail={options['tail']!r}.")
                settings[key] = options[arg]
        cls = TailDetector if name == "tail" else ZScoreDetector
    detector_text = f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in settings.items())})"
    reactions = options.get("reactions", ("rollback", "record"))
    items = tuple(dict.fromkeys((reactions,) if isinstance(reactions, str) else tuple(reactions)))
    if rollback and "rollback" not in items:
        items = (*items, "rollback")
    kwargs: dict[str, Any] = {"detector": cls(**settings), "reactions": items[0] if len(items) == 1 else items}
    text = {"detector": detector_text}
    if items != inspect.signature(SpikeGuard).parameters["reactions"].default:
        text["reactions"] = repr(kwargs["reactions"])
    if "backoff" in items:
        kwargs["backoff"] = policy
        text["backoff"] = repr(policy)
    for arg in ("snapshot_every", "record_path", "sync_every"):
        if options.get(arg) is not None:
            kwargs[arg] = text[arg] = options[arg]
            text[arg] = repr(options[arg])
    if nan_policy != "spike":
        kwargs["nan_policy"], text["nan_policy"] = nan_policy, repr(nan_policy)
    if spike.monitor is not None:
        kwargs["monitor"], text["monitor"] = spike.monitor, repr(spike.monitor)
    grad_norm = options.get("grad_norm", False)
    if not isinstance(grad_norm, bool):
        raise ValueError(f"`grad_norm` must be True or False, got {grad_norm!r}.")
    if grad_norm:
        kwargs["grad_detector"], text["grad_detector"] = cls(**settings), detector_text
    return kwargs, "SpikeGuard(" + ", ".join(f"{k}={v}" for k, v in text.items()) + ")"


def _warn(message: str) -> None:
    warnings.warn(message, FutureWarning, stacklevel=4)

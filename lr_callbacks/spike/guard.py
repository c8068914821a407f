"""SpikeGuard: step-level spike detection (a detector object) and reactions (skip, backoff, rollback, record)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from lr_callbacks._checks import check_choice, check_number
from lr_callbacks.spike.detectors import MedianDetector, SpikeDetector
from lr_callbacks.spike.engine import NAN_POLICIES, REACTIONS, NanPolicy, Reaction, SpikeEngine
from lr_callbacks.spike.reactions import Backoff


class SpikeGuard(SpikeEngine):
    """Check the loss of every optimizer step for a spike, and react before the step's update is kept.

    **Detection** is the ``detector``'s job: an object with the protocol of
    :mod:`lr_callbacks.spike.detectors` (``check(x) -> bool``, ``state_dict``, ``load_state_dict``), such as
    :class:`~lr_callbacks.spike.detectors.MedianDetector` (the default: 3x the median of the 10 steps before, and
    5 % of the initial loss above it), :class:`~lr_callbacks.spike.detectors.TailDetector` (learns how far the
    task's own calm steps stray, on the log of the loss), :class:`~lr_callbacks.spike.detectors.ZScoreDetector`
    (standard deviations above an EMA of the loss, for losses that can be ``<= 0``),
    :class:`~lr_callbacks.spike.detectors.RatioDetector` (the seed's ratio to the previous value), or a user's own.
    The value checked is the loss of the step, read *before* its update (the micro-batch losses of an accumulation
    window are averaged), or the logged ``monitor``.
    ``grad_detector``, when given, also watches the total gradient norm (before clipping); either one spiking is a
    spike. The default detector's settings were chosen on the development tasks of ``lr-benchmark spikes`` and
    evaluated on tasks it was never tuned on (``docs/spikes.md``).

    **Reactions** (``reactions``, combinable):

    * ``"skip"`` (default; automatic optimization): this step's update is dropped. The gradients are removed before
      ``optimizer.step()``, and torch optimizers leave a parameter without a gradient untouched, so weights,
      momentum, Adam moments and step counts after the step are bit-identical to those before it. The step still
      counts for ``global_step`` and ``interval="step"`` schedules.
    * ``"rollback"`` (default, with ``"skip"``): the model's parameters and buffers, the optimizers' state and the
      grad scaler's state go back to the copy taken before the last calm step whose index is a multiple of
      ``snapshot_every`` (at train start before any), and this step's update is dropped: a rollback also undoes the
      updates since, which may have caused the spike (a too-high LR does). The copy lives on the model's device and
      is saved in checkpoints, so it doubles their size.
    * ``"skip"`` and ``"rollback"`` together (the default): a lone spike is skipped; a spike right after a skipped
      one rolls back. A corrupted batch or a natural outlier thus costs one update, while the damage of a too-high LR,
      done by the update *before* the first spike, is undone. (Which of the two applies depends on the step before,
      so this pair decides on the host, reading the loss every step.)
    * ``"backoff"``: the LR factor of every param group shrinks as the ``backoff`` policy says
      (:class:`~lr_callbacks.spike.reactions.Backoff`), from the next step on, and recovers after calm steps if it
      says so.
    * ``"record"`` (default): the batch indices of the spike are written to ``record_path`` (default
      ``<default_root_dir>/skip_batches.json``) as a JSON list, the format of Lightning's
      :class:`~lightning.pytorch.callbacks.SpikeDetection`, so a restart can skip them; with rollback the batches
      of the step before are added too, as Lightning lists ``b-1, b``. (Indices count within their epoch, as
      Lightning's do.) ``skip_batches_steps.json`` beside it lists each spike's optimizer step, epoch, batches,
      value and reactions.

    **Non-finite values** (``nan_policy``): ``"spike"`` counts one as a spike and keeps it out of the statistics,
    ``"ignore"`` skips the check, ``"raise"`` raises. A NaN never reaches the LR.

    **Distributed.** The value is averaged over ranks before the check (one all-reduce per step, which hands every
    rank the same bits), so every rank takes the same decision from the same loss: the one the averaged gradient
    descends. A spike on one rank shows in that mean divided by the world size.

    **No host sync on accelerators.** With automatic optimization on a GPU, the statistic, the decision, ``"skip"``
    and ``"rollback"`` stay on the device when the detector offers ``check_tensor``: the decision is a 0-d tensor
    and the update is undone after ``optimizer.step()`` by ``torch.where`` from a copy of the parameters and
    optimizer state (so ``"skip"`` keeps one copy there, as ``"rollback"`` does). Decisions are read back every
    ``sync_every`` steps (default: the trainer's ``log_every_n_steps``), and only then do ``"backoff"``,
    ``"record"``, logging and :attr:`spikes` catch up. On the CPU (``sync_every=1``) everything acts at the step
    itself. Manual optimization, ``precision="16-mixed"`` (torch's GradScaler reads its inf check back every step
    anyway), ``nan_policy="raise"`` and optimizer state that is not on the device (Adam's ``step`` counters unless
    ``capturable=True`` or ``fused=True``) use the host path.

    **Mixed precision.** Under ``"16-mixed"`` the loss is unscaled before the check and the gradient norm is taken
    after Lightning unscales the gradients. A step the GradScaler skips still counts and its loss enters the
    detector. A skip or rollback of ours also puts the scaler's scale and growth tracker back.

    **Manual optimization.** The value is ``training_step``'s return value (a tensor, or the ``"loss"`` of a dict)
    or the logged ``monitor``, read after the batch, so checks run after the batch's updates: ``"skip"`` is refused
    at fit start, and ``"rollback"`` restores the state from before the spiking batch's updates.

    **Param groups added mid-fit** (``BackboneFinetuning``) start with a spike scale of 1.

    **Logging** (through the trainer's loggers, at every spike and at the logging cadence): ``spike_detected``
    (0/1), ``spike_loss``, ``spike_skip`` and ``spike_rollback`` (0/1, when those reactions are on) and each
    group's scale as ``spike_scale-<Optimizer>[/pgN]``.

    Args:
        detector: The detector of the loss (or ``monitor``); ``None``: ``MedianDetector()``.
        reactions: Any of :attr:`REACTIONS`, one or a sequence; an empty one only detects, counts and logs.
        backoff: The policy of the ``"backoff"`` reaction; ``None``: ``Backoff()`` when ``"backoff"`` is among the
            reactions. Refused without it.
        snapshot_every: Refresh the rollback copy at calm steps whose index is a multiple of this, ``>= 1``;
            ``None``: :attr:`SNAPSHOT_EVERY` with ``"rollback"``. Refused without it.
        record_path: File (or folder) for ``"record"``; ``None``: the trainer's ``default_root_dir``. Refused
            without ``"record"``.
        nan_policy: One of :attr:`NAN_POLICIES`.
        sync_every: Steps between reading decisions back to the host on an accelerator, ``>= 1``; ``None``: 1 on
            the CPU, ``log_every_n_steps`` elsewhere.
        monitor: A metric logged at each step to check instead of the training loss; ``None``: the loss.
        grad_detector: A second detector, of the total gradient norm; ``None``: the norm is not watched.

    Attributes:
        spikes: The optimizer-step index of every spike.
        events: One dict per spike: step, epoch, batches, value, reactions taken.
        steps_lost: Optimizer updates computed and then dropped (skip) or undone (rollback).
        scales: The spike scale of each param group of each optimizer.

    Raises:
        ValueError: For a value out of its range, an unknown name, or an argument its reaction is not on for; the
            message names the argument and what is allowed.
        MisconfigurationException: If ``monitor`` is not among the logged metrics when it is read, or ``"skip"`` is
            asked of a manually optimized module.
        RuntimeError: With ``nan_policy="raise"``, when the value is not finite.

    Example::

        >>> from lr_callbacks import SpikeGuard
        >>> from lr_callbacks.spike import Backoff, ZScoreDetector
        >>> guard = SpikeGuard()
        >>> guard.reactions, guard.snapshot_every
        (('skip', 'rollback', 'record'), 20)
        >>> SpikeGuard(ZScoreDetector(z=5.0), reactions=("skip", "backoff"), backoff=Backoff(decay="sqrt"))
        SpikeGuard(detector=ZScoreDetector(z=5.0, threshold=1.1, ema=0.95, warmup=50), reactions=('skip', 'backoff'), \
backoff=Backoff(decay='sqrt', min_lr=1e-06, recovery_patience=None, recovery_factor=2.0), snapshot_every=None, \
record_path=None, nan_policy='spike', sync_every=None, monitor=None, grad_detector=None)
    """

    REACTIONS: tuple[str, ...] = REACTIONS
    NAN_POLICIES: tuple[str, ...] = NAN_POLICIES
    #: The rollback period when ``"rollback"`` is on and ``snapshot_every`` is not given.
    SNAPSHOT_EVERY: ClassVar[int] = 20
    IDENTITY = (
        "detector", "reactions", "backoff", "snapshot_every", "record_path", "nan_policy", "sync_every", "monitor",
        "grad_detector",
    )  # fmt: skip

    def __init__(
        self,
        detector: SpikeDetector | None = None,
        reactions: Reaction | Sequence[Reaction] = ("skip", "rollback", "record"),
        backoff: Backoff | None = None,
        snapshot_every: int | None = None,
        record_path: str | None = None,
        nan_policy: NanPolicy = "spike",
        sync_every: int | None = None,
        monitor: str | None = None,
        grad_detector: SpikeDetector | None = None,
    ) -> None:
        detector = MedianDetector() if detector is None else check_detector("detector", detector)
        if grad_detector is not None:
            check_detector("grad_detector", grad_detector)
            if grad_detector is detector:
                raise ValueError("`grad_detector` must be a detector object of its own, not `detector` itself.")
        chosen = check_reactions(reactions, self.REACTIONS)
        if backoff is not None and not isinstance(backoff, Backoff):
            raise ValueError(f"`backoff` must be None or a Backoff(...) policy, got {backoff!r}.")
        if "backoff" in chosen:
            backoff = backoff or Backoff()
        elif backoff is not None:
            raise ValueError(f"`backoff` is the policy of the 'backoff' reaction, which is off: reactions={chosen}.")
        if "rollback" in chosen:
            every = self.SNAPSHOT_EVERY if snapshot_every is None else snapshot_every
            snapshot_every = check_number("snapshot_every", every, ge=1, integer=True)
        elif snapshot_every is not None:
            raise ValueError(
                f"`snapshot_every` is the period of the 'rollback' reaction, which is off: reactions={chosen}."
            )
        if record_path is not None:
            if "record" not in chosen:
                raise ValueError(
                    f"`record_path` is the file of the 'record' reaction, which is off: reactions={chosen}."
                )
            if not isinstance(record_path, str) or not record_path:
                raise ValueError(f"`record_path` must be None or a file or folder path, got {record_path!r}.")
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"`monitor` must be None or the name of a logged metric, got {monitor!r}.")
        policy = backoff or Backoff()
        super().__init__(
            interval="step",
            monitor=monitor,
            detector=detector,
            grad_detector=grad_detector,
            reactions=chosen,
            decay_factor=policy.factor,
            min_lr=policy.min_lr,
            recovery_patience=policy.recovery_patience,
            recovery_factor=policy.recovery_factor,
            nan_policy=check_choice("nan_policy", nan_policy, self.NAN_POLICIES),
            record_path=record_path,
            sync_every=None if sync_every is None else check_number("sync_every", sync_every, ge=1, integer=True),
            snapshot_every=snapshot_every or 1,
        )
        self.backoff = backoff
        self.snapshot_every = snapshot_every
        self.record_path = record_path

    def _identity(self) -> dict[str, Any]:
        identity = super()._identity()
        for key in ("detector", "grad_detector"):
            identity[key] = detector_identity(identity[key])
        return identity


def check_reactions(reactions: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``reactions`` (one name or a sequence of names of ``allowed``) as a tuple without repeats."""
    items = (reactions,) if isinstance(reactions, str) else reactions
    if not isinstance(items, Sequence):
        raise ValueError(f"`reactions` must be one of {list(allowed)} or a sequence of them, got {reactions!r}.")
    for r in items:
        if r not in allowed:
            raise ValueError(f"`reactions` must hold names from {list(allowed)}, got {r!r}.")
    return tuple(dict.fromkeys(str(r) for r in items))


def check_detector(name: str, detector: Any) -> Any:
    """``detector`` if it has the detector protocol (``check``, ``state_dict``, ``load_state_dict``)."""
    missing = [m for m in ("check", "state_dict", "load_state_dict") if not callable(getattr(detector, m, None))]
    if missing or isinstance(detector, (str, type)):
        raise ValueError(
            f"`{name}` must be a detector object such as TailDetector(), ZScoreDetector() or RatioDetector(), or one "
            f"with the methods check(x), state_dict() and load_state_dict(state); got {detector!r}."
        )
    return detector


def detector_identity(detector: Any) -> Any:
    """What tells a detector apart in a ``state_key``: its ``repr``, or its class when that ``repr`` is Python's
    default (which holds a memory address, different in every run)."""
    if detector is None or type(detector).__repr__ is not object.__repr__:
        return detector
    return f"{type(detector).__module__}.{type(detector).__qualname__}"

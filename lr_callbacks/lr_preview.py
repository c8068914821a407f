"""See the LR before training: every param group's LR at every training step, under the one LR rule.

:func:`preview` moves copies of the callbacks through the times a fit would give them (each contributor's
own ``time_of_step``), evaluates :func:`lr_callbacks.core.compute_lrs` at each training step, and replays
the checks of data-driven callbacks from a scripted metric through their own decision code. No trainer is
built, so 100k steps take about a second (``lr-benchmark preview``).
"""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lightning.pytorch.callbacks import Callback

from lr_callbacks._checks import check_number
from lr_callbacks._plotting import figure_and_axes
from lr_callbacks.core import LRContributor, Modifier, Schedule, check_one_schedule, compute_lrs
from lr_callbacks.finder.callback import LRFinder

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


#: The name a scripted metric is keyed by for a data-driven callback that has no ``monitor`` (the training loss).
LOSS = "loss"


@dataclass
class LRPreview:
    """The LRs :func:`preview` foresees.

    Attributes:
        lrs: ``lrs[k][i][g]``: the LR of param group ``g`` of optimizer ``i`` at training step ``k``.
        steps_per_epoch: Training (optimizer) steps per epoch.
        epochs: Epochs of the run (the last one may be cut short by ``max_steps``).
        unforeseen: One message per callback whose effect the preview could not foresee (held flat instead).

    Example::

        >>> from lr_callbacks import StepDecay, preview
        >>> lrs = preview([StepDecay(step_size=1, gamma=0.5)], epochs=3, steps_per_epoch=2, base_lrs=[0.1, 0.02])
        >>> lrs.steps, lrs.series(optimizer=0, group=1)
        (6, [0.02, 0.02, 0.01, 0.01, 0.005, 0.005])
    """

    lrs: list[list[list[float]]]
    steps_per_epoch: int
    epochs: int
    unforeseen: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Training steps of the run."""
        return len(self.lrs)

    def series(self, optimizer: int = 0, group: int = 0) -> list[float]:
        """The LR of one param group at every training step."""
        return [row[optimizer][group] for row in self.lrs]

    def labels(self) -> list[tuple[int, int, str]]:
        """``(optimizer, group, label)`` of every param group, in order."""
        shape = [len(row) for row in self.lrs[0]] if self.lrs else []
        return [
            (i, g, f"group {g}" if len(shape) == 1 else f"optimizer {i} / group {g}")
            for i, n in enumerate(shape)
            for g in range(n)
        ]

    def plot(
        self, path: str | os.PathLike | None = None, logger: Logger | None = None, ax: Axes | None = None
    ) -> Figure:
        """Draw every group's LR against the training step (epochs on the top axis).

        Args:
            path: Also save the figure there as a PNG.
            logger: Also add the figure to this TensorBoard logger, as ``lr_preview``.
            ax: Axes to draw on; default a new figure.

        Returns:
            The figure.

        Raises:
            ModuleNotFoundError: If matplotlib is not installed.
            ValueError: If ``logger`` cannot take a figure (it is not a TensorBoard logger).
        """
        experiment = None
        if logger is not None:
            experiment = getattr(logger, "experiment", None)
            if not hasattr(experiment, "add_figure"):
                raise ValueError(
                    "`logger` must be a TensorBoard logger (its `experiment` has `add_figure`), "
                    f"got {type(logger).__name__}."
                )
        figure, ax = figure_and_axes(ax, (8, 4.5), "LRPreview.plot")
        steps = range(self.steps)
        for i, g, label in self.labels():
            ax.plot(steps, self.series(i, g), label=label, linewidth=1.0, drawstyle="steps-post")
        ax.set_xlabel("training step")
        ax.set_ylabel("learning rate")
        ax.grid(True, alpha=0.3)
        per = f"{self.steps_per_epoch} step" + ("s" if self.steps_per_epoch != 1 else "")
        title = f"LR preview: {self.epochs} epochs x {per} = {self.steps} training steps"
        if self.unforeseen:
            names = ", ".join(re.split(r"\W", note, maxsplit=1)[0] for note in self.unforeseen)
            title += f"\n(not foreseen, held flat: {names})"
        ax.set_title(title, fontsize=10)
        if self.epochs > 1:
            per_epoch = self.steps_per_epoch

            def to_epoch(step: Any) -> Any:
                return step / per_epoch

            def to_step(epoch: Any) -> Any:
                return epoch * per_epoch

            top = ax.secondary_xaxis("top", functions=(to_epoch, to_step))
            top.set_xlabel("epoch")
        if len(self.labels()) > 1:
            ax.legend()
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=100)
        if experiment is not None:
            experiment.add_figure("lr_preview", figure, global_step=0, close=False)
        return figure


def preview(
    callbacks: Sequence[Callback],
    *,
    epochs: int,
    steps_per_epoch: int | None = None,
    base_lrs: float | Sequence[float] | Sequence[Sequence[float]],
    batches_per_epoch: int | None = None,
    accumulate_grad_batches: int = 1,
    max_steps: int = -1,
    metrics: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
) -> LRPreview:
    """The LR of every param group at every training step of a fit with ``callbacks``, before running it.

    The same rule as a fit (:func:`lr_callbacks.core.compute_lrs`), evaluated on copies of the callbacks
    (the ones passed in are left as they are) moved through each training step's ``t``. A step is an
    optimizer step (an accumulation window counts once; under manual optimization, a training batch).
    ``OneCycle(total_steps=None)`` learns the run's length as it would from the trainer.

    **Data-driven callbacks.** ``ReduceOnPlateau`` and ``SpikeAdaptiveLR`` are foreseen from a scripted metric:
    ``metrics`` gives the value each check sees (one per epoch, observed at the epoch's end, or one per step with
    ``interval="step"``; for ``SpikeAdaptiveLR`` without ``monitor``, the epoch's mean training loss or the step's
    loss), and the callback's own decision code runs on it. Without one, and for callbacks the preview cannot
    replay (``SpikeAdaptiveLR(grad_norm=True)``, whose decisions also read gradient norms; ``LRFinder``, which
    replaces the base LRs with its suggestion), the preview warns, holds their contribution where it starts (no
    reduction, scale 1, the given base LRs) and lists them in :attr:`LRPreview.unforeseen`. Callbacks that do
    not set the LR (checkpointing, ``LearningRateMonitor``, ...) are ignored.

    Args:
        callbacks: The trainer's callbacks.
        epochs: Epochs of the run (``max_epochs``), ``>= 1``.
        steps_per_epoch: Training steps per epoch. Give it or ``batches_per_epoch``.
        base_lrs: Base LR of every param group: one value (one optimizer, one group), one per group of one
            optimizer, or one row per optimizer.
        batches_per_epoch: Training batches per epoch (``len(train_dataloader)``), for a run with
            ``accumulate_grad_batches``: an epoch then has ``ceil(batches / accumulate)`` steps.
        accumulate_grad_batches: The trainer's gradient accumulation, ``>= 1``.
        max_steps: Stop after this many training steps, as the trainer's ``max_steps``; ``-1``: no limit.
        metrics: The scripted metric of data-driven callbacks: one sequence for all, or a mapping from each
            callback's ``monitor`` (``"loss"`` for a callback that watches the training loss) to its sequence.

    Returns:
        The LRs, as :class:`LRPreview`.

    Raises:
        ValueError: For an argument outside what is allowed (the message names it), or a scripted metric
            shorter than the checks it feeds.
        MisconfigurationException: For two schedule callbacks, as the trainer would.

    Example::

        >>> from lr_callbacks import CosineAnnealing, Warmup, preview
        >>> lrs = preview([Warmup(duration=2), CosineAnnealing(T_max=2)], epochs=2, steps_per_epoch=2, base_lrs=0.1)
        >>> [round(lr, 4) for lr in lrs.series()]
        [0.0, 0.05, 0.05, 0.05]
    """
    epochs = check_number("epochs", epochs, ge=1, integer=True)
    if (steps_per_epoch is None) == (batches_per_epoch is None):
        raise ValueError(
            f"Give exactly one of `steps_per_epoch` and `batches_per_epoch`, got steps_per_epoch={steps_per_epoch!r}, "
            f"batches_per_epoch={batches_per_epoch!r}."
        )
    accumulate = check_number("accumulate_grad_batches", accumulate_grad_batches, ge=1, integer=True)
    if steps_per_epoch is not None:
        if accumulate != 1:
            raise ValueError(
                "`accumulate_grad_batches` applies to `batches_per_epoch`; `steps_per_epoch` already counts optimizer "
                f"steps. Got accumulate_grad_batches={accumulate}."
            )
        per_epoch = check_number("steps_per_epoch", steps_per_epoch, ge=1, integer=True)
    else:
        per_epoch = -(-check_number("batches_per_epoch", batches_per_epoch, ge=1, integer=True) // accumulate)
    max_steps = check_number("max_steps", max_steps, ge=-1, integer=True)
    if max_steps == 0:
        raise ValueError("`max_steps` must be -1 (no limit) or >= 1, got 0.")
    total = epochs * per_epoch if max_steps == -1 else min(epochs * per_epoch, max_steps)
    bases = _base_lrs(base_lrs)

    contributors = [copy.deepcopy(cb) for cb in callbacks if isinstance(cb, LRContributor)]
    check_one_schedule(contributors)
    schedule = next((c for c in contributors if isinstance(c, Schedule)), None)
    modifiers = [c for c in contributors if isinstance(c, Modifier)]
    for contributor in contributors:
        contributor.set_run_length(total, epochs)

    unforeseen = [_finder_note(cb) for cb in callbacks if isinstance(cb, LRFinder)]
    timed = [c for c in contributors if c._time_driven]
    replays: list[tuple[LRContributor, list[float]]] = []
    for contributor in (c for c in contributors if not c._time_driven):
        checks = total if contributor.interval == "step" else total // per_epoch
        script = _script(contributor, metrics, checks)
        if isinstance(script, str):
            unforeseen.append(script)
        else:
            replays.append((contributor, script))
    for note in unforeseen:
        warnings.warn(note, UserWarning, stacklevel=2)

    lrs = []
    for k in range(total):
        for contributor in timed:
            contributor.set_time(contributor.time_of_step(k, per_epoch))
        lrs.append(compute_lrs(bases, schedule, modifiers))
        epoch_ends = (k + 1) % per_epoch == 0
        for contributor, script in replays:
            if contributor.interval == "step":
                contributor._replay_check(script[k], bases)
            elif epoch_ends:
                contributor._replay_check(script[k // per_epoch], bases)
    return LRPreview(lrs=lrs, steps_per_epoch=per_epoch, epochs=epochs, unforeseen=unforeseen)


def _base_lrs(base_lrs: Any) -> list[list[float]]:
    """``base_lrs`` as one row per optimizer."""
    wanted = (
        "a finite number, a sequence of them (one per param group) or a sequence of such sequences (one per optimizer)"
    )
    if isinstance(base_lrs, (int, float)) and not isinstance(base_lrs, bool):
        rows: Any = [[base_lrs]]
    elif isinstance(base_lrs, Sequence) and base_lrs and all(isinstance(v, (int, float)) for v in base_lrs):
        rows = [list(base_lrs)]
    elif isinstance(base_lrs, Sequence) and base_lrs and all(isinstance(r, Sequence) and r for r in base_lrs):
        rows = [list(r) for r in base_lrs]
    else:
        raise ValueError(f"`base_lrs` must be {wanted}, got {base_lrs!r}.")
    for row in rows:
        for value in row:
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not is_number or not math.isfinite(value):
                raise ValueError(f"`base_lrs` must be {wanted}, got {base_lrs!r}.")
    return [[float(v) for v in row] for row in rows]


def _script(contributor: LRContributor, metrics: Any, checks: int) -> list[float] | str:
    """The scripted values a data-driven contributor checks, or a note saying why it cannot be foreseen."""
    name = type(contributor).__name__
    key = getattr(contributor, "monitor", None) or LOSS
    per = "step" if contributor.interval == "step" else "epoch"
    obstacle = contributor._replay_obstacle()
    if obstacle is not None:
        return (
            f"{name}(monitor={getattr(contributor, 'monitor', None)!r}) cannot be foreseen: {obstacle}. "
            "The preview holds its contribution where it starts (no change)."
        )
    script = metrics.get(key) if isinstance(metrics, Mapping) else metrics
    if script is None:
        return (
            f"{name}(monitor={key!r}) cannot be foreseen without its metric: pass `metrics` with {checks} value(s), "
            f"one per {per} (e.g. metrics={{{key!r}: [...]}}). The preview holds its contribution where it starts "
            "(no change)."
        )
    try:
        if isinstance(script, (str, bytes)):
            raise TypeError
        values = [float(v) for v in script]  # also an array or a tensor
    except (TypeError, ValueError):
        raise ValueError(f"`metrics` must give a sequence of numbers for {key!r}, got {script!r}.") from None
    if len(values) < checks:
        raise ValueError(
            f"`metrics` gives {len(values)} value(s) for {name}(monitor={key!r}), which checks once per {per}: "
            f"{checks} needed."
        )
    return values


def _finder_note(finder: LRFinder) -> str:
    return (
        f"{type(finder).__name__} cannot be foreseen: at fit start it replaces the base LRs with its suggestion. "
        "The preview starts from `base_lrs`; pass the suggestion there once it is known."
    )

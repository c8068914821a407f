"""How :class:`lr_callbacks.LRFinder` turns its trials into a suggested LR: one object per method.

Each method holds only the arguments that apply to it, so every combination a method accepts is valid:

- :class:`Race` (the default): race a few constant-LR candidates below the divergence point of the sweep.
- :class:`Curvature`: a fraction of the (momentum) SGD stability bound ``2 / lambda_max``.
- :class:`CenteredMin`, :class:`Steepest`, :class:`Valley`, :class:`MinDiv10`: read from the sweep's curve alone.

``LRFinder(suggestion="race")`` and the other names of :data:`SUGGESTIONS` still work: a name is the method's
object with its defaults (:func:`suggestion_method`).

Example::

    >>> from lr_callbacks import LRFinder, Race, Valley
    >>> LRFinder(suggestion=Race(candidates=3, budget_steps=200)).suggestion
    Race(candidates=3, budget_steps=200, probe_batches=4, train_steps=None, follow_schedule=True)
    >>> suggestion_method("valley") == Valley()
    True
"""

from __future__ import annotations

from typing import Any, ClassVar

from lr_callbacks._checks import check_number
from lr_callbacks.finder.curve import PROBE_BATCHES


class SuggestionMethod:
    """A suggestion method of :class:`lr_callbacks.LRFinder`: its name, its arguments and how it checks them.

    ``IDENTITY`` names the arguments; ``repr`` and equality come from them, so a finder's ``repr`` (and its
    checkpoint key) says which method it ran with which arguments.
    """

    name: ClassVar[str]
    IDENTITY: ClassVar[tuple[str, ...]] = ()

    def check(self, num_steps: int) -> None:
        """Raise ``ValueError`` if the method cannot run with a sweep of ``num_steps`` steps."""

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, key) for key in self.IDENTITY)

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={getattr(self, key)!r}" for key in self.IDENTITY)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SuggestionMethod) and type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))


class Race(SuggestionMethod):
    """Race ``candidates`` constant LRs below the sweep's divergence point and suggest the winner, for the run.

    Each race trains from the same restored state on the same batches; its end weights are scored on the next
    ``probe_batches`` batches, without a step. The sweep, the races and their probe batches share
    ``budget_steps``. The winner is scaled to the ``train_steps`` the suggestion is for (default what the trainer
    has left to run), as :class:`lr_callbacks.LRFinder` explains. With ``follow_schedule``, a schedule callback
    in the same trainer (``CosineAnnealing``, ``OneCycle``, ``Warmup``, ...) runs inside each race, compressed to
    the race's length, and the suggestion is the base (peak) LR for that schedule.

    Args:
        candidates: Number of race candidates, ``>= 2``.
        budget_steps: Steps the sweep, the races and their probe batches may take together, at least
            ``num_steps + candidates * (2 + probe_batches)``.
        probe_batches: Batches each race's end weights are scored on, ``>= 0`` (0: the race's own training
            losses over its second half).
        train_steps: The optimizer steps the suggestion is for, ``>= 1``; default what the trainer has left.
        follow_schedule: Run the trainer's schedule callbacks, compressed, inside each race.

    Raises:
        ValueError: If an argument is outside what is allowed; the message names it.
    """

    name = "race"
    IDENTITY = ("candidates", "budget_steps", "probe_batches", "train_steps", "follow_schedule")

    def __init__(
        self,
        candidates: int = 5,
        budget_steps: int = 300,
        probe_batches: int = PROBE_BATCHES,
        train_steps: int | None = None,
        follow_schedule: bool = True,
    ) -> None:
        self.candidates = check_number("candidates", candidates, ge=2, integer=True)
        self.budget_steps = check_number("budget_steps", budget_steps, ge=1, integer=True)
        self.probe_batches = check_number("probe_batches", probe_batches, ge=0, integer=True)
        self.train_steps = None if train_steps is None else check_number("train_steps", train_steps, ge=1, integer=True)
        self.follow_schedule = bool(follow_schedule)

    def check(self, num_steps: int) -> None:
        least = num_steps + self.candidates * (2 + self.probe_batches)
        if self.budget_steps < least:
            raise ValueError(
                f"`budget_steps` must be at least num_steps + candidates * (2 + probe_batches) = {least}, got "
                f"{self.budget_steps!r}."
            )


class Curvature(SuggestionMethod):
    """``scale * 2 * factor / (lambda_max + weight_decay)``: a fraction of the (momentum) SGD stability bound.

    ``lambda_max`` is the top eigenvalue of the loss Hessian on the first batch (20 power iterations of
    Hessian-vector products) and ``factor`` is ``1 + momentum`` for heavy-ball SGD, ``(1 + momentum) / (1 + 2
    momentum)`` for Nesterov (:func:`lr_callbacks.curvature.sgd_stability_factor`); other optimizers get the plain
    bound, with a warning.

    Args:
        scale: Factor on the bound, ``> 0``. The default 0.5 gives ``1 / lambda_max`` for plain SGD, the step that
            zeroes the sharpest direction of a quadratic.

    Raises:
        ValueError: If ``scale`` is not positive.
    """

    name = "curvature"
    IDENTITY = ("scale",)

    def __init__(self, scale: float = 0.5) -> None:
        self.scale = check_number("scale", scale, gt=0)


class CurveMethod(SuggestionMethod):
    """A method read from the sweep's loss curve alone (:func:`lr_callbacks.finder.curve.suggest`)."""


class CenteredMin(CurveMethod):
    """The minimum of a centred moving average of the raw curve (6% of the points on each side), divided by 6."""

    name = "centered_min"


class Steepest(CurveMethod):
    """The steepest descent of the raw curve after a moving average of 5."""

    name = "steepest"


class Valley(CurveMethod):
    """fastai's ``valley``, on the smoothed curve trimmed as fastai's ``lr_find`` trims it."""

    name = "valley"


class MinDiv10(CurveMethod):
    """The LR at the minimum of the smoothed curve, divided by 10."""

    name = "min_div10"


METHODS: tuple[type[SuggestionMethod], ...] = (Race, CenteredMin, Steepest, Valley, MinDiv10, Curvature)
SUGGESTIONS: tuple[str, ...] = tuple(method.name for method in METHODS)
"""The names a suggestion may be given by."""


def suggestion_method(suggestion: str | SuggestionMethod) -> SuggestionMethod:
    """The method object of ``suggestion``: itself, or for a name of :data:`SUGGESTIONS` the method's defaults.

    Raises:
        ValueError: For an unknown name or another type; the message lists the names.
    """
    if isinstance(suggestion, SuggestionMethod):
        return suggestion
    by_name = {method.name: method for method in METHODS}
    if isinstance(suggestion, str) and suggestion in by_name:
        return by_name[suggestion]()
    raise ValueError(
        f"`suggestion` must be one of {list(SUGGESTIONS)} or a method object ({', '.join(m.__name__ for m in METHODS)}"
        f"), got {suggestion!r}."
    )

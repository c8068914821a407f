"""Sign alternation: a +1/-1 LR factor, the seed's alternating positive and negative learning rates."""

from __future__ import annotations

from typing import Literal, get_args

from lr_callbacks._checks import check_choice, check_number
from lr_callbacks.core import Interval, TimeModifier

Pattern = Literal["alternate", "positive", "negative"]


class SignAlternation(TimeModifier):
    """Multiply the LR by ``+1`` or ``-negative_scale``, so that some epochs (or steps) ascend the loss.

    With ``block = t // period``:

    * ``"alternate"``: ``+1`` on even blocks, ``-negative_scale`` on odd blocks (the seed's +η, -η, +η, ...).
    * ``"positive"``: ``+1`` always (a no-op, handy as a control in sweeps).
    * ``"negative"``: ``-negative_scale`` always.

    torch optimizers refuse a negative ``lr`` in their constructor but use one written into the param group,
    which is what this does: SGD (with or without momentum), Adam and AdamW all step up the gradient then.
    The factor is a pure function of ``t`` (the epoch, or the optimizer step with ``interval="step"``), so
    the callback keeps no state and resumes exactly. It logs its factor as ``lr_sign``.

    Args:
        pattern: One of :attr:`PATTERNS`.
        period: Length of a block, in units of ``interval``, ``>= 1``.
        negative_scale: Magnitude of the negative factor, ``> 0``.
        interval: ``"epoch"`` or ``"step"``.

    Raises:
        ValueError: For an unknown ``pattern``/``interval``, ``period < 1`` or ``negative_scale <= 0``.

    Example::

        >>> from lr_callbacks import SignAlternation
        >>> sign = SignAlternation(pattern="alternate", period=2)
        >>> [sign.factor(t) for t in range(6)]
        [1.0, 1.0, -1.0, -1.0, 1.0, 1.0]
    """

    PATTERNS: tuple[str, ...] = get_args(Pattern)
    LOG_NAME = "lr_sign"

    IDENTITY = ("pattern", "period", "negative_scale", "interval")

    def __init__(
        self, pattern: Pattern = "alternate", period: int = 1, negative_scale: float = 1.0, interval: Interval = "epoch"
    ) -> None:
        super().__init__(interval)
        self.pattern = check_choice("pattern", pattern, self.PATTERNS)
        self.period = check_number("period", period, ge=1, integer=True)
        self.negative_scale = float(check_number("negative_scale", negative_scale, gt=0))

    def factor(self, t: float) -> float:
        """The sign factor at time ``t``."""
        if self.pattern == "positive":
            return 1.0
        if self.pattern == "negative":
            return -self.negative_scale
        return 1.0 if (int(t) // self.period) % 2 == 0 else -self.negative_scale

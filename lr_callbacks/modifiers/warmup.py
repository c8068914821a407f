"""Warmup: a factor that ramps from ``start_factor`` to 1, on top of any schedule."""

from __future__ import annotations

import math
from typing import Literal, get_args

from lr_callbacks._checks import check_choice, check_number
from lr_callbacks.core import Interval, TimeModifier

Shape = Literal["linear", "cosine"]


class Warmup(TimeModifier):
    """Ramp the LR factor from ``start_factor`` to 1 over ``duration`` optimizer steps (or epochs), then hold 1.

    With ``r = min(t, duration) / duration``:

    * ``"linear"``: ``start_factor + (1 - start_factor) * r``, exactly torch's
      ``LinearLR(start_factor, end_factor=1.0, total_iters=duration)`` in its closed form.
    * ``"cosine"``: ``start_factor + (1 - start_factor) * (1 - cos(pi * r)) / 2``.

    ``t`` counts from 0, so the first step runs at ``start_factor`` times the scheduled LR. With the
    default ``start_factor=0.0`` that first step has LR 0 and leaves the weights unchanged (torch's
    ``LinearLR`` refuses 0; ours allows it), and the full LR is reached at ``t = duration``. Being a
    modifier, the ramp multiplies whatever schedule runs underneath (e.g. warmup into cosine annealing).
    The factor is a pure function of ``t``, so the callback keeps no state and resumes exactly. It logs
    its factor as ``warmup_factor``.

    Args:
        duration: Length of the ramp, in units of ``interval``, ``>= 1``.
        start_factor: Factor at ``t = 0``, in ``[0, 1]``.
        interval: ``"step"`` (optimizer steps) or ``"epoch"``.
        shape: One of :attr:`SHAPES`.

    Raises:
        ValueError: For ``duration < 1``, ``start_factor`` outside ``[0, 1]`` or an unknown ``shape``/``interval``.

    Example::

        >>> from lr_callbacks import Warmup
        >>> warmup = Warmup(duration=4, start_factor=0.2)
        >>> [round(warmup.factor(t), 2) for t in range(6)]
        [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    """

    SHAPES: tuple[str, ...] = get_args(Shape)
    LOG_NAME = "warmup_factor"

    IDENTITY = ("duration", "start_factor", "interval", "shape")

    def __init__(
        self, duration: int, start_factor: float = 0.0, interval: Interval = "step", shape: Shape = "linear"
    ) -> None:
        super().__init__(interval)
        self.duration = check_number("duration", duration, ge=1, integer=True)
        self.start_factor = float(check_number("start_factor", start_factor, ge=0, le=1))
        self.shape = check_choice("shape", shape, self.SHAPES)

    def factor(self, t: float) -> float:
        """The warmup factor at time ``t``."""
        if t >= self.duration:
            return 1.0
        if self.shape == "linear":
            # The same expression as torch's LinearLR closed form, so the LRs agree to the bit.
            return self.start_factor + (1.0 - self.start_factor) * min(self.duration, t) / self.duration
        return self.start_factor + (1.0 - self.start_factor) * 0.5 * (1.0 - math.cos(math.pi * t / self.duration))

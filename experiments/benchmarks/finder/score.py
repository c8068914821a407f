"""How a suggestion is scored against the cross-fitted grid reference, and the bar a finder must clear.

The reference has two folds of seeds, A = {0, 1} and B = {2, 3}. Each fold's grid walk gives its best LR, η̂_A and
η̂_B. A fold's loss at an LR is the mean final loss over its seeds; a method's fold loss is the mean over the fold's
seeds of the final loss at the method's suggestion on that seed.

- The **score** r of a method on a task is the geometric mean of its fold-A loss over fold A's loss at η̂_B and its
  fold-B loss over fold B's loss at η̂_A (:func:`cross_fitted_score`): each fold is judged against the LR the other
  fold chose, so the reference is never scored on the seeds it was chosen on (no winner's curse). A diverged seed
  makes r infinite.
- The task's **noise level** τ is the larger of 1.10 and the median of the two directed reference-vs-reference
  ratios, fold A's loss at η̂_B over its loss at η̂_A and fold B's at η̂_A over its own at η̂_B
  (:func:`noise_level`): how far one fold's best LR lands from the other fold's best, on the other fold.
- The **bar** (:class:`Bar`, :func:`verdict`) on the evaluation part: no divergence on any task or seed, at most 300
  steps, r ≤ τ on at least 85% of the tasks, median r at most 1.05, r ≤ 2 on every task, and a lower r than each
  rival finder (Lightning's ``LearningRateFinder``, fastai's ``valley``) on at least 75% of the tasks.

>>> round(cross_fitted_score((1.1, 2.2), (1.0, 2.0)), 6)
1.1
>>> noise_level(a_at_b=1.3, a_at_a=1.0, b_at_a=2.2, b_at_b=2.0)
1.2000000000000002
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TAU_FLOOR = 1.10
"""The smallest noise level: a task whose two folds agree still allows 10%."""
CURVE_POINTS = (1.0, 1.02, 1.05, 1.10, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Where :func:`within_curve` reads the share of tasks within a factor of the reference."""


def cross_fitted_score(method: tuple[float, float], reference: tuple[float, float]) -> float:
    """r: the geometric mean of ``method[k] / reference[k]`` over the two folds.

    Args:
        method: The method's fold-A and fold-B losses (means over each fold's seeds of the loss at its suggestion).
        reference: Fold A's loss at η̂_B and fold B's loss at η̂_A.

    Returns ``inf`` when a method loss is not finite (a diverged seed). A reference loss is finite and positive.

    >>> cross_fitted_score((4.0, 1.0), (1.0, 1.0)), cross_fitted_score((math.inf, 1.0), (1.0, 1.0))
    (2.0, inf)
    """
    if not all(math.isfinite(v) for v in method):
        return math.inf
    return math.sqrt((method[0] / reference[0]) * (method[1] / reference[1]))


def noise_level(a_at_b: float, a_at_a: float, b_at_a: float, b_at_b: float, floor: float = TAU_FLOOR) -> float:
    """τ: ``max(floor, median(a_at_b / a_at_a, b_at_a / b_at_b))``, the median of the two directed ratios (with two,
    their mean).

    ``a_at_b`` is fold A's loss at η̂_B, ``a_at_a`` fold A's loss at its own best η̂_A, and so on.

    >>> noise_level(1.0, 1.0, 1.0, 1.0), noise_level(3.0, 1.0, 1.0, 1.0)
    (1.1, 2.0)
    """
    return max(floor, statistics.median([a_at_b / a_at_a, b_at_a / b_at_b]))


def log2_error(lrs: Sequence[float | None], reference_lrs: Sequence[float]) -> float:
    """The mean over seeds of ``|log2(lr / reference_lr)|``, each seed against the other fold's best LR; ``inf`` if a
    seed had no suggestion.

    >>> log2_error([2.0, 0.25], [1.0, 1.0])
    1.5
    """
    if any(lr is None or not lr > 0 for lr in lrs):
        return math.inf
    return statistics.fmean(abs(math.log2(lr / ref)) for lr, ref in zip(lrs, reference_lrs) if lr is not None)


def within_curve(scores: Sequence[float], points: Sequence[float] = CURVE_POINTS) -> list[float]:
    """The share of tasks whose score is at most each of ``points``: the curve of "within a factor t of the reference"
    for t ≥ 1.

    >>> within_curve([0.98, 1.04, 1.3, math.inf], [1.0, 1.05, 2.0])
    [0.25, 0.5, 0.75]
    """
    return [sum(r <= t for r in scores) / len(scores) for t in points]


@dataclass(frozen=True)
class Bar:
    """The bar of the evaluation part (every figure is the issue's)."""

    within_share: float = 0.85
    median: float = 1.05
    worst: float = 2.0
    beat_share: float = 0.75
    max_cost: int = 300


@dataclass(frozen=True)
class Criterion:
    """One criterion of the bar: what it asks, what was measured, and whether it holds."""

    name: str
    measured: str
    passed: bool


def verdict(
    scores: Sequence[float],
    taus: Sequence[float],
    diverged: Sequence[bool],
    costs: Sequence[int],
    rivals: Mapping[str, Sequence[float]],
    bar: Bar = Bar(),
) -> list[Criterion]:
    """Each criterion of ``bar`` for one method over the tasks of a part.

    Args:
        scores: The method's r per task.
        taus: Each task's noise level τ.
        diverged: Whether the method diverged on some seed of each task.
        costs: The method's largest cost per task, in steps.
        rivals: Each rival's r per task; "lower" is strict, so a tie is no win.

    >>> [c.passed for c in verdict([1.0, 1.2], [1.1, 1.1], [False, False], [300, 290], {"x": [1.5, 1.1]})]
    [True, True, False, False, True, False]
    """
    n = len(scores)
    within = sum(r <= t for r, t in zip(scores, taus))
    median = statistics.median(scores)
    worst = max(scores)
    out = [
        Criterion("no divergence", f"{sum(diverged)} diverged", not any(diverged)),
        Criterion(f"cost <= {bar.max_cost} steps", f"max {max(costs)}", max(costs) <= bar.max_cost),
        Criterion(
            f"r <= tau on >= {bar.within_share:.0%}", f"{within}/{n} ({within / n:.0%})", within >= bar.within_share * n
        ),
        Criterion(f"median r <= {bar.median}", f"{median:.3f}", median <= bar.median),
        Criterion(f"r <= {bar.worst:g} on every task", f"worst {_fmt(worst)}", worst <= bar.worst),
    ]
    for name, other in rivals.items():
        wins = sum(r < o for r, o in zip(scores, other))
        out.append(
            Criterion(f"lower r than {name} on >= {bar.beat_share:.0%}", f"{wins}/{n}", wins >= bar.beat_share * n)
        )
    return out


def _fmt(value: float) -> str:
    return "inf" if not math.isfinite(value) else f"{value:.3g}"

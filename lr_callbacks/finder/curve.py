"""The LR range test's curve and the suggestions read off it: pure functions of lists of numbers.

:func:`sweep_lrs` spaces the sweep's LRs, :func:`smooth` is the bias-corrected EMA the sweep records,
:func:`suggest` reads a suggestion off a finished curve (``"centered_min"``, ``"steepest"``, ``"valley"``,
``"min_div10"``), and the race method is split into :func:`divergence_index` (the lag-free divergence point),
:func:`race_candidates`, :func:`probe_score` (or :func:`race_score` without a probe), :func:`choose_race` and
:func:`budget_factor`; :class:`lr_callbacks.LRFinder` runs the races between them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

CURVE_METHODS = ("centered_min", "steepest", "valley", "min_div10")
STEEPEST_WINDOW = 5
CENTERED_HALF_WIDTH = 0.06  # of the sweep's points, on each side: 6 of 100 (about 0.5 decade from 1e-7 to 10)
CENTERED_DIVISOR = 6.0
DIVERGENCE_WINDOW = 5  # points of the centred running median that the divergence point is read from
DIVERGENCE_LOOKBACK = 10.0  # the divergence point lies within this factor below the LR where the sweep stopped
RACE_TOP = 2**-1.5  # the largest race candidate, as a fraction of the divergence LR
RACE_SPACING = 2**1.5  # ratio between neighbouring race candidates
RACE_TAIL = 0.5  # without a probe, a race is scored by the mean loss over this last fraction of its steps
RACE_TIE = 0.02  # candidates within 2% of the best race score tie; the largest of them wins
PROBE_BATCHES = 4  # batches after a race's own, evaluated without a step at its end: the race's score
UNINFORMATIVE = 0.1  # a race whose best score is not this share below the starting loss learned nothing
START_POINTS = 5  # sweep points (at the smallest LRs, where the weights barely move) the starting loss is read from
BUDGET_EXPONENT = 0.4  # the best constant LR for T steps scales as T**-0.4 (fitted on the development tasks)


def sweep_lrs(min_lr: float, max_lr: float, num_steps: int, mode: str = "exponential") -> list[float]:
    """The LR of each sweep step; both ends are included.

    >>> [round(lr, 6) for lr in sweep_lrs(1e-3, 1e-1, 3)]
    [0.001, 0.01, 0.1]
    >>> sweep_lrs(0.0, 1.0, 3, "linear")
    [0.0, 0.5, 1.0]
    """
    last = num_steps - 1
    if mode == "exponential":
        return [min_lr * (max_lr / min_lr) ** (i / last) for i in range(num_steps)]
    return [min_lr + (max_lr - min_lr) * i / last for i in range(num_steps)]


def smooth(losses: Sequence[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average: ``avg_i / (1 - beta**(i + 1))`` for the 0-based step ``i``.

    The first smoothed value equals the first loss, whatever ``beta``.

    >>> smooth([2.0, 4.0], 0.5)
    [2.0, 3.3333333333333335]
    """
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1.0 - beta) * loss
        out.append(avg / (1.0 - beta ** (i + 1)))
    return out


def finite_prefix(losses: Sequence[float], smoothed: Sequence[float] | None = None) -> int:
    """The number of leading points whose loss (and smoothed loss) is finite."""
    smoothed = losses if smoothed is None else smoothed
    return next(
        (i for i, (a, b) in enumerate(zip(losses, smoothed)) if not (math.isfinite(a) and math.isfinite(b))),
        len(losses),
    )


def suggest(
    method: str,
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    num_steps: int | None = None,
) -> tuple[float, int] | None:
    """Read a suggestion off a finished curve: ``(lr, index of the point it refers to)``, or ``None``.

    Points from the first non-finite loss on are ignored.

    Args:
        method: ``"centered_min"``: the minimum of a centred moving average of the raw curve (6% of the sweep's
            points on each side), divided by 6. ``"steepest"``: the steepest descent of the raw curve after a
            centred moving average of 5. ``"valley"``: fastai's valley (:func:`fastai_valley`) on the smoothed
            curve trimmed as fastai's ``lr_find`` trims it (``[num_steps // 10 : -5]``). ``"min_div10"``: the LR
            at the minimum of the smoothed curve, divided by 10.
        lrs: The sweep LRs.
        losses: The raw loss at each LR.
        smoothed: The smoothed loss at each LR.
        num_steps: The sweep length that was asked for (the curve may be shorter); default ``len(lrs)``.

    Raises:
        ValueError: If ``method`` is not one of :data:`CURVE_METHODS`.

    Example::

        >>> lrs = [0.001, 0.01, 0.1, 1.0]
        >>> suggest("min_div10", lrs, [3.0, 2.0, 1.0, 9.0], [3.0, 2.0, 1.0, 9.0])
        (0.01, 2)
    """
    if method not in CURVE_METHODS:
        raise ValueError(f"`method` must be one of {list(CURVE_METHODS)}, got {method!r}.")
    n = finite_prefix(losses, smoothed)
    if method == "valley":
        idx = valley_index(lrs[:n], smoothed[:n], len(lrs) if num_steps is None else num_steps)
        return None if idx is None else (lrs[idx], idx)
    if n < 2:
        return None
    if method == "centered_min":
        idx = centered_min_index(losses[:n], max(2, round(CENTERED_HALF_WIDTH * len(lrs))))
        return lrs[idx] / CENTERED_DIVISOR, idx
    if method == "steepest":
        found = steepest_index(losses[:n])
        return None if found is None else (lrs[found], found)
    idx = min(range(n), key=lambda i: smoothed[i])
    return lrs[idx] / 10.0, idx


def centered_min_index(losses: Sequence[float], half_width: int) -> int:
    """Argmin of a centred moving average of the raw curve (``2*half_width + 1`` points, fewer at the ends).

    Unlike the EMA, a centred average has no lag, so its minimum sits where the loss really stops falling.

    >>> centered_min_index([5.0, 4.0, 3.0, 1.0, 3.0, 4.0, 5.0], 1)
    3
    """
    sums = [0.0]
    for loss in losses:
        sums.append(sums[-1] + loss)
    n = len(losses)

    def mean(i: int) -> float:
        lo, hi = max(0, i - half_width), min(n, i + half_width + 1)
        return (sums[hi] - sums[lo]) / (hi - lo)

    return min(range(n), key=mean)


def steepest_index(losses: Sequence[float]) -> int | None:
    """Steepest descent of the raw curve after a centred moving average of 5: argmin of its gradient.

    The average of points ``j .. j+4`` belongs to the centre point ``j + 2``; the gradient is the central
    difference inside and the one-sided difference at both ends (as ``numpy.gradient``).

    >>> steepest_index([9.0, 9.0, 9.0, 9.0, 8.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    4
    """
    if len(losses) < STEEPEST_WINDOW:
        return None
    averaged = [
        sum(losses[j : j + STEEPEST_WINDOW]) / STEEPEST_WINDOW for j in range(len(losses) - STEEPEST_WINDOW + 1)
    ]
    if len(averaged) == 1:
        return STEEPEST_WINDOW // 2
    m = len(averaged)
    slope = [averaged[1] - averaged[0]]
    slope += [(averaged[j + 1] - averaged[j - 1]) / 2 for j in range(1, m - 1)]
    slope += [averaged[m - 1] - averaged[m - 2]]
    return min(range(m), key=lambda j: slope[j]) + STEEPEST_WINDOW // 2


def fastai_valley(losses: Sequence[float]) -> int:
    """fastai's ``valley`` (``fastai.callback.schedule``), re-implemented: the index it suggests.

    The longest descending subsequence is found by ``O(n^2)`` dynamic programming; fastai then takes its end
    ``max_end`` (the first point where the longest length is reached) and ``max_start = max_end - length``, and
    returns ``max_start + int(sections) + int(sections / 2)`` with ``sections = (max_end - max_start) / 3``: about
    halfway along the valley. The quirks are kept, as this is a faithful copy, not an improvement.

    >>> fastai_valley([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 3.0])
    2
    """
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def valley_index(lrs: Sequence[float], smoothed: Sequence[float], num_steps: int) -> int | None:
    """fastai's ``lr_find`` suggestion: :func:`fastai_valley` on ``smoothed[num_steps // 10 : -5]``.

    Returns the index into the untrimmed curve, or ``None`` when the trimmed curve is empty.

    >>> valley_index(list(range(30)), [30.0 - i for i in range(25)] + [90.0] * 5, 20)
    11
    """
    start, stop = num_steps // 10, len(smoothed) - 5
    trimmed = list(smoothed[start:stop])
    nan = next((i for i, v in enumerate(trimmed) if math.isnan(v)), len(trimmed))
    trimmed = trimmed[:nan]
    if not trimmed:
        return None
    return start + fastai_valley(trimmed)


# ----------------------------------------------------------------------------------------------- the race method
def divergence_index(
    losses: Sequence[float],
    threshold: float = 4.0,
    window: int = DIVERGENCE_WINDOW,
    lrs: Sequence[float] | None = None,
    lookback: float = DIVERGENCE_LOOKBACK,
) -> int | None:
    """Where the loss diverges, read from a lag-free curve: the first point whose centred running median (of
    ``window`` raw losses, fewer at the ends) exceeds ``threshold`` times the lowest median before it, or is not
    finite. ``None`` when the curve never diverges.

    A median ignores single spikes of minibatch noise; a centred window does not lag behind the loss as the
    sweep's EMA does (with ``beta = 0.98`` the EMA crosses the threshold several steps after the raw loss). With
    ``lrs``, only points whose LR is within a factor ``lookback`` of the last LR are candidates: the sweep stopped
    where its EMA diverged, and the EMA lags by steps, not decades, so an earlier "divergence" is batch-to-batch
    noise of a heavy-tailed loss.

    >>> divergence_index([4.0, 3.0, 2.0, 1.0, 30.0, 1.0, 1.0, 9.0, 40.0, 90.0])  # the spike at 4 is ignored
    6
    >>> divergence_index([1.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0], lrs=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    """
    half = window // 2
    first = 0 if lrs is None else next(i for i, lr in enumerate(lrs) if lr * lookback >= lrs[-1])
    lowest = math.inf
    for i in range(len(losses)):
        part = losses[max(0, i - half) : i + half + 1]
        median = statistics.median(part) if all(math.isfinite(v) for v in part) else math.inf
        if i >= first and (not math.isfinite(losses[i]) or median > threshold * lowest):
            return i
        lowest = min(lowest, median)
    return None


def race_diverged(losses: Sequence[float], threshold: float = 4.0, window: int = DIVERGENCE_WINDOW) -> bool:
    """Whether a race diverges: a non-finite loss, or the median of its last ``k`` losses above ``threshold`` times
    the median of its first ``k``, with ``k = min(window, len(losses) // 2)`` and at least 2 (medians, as single
    batches of a heavy-tailed loss can be far off).

    >>> race_diverged([1.0, 9.0, 1.0, 1.0]), race_diverged([1.0, 2.0, 90.0, 900.0]), race_diverged([1.0, float("nan")])
    (False, True, True)
    """
    if losses and not math.isfinite(losses[-1]):
        return True
    k = min(window, len(losses) // 2)
    if k < 2:
        return False
    return statistics.median(losses[-k:]) > threshold * statistics.median(losses[:k])


def race_candidates(anchor: float, n: int, top: float = RACE_TOP, spacing: float = RACE_SPACING) -> list[float]:
    """``n`` LRs below ``anchor``, largest first: ``anchor * top / spacing**j``.

    >>> [round(c, 6) for c in race_candidates(1.0, 3, top=0.5, spacing=4.0)]
    [0.5, 0.125, 0.03125]
    """
    return [anchor * top / spacing**j for j in range(n)]


def probe_score(probe_losses: Sequence[float], diverged: bool = False) -> float:
    """A race's score: the mean loss of its end weights on the probe batches; ``inf`` if the race diverged, the probe
    recorded no loss, or any probe loss is not finite.

    Every race is probed on the same batches (the ones after the race's own, in the restored data order), with the
    same RNG state, so the scores differ by the weights alone; unlike a mean over the race's own training losses, the
    score does not lag behind the weights.

    >>> probe_score([2.0, 1.0, 3.0])
    2.0
    >>> probe_score([2.0, float("nan")]), probe_score([1.0], diverged=True), probe_score([])
    (inf, inf, inf)
    """
    if diverged or not probe_losses or not all(math.isfinite(v) for v in probe_losses):
        return math.inf
    return sum(probe_losses) / len(probe_losses)


def race_score(losses: Sequence[float], diverged: bool = False, tail: float = RACE_TAIL) -> float:
    """Without a probe (manual optimization, ``probe_batches=0``): the mean loss over the last ``tail`` fraction of
    a race's losses; ``inf`` if the race diverged, recorded no loss, or any loss is not finite.

    >>> race_score([4.0, 3.0, 2.0, 1.0])
    1.5
    >>> race_score([4.0, 30.0], diverged=True)
    inf
    """
    if diverged or not losses or not all(math.isfinite(v) for v in losses):
        return math.inf
    count = max(1, int(len(losses) * tail))
    return sum(losses[-count:]) / count


def choose_race(
    candidates: Sequence[float],
    scores: Sequence[float],
    tie: float = RACE_TIE,
    start: float | None = None,
    uninformative: float = UNINFORMATIVE,
) -> int | None:
    """The winning candidate: the largest LR whose score is within ``tie`` (relative) of the best score.

    Candidates that barely moved the loss in a short race tie, and then the largest is the one that makes the most
    progress over a longer run. When the starting loss ``start`` is given and no race brought its score
    ``uninformative`` (10%) below it, the races learned nothing that ranks the candidates (a network at chance
    level after every race, as large LRs stall it): the smallest candidate that did not diverge wins. ``None`` when
    every race diverged.

    >>> choose_race([0.4, 0.2, 0.1], [float("inf"), 1.01, 1.0])
    1
    >>> choose_race([0.4, 0.2, 0.1], [float("inf"), 1.5, 1.0])
    2
    >>> choose_race([0.4, 0.2, 0.1], [1.0, 0.97, 0.99], start=1.0)
    2
    """
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        return None
    best = min(finite)
    if start is not None and math.isfinite(start) and best >= (1.0 - uninformative) * start:
        return min((i for i, s in enumerate(scores) if math.isfinite(s)), key=lambda i: candidates[i])
    bar = best + tie * abs(best)
    return max((i for i, s in enumerate(scores) if s <= bar), key=lambda i: candidates[i])


def starting_loss(losses: Sequence[float], points: int = START_POINTS) -> float:
    """The loss before any training, read from the first ``points`` sweep losses (at the smallest LRs the weights
    barely move): their mean; ``inf`` without finite ones.

    >>> starting_loss([2.0, 2.2, 1.8, 2.0, 2.0, 0.5])
    2.0
    """
    head = [v for v in losses[:points] if math.isfinite(v)]
    return sum(head) / len(head) if head else math.inf


def budget_factor(race_steps: int, train_steps: float, exponent: float = BUDGET_EXPONENT) -> float:
    """What the race winner is multiplied by to suggest an LR for ``train_steps`` steps: ``(race_steps /
    train_steps) ** exponent``, at most 1.

    A race finds the best constant LR for its own short horizon. Over a longer run the loss settles at a noise floor
    that grows with the LR (and rare unstable batches add up), so the best constant LR falls as the run gets longer.
    On the development tasks, ``log2(race winner / best LR for T steps)`` grew with ``log2(T / h)`` at a slope of
    about 0.4 (a least-squares fit over 28 tasks, two seeds and race lengths ``h`` from 20 to 200 steps), the same
    whether the race was scored on its training losses or on the full data. A run no longer than the race keeps the
    winner.

    >>> round(budget_factor(40, 40 * 2**5), 12), budget_factor(40, 20)
    (0.25, 1.0)
    """
    if not train_steps > race_steps:
        return 1.0
    return (race_steps / train_steps) ** exponent


def lowest_wins(candidates: Sequence[float], scores: Sequence[float], tie: float = RACE_TIE) -> bool:
    """Whether the smallest candidate wins the race (:func:`choose_race`): then the best LR may lie lower still.

    >>> lowest_wins([0.4, 0.2, 0.1], [2.0, 1.5, 1.0]), lowest_wins([0.4, 0.2, 0.1], [2.0, 1.0, 1.01])
    (True, False)
    """
    winner = choose_race(candidates, scores, tie)
    return winner is not None and candidates[winner] == min(candidates)

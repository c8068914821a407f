"""The grid reference of each finder task: the best peak LR for its budget and schedule, found by brute force.

For every LR of a log grid (:data:`GRID`: 1e-7 to 10, 4 points per decade) and every seed of a fold, train for the
task's full budget under the schedule (:func:`experiments.benchmarks.finder.tasks.final_loss`). A fold's reference
is the LR with the lowest mean final loss over its seeds; a run that diverged counts as ``inf``, so one diverged
seed makes the mean ``inf``. The cross-fitted reference (:func:`cross_fit`) walks the grid on both folds of
:data:`FOLDS` and trains each fold at the other fold's best LR.

The grid is walked from the top down, and the walk stops once a whole decade below the best so far has mean losses
above :data:`STOP_FACTOR` times the best: below the best LR a fixed budget only leaves more loss, so lower points
cannot win. When the best is an end of the grid, the walk extends past it until the best is bracketed. Final losses
are cached (one JSON file per task and schedule, keyed by seed and LR) in :func:`cache_dir`, so reruns are quick;
without a cache everything is recomputed.

>>> [f"{lr:.3g}" for lr in grid_lrs(1e-2, 1.0, 2)]
['0.01', '0.0316', '0.1', '0.316', '1']
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.benchmarks.finder.tasks import SEEDS, TASKS_VERSION, FinderTask, final_loss, initial_loss

PER_DECADE = 4
STOP_FACTOR = 1.5
OTHER_SEEDS = (2, 3)
"""The seeds of the second reference fold (fold B)."""
SOLVED = 1e-3
"""A final loss below this share of the initial loss counts as this share: the task is solved, and the ratio of two
solved runs' losses (1e-5 against 1e-7, or a loss of exactly 0 on separable data) measures nothing. Added after the
grid of the evaluation task ``wine_softmax_fullbatch_sgd`` reached a loss of 0 (before any method was scored)."""
CACHE_ENV = "LR_FINDER_CACHE"
DEFAULT_CACHE = ".finder_cache"


def grid_lrs(low: float = 1e-7, high: float = 10.0, per_decade: int = PER_DECADE) -> list[float]:
    """Log-spaced grid, ``per_decade`` points per decade, both ends included."""
    n = round(math.log10(high / low) * per_decade)
    return [low * 10 ** (i / per_decade) for i in range(n + 1)]


GRID = grid_lrs()


def cache_dir() -> Path | None:
    """Where final losses are cached: ``$LR_FINDER_CACHE`` (empty or ``none``: no cache), default ``.finder_cache``."""
    value = os.environ.get(CACHE_ENV, DEFAULT_CACHE)
    return None if value.strip().lower() in ("", "none", "off") else Path(value)


class LossCache:
    """Final losses by ``(task, schedule, seed, lr)``, and other results by task and table, kept in memory and,
    with a directory, on disk (one JSON file per task and table)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._tables: dict[str, dict[str, Any]] = {}

    def _file(self, table: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{table}.v{TASKS_VERSION}.json"

    def _table(self, table: str) -> dict[str, Any]:
        if table not in self._tables:
            path = self._file(table)
            self._tables[table] = json.loads(path.read_text()) if path is not None and path.exists() else {}
        return self._tables[table]

    def get(self, table: str, key: str, compute: Callable[[], Any]) -> Any:
        """The value stored under ``key`` in ``table``, or ``compute()``, stored (JSON) and returned."""
        values = self._table(table)
        if key not in values:
            values[key] = compute()
            path = self._file(table)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(f".{os.getpid()}.tmp")
                partial.write_text(json.dumps(values, indent=0))
                partial.replace(path)  # atomic: a reader never sees half a file
        return values[key]

    def loss(self, task: FinderTask, seed: int, lr: float, schedule: str = "constant") -> float:
        """The final loss of ``task`` trained at peak LR ``lr`` under ``schedule`` with ``seed``, from the cache or
        trained now, floored at :data:`SOLVED` times the initial loss (:meth:`floor`)."""
        table = task.name if schedule == "constant" else f"{task.name}.{schedule}"
        raw = float(self.get(table, f"{seed}:{lr!r}", lambda: final_loss(task, seed, lr, schedule=schedule)))
        return max(raw, self.floor(task, seed))

    def floor(self, task: FinderTask, seed: int) -> float:
        """:data:`SOLVED` times the task's initial loss on ``seed`` (cached)."""
        return SOLVED * float(self.get(f"{task.name}.initial", str(seed), lambda: initial_loss(task, seed)))

    def mean_loss(self, task: FinderTask, lr: float, seeds: Sequence[int] = SEEDS, schedule: str = "constant") -> float:
        losses = [self.loss(task, seed, lr, schedule) for seed in seeds]
        return math.inf if any(not math.isfinite(v) for v in losses) else sum(losses) / len(losses)


@dataclass
class Reference:
    """The grid walk of one task: mean final loss per evaluated LR, and the best of them."""

    task: str
    losses: dict[float, float] = field(default_factory=dict)

    @property
    def best_lr(self) -> float:
        return min(self.losses, key=lambda lr: (self.losses[lr], -lr))

    @property
    def best_loss(self) -> float:
        return self.losses[self.best_lr]

    @property
    def at_edge(self) -> bool:
        """Whether the best LR is an end of the walked LRs (then they do not bracket the best)."""
        return self.best_lr in (min(self.losses), max(self.losses))


def grid_reference(
    task: FinderTask, cache: LossCache, seeds: Sequence[int] = SEEDS, schedule: str = "constant"
) -> Reference:
    """Walk :data:`GRID` from the top down (see the module docstring) and return the mean loss per LR.

    When the best LR is an end of the grid, the walk goes on past that end, at the same spacing, until a decade
    beyond the best has mean losses above :data:`STOP_FACTOR` times the best (or a point diverges upwards), so
    the reference always brackets the best; at most 4 decades further.
    """
    ref = Reference(task.name)
    walk = functools.partial(_walk, ref, task, cache, seeds, schedule=schedule)
    walk(list(reversed(GRID)))
    step = 10 ** (1 / PER_DECADE)
    for _ in range(2):  # the best may move along an extension and reach its end again only once per side
        if ref.best_lr == max(ref.losses):
            top = max(ref.losses)
            walk([top * step**k for k in range(1, 4 * PER_DECADE + 1)], upward=True)
        if ref.best_lr == min(ref.losses):
            low = min(ref.losses)
            walk([low / step**k for k in range(1, 4 * PER_DECADE + 1)])
    return ref


def _walk(
    ref: Reference,
    task: FinderTask,
    cache: LossCache,
    seeds: Sequence[int],
    lrs: list[float],
    upward: bool = False,
    schedule: str = "constant",
) -> None:
    beyond_best = 0
    for lr in lrs:
        ref.losses[lr] = cache.mean_loss(task, lr, seeds, schedule)
        best = ref.best_loss
        if not math.isfinite(best):
            continue
        if upward and not math.isfinite(ref.losses[lr]):
            return
        beyond_best = beyond_best + 1 if ref.losses[lr] > STOP_FACTOR * best else 0
        if beyond_best >= PER_DECADE:
            return


FOLDS: tuple[tuple[int, ...], tuple[int, ...]] = (tuple(SEEDS), OTHER_SEEDS)
"""The two folds of the cross-fitted reference: A = seeds 0 and 1, B = seeds 2 and 3."""


@dataclass
class CrossFit:
    """The cross-fitted reference of one task under one schedule: each fold's grid walk, and each fold's mean loss
    at the other fold's best LR.

    Attributes:
        folds: The grid walks of fold A and fold B (:func:`grid_reference`).
        raw_cross: Fold A's mean loss at η̂_B and fold B's at η̂_A (``inf`` where a seed diverged there).
    """

    task: str
    schedule: str
    folds: tuple[Reference, Reference]
    raw_cross: tuple[float, float]

    @property
    def best_lrs(self) -> tuple[float, float]:
        """η̂_A and η̂_B."""
        return self.folds[0].best_lr, self.folds[1].best_lr

    @property
    def tau(self) -> float:
        """The task's noise level (:func:`experiments.benchmarks.finder.score.noise_level`), from the folds whose
        cross loss is finite (see :attr:`cross_diverged`)."""
        from experiments.benchmarks.finder.score import noise_level

        pairs = [(c, f.best_loss) for c, f, bad in zip(self.raw_cross, self.folds, self.cross_diverged) if not bad]
        if not pairs:
            return noise_level(1.0, 1.0, 1.0, 1.0)
        (a_at_b, a_at_a), (b_at_a, b_at_b) = pairs[0], pairs[-1]
        return noise_level(a_at_b, a_at_a, b_at_a, b_at_b)

    @property
    def cross_diverged(self) -> tuple[bool, bool]:
        """Whether a fold diverged at the other fold's best LR (the two best LRs straddle the edge of stability)."""
        return (not math.isfinite(self.raw_cross[0]), not math.isfinite(self.raw_cross[1]))

    @property
    def cross_losses(self) -> tuple[float, float]:
        """What a method's fold losses are divided by: fold A's mean loss at η̂_B and fold B's at η̂_A; a fold that
        diverged at the other's best LR is divided by its own best loss instead (in-fold, so optimistic there)."""
        a, b = (f.best_loss if bad else c for c, f, bad in zip(self.raw_cross, self.folds, self.cross_diverged))
        return a, b

    def reference_lr(self, seed: int) -> float:
        """The LR a seed's suggestion is compared with: the best LR of the fold the seed is not in."""
        return self.best_lrs[1] if seed in FOLDS[0] else self.best_lrs[0]


def cross_fit(task: FinderTask, cache: LossCache, schedule: str = "constant") -> CrossFit:
    """Walk the grid on each fold (under ``schedule``) and train each fold at the other fold's best LR."""
    a, b = (grid_reference(task, cache, fold, schedule) for fold in FOLDS)
    cross = (
        cache.mean_loss(task, b.best_lr, FOLDS[0], schedule),
        cache.mean_loss(task, a.best_lr, FOLDS[1], schedule),
    )
    return CrossFit(task.name, schedule, (a, b), cross)

"""The grid reference of each finder task: the best constant LR for its budget, found by brute force.

For every LR of a log grid (:data:`GRID`: 1e-7 to 10, 4 points per decade) and every seed of
:data:`experiments.benchmarks.finder.tasks.SEEDS`, train for the task's full budget (:func:`final_loss`). The
reference is the LR with the lowest mean final loss over the seeds; a run that diverged counts as ``inf``, so one
diverged seed makes the mean ``inf``.

The grid is walked from the top down, and the walk stops once a whole decade below the best so far has mean losses
above :data:`STOP_FACTOR` times the best: below the best LR a fixed budget only leaves more loss, so lower points
cannot win. When the best is an end of the grid, the walk extends past it until the best is bracketed. Final losses
are cached (one JSON file per task, keyed by seed and LR) in :func:`cache_dir`, so reruns are quick; without a cache
everything is recomputed.

>>> [f"{lr:.3g}" for lr in grid_lrs(1e-2, 1.0, 2)]
['0.01', '0.0316', '0.1', '0.316', '1']
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.benchmarks.finder.tasks import SEEDS, TASKS, TASKS_VERSION, FinderTask, final_loss

PER_DECADE = 4
STOP_FACTOR = 1.5
OTHER_SEEDS = (2, 3)
"""Seeds of a second, independent grid reference: its best LR, trained on :data:`SEEDS`, shows how much of the gap to
the grid's best is seed-to-seed noise that no finder can remove
(:func:`experiments.benchmarks.finder.compare.compare`)."""
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
    """Final losses by ``(task, seed, lr)``, kept in memory and, with a directory, on disk."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._tables: dict[str, dict[str, float]] = {}

    def _file(self, task: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{task}.v{TASKS_VERSION}.json"

    def _table(self, task: str) -> dict[str, float]:
        if task not in self._tables:
            path = self._file(task)
            self._tables[task] = json.loads(path.read_text()) if path is not None and path.exists() else {}
        return self._tables[task]

    def loss(self, task: FinderTask, seed: int, lr: float) -> float:
        """The final loss of ``task`` trained at ``lr`` with ``seed``, from the cache or trained now."""
        table = self._table(task.name)
        key = f"{seed}:{lr!r}"
        if key not in table:
            table[key] = final_loss(task, seed, lr)
            path = self._file(task.name)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(table, indent=0))
        return table[key]

    def mean_loss(self, task: FinderTask, lr: float, seeds: Sequence[int] = SEEDS) -> float:
        losses = [self.loss(task, seed, lr) for seed in seeds]
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


def grid_reference(task: FinderTask, cache: LossCache, seeds: Sequence[int] = SEEDS) -> Reference:
    """Walk :data:`GRID` from the top down (see the module docstring) and return the mean loss per LR.

    When the best LR is an end of the grid, the walk goes on past that end, at the same spacing, until a decade
    beyond the best has mean losses above :data:`STOP_FACTOR` times the best (or a point diverges upwards), so
    the reference always brackets the best; at most 4 decades further.
    """
    ref = Reference(task.name)
    _walk(ref, task, cache, seeds, list(reversed(GRID)))
    step = 10 ** (1 / PER_DECADE)
    for _ in range(2):  # the best may move along an extension and reach its end again only once per side
        if ref.best_lr == max(ref.losses):
            top = max(ref.losses)
            _walk(ref, task, cache, seeds, [top * step**k for k in range(1, 4 * PER_DECADE + 1)], upward=True)
        if ref.best_lr == min(ref.losses):
            low = min(ref.losses)
            _walk(ref, task, cache, seeds, [low / step**k for k in range(1, 4 * PER_DECADE + 1)])
    return ref


def _walk(
    ref: Reference, task: FinderTask, cache: LossCache, seeds: Sequence[int], lrs: list[float], upward: bool = False
) -> None:
    beyond_best = 0
    for lr in lrs:
        ref.losses[lr] = cache.mean_loss(task, lr, seeds)
        best = ref.best_loss
        if not math.isfinite(best):
            continue
        if upward and not math.isfinite(ref.losses[lr]):
            return
        beyond_best = beyond_best + 1 if ref.losses[lr] > STOP_FACTOR * best else 0
        if beyond_best >= PER_DECADE:
            return


def references(names: Sequence[str], cache: LossCache) -> dict[str, Reference]:
    return {name: grid_reference(TASKS[name], cache) for name in names}

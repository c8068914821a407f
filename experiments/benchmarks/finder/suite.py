"""LR finder quality, out of sample: ours (every suggestion), Lightning's ``LearningRateFinder``, fastai's valley and
the LR-free optimizers, for each schedule the suggestion drives.

For each pairing (constant LR, cosine to zero, one-cycle) a development table and an evaluation table: each task's
noise level τ and the best LRs of the two reference folds, then every method's score r against the pairing's
cross-fitted reference (:mod:`experiments.benchmarks.finder.score`), a summary per method with the share of tasks
within each factor of the reference, and the bar for the default, ``race``. The constant pairing is developed on
all 56 development tasks, the schedules on :data:`experiments.benchmarks.finder.split.SCHEDULE_DEV`; every pairing is
evaluated on the same 16 tasks of :data:`experiments.benchmarks.finder.split.EVAL`.

Suggestions and final losses are cached per task in ``$LR_FINDER_CACHE`` (default ``.finder_cache``);
``LR_FINDER_CACHE=none`` recomputes everything. ``LR_FINDER_PAIRINGS`` (comma-separated), ``LR_FINDER_PARTS``
(``dev``, ``eval``) and ``LR_FINDER_METHODS`` (rows of :data:`experiments.benchmarks.finder.compare.METHODS`)
restrict what is run and printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings

from experiments.benchmarks.finder.compare import METHODS, compare, format_table
from experiments.benchmarks.finder.reference import LossCache, cache_dir
from experiments.benchmarks.finder.split import DEV, EVAL, SCHEDULE_DEV
from experiments.benchmarks.finder.tasks import SCHEDULES
from experiments.benchmarks.timing import one_thread


def _quiet() -> None:
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*LRFinder.*")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _listed(variable: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    value = os.environ.get(variable, "").strip()
    chosen = tuple(v.strip() for v in value.split(",") if v.strip()) if value else allowed
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise SystemExit(f"{variable}: unknown {unknown}; choose from {list(allowed)}")
    return chosen


def run(args: argparse.Namespace) -> None:
    """For each pairing, print the development table, then the evaluation table."""
    _quiet()
    cache = LossCache(cache_dir())
    pairings, parts = _listed("LR_FINDER_PAIRINGS", SCHEDULES), _listed("LR_FINDER_PARTS", ("dev", "eval"))
    methods = _listed("LR_FINDER_METHODS", METHODS)
    with one_thread():
        for schedule in pairings:
            dev = DEV if schedule == "constant" else SCHEDULE_DEV
            tables = {
                "dev": (f"{schedule}: development part ({len(dev)} tasks: every tuned choice was made on these)", dev),
                "eval": (f"{schedule}: evaluation part ({len(EVAL)} tasks, written before any of them ran)", EVAL),
            }
            for part in parts:
                title, names = tables[part]
                print(format_table(compare(names, cache, schedule, methods), title) + "\n", flush=True)


if __name__ == "__main__":
    run(argparse.Namespace())

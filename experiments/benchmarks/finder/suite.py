"""LR finder quality, in and out of sample: ours (every suggestion), Lightning's ``LearningRateFinder``, fastai valley.

For every task of :mod:`experiments.benchmarks.finder.tasks`, on its development and its evaluation part separately:
the grid-best LR (:mod:`experiments.benchmarks.finder.reference`), each method's suggested LR (geometric mean over
the seeds), the loss ratio (mean final loss at the per-seed suggestions / the grid's best mean final loss; 1.00 =
as good as the grid's best, the bar is 1.10), ``|log2(suggested / best)|`` (mean over seeds) and the cost in steps
(for ``race`` its optimizer steps plus its probe batches, each counted as a step; Hessian-vector products for
``curvature``), then a summary per method with the median wall time of a finder run, and on how many tasks ours
has a lower loss ratio than Lightning's finder and than fastai's valley. The last row of each task,
``best_of_seeds23``, is no finder: it is the grid-best LR of seeds 2 and 3 trained on seeds 0 and 1, the noise
ceiling of the benchmark.

Final losses are cached per task in ``$LR_FINDER_CACHE`` (default ``.finder_cache``); ``LR_FINDER_CACHE=none``
recomputes everything from scratch (about an hour on two shared CPU cores, most of it the two grid references;
the 14-task evaluation part alone took 13 minutes).
"""

from __future__ import annotations

import argparse
import logging
import warnings

from experiments.benchmarks.finder.compare import compare, format_table
from experiments.benchmarks.finder.reference import LossCache, cache_dir
from experiments.benchmarks.finder.tasks import DEV, EVAL
from experiments.benchmarks.timing import one_thread


def _quiet() -> None:
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*LRFinder.*")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run(args: argparse.Namespace) -> None:
    """Print the development table, then the evaluation table."""
    _quiet()
    cache = LossCache(cache_dir())
    with one_thread():
        parts = (
            (f"development part ({len(DEV)} tasks: every tuned choice was made on these)", DEV),
            (f"evaluation part ({len(EVAL)} tasks, written after the current method was frozen: out of sample)", EVAL),
        )
        for title, names in parts:
            print(format_table(compare(names, cache, other_seeds=True), title) + "\n", flush=True)


if __name__ == "__main__":
    run(argparse.Namespace())

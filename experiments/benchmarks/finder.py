"""LR finder cost and quality: :class:`lr_callbacks.LRFinder` beside Lightning's ``LearningRateFinder``.

Both finders sweep the same range (1e-7 to 10, 100 steps) at fit start on the tasks of
:mod:`experiments.finder_tasks`.

- **Cost**: sweep steps taken and the wall time of a ``Trainer.fit`` that runs the finder and one training step
  (median of ``--repeats``): ours without and with drawing the PNG (matplotlib rendering is most of it on tiny
  models), and our sweep + restoration alone. Lightning's finder saves and restores a full checkpoint around its
  sweep and draws nothing; ours copies the tensors it changes in memory.
- **Quality**: each suggestion trained for the task's fixed budget; the final loss divided by the best final loss
  of a log-spaced LR grid (1.00 = as good as the grid's best; the bar is 1.10).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings

from experiments.finder_tasks import TASKS, format_rows, one_thread, run_lightning, run_ours, validate

QUALITY_TASKS = ("regression", "classifier", "autoencoder", "linear")


def _quiet() -> None:
    warnings.filterwarnings("ignore", module="lightning")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def cost_table(repeats: int) -> str:
    """Per task: sweep steps; median seconds of our sweep alone, of fit with ours (with / without the PNG), and of
    fit with Lightning's finder."""
    head = (
        f"{'task':<12} {'ours steps':>10} {'ours sweep s':>12} {'ours fit s':>10} {'+png s':>8}"
        f" {'lightning steps':>16} {'lightning fit s':>16}"
    )
    lines = [head]
    for name, task in TASKS.items():
        bare = [run_ours(task, save_png=False) for _ in range(repeats)]
        with_png = [run_ours(task) for _ in range(repeats)]
        theirs = [run_lightning(task) for _ in range(repeats)]
        sweep_s = statistics.median(f.result.seconds for f, _ in bare if f.result)
        bare_s = statistics.median(s for _, s in bare)
        png_s = statistics.median(s for _, s in with_png)
        theirs_s = statistics.median(s for _, _, s in theirs)
        steps = bare[0][0].result.steps if bare[0][0].result else 0
        lines.append(
            f"{name:<12} {steps:>10} {sweep_s:>12.3f} {bare_s:>10.3f} {png_s:>8.3f} {theirs[0][1]:>16} {theirs_s:>16.3f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    """Print the cost table, then the quality table (every suggestion method of ours, and Lightning's)."""
    _quiet()
    repeats = max(1, int(getattr(args, "repeats", 3)))
    with one_thread():
        print("cost (median of %d): sweep steps and wall time of fit (finder + 1 training step)" % repeats)
        print(cost_table(repeats), flush=True)
        print("\nquality: suggested LR (final loss / grid-best final loss)")
        print(format_rows(validate(QUALITY_TASKS)), flush=True)


if __name__ == "__main__":
    run(argparse.Namespace(repeats=3))

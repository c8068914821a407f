"""Run the LR finders on the finder tasks and set their suggestions beside the grid reference.

Three finders, each on every task and seed of :mod:`experiments.benchmarks.finder.tasks`, with the same range
(1e-7 to 10, 100 sweep steps):

- ours, :class:`lr_callbacks.LRFinder`, at fit start in a ``Trainer`` whose ``max_steps`` is the task's budget
  (which the race suggestion reads as the training budget): every suggestion method (the curve methods read the
  default run's sweep; ``curvature`` is its own run);
- Lightning's ``LearningRateFinder``, as installed;
- fastai's ``lr_find`` with its ``valley`` suggestion, re-implemented in :func:`fastai_valley_lr` (fastai itself
  cannot be installed beside this project's torch): its schedule ``start * (end / start) ** (i / num_it)``, its
  smoothed-loss recorder (beta 0.98), its stop at 4x the best smoothed loss, and the trimming ``[num_it // 10:-5]``
  before :func:`lr_callbacks.finder.curve.fastai_valley`.

Each suggestion is trained for the task's budget with the seed it was found on; the loss ratio is the mean final
loss over the seeds divided by the grid's best mean final loss (:mod:`experiments.benchmarks.finder.reference`).
A suggestion diverged when, on some seed, training at it ends above the loss at the initial weights (or not finite).

With ``other_seeds=True`` a fourth row per task, :data:`OTHER_SEEDS_METHOD`, is the grid-best LR of an independent
reference on seeds 2 and 3 (:data:`experiments.benchmarks.finder.reference.OTHER_SEEDS`), trained on the same seeds as
the others: a suggestion as good as knowing the task's best LR from other runs of it. Its loss ratio is the benchmark's
noise ceiling; where it misses 1.10, no finder can be expected to meet the bar.
"""

from __future__ import annotations

import contextlib
import io
import math
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from experiments.benchmarks.finder.reference import OTHER_SEEDS, LossCache, Reference, grid_reference
from experiments.benchmarks.finder.tasks import SEEDS, TASKS, FinderTask, initial_loss, timed
from experiments.benchmarks.timing import BARE_TRAINER
from lr_callbacks import LRFinder
from lr_callbacks.finder.curve import CURVE_METHODS, fastai_valley, smooth, suggest

FASTAI = {"start_lr": 1e-7, "end_lr": 10.0, "num_it": 100, "beta": 0.98, "stop_factor": 4.0}
METHODS = ("race", *CURVE_METHODS, "curvature", "lightning", "fastai_valley")
"""Ours (every suggestion), then Lightning's finder and fastai's valley."""
OTHER_SEEDS_METHOD = "best_of_seeds23"
"""The row of the grid-best LR of seeds 2 and 3 (not a finder: the noise ceiling)."""


class _StopAtTrainStart(Callback):
    """Ends ``fit`` once the finders (earlier in the callback list) have run: no training step follows."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


def _trainer(callbacks: list[Callback], root: str, max_steps: int) -> pl.Trainer:
    return pl.Trainer(
        callbacks=[*callbacks, _StopAtTrainStart()],
        default_root_dir=root,
        max_steps=max_steps,
        **BARE_TRAINER,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


def run_ours(task: FinderTask, seed: int, **finder_kwargs: Any) -> LRFinder:
    """:class:`LRFinder` (``apply=False``, no PNG) at fit start on ``task``; the finder holds the result."""
    finder = LRFinder(apply=False, save_png=False, **finder_kwargs)
    with tempfile.TemporaryDirectory() as root:
        _trainer([finder], root, task.steps).fit(task.module(seed), task.batches(seed))
    return finder


def run_lightning(task: FinderTask, seed: int) -> tuple[float | None, int]:
    """Lightning's ``LearningRateFinder`` on the same range: ``(suggestion, sweep steps)``."""
    from lightning.pytorch.callbacks import LearningRateFinder

    finder = LearningRateFinder(min_lr=1e-7, max_lr=10.0, num_training_steps=100, update_attr=False)
    # It writes a checkpoint into the root dir, and draws a tqdm bar whatever the trainer says.
    with tempfile.TemporaryDirectory() as root, contextlib.redirect_stderr(io.StringIO()):
        _trainer([finder], root, task.steps).fit(task.module(seed), task.batches(seed))
    result = finder.optimal_lr
    if result is None:
        return None, 0
    return result.suggestion(), len(result.results.get("lr", []))


def fastai_valley_lr(task: FinderTask, seed: int) -> tuple[float | None, int]:
    """fastai's ``lr_find()`` with ``valley``, in a plain loop: ``(suggestion, sweep steps)``.

    As in fastai, a NaN smoothed loss does not stop the sweep (``nan > 4 * best`` is false); the trimmed curve is
    cut at its first NaN instead.
    """
    module = task.module(seed)
    optimizer = module.configure_optimizers()
    start, end, num_it = FASTAI["start_lr"], FASTAI["end_lr"], int(FASTAI["num_it"])
    loader = task.batches(seed)
    batches = iter(loader)
    lrs: list[float] = []
    raw: list[float] = []
    best = math.inf
    while len(lrs) < num_it:
        batch = next(batches, None)
        if batch is None:  # next epoch
            batches = iter(loader)
            continue
        lr = start * (end / start) ** (len(lrs) / num_it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss = module.loss(batch)
        loss.backward()
        optimizer.step()
        lrs.append(lr)
        raw.append(float(loss.detach()))
        smoothed = smooth(raw, FASTAI["beta"])[-1]
        if smoothed < best:
            best = smoothed
        if smoothed > FASTAI["stop_factor"] * best:
            break
    trimmed = smooth(raw, FASTAI["beta"])[num_it // 10 : -5]
    nan = next((i for i, v in enumerate(trimmed) if math.isnan(v)), len(trimmed))
    if nan == 0:
        return None, len(lrs)
    return lrs[num_it // 10 + fastai_valley(trimmed[:nan])], len(lrs)


@dataclass
class Cell:
    """One method on one task: per-seed suggestions and costs, and the loss ratio to the grid's best."""

    lrs: list[float | None]
    steps: list[int]
    seconds: list[float] = field(default_factory=list)
    ratio: float = math.inf
    cost_unit: str = "steps"
    diverged: bool = False

    @property
    def lr(self) -> float | None:
        """Geometric mean of the per-seed suggestions (``None`` if any seed had none)."""
        lrs = [lr for lr in self.lrs if lr is not None and lr > 0]
        if len(lrs) < len(self.lrs):
            return None
        return math.exp(statistics.fmean(math.log(lr) for lr in lrs))

    def log2_error(self, best: float) -> float:
        """Mean over seeds of ``|log2(suggested / best)|``."""
        lrs = [lr for lr in self.lrs if lr is not None and lr > 0]
        if len(lrs) < len(self.lrs):
            return math.inf
        return statistics.fmean(abs(math.log2(lr / best)) for lr in lrs)


@dataclass
class Row:
    task: str
    reference: Reference | None
    cells: dict[str, Cell] = field(default_factory=dict)
    unavailable: str | None = None


def suggestions(
    task: FinderTask, seed: int, methods: Sequence[str] = METHODS, **finder_kwargs: Any
) -> dict[str, tuple[float | None, int, float]]:
    """Every method's ``(suggestion, cost, seconds)`` on one task and seed.

    The cost is in steps (Hessian-vector products for ``curvature``): for ``race`` its optimizer steps plus its
    probe batches (:attr:`lr_callbacks.finder.LRFinderResult.cost_steps`), for the others their sweep steps; the
    seconds are the wall time of the finder run it comes from (the curve methods share the default run's).
    """
    out: dict[str, tuple[float | None, int, float]] = {}
    if any(m == "race" or m in CURVE_METHODS for m in methods):
        finder, seconds = timed(lambda: run_ours(task, seed, **finder_kwargs))
        result = finder.result
        if result is None:
            raise RuntimeError(f"LRFinder left no result on task {task.name!r}, seed {seed}")
        out["race"] = (result.suggestion, result.cost_steps, seconds)
        for method in CURVE_METHODS:
            found = suggest(method, result.lrs, result.losses, result.smoothed_losses, num_steps=finder.num_steps)
            out[method] = (None if found is None else found[0], result.steps, seconds)
    if "curvature" in methods:
        finder, seconds = timed(lambda: run_ours(task, seed, suggestion="curvature"))
        result = finder.result
        if result is None:
            raise RuntimeError(f"LRFinder(suggestion='curvature') left no result on task {task.name!r}, seed {seed}")
        out["curvature"] = (result.suggestion, result.hessian_vector_products, seconds)
    if "lightning" in methods:
        (lr, steps), seconds = timed(lambda: run_lightning(task, seed))
        out["lightning"] = (lr, steps, seconds)
    if "fastai_valley" in methods:
        (lr, steps), seconds = timed(lambda: fastai_valley_lr(task, seed))
        out["fastai_valley"] = (lr, steps, seconds)
    return {m: out[m] for m in methods}


def compare(
    names: Sequence[str],
    cache: LossCache,
    methods: Sequence[str] = METHODS,
    other_seeds: bool = False,
    **finder_kwargs: Any,
) -> list[Row]:
    """For each task: the grid reference, then every method's suggestions trained and divided by the grid's best
    (and, with ``other_seeds``, the :data:`OTHER_SEEDS_METHOD` row).

    A task whose data cannot be loaded (California Housing offline) gets a row that says why.
    """
    rows = []
    for name in names:
        task = TASKS[name]
        try:  # the data is loaded by the finders even where the cache holds the grid's losses
            reference = grid_reference(task, cache)
            row = Row(name, reference)
            per_seed = {seed: suggestions(task, seed, methods, **finder_kwargs) for seed in SEEDS}
        except FileNotFoundError as err:
            rows.append(Row(name, None, unavailable=str(err)))
            continue
        for method in methods:
            cell = Cell(
                [per_seed[s][method][0] for s in SEEDS],
                [per_seed[s][method][1] for s in SEEDS],
                [per_seed[s][method][2] for s in SEEDS],
                cost_unit="HVPs" if method == "curvature" else "steps",
            )
            row.cells[method] = _trained(cell, task, cache, reference)
        if other_seeds:
            best = grid_reference(task, cache, seeds=OTHER_SEEDS).best_lr
            row.cells[OTHER_SEEDS_METHOD] = _trained(
                Cell([best] * len(SEEDS), [0] * len(SEEDS), cost_unit="none"), task, cache, reference
            )
        rows.append(row)
    return rows


def _trained(cell: Cell, task: FinderTask, cache: LossCache, reference: Reference) -> Cell:
    """Fill in the cell's loss ratio and divergence: each seed trained at its suggestion for the task's budget."""
    losses = [math.inf if lr is None or not lr > 0 else cache.loss(task, s, lr) for s, lr in zip(SEEDS, cell.lrs)]
    mean = math.inf if any(not math.isfinite(v) for v in losses) else statistics.fmean(losses)
    cell.ratio = mean / reference.best_loss
    cell.diverged = any(loss > initial_loss(task, s) for s, loss in zip(SEEDS, losses))
    return cell


def format_table(
    rows: Sequence[Row], title: str, ours: str = "race", others: Sequence[str] = ("lightning", "fastai_valley")
) -> str:
    """Long format: one line per task and method (``div``: training at the suggestion diverged on some seed), then a
    summary per method and how often ``ours`` has the lower loss ratio than each of ``others``."""
    done = [row for row in rows if row.reference is not None]
    best_lrs = [row.reference.best_lr for row in rows if row.reference is not None]  # one per row of `done`
    lines = [title]
    lines += [f"{row.task}: unavailable ({row.unavailable})" for row in rows if row.reference is None]
    if not done:
        return "\n".join(lines)
    methods = list(done[0].cells)
    lines.append(
        f"{'task':<32} {'grid best lr':>12} {'method':<14} {'suggested lr':>12} {'loss ratio':>10} {'div':>3}"
        f" {'|log2|':>7} {'cost':>10}"
    )
    for row, best in zip(done, best_lrs):
        for k, method in enumerate(methods):
            cell = row.cells[method]
            head = f"{row.task:<32} {best:>12.3g}" if k == 0 else " " * 45
            lr = "none" if cell.lr is None else f"{cell.lr:.3g}"
            cost = (
                "-" if cell.cost_unit == "none" else f"{max(cell.steps)} {'HVP' if cell.cost_unit == 'HVPs' else 'st'}"
            )
            lines.append(
                f"{head} {method:<14} {lr:>12} {_ratio(cell.ratio):>10} {'yes' if cell.diverged else '':>3}"
                f" {cell.log2_error(best):>7.2f} {cost:>10}"
            )
    lines.append("")
    lines.append(
        f"{'method':<14} {'within 1.10x':>12} {'worst ratio':>11} {'diverged':>8} {'median |log2|':>13} {'max cost':>9}"
        f" {'median s':>9}"
    )
    for method in methods:
        cells = [row.cells[method] for row in done]
        within = sum(c.ratio <= 1.10 for c in cells)
        worst = max(c.ratio for c in cells)
        diverged = sum(c.diverged for c in cells)
        errors = statistics.median(c.log2_error(best) for c, best in zip(cells, best_lrs))
        cost = "-" if cells[0].cost_unit == "none" else max(max(c.steps) for c in cells)
        seconds = statistics.median(t for c in cells for t in c.seconds) if cells[0].seconds else math.nan
        lines.append(
            f"{method:<14} {f'{within}/{len(cells)}':>12} {_ratio(worst):>11} {diverged:>8} {errors:>13.2f} {cost:>9}"
            f" {seconds:>9.2f}"
        )
    if ours in methods:
        for other in (o for o in others if o in methods):
            wins = [row.task for row in done if row.cells[ours].ratio < row.cells[other].ratio]
            lines.append(f"{ours} has a lower loss ratio than {other} on {len(wins)}/{len(done)} tasks")
    return "\n".join(lines)


def _ratio(value: float) -> str:
    if not math.isfinite(value):
        return "diverged"
    return f"{value:.2f}" if value < 100 else f"{value:.3g}"

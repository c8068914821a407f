"""Run the LR finders and the LR-free optimizers on the finder tasks and score them against the cross-fitted grid
reference of each schedule pairing.

The finders, each on every task and the four seeds of both reference folds, with the same range (1e-7 to 10, 100
sweep steps):

- ours, :class:`lr_callbacks.LRFinder`, at fit start in a ``Trainer`` whose ``max_steps`` is the task's budget
  (which the race suggestion reads as the training budget): every suggestion method (the curve methods read the
  default run's sweep; ``curvature`` is its own run);
- Lightning's ``LearningRateFinder``, as installed;
- fastai's ``lr_find`` with its ``valley`` suggestion, re-implemented in :func:`fastai_valley_lr` (fastai itself
  cannot be installed beside this project's torch): its schedule ``start * (end / start) ** (i / num_it)``, its
  smoothed-loss recorder (beta 0.98), its stop at 4x the best smoothed loss, and the trimming ``[num_it // 10:-5]``
  before :func:`lr_callbacks.finder.curve.fastai_valley`.

A pairing (:data:`experiments.benchmarks.finder.tasks.SCHEDULES`) is the schedule the suggestion drives: each
suggestion is trained for the task's budget as the peak LR of that schedule, with the seed it was found on, and
scored by r against the pairing's own cross-fitted reference (a peak-LR grid per schedule;
:mod:`experiments.benchmarks.finder.score`). The LR-free rows (:mod:`experiments.benchmarks.finder.lr_free`) run
once per task and seed, at their defaults and with no schedule, and are scored against each pairing's reference.

Suggestions and final losses are cached per task (:class:`experiments.benchmarks.finder.reference.LossCache`); our
finder's suggestions under a fingerprint of the source of :mod:`lr_callbacks.finder`, so that any change to it runs
them again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import math
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

import lr_callbacks.finder
from experiments.benchmarks.finder import score as sc
from experiments.benchmarks.finder.lr_free import RIVALS, SCHEDULE_FREE, FactoryModule, applies, available
from experiments.benchmarks.finder.lr_free import rival_optimizer as lr_free_optimizer
from experiments.benchmarks.finder.reference import FOLDS, CrossFit, LossCache, cross_fit
from experiments.benchmarks.finder.split import TASKS
from experiments.benchmarks.finder.tasks import FinderTask, TaskModule, final_loss, initial_loss, timed
from experiments.benchmarks.timing import BARE_TRAINER
from lr_callbacks import CosineAnnealing, LRFinder, OneCycle
from lr_callbacks.finder.curve import CURVE_METHODS, fastai_valley, smooth, suggest

FASTAI = {"start_lr": 1e-7, "end_lr": 10.0, "num_it": 100, "beta": 0.98, "stop_factor": 4.0}
OURS = ("race", *CURVE_METHODS, "curvature")
"""Our suggestion methods; ``race`` is the default."""
FINDERS = (*OURS, "lightning", "fastai_valley")
"""Ours (every suggestion), then Lightning's finder and fastai's valley."""
METHODS = (*FINDERS, *RIVALS, SCHEDULE_FREE)
"""Every row: the finders, the LR-free optimizers at their defaults, schedule-free at our suggestion."""
DEFAULT = "race"
FINDER_RIVALS = ("lightning", "fastai_valley")
ALL_SEEDS: tuple[int, ...] = FOLDS[0] + FOLDS[1]


@functools.cache
def finder_fingerprint() -> str:
    """A short hash of the source of :mod:`lr_callbacks.finder` (read once per process): cached suggestions of ours
    are keyed by it."""
    digest = hashlib.sha256()
    for path in sorted(Path(lr_callbacks.finder.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


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


def schedule_callbacks(schedule: str, steps: int) -> list[Callback]:
    """Our schedule callback that matches :func:`experiments.benchmarks.finder.tasks.lr_scheduler` over ``steps``,
    with the base LR as the peak (empty for a constant LR): the finder, beside it, reads it and suggests its peak."""
    if schedule == "cosine":
        return [CosineAnnealing(T_max=steps, interval="step")]
    if schedule == "one_cycle":
        return [OneCycle(max_lr=None, total_steps=steps)]
    return []


def run_ours(
    task: FinderTask, seed: int, module: TaskModule | None = None, schedule: str = "constant", **finder_kwargs: Any
) -> LRFinder:
    """:class:`LRFinder` (``apply=False``, no PNG) at fit start on ``task`` (or on ``module``, the task's network with
    another optimizer), beside the schedule callback of ``schedule``; the finder holds the result."""
    finder = LRFinder(apply=False, save_png=False, **finder_kwargs)
    callbacks = [finder, *schedule_callbacks(schedule, task.steps)]
    with tempfile.TemporaryDirectory() as root:
        _trainer(callbacks, root, task.steps).fit(task.module(seed) if module is None else module, task.batches(seed))
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


# ----------------------------------------------------------------------------------------------- suggestions
Found = dict[str, Any]
"""One method's run on one task and seed: ``lr`` (``None``: no suggestion), ``cost`` and ``seconds``; ``race`` adds
``winner``, ``race_steps`` and ``train_steps``."""


def _ours(task: FinderTask, seed: int, schedule: str = "constant") -> dict[str, Found]:
    finder, seconds = timed(lambda: run_ours(task, seed, schedule=schedule))
    result = finder.result
    if result is None:
        raise RuntimeError(f"LRFinder left no result on task {task.name!r}, seed {seed}")
    out: dict[str, Found] = {
        "race": {
            "lr": result.suggestion,
            "cost": result.cost_steps,
            "seconds": seconds,
            "winner": result.race_winner,
            "race_steps": result.race_steps,
            "train_steps": result.train_steps,
            "divergence_lr": result.divergence_lr,
            "race_lrs": result.race_lrs,
            "race_scores": [s if math.isfinite(s) else None for s in result.race_scores],
        }
    }
    if schedule != "constant":  # the sweep, and so the curve methods, do not depend on the schedule
        return out
    for method in CURVE_METHODS:
        found = suggest(method, result.lrs, result.losses, result.smoothed_losses, num_steps=finder.num_steps)
        out[method] = {"lr": None if found is None else found[0], "cost": result.steps, "seconds": seconds}
    return out


def _curvature(task: FinderTask, seed: int) -> Found:
    finder, seconds = timed(lambda: run_ours(task, seed, suggestion="curvature"))
    result = finder.result
    if result is None:
        raise RuntimeError(f"LRFinder(suggestion='curvature') left no result on task {task.name!r}, seed {seed}")
    return {"lr": result.suggestion, "cost": result.hessian_vector_products, "seconds": seconds}


def _other(run: Callable[[FinderTask, int], tuple[float | None, int]], task: FinderTask, seed: int) -> Found:
    (lr, steps), seconds = timed(lambda: run(task, seed))
    return {"lr": lr, "cost": steps, "seconds": seconds}


def suggestions(
    task: FinderTask, seed: int, cache: LossCache, methods: Sequence[str] = FINDERS, schedule: str = "constant"
) -> dict[str, Found]:
    """Every finder's run on one task and seed (from the cache, or run now and cached); ``race`` with the schedule
    of the pairing beside it (the others do not read it).

    The cost is in steps (Hessian-vector products for ``curvature``): for ``race`` its optimizer steps plus its
    probe batches (:attr:`lr_callbacks.finder.LRFinderResult.cost_steps`), for the others their sweep steps; the
    seconds are the wall time of the finder run it comes from (the curve methods share the default run's).
    """
    table, ours = f"{task.name}.finders", finder_fingerprint()
    out: dict[str, Found] = {}
    if any(m in ("race", *CURVE_METHODS) for m in methods):
        out.update(cache.get(table, f"ours:{seed}:{ours}", lambda: _ours(task, seed)))
    if "race" in methods and schedule != "constant":
        scheduled = f"{table}.{schedule}"
        out.update(cache.get(scheduled, f"ours:{seed}:{ours}", lambda: _ours(task, seed, schedule)))
    if "curvature" in methods:
        out["curvature"] = cache.get(table, f"curvature:{seed}:{ours}", lambda: _curvature(task, seed))
    if "lightning" in methods:
        key = f"lightning:{seed}:{lightning.__version__}"
        out["lightning"] = cache.get(table, key, lambda: _other(run_lightning, task, seed))
    if "fastai_valley" in methods:
        out["fastai_valley"] = cache.get(table, f"fastai:{seed}:{ours}", lambda: _other(fastai_valley_lr, task, seed))
    return {m: out[m] for m in methods}


def lr_free_run(task: FinderTask, seed: int, row: str, cache: LossCache) -> Found:
    """An LR-free row on one task and seed: ``loss`` (final loss, no schedule), and for schedule-free the ``lr`` our
    finder suggested for it and the finder's ``cost``."""
    version = available(row)
    factory = lr_free_optimizer(row, task.optimizer)
    table = f"{task.name}.lr_free"
    if row != SCHEDULE_FREE:
        return cache.get(
            table, f"{row}:{seed}:{version}", lambda: {"loss": final_loss(task, seed, 1.0, optimizer=factory)}
        )

    def schedule_free() -> Found:
        torch_seeded = task.module(seed)  # seeds torch, so the network's initial weights are the task's
        module = FactoryModule(torch_seeded.net, task.loss, task.optimizer, 1e-3, factory)
        result = run_ours(task, seed, module=module).result
        lr = None if result is None else result.suggestion
        loss = math.inf if lr is None else final_loss(task, seed, lr, optimizer=factory)
        return {"lr": lr, "loss": loss, "cost": 0 if result is None else result.cost_steps}

    return cache.get(table, f"{row}:{seed}:{version}:{finder_fingerprint()}", schedule_free)


# ----------------------------------------------------------------------------------------------- scoring
@dataclass
class Cell:
    """One method on one task under one pairing: per-seed suggestions (``None`` for an LR-free row), final losses,
    costs, and the score."""

    lrs: list[float | None]
    losses: list[float]
    costs: list[int]
    seconds: list[float] = field(default_factory=list)
    r: float = math.inf
    diverged: bool = False
    log2: float = math.inf

    @property
    def cost(self) -> int:
        return max(self.costs) if self.costs else 0


@dataclass
class Row:
    task: str
    reference: CrossFit | None
    cells: dict[str, Cell] = field(default_factory=dict)
    unavailable: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def tau(self) -> float:
        return math.nan if self.reference is None else self.reference.tau


def _scored(cell: Cell, task: FinderTask, reference: CrossFit) -> Cell:
    folds = [[cell.losses[ALL_SEEDS.index(s)] for s in fold] for fold in FOLDS]
    means = tuple(math.inf if any(not math.isfinite(v) for v in f) else statistics.fmean(f) for f in folds)
    cell.diverged = any(
        not math.isfinite(loss) or loss > initial_loss(task, s) for s, loss in zip(ALL_SEEDS, cell.losses)
    )
    cell.r = math.inf if cell.diverged else sc.cross_fitted_score((means[0], means[1]), reference.cross_losses)
    if all(lr is not None for lr in cell.lrs):
        cell.log2 = sc.log2_error(cell.lrs, [reference.reference_lr(s) for s in ALL_SEEDS])
    return cell


def compare(
    names: Sequence[str], cache: LossCache, schedule: str = "constant", methods: Sequence[str] = METHODS
) -> list[Row]:
    """For each task: the pairing's cross-fitted reference, then every method trained and scored.

    A task whose data cannot be loaded (California Housing offline) gets a row that says why; an LR-free row whose
    package is missing, or that does not apply to the task's optimizer, is left out of the row with the reason.
    """
    rows = []
    for name in names:
        task = TASKS[name]
        try:  # the data is loaded by the finders even where the cache holds the grid's losses
            reference = cross_fit(task, cache, schedule)
            finders = [m for m in methods if m in FINDERS]
            per_seed = {s: suggestions(task, s, cache, finders, schedule) for s in ALL_SEEDS} if finders else {}
        except FileNotFoundError as err:
            rows.append(Row(name, None, unavailable=str(err)))
            continue
        row = Row(name, reference)
        for method in methods:
            if method in FINDERS:
                found = [per_seed[s][method] for s in ALL_SEEDS]
                lrs = [f["lr"] for f in found]
                losses = [
                    math.inf if lr is None or not lr > 0 else cache.loss(task, s, lr, schedule)
                    for s, lr in zip(ALL_SEEDS, lrs)
                ]
                cell = Cell(lrs, losses, [f["cost"] for f in found], [f["seconds"] for f in found])
            else:
                if available(method) is None:
                    row.skipped[method] = f"{method}: not installed (pip install 'lr-callbacks[benchmarks]')"
                    continue
                if not applies(method, task.optimizer):
                    row.skipped[method] = f"{method}: not for {task.optimizer}"
                    continue
                runs = [lr_free_run(task, s, method, cache) for s in ALL_SEEDS]
                cell = Cell(
                    [r.get("lr") for r in runs] if method == SCHEDULE_FREE else [None] * len(ALL_SEEDS),
                    [max(r["loss"], cache.floor(task, s)) for r, s in zip(runs, ALL_SEEDS)],
                    [r.get("cost", 0) for r in runs],
                )
            row.cells[method] = _scored(cell, task, reference)
        rows.append(row)
    return rows


def format_table(rows: Sequence[Row], title: str, ours: str = DEFAULT, rivals: Sequence[str] = FINDER_RIVALS) -> str:
    """One line per task (τ, the reference LRs, then r per method; ``div``: diverged on some seed, ``-``: not run),
    a summary per method (r ≤ τ, median and worst r, divergences, median |log2| error, cost), the share of tasks
    within each factor of the reference (the curve), and the bar for ``ours``."""
    done = [row for row in rows if row.reference is not None]
    lines = [title]
    lines += [f"{row.task}: unavailable ({row.unavailable})" for row in rows if row.reference is None]
    if not done:
        return "\n".join(lines)
    methods = list(dict.fromkeys(m for row in done for m in row.cells))
    skipped = sorted({reason for row in done for reason in row.skipped.values() if "not installed" in reason})
    lines += [f"skipped: {reason}" for reason in skipped]
    short = {m: _SHORT.get(m, m[:8]) for m in methods}
    lines.append(f"{'task':<44} {'tau':>5} {'lr A':>8} {'lr B':>8} " + " ".join(f"{short[m]:>8}" for m in methods))
    for row in done:
        assert row.reference is not None  # noqa: S101 (for mypy: `done` holds rows with a reference)
        cells = " ".join(f"{_r(row.cells[m]) if m in row.cells else '-':>8}" for m in methods)
        ref = row.reference
        lines.append(f"{row.task:<44} {row.tau:>5.2f} {ref.best_lrs[0]:>8.3g} {ref.best_lrs[1]:>8.3g} {cells}")
    lines.append("")
    lines.append(
        f"{'method':<14} {'r<=tau':>7} {'median r':>8} {'worst r':>8} {'div':>4} {'med|log2|':>9} {'max cost':>8}"
        f"   share of tasks with r <= " + " ".join(f"{t:g}" for t in sc.CURVE_POINTS)
    )
    for method in methods:
        scored = [(row, row.cells[method]) for row in done if method in row.cells]
        rs = [cell.r for _, cell in scored]
        within = sum(cell.r <= row.tau for row, cell in scored)
        errors = [cell.log2 for _, cell in scored if method in FINDERS or method == SCHEDULE_FREE]
        error = f"{statistics.median(errors):.2f}" if errors else "-"
        cost = f"{max(cell.cost for _, cell in scored)}" if method != "curvature" else "HVP"
        curve = " ".join(f"{share:.2f}" for share in sc.within_curve(rs))
        lines.append(
            f"{method:<14} {f'{within}/{len(rs)}':>7} {sc._fmt(statistics.median(rs)):>8} {sc._fmt(max(rs)):>8}"
            f" {sum(cell.diverged for _, cell in scored):>4} {error:>9} {cost:>8}   {curve}"
        )
    if ours in methods:
        mine = [row.cells[ours] for row in done]
        criteria = sc.verdict(
            [c.r for c in mine],
            [row.tau for row in done],
            [c.diverged for c in mine],
            [c.cost for c in mine],
            {other: [row.cells[other].r for row in done] for other in rivals if other in methods},
        )
        lines.append("")
        lines.append(f"the bar for {ours}: " + ("MET" if all(c.passed for c in criteria) else "NOT MET"))
        lines += [f"  {'pass' if c.passed else 'FAIL'}  {c.name}: {c.measured}" for c in criteria]
        misses = [(row.task, row.cells[ours].r, row.tau) for row in done if not row.cells[ours].r <= row.tau]
        lines += [f"  over tau: {task} r={sc._fmt(r)} tau={tau:.2f}" for task, r, tau in misses]
    return "\n".join(lines)


_SHORT = {
    "centered_min": "centered",
    "min_div10": "min/10",
    "curvature": "curvat.",
    "lightning": "Lightng",
    "fastai_valley": "fastai",
    "dadaptation": "D-Adapt",
    "mechanic": "Mechanic",
    "prodigy": "Prodigy",
    "dog": "DoG",
    SCHEDULE_FREE: "SF+race",
}


def _r(cell: Cell) -> str:
    if cell.diverged:
        return "div"
    return f"{cell.r:.3f}" if cell.r < 10 else f"{cell.r:.3g}"

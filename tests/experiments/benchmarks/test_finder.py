"""The finder benchmark: its split, its cross-fitted grid reference and score, the schedules of its pairings, its
fastai re-implementation, the LR-free rows, its tables, and (slow) the evaluation figures of docs/benchmarks.md."""

from __future__ import annotations

import hashlib
import math
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.benchmarks.finder import compare as fc
from experiments.benchmarks.finder import fifth_part, lr_free
from experiments.benchmarks.finder import score as sc
from experiments.benchmarks.finder.reference import (
    FOLDS,
    GRID,
    PER_DECADE,
    SOLVED,
    STOP_FACTOR,
    LossCache,
    cache_dir,
    cross_fit,
    grid_reference,
)
from experiments.benchmarks.finder.split import DEV, EVAL, FIFTH_PART_SHA256, SCHEDULE_DEV, TASKS
from experiments.benchmarks.finder.tasks import SEEDS, FinderTask, final_loss, initial_loss, lr_scheduler
from experiments.benchmarks.timing import one_thread
from lr_callbacks import CosineAnnealing, OneCycle, preview
from lr_callbacks.finder.curve import fastai_valley, smooth

CHEAP = "logistic_momentum_b8"  # 150 steps of a 12-feature logistic regression


def test_the_evaluation_part_is_the_file_frozen_before_anything_ran_on_it() -> None:
    assert hashlib.sha256(Path(fifth_part.__file__).read_bytes()).hexdigest() == FIFTH_PART_SHA256


def test_the_split_is_disjoint_and_each_part_covers_every_optimizer_and_loss() -> None:
    assert not set(DEV) & set(EVAL)
    assert (len(DEV), len(EVAL), len(SCHEDULE_DEV)) == (56, 16, 16)
    assert set(SCHEDULE_DEV) <= set(DEV)
    for part in (DEV, EVAL, SCHEDULE_DEV):
        assert {TASKS[n].optimizer for n in part} == {"sgd", "sgd_momentum", "nesterov", "adam", "adamw", "rmsprop"}
        assert {TASKS[n].loss for n in part} == {"mse", "cross_entropy", "bce"}
        assert {TASKS[n].inputs for n in part} == {"normalised", "unnormalised"}
        assert None in {TASKS[n].batch_size for n in part}  # a full-batch task
    assert sum(n.startswith(("digits", "wine", "breast_cancer", "diabetes", "iris")) for n in EVAL) == 13


def noiseless_line(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(seed))
    return x, x @ torch.tensor([[1.0], [-2.0]])


LINE = FinderTask("test_noiseless_line", lambda: nn.Linear(2, 1), "mse", "sgd", noiseless_line, None, 60)


def test_the_grid_reference_brackets_the_best_and_stops_a_decade_below() -> None:
    """Full-batch GD on a noiseless line: the loss keeps falling with the LR up to the stability edge, so the walk
    stops one decade of poor LRs below the best, far above the grid's bottom."""
    with one_thread():
        ref = grid_reference(LINE, LossCache(None))
    assert not ref.at_edge
    walked = sorted(ref.losses)
    assert set(walked) <= set(GRID)
    assert walked[-1] == GRID[-1]
    assert walked[0] > GRID[0]
    below = [lr for lr in walked if lr < ref.best_lr]
    assert len(below) >= PER_DECADE
    assert all(ref.losses[lr] > STOP_FACTOR * ref.best_loss for lr in below[:PER_DECADE])  # the stopping decade
    assert len(below) == PER_DECADE or ref.losses[below[PER_DECADE]] <= STOP_FACTOR * ref.best_loss
    floor = statistics.fmean(SOLVED * initial_loss(LINE, s) for s in SEEDS)
    expected = statistics.fmean(max(final_loss(LINE, s, ref.best_lr), SOLVED * initial_loss(LINE, s)) for s in SEEDS)
    assert ref.best_loss == pytest.approx(expected)
    assert ref.best_loss >= floor
    assert not math.isfinite(ref.losses[GRID[-1]])  # LR 10 diverges on this problem


def test_the_cross_fitted_reference_trains_each_fold_at_the_other_folds_best() -> None:
    cache = LossCache(None)
    task = TASKS[CHEAP]
    with one_thread():
        ref = cross_fit(task, cache)
        a, b = (grid_reference(task, cache, fold) for fold in FOLDS)  # from the cache
        assert ref.best_lrs == (a.best_lr, b.best_lr)
        assert ref.cross_losses == (
            cache.mean_loss(task, b.best_lr, FOLDS[0]),
            cache.mean_loss(task, a.best_lr, FOLDS[1]),
        )
    assert FOLDS == ((0, 1), (2, 3))
    assert [ref.reference_lr(s) for s in (0, 1, 2, 3)] == [b.best_lr, b.best_lr, a.best_lr, a.best_lr]
    ratios = [ref.cross_losses[0] / a.best_loss, ref.cross_losses[1] / b.best_loss]
    assert min(ratios) >= 1.0  # a fold's own best is its minimum over the grid
    assert ref.tau == pytest.approx(max(1.10, statistics.median(ratios)))


def test_the_score_is_the_geometric_mean_of_the_two_fold_ratios_and_a_diverged_seed_is_infinite() -> None:
    assert sc.cross_fitted_score((2.0, 1.5), (1.0, 3.0)) == pytest.approx(math.sqrt(2.0 * 0.5))
    assert sc.cross_fitted_score((math.inf, 1.0), (1.0, 1.0)) == math.inf
    assert sc.noise_level(1.5, 1.0, 1.2, 1.0) == pytest.approx(1.35)
    assert sc.noise_level(1.01, 1.0, 1.02, 1.0) == 1.10
    assert sc.within_curve([1.0, 1.5, math.inf], [1.0, 2.0]) == pytest.approx([1 / 3, 2 / 3])


def test_the_bar_fails_each_criterion_on_its_own() -> None:
    good = {"scores": [1.0] * 20, "taus": [1.1] * 20, "diverged": [False] * 20, "costs": [300] * 20}
    rivals = {"x": [1.5] * 20}
    assert all(c.passed for c in sc.verdict(**good, rivals=rivals))
    broken = {
        "no divergence": {"diverged": [True] + [False] * 19},
        "cost <= 300 steps": {"costs": [301] + [300] * 19},
        "r <= tau on >= 85%": {"scores": [1.2] * 4 + [1.0] * 16},
        "median r <= 1.05": {"scores": [1.06] * 20, "taus": [1.5] * 20},
        "r <= 2 on every task": {"scores": [2.01] + [1.0] * 19, "taus": [3.0] * 20},
        "lower r than x on >= 75%": {"scores": [1.6] * 6 + [1.0] * 14, "taus": [1.7] * 20},
    }
    for name, change in broken.items():
        failed = [c.name for c in sc.verdict(**{**good, **change}, rivals=rivals) if not c.passed]
        assert failed == [name], (name, failed)


def test_a_solved_loss_counts_as_the_floor() -> None:
    """A loss below 0.1% of the initial loss (0 on separable data) is floored, so ratios of solved runs stay finite."""
    cache = LossCache(None)
    cache._tables[LINE.name] = {"0:0.5": 0.0}
    assert cache.loss(LINE, 0, 0.5) == pytest.approx(SOLVED * initial_loss(LINE, 0))


@pytest.mark.parametrize(
    ("schedule", "callback"),
    [("cosine", lambda n: CosineAnnealing(T_max=n, interval="step")), ("one_cycle", lambda n: OneCycle(None, n))],
)
def test_each_pairings_torch_schedule_is_the_callback_the_finder_reads(schedule: str, callback: object) -> None:
    """The benchmark trains a pairing with a torch scheduler and runs our finder beside our schedule callback
    (:func:`experiments.benchmarks.finder.compare.schedule_callbacks`): the two give the same LRs."""
    steps, peak = 50, 0.3
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = lr_scheduler(schedule, opt, steps)
    assert scheduler is not None
    torch_lrs = []
    for _ in range(steps):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    ours = preview(fc.schedule_callbacks(schedule, steps), epochs=1, steps_per_epoch=steps, base_lrs=peak).series()
    assert ours == pytest.approx(torch_lrs, rel=1e-9, abs=1e-15)
    assert type(fc.schedule_callbacks(schedule, steps)[0]) is type(callback(steps))  # type: ignore[operator]
    assert fc.schedule_callbacks("constant", steps) == []


def test_fastai_lr_find_schedule_stop_and_trimming() -> None:
    """The suggestion is a point of fastai's schedule ``1e-7 * 1e8 ** (i / 100)`` at or after index 10, and it is
    the valley of the smoothed curve trimmed by ``[10:-5]``."""
    task = TASKS[CHEAP]
    with one_thread():
        lr, steps = fc.fastai_valley_lr(task, 0)
    assert lr is not None
    assert 0 < steps <= 100
    index = round(math.log(lr / 1e-7) / math.log(1e8) * 100)
    assert lr == pytest.approx(1e-7 * 1e8 ** (index / 100), rel=1e-12)
    assert 10 <= index < steps - 5 or steps <= 15
    assert fastai_valley([3.0, 2.0, 1.0]) == 0
    assert smooth([1.0], 0.98) == [1.0]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_compare_and_the_table_on_one_task(schedule: str) -> None:
    cache = LossCache(None)
    methods = ("race", "valley", "lightning", "prodigy")
    with one_thread():
        (row,) = fc.compare([CHEAP], cache, schedule, methods=methods)
    assert row.reference is not None
    assert set(row.cells) == set(methods)
    task = TASKS[CHEAP]
    for method, cell in row.cells.items():
        assert len(cell.losses) == 4
        folds = [statistics.fmean(cell.losses[s] for s in fold) for fold in FOLDS]
        expected = math.sqrt(folds[0] / row.reference.cross_losses[0] * folds[1] / row.reference.cross_losses[1])
        assert cell.r == pytest.approx(expected), method
        if method != "prodigy":
            assert all(lr is not None and lr > 0 for lr in cell.lrs)
            assert cell.losses == [cache.loss(task, s, lr, schedule) for s, lr in zip(range(4), cell.lrs)]
    assert row.cells["race"].cost <= 300
    assert row.cells["lightning"].cost <= 100
    table = fc.format_table([row], "one task")
    assert f"{row.cells['race'].r:.3f}" in table
    assert "the bar for race: " in table
    assert "share of tasks with r <=" in table


def test_a_missing_lr_free_package_skips_its_row_with_a_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fc, "available", lambda row: None if row == "mechanic" else "1.0")
    with one_thread():
        (row,) = fc.compare([CHEAP], LossCache(None), methods=("mechanic", "dog"))
    assert "mechanic" not in row.cells
    assert "not installed" in row.skipped["mechanic"]
    assert "mechanic: not installed (pip install 'lr-callbacks[benchmarks]')" in fc.format_table([row], "t")
    assert lr_free.applies("dog", TASKS[CHEAP].optimizer)
    assert not lr_free.applies("dog", "adam")


def test_a_task_without_its_data_gets_a_row_that_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("California Housing is not available offline")

    monkeypatch.setattr(fc, "cross_fit", offline)
    (row,) = fc.compare([CHEAP], LossCache(None))
    assert row.reference is None
    assert row.unavailable == "California Housing is not available offline"
    assert "not available offline" in fc.format_table([row], "offline")


@pytest.mark.slow
def test_the_docs_evaluation_figures() -> None:
    """The out-of-sample claims of docs/benchmarks.md for the default, recomputed (from the cache when one exists)."""
    with one_thread():
        rows = fc.compare(EVAL, LossCache(cache_dir()), "constant", methods=("race", "lightning", "fastai_valley"))
    race = [row.cells["race"] for row in rows]
    assert all(cell.cost <= 300 for cell in race)
    assert not any(cell.diverged for cell in race)
    assert statistics.median(cell.r for cell in race) == pytest.approx(1.275, abs=5e-3)
    assert sum(cell.r <= row.tau for cell, row in zip(race, rows)) == 6
    assert max(cell.r for cell in race) == pytest.approx(10.2, abs=0.05)  # digits_cnn_momentum
    assert sum(row.cells["race"].r < row.cells["lightning"].r for row in rows) == 16
    assert sum(row.cells["race"].r < row.cells["fastai_valley"].r for row in rows) == 10

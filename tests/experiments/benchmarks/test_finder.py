"""The finder benchmark: its grid reference, its fastai re-implementation, its tables, and (slow) the out-of-sample
figures of docs/benchmarks.md recomputed."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from experiments.benchmarks.finder import compare as fc
from experiments.benchmarks.finder.reference import (
    GRID,
    OTHER_SEEDS,
    PER_DECADE,
    STOP_FACTOR,
    LossCache,
    cache_dir,
    grid_reference,
)
from experiments.benchmarks.finder.tasks import DEV, EVAL, SEEDS, TASKS, THIRD_EVAL, FinderTask, final_loss
from experiments.benchmarks.timing import one_thread
from lr_callbacks.finder.curve import fastai_valley, smooth

CHEAP = "logistic_momentum_b8"  # 150 steps of a 12-feature logistic regression


def test_the_split_is_disjoint_and_each_part_covers_every_optimizer_and_loss() -> None:
    assert not set(DEV) & set(EVAL)
    assert len(DEV) == 42
    assert len(EVAL) == 14
    for part in (DEV, EVAL):
        assert {TASKS[n].optimizer for n in part} == {"sgd", "sgd_momentum", "nesterov", "adam", "adamw", "rmsprop"}
        assert {TASKS[n].loss for n in part} == {"mse", "cross_entropy", "bce"}
        assert {TASKS[n].inputs for n in part} == {"normalised", "unnormalised"}
        assert None in {TASKS[n].batch_size for n in part}  # a full-batch task
    budgets = [TASKS[n].steps for n in DEV + EVAL]
    assert min(budgets) <= 150
    assert max(budgets) == 2000
    assert min(b for n in DEV + EVAL if (b := TASKS[n].batch_size)) == 8


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
    assert ref.best_loss == pytest.approx(statistics.fmean(final_loss(LINE, s, ref.best_lr) for s in SEEDS))
    assert not math.isfinite(ref.losses[GRID[-1]])  # LR 10 diverges on this problem


def test_a_grid_reference_whose_best_is_the_top_of_the_grid_extends_upwards() -> None:
    tiny = FinderTask(
        "test_tiny_line",
        lambda: nn.Linear(2, 1, bias=False),
        "mse",
        "sgd",
        lambda s: tuple(0.01 * t for t in noiseless_line(s)),
        None,
        30,
    )
    with one_thread():
        ref = grid_reference(tiny, LossCache(None))
    assert max(ref.losses) > GRID[-1]
    assert not ref.at_edge


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


def test_compare_and_the_table_on_one_task() -> None:
    cache = LossCache(None)
    with one_thread():
        (row,) = fc.compare([CHEAP], cache, methods=("race", "valley", "lightning"), other_seeds=True)
    assert {key.split(":")[0] for key in cache._table(CHEAP)} == {str(s) for s in (*SEEDS, *OTHER_SEEDS)}
    other = grid_reference(TASKS[CHEAP], cache, seeds=OTHER_SEEDS)  # from the cache: the walk compare made
    assert row.reference is not None
    for method, cell in row.cells.items():
        assert len(cell.lrs) == len(SEEDS)
        assert all(lr is not None and lr > 0 for lr in cell.lrs)
        expected = statistics.fmean(cache.loss(TASKS[CHEAP], s, lr) for s, lr in zip(SEEDS, cell.lrs))
        assert cell.ratio == pytest.approx(expected / row.reference.best_loss), method
    assert row.cells["race"].steps[0] <= 300
    assert row.cells["lightning"].steps[0] <= 100
    # The noise-ceiling row: the best LR of an independent grid walk on seeds 2 and 3, on every seed.
    assert set(OTHER_SEEDS).isdisjoint(SEEDS)
    assert row.cells[fc.OTHER_SEEDS_METHOD].lrs == [other.best_lr] * len(SEEDS)
    table = fc.format_table([row], "one task")
    assert "one task" in table
    assert f"{row.cells['race'].ratio:.2f}" in table
    wins = int(row.cells["race"].ratio < row.cells["lightning"].ratio)
    assert f"race has a lower loss ratio than lightning on {wins}/1 tasks" in table


@pytest.mark.slow
@pytest.mark.parametrize(
    ("names", "within", "worst", "beats_lightning", "beats_valley", "ceiling_within"),
    [
        pytest.param(
            EVAL,
            [
                "bn_mlp_scaled_adam_b8",
                "cnn_stripes_adam",
                "heteroscedastic_linear_momentum_b16",
                "lstm_threshold_rmsprop",
                "mlp_log_counts_fullbatch_rmsprop",
                "rings_mlp_adam",
                "wide_mlp_bce_adamw",
            ],
            17.13,
            13,
            12,
            8,
            id="evaluation_part",
        ),
        pytest.param(  # the part the same method was first evaluated on, before those tasks joined development
            THIRD_EVAL,
            [
                "attention_first_last_rmsprop",
                "bn_mlp_unnormalised_rmsprop",
                "cnn_blob_position_adamw",
                "cnn_gratings_momentum",
                "deep_relu_bce_adam",
                "logistic_fullbatch_gd",
            ],
            14.59,
            12,
            9,
            13,
            id="previous_evaluation_part",
        ),
    ],
)
def test_the_readme_evaluation_figures(
    names: tuple[str, ...],
    within: list[str],
    worst: float,
    beats_lightning: int,
    beats_valley: int,
    ceiling_within: int,
) -> None:
    """The out-of-sample claims of docs/benchmarks.md, recomputed (final losses from the cache when one exists)."""
    with one_thread():
        rows = fc.compare(
            names, LossCache(cache_dir()), methods=("race", "lightning", "fastai_valley"), other_seeds=True
        )
    race = {row.task: row.cells["race"] for row in rows}
    assert all(max(cell.steps) <= 300 for cell in race.values())
    assert not any(cell.diverged for cell in race.values())
    assert sorted(name for name, cell in race.items() if cell.ratio <= 1.10) == within
    assert max(cell.ratio for cell in race.values()) == pytest.approx(worst, abs=5e-3)
    assert sum(row.cells["race"].ratio < row.cells["lightning"].ratio for row in rows) == beats_lightning
    assert sum(row.cells["race"].ratio < row.cells["fastai_valley"].ratio for row in rows) == beats_valley
    assert sum(row.cells[fc.OTHER_SEEDS_METHOD].ratio <= 1.10 for row in rows) == ceiling_within


def test_a_task_without_its_data_gets_a_row_that_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the grid's losses cached, only the finders load the data (California Housing offline).
    monkeypatch.setattr(fc, "grid_reference", lambda task, cache: object())

    def offline(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("California Housing is not available offline")

    monkeypatch.setattr(fc, "suggestions", offline)
    (row,) = fc.compare([CHEAP], LossCache(None))
    assert row.reference is None
    assert row.unavailable == "California Housing is not available offline"
    assert "not available offline" in fc.format_table([row], "offline")

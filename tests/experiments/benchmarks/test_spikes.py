"""``lr-benchmark spikes``: its definitions on written-out traces, its injections, the split of its tasks, and runs
of a small task through every kind of row, scored and tabled."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments.benchmarks.spikes import runner, suite, zoo
from lr_callbacks import SpikeGuard

# --- definitions -------------------------------------------------------------------------------------------------


def test_a_real_spike_is_three_times_the_median_of_the_ten_steps_before_and_above_the_floor() -> None:
    trace = [10.0] * 10 + [1.0] * 10 + [3.0, 2.9, 1.0, 1.0, 0.6, 1.0, 30.0, 1.0, math.nan, 1.0]
    # 3.0 against a median of 1 (the falling start is out of the window); 2.9 is not; 30 is; NaN always is.
    assert zoo.real_spikes(trace) == {20: 3.0, 26: 30.0, 28: math.inf}
    # The floor: 0.05 of the first ten steps' median (10) is 0.5; a 3x step from 0.1 to 0.3 is below it.
    quiet = [10.0] * 10 + [0.1] * 10 + [0.3, 0.1, 0.7]
    assert zoo.real_spikes(quiet) == {22: pytest.approx(7.0)}
    assert [zoo.size_class(s) for s in (3.0, 4.99, 5.0, 19.9, 20.0, math.inf)] == [
        "3-5x", "3-5x", "5-20x", "5-20x", ">20x", ">20x",
    ]  # fmt: skip


def test_detection_reach_and_false_alarms() -> None:
    spikes = {20: 4.0, 40: 30.0}
    assert zoo.detected(spikes, [22, 39]) == {20: True, 40: False}
    reaches = [range(60, 63)]
    # 22 and 41 follow a real spike, 61 is an injection's reach; 10 and 70 are false alarms
    assert zoo.false_alarms(spikes, [10, 22, 41, 61, 70], reaches) == [10, 70]


def test_final_ratio_and_noise() -> None:
    assert zoo.final_ratio(0.02, 0.01, initial=2.0) == pytest.approx((0.02 + 0.04) / (0.01 + 0.04))
    assert zoo.final_ratio(math.inf, 0.01, 2.0) == math.inf
    assert zoo.final_ratio(math.nan, 0.01, 2.0) == math.inf
    assert zoo.no_worse(1.009, 1.0, noise=0.0)  # the noise is taken as at least 1 %
    assert not zoo.no_worse(1.02, 1.0, noise=0.005)
    assert zoo.no_worse(1.049, 1.0, noise=0.05)


# --- tasks and injections -----------------------------------------------------------------------------------------


def test_the_halves_are_disjoint_and_each_covers_every_optimizer_model_and_loss() -> None:
    assert len(zoo.DEV) == len(zoo.EVAL) == 8
    assert not set(zoo.DEV) & set(zoo.EVAL)
    assert set(zoo.DEV) | set(zoo.EVAL) == set(zoo.TASKS)
    for half in (zoo.DEV, zoo.EVAL):
        tasks = [zoo.TASKS[n] for n in half]
        assert {t.optimizer for t in tasks} == {"sgd", "sgd_momentum", "adam", "adamw", "rmsprop"}
        assert {t.loss for t in tasks} == {"mse", "cross_entropy", "bce"}
        kinds = {type(t.net()).__name__ for t in tasks}
        assert {"Linear", "Sequential", "SmallCNN", "AttentionClassifier"} <= kinds
        assert kinds & {"GRURegressor", "LSTMRegressor"}
        assert any(t.source.startswith("scikit-learn") for t in tasks)
        assert any(t.source == "California Housing" for t in tasks)
    autoencoders = [n for n in zoo.TASKS if "autoencoder" in n]
    assert {n in zoo.DEV for n in autoencoders} == {True, False}


def test_injections_are_drawn_per_task_and_seed_within_their_ranges() -> None:
    task = zoo.TASKS["moons_mlp_sgd"]
    batch = zoo.injections(task, "batch", 0)
    assert [i.kind for i in batch] == list(zoo.BATCH_KINDS)
    assert [i.step for i in batch] == [int(f * task.steps) for f in zoo.BATCH_FRACTIONS]
    assert all(2 <= i.magnitude <= 20 for i in batch if i.kind == "targets")
    assert all(5 <= i.magnitude <= 50 for i in batch if i.kind == "outlier")
    lr = zoo.injections(task, "lr", 1)
    assert [i.kind for i in lr] == ["lr", "lr"]
    assert all(3 <= i.magnitude <= 30 and 1 <= i.length <= 3 for i in lr)
    assert zoo.injections(task, "lr", 1) == lr
    assert zoo.injections(task, "lr", 0) != lr
    assert zoo.injections(task, "clean", 0) == []
    tokens = zoo.TASKS["majority_attention_adamw"]
    assert "outlier" not in {i.kind for i in zoo.injections(tokens, "batch", 0)}  # token inputs have no magnitude


@pytest.mark.parametrize("name", ["moons_mlp_sgd", "breast_cancer_logistic_adamw", "blobs_autoencoder_momentum"])
def test_each_corruption_changes_what_it_says(name: str) -> None:
    task = zoo.TASKS[name]
    (x, y), _ = task.split(0)
    batch = (x[:16], y[:16])
    g = torch.Generator().manual_seed(0)
    out = zoo.corrupt(task, zoo.Injection("outlier", 0, 20.0), batch, g)
    assert (out[0] != batch[0]).any(dim=1).sum() == 1  # one sample's inputs, the rest untouched
    assert torch.equal(out[1], batch[1])
    flipped = zoo.corrupt(task, zoo.Injection("flip", 0, 1.0), batch, g)[1]
    if task.loss == "cross_entropy":
        assert (flipped != batch[1]).all()
    elif task.loss == "bce":
        assert torch.equal(flipped, 1.0 - batch[1])
    else:
        assert torch.equal(flipped, -batch[1])
    assert not torch.equal(zoo.corrupt(task, zoo.Injection("targets", 0, 10.0), batch, g)[1], batch[1])
    assert torch.equal(batch[0], x[:16])  # never in place


# --- runs, scores and tables ----------------------------------------------------------------------------------


def _tiny_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(640, 4, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(640, 1, generator=g)


TINY = zoo.SpikeTask("tiny_linear_sgd", _tiny_data, lambda: nn.Linear(4, 1), "mse", "sgd", 0.05, 16, 200)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> zoo.SpikeTask:
    monkeypatch.setitem(zoo.TASKS, TINY.name, TINY)
    monkeypatch.setenv("LR_SPIKE_CACHE", str(tmp_path / "cache"))
    return TINY


def test_runs_trace_flag_and_count_what_they_report(tiny: zoo.SpikeTask) -> None:
    clean = runner.run(tiny, 0, "clean", ("none", None))
    assert len(clean.trace) == tiny.steps
    assert clean.flags == []
    assert 0 < clean.final < clean.initial
    guarded = runner.run(tiny, 0, "batch", ("guard", SpikeGuard))
    spikes = zoo.real_spikes(guarded.trace)
    injected = [i.step for i in zoo.injections(tiny, "batch", 0)]
    assert set(injected) <= set(spikes)  # every corrupted batch of this task is a real spike
    assert all(zoo.detected(spikes, guarded.flags).values())
    assert zoo.false_alarms(spikes, guarded.flags, [range(a, b) for a, b in guarded.reaches]) == []
    assert guarded.lost >= len(guarded.flags)
    assert guarded.hook_s is not None
    assert guarded.step_s is not None
    assert 0 < guarded.hook_s < guarded.step_s
    olmo = runner.run(tiny, 0, "batch", ("olmo", None))
    assert olmo.lost == len(olmo.flags)
    # cached: the same run read back
    again = runner.run(tiny, 0, "batch", ("guard", SpikeGuard))
    assert (again.trace, again.flags, again.final) == (guarded.trace, guarded.flags, guarded.final)


def test_a_restart_run_redoes_the_steps_since_its_checkpoint(tiny: zoo.SpikeTask) -> None:
    restarted = runner.run(tiny, 0, "batch", ("lightning", None))
    assert restarted.restarts >= 1
    assert restarted.lost > 0
    # the trace is every step executed: those redone after a restart appear again, the skipped batches do not
    assert len(restarted.trace) == len(restarted.steps) > tiny.steps
    assert Counter(restarted.steps).most_common(1)[0][1] >= 2


def test_the_table_has_a_row_per_configuration_and_a_column_per_figure(tiny: zoo.SpikeTask) -> None:
    names = [suite.UNGUARDED, suite.DEFAULT, "OLMo skip (mean + 6 sd of 128)"]
    scores, noise = suite.score_half((tiny.name,), names, seeds=(0,))
    text = suite.table(scores)
    rows = {
        name: re.search(re.escape(name) + r"\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text) for name in names
    }
    assert all(rows.values()), text
    default = rows[suite.DEFAULT]
    assert default is not None
    found, total = default.group(3).split("/")
    assert found == total != "0"  # every spike above 20x found
    assert default.group(4) == "0"  # no false alarm
    assert float(default.group(6)) < 1.05
    assert rows[suite.UNGUARDED] is not None
    assert rows[suite.UNGUARDED].group(4) == "-"
    per_task = suite.task_table(scores, noise)
    assert re.search(rf"{tiny.name}\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+yes", per_task), per_task


def test_cost_table_has_a_share_per_callback() -> None:
    table = suite.cost_table(repeats=1, steps=40)
    for name, make in suite.COST_CONFIGS.items():
        if make is None:
            continue
        row = re.search(re.escape(name) + r"\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)%", table)
        assert row is not None, table
        assert 0 < float(row.group(2)) < 10_000


@pytest.mark.slow
def test_the_documented_evaluation_half() -> None:
    """docs/benchmarks.md's evaluation table for the default: every real spike detected, no false alarm, and the
    tasks within 1.05x of their clean runs (about 20 minutes on two cores without the run cache)."""
    scores, _ = suite.score_half(zoo.EVAL, [suite.UNGUARDED, suite.DEFAULT])
    default = scores[suite.DEFAULT]
    assert all(found == total > 0 for found, total in default.found.values())
    assert default.alarms == 0
    within = {task for task, ratios in default.ratios.items() if max(ratios) <= 1.05}
    assert within == set(zoo.EVAL) - {"gratings_cnn_momentum", "first_last_attention_adam"}
    assert max(scores[suite.DEFAULT].ratios["first_last_attention_adam"]) < max(
        scores[suite.UNGUARDED].ratios["first_last_attention_adam"]
    )

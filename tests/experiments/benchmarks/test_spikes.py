"""``lr-benchmark spikes`` on a small task: the injected-spike table and the cost table, parsed back."""

from __future__ import annotations

import copy
import math
import random
import re

import torch

from experiments.benchmarks.spikes import suite as spikes
from experiments.benchmarks.spikes.tasks import LinearRegression, SpikeTask, quiet, run_lightning_restart, run_ours
from lr_callbacks.spike.detectors import TailDetector


def _small_regression() -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(1000, 1, generator=g)
    return (x[:800], y[:800]), (x[800:], y[800:])


SMALL = SpikeTask(
    "small",
    _small_regression,
    lambda: LinearRegression(4, lr=0.02),
    16,
    4,
    lambda b, g: (b[0], b[1] * 100.0),
    "linear regression, 200 steps",
    injections=("batch",),
)


def test_spike_table_rows_for_a_small_task() -> None:
    names = ("none", "lightning SpikeDetection + restart", "ours: step default (rollback)")
    with quiet():
        table = spikes.spike_table({"small": SMALL}, seeds=(0,), only=names)
    rows = {
        name: re.search(rf"small\s+batch\s+{re.escape(name)}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", table)
        for name in names
    }
    assert all(rows.values()), table
    none, ours = rows["none"], rows["ours: step default (rollback)"]
    assert none.group(4) == "-"
    assert float(none.group(1)) > 1.5
    assert ours.group(4) == "3/3"
    assert ours.group(5) == "0"
    assert float(ours.group(1)) < 1.05
    assert rows["lightning SpikeDetection + restart"].group(4) == "3/3"


def test_runs_count_what_they_report() -> None:
    with quiet():
        clean = run_ours(SMALL, "clean", 0, lambda: None)
        restarted = run_lightning_restart(SMALL, "batch", 0)
    assert clean.detected == clean.false_alarms == clean.steps_lost == 0
    # Each of the three injected batches made Lightning's run raise and restart from a checkpoint (every 50 steps).
    assert restarted.detected == 3
    assert restarted.restarts >= 3
    assert 3 <= restarted.steps_lost <= 3 * 50


def test_cost_table_has_a_share_per_callback() -> None:
    table = spikes.cost_table(repeats=1, steps=40)
    for name in spikes.COST_CONFIGS:
        if spikes.COST_CONFIGS[name] is None:
            continue
        row = re.search(re.escape(name) + r"\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)%\s+([0-9.]+)%", table)
        assert row is not None, table
        assert 0 < float(row.group(2)) < 10_000
        assert float(row.group(4)) <= float(row.group(3))


def test_separation_reports_where_clean_and_injected_steps_lie_from_the_bar() -> None:
    """On traces of one task: the clean run stays under the single-step bar, the injected batch is far above it, and an
    LR-like rise (1.3x for three steps) stays under it while its CUSUM crosses the sustained-rise level."""
    rng = random.Random(0)
    clean = [math.exp(0.05 * rng.gauss(0, 1)) for _ in range(120)]
    batch, lr = list(clean), list(clean)
    batch[100] *= 1000.0
    for k in (100, 101, 102):
        lr[k] *= 1.3
    traces = {
        ("toy", "clean", 0): (clean, [], []),
        ("toy", "batch", 0): (batch, [], [100]),
        ("toy", "lr", 0): (lr, [], [100]),
    }
    rows = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"toy\s+(\w[\w ]*?: \w+)\s+([0-9.]+)", spikes.separation(traces))
    }
    default = TailDetector()
    assert rows["clean: r"] < 1.5
    assert rows["clean: CUSUM"] < default.persist
    assert rows["injected batch: r"] > 10 * default.tail
    assert 1 < rows["LR injection: r"] < default.tail
    assert rows["LR injection: CUSUM"] > default.persist
    # The r the report computes is the one the detector decides on: one step beyond `tail` is a spike.
    trained = TailDetector()
    for x in clean:
        trained.check(x)
    level = math.exp(trained.mean)
    for ratio in (1.2, 1.5, 2.0, 5.0, 100.0):
        detector = copy.deepcopy(trained)
        r = spikes._excess_ratio(detector, ratio * level)
        assert detector.check(ratio * level) == (r > default.tail), ratio

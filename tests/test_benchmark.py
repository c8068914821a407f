"""``lr-benchmark`` prints one row per schedule with ratios against bare Lightning and a torch scheduler."""

from __future__ import annotations

import re

import pytest

from experiments import benchmark
from experiments.benchmarks.schedules import SCHEDULES


def test_schedule_benchmark_prints_a_ratio_row_per_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark.main(["schedules", "--steps", "40", "--repeats", "1"])
    out = capsys.readouterr().out
    number = r"\s+([0-9.]+)"
    for name in ["bare Lightning", "torch StepLR (interval=step)"]:
        row = re.search(re.escape(name) + number * 3, out)
        assert row is not None, out
    bare = re.search(r"bare Lightning" + number * 3, out)
    assert bare is not None and float(bare.group(2)) == 1.0
    for name in SCHEDULES:
        row = re.search(rf"^{name}\s" + number * 5 + "%", out, flags=re.MULTILINE)
        assert row is not None, f"no row for {name}:\n{out}"
        assert 0 < float(row.group(4)) < 1000  # hook microseconds per step


def test_unknown_suite_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        benchmark.main(["schedule"])
    assert "choose from ['schedules', 'finder', 'harness', 'spikes']" in capsys.readouterr().err

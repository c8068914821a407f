"""``lr-benchmark``: the schedules suite prints, per configuration, our hooks' time per step and the whole-step
ratio against the same number of empty callbacks."""

from __future__ import annotations

import re

import pytest

from experiments import benchmark
from experiments.benchmarks.schedules import SCHEDULES


def test_schedule_benchmark_prints_hook_time_and_step_ratio_per_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    benchmark.main(["schedules", "--steps", "40", "--repeats", "1"])
    out = capsys.readouterr().out
    number = r"\s+([0-9.]+)"
    bare = re.search(r"^bare Lightning" + number * 2, out, flags=re.MULTILINE)
    assert bare is not None, out
    assert float(bare.group(2)) == 1.0, out
    bare_us = float(bare.group(1))
    for name in SCHEDULES:
        row = re.search(rf"^{re.escape(name)}" + number * 2 + r"\s+(.+?)" + number * 2 + "%", out, flags=re.MULTILINE)
        assert row is not None, f"no row for {name}:\n{out}"
        step_us, ratio, baseline, hooks_us, share = row.groups()
        n_callbacks = name.count("+") + 1
        assert baseline.strip() == ("1 empty callback, logging" if name == "ReduceOnPlateau" else
                                    f"{n_callbacks} empty callback{'s' if n_callbacks > 1 else ''}")  # fmt: skip
        assert 0 < float(hooks_us) < float(step_us)
        assert float(share) == pytest.approx(float(hooks_us) / bare_us * 100, abs=0.02)
    # The four-callback row is broken down per callback.
    for part in ("CosineAnnealing", "Warmup", "SpikeAdaptiveLR", "SignAlternation"):
        assert re.search(rf"^  of which {part}" + number * 2 + "%", out, flags=re.MULTILINE), out


def test_unknown_suite_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        benchmark.main(["schedule"])
    assert f"choose from {list(benchmark.SUITES)}" in capsys.readouterr().err

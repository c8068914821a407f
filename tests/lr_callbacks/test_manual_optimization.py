"""Schedules and modifiers under manual optimization, with one optimizer and with two (GAN-style).

Under manual optimization Lightning's ``global_step`` counts every ``optimizer.step()`` of every
optimizer. ``interval="step"`` counts training steps instead (:func:`lr_callbacks.core.step_index`): one
per batch, the step Lightning's loggers use, whatever number of optimizers step in it.
"""

from __future__ import annotations

from typing import Any

import pytest
from lightning.pytorch.callbacks import LearningRateMonitor

from lr_callbacks import CosineAnnealing, StepDecay, Warmup
from tests.helpers.lr_cases import CASE_IDS, CASES, Case, PerOptimizerLRs, assert_lrs_close, fit_per_optimizer
from tests.helpers.memory_logger import MemoryLogger, lr_logs
from tests.helpers.tiny_manual import D_LRS, G_LR, ManualRegression, TinyGAN

BATCHES, EPOCHS = 5, 3


def _fit(module: Any, callbacks: list, **kwargs: Any) -> tuple[PerOptimizerLRs, Any]:
    return fit_per_optimizer(module, callbacks, EPOCHS, BATCHES, **kwargs)


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_two_optimizers_follow_the_reference_per_optimizer_and_group(case: Case, interval: str) -> None:
    recorder, trainer = _fit(TinyGAN(), [case.make(interval)])
    n = EPOCHS * BATCHES
    assert trainer.global_step == 2 * n  # Lightning counts both optimizers' steps ...
    times = case.times(interval, n, BATCHES)  # ... the schedule counts training steps
    assert_lrs_close(recorder.lrs[0], case.reference([G_LR], times))
    assert_lrs_close(recorder.lrs[1], case.reference(list(D_LRS), times))
    assert recorder.lr_types == {float}


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_manual_optimization_follows_the_reference_per_group(case: Case, interval: str) -> None:
    recorder, trainer = _fit(ManualRegression(), [case.make(interval)])
    n = EPOCHS * BATCHES
    assert trainer.global_step == n
    assert_lrs_close(recorder.lrs[0], case.reference(list(ManualRegression.BASE_LRS), case.times(interval, n, BATCHES)))


def test_step_interval_counts_batches_when_manual_steps_skip_some() -> None:
    """Lightning cannot see manual accumulation: a step is a batch, as for its loggers and
    ``estimated_stepping_batches``. Stepping every other batch, step ``k`` happens in batch ``2k + 1``."""
    recorder, trainer = _fit(ManualRegression(step_every=2), [StepDecay(2, 0.5, interval="step")], max_epochs=2)
    assert trainer.global_step == 4  # batches 1 and 3 of each 5-batch epoch
    batches = [1, 3, 6, 8]
    assert recorder.lrs[0] == [[b * 0.5 ** (k // 2) for b in ManualRegression.BASE_LRS] for k in batches]


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (TinyGAN, {"lr-Adam", "lr-Adam-1/weight", "lr-Adam-1/bias"}),
        (ManualRegression, {"lr-SGD/pg1", "lr-SGD/pg2"}),
    ],
)
def test_lrs_are_logged_as_lightning_learning_rate_monitor_logs_them(module: type, names: set[str]) -> None:
    """Our LR log of a run, and Lightning's ``LearningRateMonitor``'s log of the same run (which our callbacks then
    leave to it), are the same names, values and steps: the training-step index, not ``global_step``."""

    def logged(with_monitor: bool) -> tuple[dict[int, list[dict[str, float]]], Any]:
        logger = MemoryLogger()
        monitor = LearningRateMonitor(logging_interval="step")
        callbacks = [CosineAnnealing(T_max=10, interval="step"), Warmup(4, start_factor=0.5)]
        _fit(module(), [*callbacks, monitor] if with_monitor else callbacks, logger=logger, log_every_n_steps=1)
        return lr_logs(logger), monitor

    ours, _ = logged(with_monitor=False)
    lightning, monitor = logged(with_monitor=True)
    n = EPOCHS * BATCHES
    assert sorted(ours) == sorted(lightning) == list(range(n))
    for step in range(n):
        assert len(ours[step]) == len(lightning[step]) == 1, step  # each tag once per step
        assert set(ours[step][0]) == names
        assert ours[step] == lightning[step], step
    assert set(monitor.lrs) == names
    # And what was logged is what the optimizers stepped with.
    first = sorted(names)[0]
    assert [ours[k][0][first] for k in range(n)] == monitor.lrs[first]

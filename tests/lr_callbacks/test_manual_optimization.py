"""Schedules and modifiers under manual optimization, with one optimizer and with two (GAN-style).

Under manual optimization Lightning's ``global_step`` counts every ``optimizer.step()`` of every
optimizer. ``interval="step"`` counts training steps instead (:func:`lr_callbacks.core.step_index`): one
per batch, the step Lightning's loggers use, whatever number of optimizers step in it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger

from lr_callbacks import CosineAnnealing, SpikeAdaptiveLR, StepDecay, Warmup
from tests.helpers.lr_cases import CASE_IDS, CASES, Case, PerOptimizerLRs, assert_lrs_close, fit_per_optimizer
from tests.helpers.tiny_manual import D_LRS, G_LR, ManualRegression, TinyGAN

BATCHES, EPOCHS = 5, 3


class MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call as ``(step, metrics)``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass


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


def _lr_logs(logger: MemoryLogger) -> dict[int, list[dict[str, float]]]:
    by_step: dict[int, list[dict[str, float]]] = {}
    for step, metrics in logger.calls:
        lrs = {k: v for k, v in metrics.items() if k.startswith("lr-")}
        if lrs:
            assert step is not None
            by_step.setdefault(step, []).append(lrs)
    return by_step


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (TinyGAN, {"lr-Adam", "lr-Adam-1/weight", "lr-Adam-1/bias"}),
        (ManualRegression, {"lr-SGD/pg1", "lr-SGD/pg2"}),
    ],
)
def test_lrs_are_logged_as_lightning_learning_rate_monitor_logs_them(module: type, names: set[str]) -> None:
    """Each step, our LR log and Lightning's ``LearningRateMonitor`` log (placed after ours) are the same
    names, values and step: the training-step index, not ``global_step``."""
    logger = MemoryLogger()
    monitor = LearningRateMonitor(logging_interval="step")
    callbacks = [CosineAnnealing(T_max=10, interval="step"), Warmup(4, start_factor=0.5), monitor]
    recorder, trainer = _fit(module(), callbacks, logger=logger, log_every_n_steps=1)
    logs = _lr_logs(logger)
    n = EPOCHS * BATCHES
    assert sorted(logs) == list(range(n))
    for step, (ours, lightning) in logs.items():
        assert set(ours) == names
        assert ours == lightning, step
    assert set(monitor.lrs) == names
    # And what was logged is what the optimizers stepped with.
    first = sorted(names)[0]
    assert [logs[k][0][first] for k in range(n)] == monitor.lrs[first]


class _ManualSpiky(ManualRegression):
    """Returns (and logs) the loss 50x in epoch 1; the optimization itself is unchanged."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx) * (50.0 if self.current_epoch == 1 else 1.0)
        self.log("scaled_loss", loss, on_step=False, on_epoch=True)
        return loss


SPIKES = {
    # SpikeAdaptiveLR reads training_step's return value, or a logged metric through `monitor`.
    "two-optimizers-return": (lambda: TinyGAN(loss_scale={1: 50.0}), lambda: SpikeAdaptiveLR()),
    "two-optimizers-monitor": (lambda: TinyGAN(loss_scale={1: 50.0}), lambda: SpikeAdaptiveLR(monitor="g_loss_epoch")),
    "two-optimizers-rollback": (lambda: TinyGAN(loss_scale={1: 50.0}), lambda: SpikeAdaptiveLR(rollback=True)),
    "manual-return": (_ManualSpiky, lambda: SpikeAdaptiveLR()),
    "manual-monitor": (_ManualSpiky, lambda: SpikeAdaptiveLR(monitor="scaled_loss")),
}


@pytest.mark.parametrize("case", list(SPIKES))
def test_spike_reads_its_loss_under_manual_optimization(case: str) -> None:
    """The loss jumps 50-fold in epoch 1: every group of every optimizer runs at half LR from epoch 2."""
    make_module, make_spike = SPIKES[case]
    module, spike = make_module(), make_spike()
    recorder, trainer = _fit(module, [spike])
    halve = [1.0] * (2 * BATCHES) + [0.5] * BATCHES
    for opt, bases in enumerate([g["initial_lr"] for g in o.param_groups] for o in trainer.optimizers):
        assert recorder.lrs[opt] == [[b * h for b in bases] for h in halve]
    assert spike.spikes == [1]


def test_step_level_spike_under_two_optimizers() -> None:
    """Checked after every training step: the first 50x batch (batch 5) spikes, the LR halves from batch 6."""
    recorder, _ = _fit(
        TinyGAN(loss_scale={1: 50.0}), [SpikeAdaptiveLR(interval="step", detector="ratio", reactions="backoff")]
    )
    halve = [1.0] * 6 + [0.5] * (EPOCHS * BATCHES - 6)
    assert recorder.lrs[0] == [[G_LR * h] for h in halve]
    assert recorder.lrs[1] == [[lr * h for lr in D_LRS] for h in halve]

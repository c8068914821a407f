"""LR logging follows Lightning's own: the cadence and names of ``LearningRateMonitor`` with the matching torch
scheduler, and beside a ``LearningRateMonitor`` each tag is written once per step (ours leave it to the monitor)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from torch.optim import lr_scheduler as torch_sched

from lr_callbacks import StepDecay, Warmup
from tests.helpers.memory_logger import MemoryLogger, lr_logs
from tests.helpers.tiny import TinyRegression, loader, tiny_trainer

EPOCHS, BATCHES = 3, 8


class WithTorchScheduler(TinyRegression):
    """The tiny regression, returning a torch scheduler of ``interval`` from ``configure_optimizers``."""

    def __init__(self, make: Callable[[torch.optim.Optimizer], Any], interval: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.make, self.interval = make, interval

    def configure_optimizers(self) -> Any:
        optimizer = super().configure_optimizers()
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.make(optimizer), "interval": self.interval}}


def _logged(module: TinyRegression, callbacks: list[Callback], n: int) -> dict[int, list[dict[str, float]]]:
    """Each step's LR log calls, in order: ``{step: [{tag: lr}, ...]}``."""
    logger = MemoryLogger()
    torch.manual_seed(0)
    trainer = tiny_trainer(callbacks, max_epochs=EPOCHS, logger=logger, log_every_n_steps=n)
    trainer.fit(module, loader(n=8 * BATCHES))
    return lr_logs(logger)


def _torch_run(interval: str, n: int, monitor: LearningRateMonitor) -> dict[int, list[dict[str, float]]]:
    module = WithTorchScheduler(lambda o: torch_sched.StepLR(o, 2, 0.5), interval, base_lrs=(0.1, 0.03))
    return _logged(module, [monitor], n)


@pytest.mark.parametrize("n", [1, 2, 3, 50])
@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_our_log_is_the_learning_rate_monitors_with_the_torch_scheduler(interval: str, n: int) -> None:
    ours = _logged(TinyRegression(base_lrs=(0.1, 0.03)), [StepDecay(2, 0.5, interval=interval)], n)
    want = _torch_run(interval, n, LearningRateMonitor())
    assert ours == want
    if interval == "step" and n < EPOCHS * BATCHES:
        assert sorted(ours) == [k for k in range(EPOCHS * BATCHES) if (k + 1) % n == 0]
    if interval == "epoch":
        assert sorted(ours) == [e * BATCHES for e in range(EPOCHS)]


@pytest.mark.parametrize("n", [1, 2, 3, 50])
@pytest.mark.parametrize("logging_interval", ["step", "epoch"])
@pytest.mark.parametrize("interval", ["step", "epoch"])
@pytest.mark.parametrize("monitor_first", [True, False])
def test_beside_a_learning_rate_monitor_each_tag_is_written_once(
    interval: str, logging_interval: str, n: int, monitor_first: bool
) -> None:
    """Whatever the callbacks' order, the monitor logs beside ours what it logs beside torch's scheduler, and
    ours log nothing of their own: each tag once per step."""
    monitor = LearningRateMonitor(logging_interval=logging_interval)  # type: ignore[arg-type]
    ours = [StepDecay(2, 0.5, interval=interval), Warmup(3, start_factor=1.0, interval="step")]
    logged = _logged(TinyRegression(base_lrs=(0.1, 0.03)), [monitor, *ours] if monitor_first else [*ours, monitor], n)
    for step, calls in logged.items():
        assert len(calls) == 1, (step, calls)
    assert logged == _torch_run(interval, n, LearningRateMonitor(logging_interval=logging_interval))  # type: ignore[arg-type]

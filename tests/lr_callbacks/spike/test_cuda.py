"""SpikeGuard on a CUDA device: ``precision="16-mixed"`` with its GradScaler, and the device path's promise
of no host synchronisation between read-backs. Skipped where no GPU exists."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from lr_callbacks import SpikeGuard
from lr_callbacks.spike import TailDetector
from tests.helpers.spike import Scripted, StepProbe, identical
from tests.helpers.tiny import loader, tiny_trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SPIKE_AT = 15
STEPS = 24


def values(spike_at: int = SPIKE_AT) -> list[float]:
    return [1e3 if s == spike_at else 1.0 for s in range(STEPS)]


class ScalerProbe(StepProbe):
    """Also records the GradScaler's state before and after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.scaler_before: list[dict[str, Any]] = []
        self.scaler_after: list[dict[str, Any]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        super().on_train_batch_start(trainer, pl_module, *args)
        self.scaler_before.append(trainer.precision_plugin.scaler.state_dict())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        self.scaler_after.append(trainer.precision_plugin.scaler.state_dict())


def fit(callbacks: list[Any], model: pl.LightningModule, **kwargs: Any) -> pl.Trainer:
    trainer = tiny_trainer(
        callbacks, max_epochs=STEPS // 2, accelerator="gpu", devices=1, deterministic=False, **kwargs
    )
    trainer.fit(model, loader(n=16, batch_size=8))
    return trainer


@pytest.mark.parametrize(("reactions", "back_to"), [("skip", SPIKE_AT), ("rollback", SPIKE_AT - 1)])
def test_16_mixed_skip_and_rollback_restore_the_grad_scaler(reactions: str, back_to: int) -> None:
    spike = SpikeGuard(
        TailDetector(warmup=5), reactions=reactions, snapshot_every=1 if reactions == "rollback" else None
    )
    probe = ScalerProbe()
    torch.manual_seed(0)
    model = Scripted(values(), mode="scale", per_step=True, base_lrs=(0.05,), optimizer=torch.optim.Adam)
    fit([spike, probe], model, precision="16-mixed")
    assert spike.spikes == [SPIKE_AT]
    assert identical(probe.after[SPIKE_AT], probe.before[back_to])
    # The scaler's scale and growth tracker are those it had before that step, as if the batch never came.
    assert probe.scaler_after[SPIKE_AT] == probe.scaler_before[back_to]
    # An ordinary step moves the growth tracker, so the equality above is not for free.
    assert (
        probe.scaler_after[SPIKE_AT - 1]["_growth_tracker"] == probe.scaler_before[SPIKE_AT - 1]["_growth_tracker"] + 1
    )


class InfGradient(pl.Callback):
    """Makes one step's gradient infinite, so that the GradScaler skips that optimizer step."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step == self.at:
            next(pl_module.parameters()).grad.fill_(float("inf"))


def test_16_mixed_a_step_the_scaler_skips_still_counts_and_feeds_the_detector() -> None:
    spike = SpikeGuard(TailDetector(warmup=5), reactions=("skip", "backoff"))
    probe = ScalerProbe()
    torch.manual_seed(0)
    model = Scripted([1.0] * STEPS, mode="scale", per_step=True, base_lrs=(0.05,))
    trainer = fit([InfGradient(10), spike, probe], model, precision="16-mixed")
    assert trainer.global_step == STEPS  # the skipped step counted
    assert identical(probe.after[10], probe.before[10])  # the scaler skipped it
    assert probe.scaler_after[10]["scale"] == probe.scaler_before[10]["scale"] / 2  # and backed off
    assert spike.spikes == []
    assert spike.detector.state_dict()["count"] == STEPS


def _guard_syncs(spike: SpikeGuard, sync_every: int) -> None:
    """Turn every host synchronisation inside the callback's per-step hooks into an error, except read-backs."""

    def guard(hook: Any) -> Any:
        def wrapped(trainer: pl.Trainer, *args: Any) -> Any:
            reading_back = hook.__name__ == "on_train_batch_end" and (spike._step + 1) % sync_every == 0
            torch.cuda.set_sync_debug_mode(0 if reading_back else "error")
            try:
                return hook(trainer, *args)
            finally:
                torch.cuda.set_sync_debug_mode(0)

        return wrapped

    for name in ("on_before_backward", "on_before_optimizer_step", "on_train_batch_end", "on_train_batch_start"):
        setattr(spike, name, guard(getattr(spike, name)))


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        lambda params: torch.optim.Adam(params, lr=0.05, capturable=True),
    ],
    ids=["sgd-momentum", "adam-capturable"],
)
@pytest.mark.parametrize("reactions", ["skip", "rollback"])
def test_device_path_has_no_host_sync_and_matches_the_host_path(optimizer: Any, reactions: str) -> None:
    class Model(Scripted):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return optimizer(self.parameters())

    runs = []
    for sync_every in (1, 8):
        every = 2 if reactions == "rollback" else None
        spike = SpikeGuard(TailDetector(warmup=5), reactions=reactions, sync_every=sync_every, snapshot_every=every)
        if sync_every > 1:
            _guard_syncs(spike, sync_every)
        probe = StepProbe()
        torch.manual_seed(0)
        fit([spike, probe], Model(values(), mode="scale", per_step=True))
        runs.append((spike, probe))
    (host, host_probe), (device, device_probe) = runs
    assert device._on_device
    assert host.spikes == device.spikes == [SPIKE_AT]
    assert host.steps_lost == device.steps_lost
    assert all(identical(a, b) for a, b in zip(host_probe.after, device_probe.after))


def test_device_path_falls_back_to_host_reads_for_adam_step_counters_on_the_cpu() -> None:
    spike = SpikeGuard(TailDetector(warmup=5), reactions="skip", sync_every=8)
    probe = StepProbe()
    torch.manual_seed(0)
    model = Scripted(values(), mode="scale", per_step=True, base_lrs=(0.05,), optimizer=torch.optim.Adam)
    with pytest.warns(UserWarning, match="capturable"):
        fit([spike, probe], model)
    assert not spike._on_device
    assert spike.spikes == [SPIKE_AT]
    assert identical(probe.after[SPIKE_AT], probe.before[SPIKE_AT])

"""Mixed precision: the LRs are the reference's (and stay Python floats); a step the GradScaler skips
still counts as a training step.

bf16-mixed runs on CPU. The GradScaler tests run fp16 autocast with Lightning's ``MixedPrecision`` plugin
and a CPU ``GradScaler``, and with ``precision="16-mixed"`` on CUDA where a GPU exists.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.optim import lr_scheduler as torch_sched

from lr_callbacks import CosineAnnealing, ReduceOnPlateau, SignAlternation, SpikeAdaptiveLR, StepDecay, Warmup
from tests.helpers.lr_cases import CASE_IDS, CASES, Case, PerOptimizerLRs, assert_lrs_close, fit_per_optimizer
from tests.helpers.tiny import TinyRegression
from tests.helpers.tiny_manual import D_LRS, G_LR, TinyGAN

BASE_LRS = (0.1, 0.03)
BATCHES, EPOCHS = 5, 3


def _fit(module: Any, callbacks: list, **kwargs: Any) -> tuple[PerOptimizerLRs, Any]:
    return fit_per_optimizer(module, callbacks, EPOCHS, BATCHES, **kwargs)


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bf16_mixed_gives_the_reference_lrs(case: Case, interval: str) -> None:
    recorder, _ = _fit(TinyRegression(base_lrs=BASE_LRS), [case.make(interval)], precision="bf16-mixed")
    n = EPOCHS * BATCHES
    assert_lrs_close(recorder.lrs[0], case.reference(list(BASE_LRS), case.times(interval, n, BATCHES)))
    assert recorder.lr_types == {float}


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("sgdr", "one-cycle", "warmup", "sign")], ids=str)
def test_bf16_mixed_two_optimizers_give_the_reference_lrs(case: Case) -> None:
    recorder, _ = _fit(TinyGAN(), [case.make("step")], precision="bf16-mixed")
    times = case.times("step", EPOCHS * BATCHES, BATCHES)
    assert_lrs_close(recorder.lrs[0], case.reference([G_LR], times))
    assert_lrs_close(recorder.lrs[1], case.reference(list(D_LRS), times))
    assert recorder.lr_types == {float}


class _Scripted(TinyRegression):
    """Logs a scripted per-epoch metric, so that the plateau decisions do not depend on bf16 rounding."""

    SCRIPT = [5.0, 4.0, 4.0, 4.5, 2.0, 2.0]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.log("scripted", self.SCRIPT[self.current_epoch], on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)


def test_bf16_mixed_plateau_matches_torch() -> None:
    recorder, _ = _fit(_Scripted(base_lrs=BASE_LRS), [ReduceOnPlateau("scripted", factor=0.5, patience=0)],
                       precision="bf16-mixed", max_epochs=len(_Scripted.SCRIPT))  # fmt: skip
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASE_LRS]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS)])
    reference = torch_sched.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    want = []
    for value in _Scripted.SCRIPT:
        want += [[g["lr"] for g in optimizer.param_groups]] * BATCHES
        reference.step(value)
    assert recorder.lrs[0] == want
    assert want[-1] != want[0]
    assert recorder.lr_types == {float}


class _Bumped(TinyRegression):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y) * (40.0 if self.current_epoch == 1 else 1.0)


def test_bf16_mixed_spike_halves_after_the_spiking_epoch() -> None:
    recorder, _ = _fit(_Bumped(base_lrs=BASE_LRS), [SpikeAdaptiveLR(), SignAlternation()], precision="bf16-mixed")
    scale = [1.0, 1.0, 0.5]
    sign = [1.0, -1.0, 1.0]
    epochs = [k // BATCHES for k in range(EPOCHS * BATCHES)]
    assert recorder.lrs[0] == [[b * scale[e] * sign[e] for b in BASE_LRS] for e in epochs]
    assert recorder.lr_types == {float}


# --- a step the GradScaler skips ----------------------------------------------------------------------------

SKIP_AT = 3  # the global step whose gradient is made infinite


class _InfGradientAt(TinyRegression):
    """A finite loss whose gradient is infinite at step ``SKIP_AT``: the GradScaler skips that update."""

    def __init__(self) -> None:
        super().__init__(base_lrs=BASE_LRS)
        self.weights: list[torch.Tensor] = []

    def on_after_backward(self) -> None:
        if self.trainer.global_step == SKIP_AT:
            self.layer.weight.grad.fill_(float("inf"))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.weights.append(self.layer.weight.detach().clone())


STEP_SCHEDULES = {
    "step-decay": (lambda: [StepDecay(2, 0.5, interval="step")], lambda k: 0.5 ** (k // 2)),
    "warmup-cosine": (
        lambda: [CosineAnnealing(T_max=16, interval="step"), Warmup(4, start_factor=0.25)],
        lambda k: 0.5 * (1 + math.cos(math.pi * k / 16)) * min(1.0, 0.25 + 0.75 * k / 4),
    ),
}


def _assert_skip_counts_as_a_step(recorder: PerOptimizerLRs, module: _InfGradientAt, trainer: Any, factor: Any) -> None:
    n = 2 * BATCHES
    assert trainer.global_step == n  # Lightning counts the skipped step ...
    assert len(recorder.lrs[0]) == n
    for k, row in enumerate(recorder.lrs[0]):  # ... and so does the schedule: step k runs at t = k
        assert row == pytest.approx([b * factor(k) for b in BASE_LRS], rel=1e-12)
    assert torch.equal(module.weights[SKIP_AT], module.weights[SKIP_AT - 1])  # the update itself was skipped
    assert not torch.equal(module.weights[SKIP_AT + 1], module.weights[SKIP_AT])


@pytest.mark.parametrize("schedule", list(STEP_SCHEDULES))
def test_a_step_the_grad_scaler_skips_still_advances_a_step_schedule(schedule: str) -> None:
    make, factor = STEP_SCHEDULES[schedule]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    module = _InfGradientAt()
    recorder, trainer = _fit(module, make(), max_epochs=2, plugins=[MixedPrecision("16-mixed", "cpu", scaler)])
    _assert_skip_counts_as_a_step(recorder, module, trainer, factor)
    assert scaler.get_scale() == 2.0**3  # halved once, at the skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="precision='16-mixed' with a CUDA GradScaler needs a GPU")
@pytest.mark.parametrize("schedule", list(STEP_SCHEDULES))
def test_cuda_16_mixed_skipped_step_still_advances_a_step_schedule(schedule: str) -> None:
    make, factor = STEP_SCHEDULES[schedule]
    module = _InfGradientAt()
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**4)
    plugin = MixedPrecision("16-mixed", "cuda", scaler)
    recorder, trainer = _fit(module, make(), max_epochs=2, accelerator="gpu", devices=1, plugins=[plugin])
    _assert_skip_counts_as_a_step(recorder, module, trainer, factor)
    assert scaler.get_scale() == 2.0**3


def test_bf16_mixed_spike_rollback_with_two_optimizers() -> None:
    recorder, _ = _fit(TinyGAN(loss_scale={1: 50.0}), [SpikeAdaptiveLR(rollback=True)], precision="bf16-mixed")
    halve = [1.0] * (2 * BATCHES) + [0.5] * BATCHES
    assert recorder.lrs[0] == [[G_LR * h] for h in halve]
    assert recorder.lrs[1] == [[lr * h for lr in D_LRS] for h in halve]

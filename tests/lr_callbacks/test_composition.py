"""Modifiers composed with a schedule: order independence, and exact resume from a mid-training checkpoint."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from lr_callbacks import CosineAnnealing, SignAlternation, SpikeAdaptiveLR, SpikeGuard, Warmup
from lr_callbacks.spike import TailDetector
from tests.helpers.tiny import LRRecorder, TinyRegression, loader, tiny_trainer


class Bumpy(TinyRegression):
    """Tiny regression whose loss is multiplied by a per-epoch factor, so spikes come when we want them."""

    def __init__(self, bumps: dict[int, float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bumps = bumps or {}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y) * self.bumps.get(self.current_epoch, 1.0)


# --- order independence ------------------------------------------------------------------------------------


def _four() -> list[Callback]:
    # Factors that round: a warmup in sevenths, sqrt(0.5) per spike, -0.3 on odd epochs. Their product
    # depends on the order it is taken in, so only the canonical order makes every callback order agree.
    return [
        CosineAnnealing(T_max=16, eta_min=1e-3, interval="step"),
        Warmup(7, start_factor=0.1),
        SpikeAdaptiveLR(decay="sqrt"),
        SignAlternation(negative_scale=0.3),
    ]


def test_lr_sequence_is_identical_in_every_callback_order() -> None:
    """24 orders of schedule + warmup + spike + sign: the same LRs and weights to the bit."""
    runs = []
    for order in itertools.permutations(range(4)):
        callbacks = _four()
        torch.manual_seed(0)
        model = Bumpy({1: 50.0}, base_lrs=(0.5, 0.2))
        recorder = LRRecorder()
        tiny_trainer([callbacks[i] for i in order] + [recorder], max_epochs=4).fit(model, loader(n=32))
        spike = callbacks[2]
        assert isinstance(spike, SpikeAdaptiveLR)
        runs.append((recorder.lrs, [p.detach().clone() for p in model.parameters()], spike.spikes))
    lrs, weights, spikes = runs[0]
    assert 1 in spikes, "the loss bump of epoch 1 must make a spike"
    for other_lrs, other_weights, other_spikes in runs[1:]:
        assert other_lrs == lrs
        assert other_spikes == spikes
        assert all(torch.equal(a, b) for a, b in zip(weights, other_weights))
    # And the LR is the one rule, cosine(t) x warmup(t) x spike scale x sign, computed here independently.
    steps_per_epoch = 4
    for t, row in enumerate(lrs):
        epoch = t // steps_per_epoch
        scale = math.sqrt(0.5) ** sum(s < epoch for s in spikes)
        sign = 1.0 if epoch % 2 == 0 else -0.3
        warm = min(1.0, 0.1 + 0.9 * t / 7)
        for base, lr in zip((0.5, 0.2), row):
            cosine = 1e-3 + 0.5 * (base - 1e-3) * (1 + math.cos(math.pi * t / 16))
            assert lr == pytest.approx(cosine * warm * scale * sign, rel=1e-12)


# --- resume ------------------------------------------------------------------------------------------------

RESUME_CASES: dict[str, Callable[[], list[Callback]]] = {
    "warmup-step": lambda: [Warmup(20, start_factor=0.1)],
    "warmup-epoch-cosine": lambda: [Warmup(4, interval="epoch", shape="cosine")],
    "sign": lambda: [SignAlternation(period=2, negative_scale=0.5)],
    "sign-step": lambda: [SignAlternation(period=3, interval="step")],
    "spike": lambda: [SpikeAdaptiveLR(recovery_patience=2)],
    "spike-step-ema": lambda: [SpikeGuard(TailDetector(threshold=1.05, ema=0.5))],
    "spike-rollback": lambda: [SpikeAdaptiveLR(rollback=True)],
    "all-four": _four,
}
EPOCHS, RESUME_AFTER = 6, 2  # resume from the checkpoint written at the end of epoch index 2
BUMPS = {1: 3.0, 4: 20.0}  # spikes after epochs 1 and 4, one on each side of the checkpoint


def _fit(callbacks: list[Callback], tmp_path: Path, ckpt_path: str | None = None) -> tuple[LRRecorder, Bumpy]:
    torch.manual_seed(0)
    model = Bumpy(BUMPS, base_lrs=(0.05, 0.02), momentum=0.9)
    recorder = LRRecorder()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    trainer = tiny_trainer(
        [*callbacks, recorder, checkpoint], max_epochs=EPOCHS, enable_checkpointing=True, default_root_dir=tmp_path
    )
    trainer.fit(model, loader(), ckpt_path=ckpt_path)
    return recorder, model


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_continues_the_same_lr_sequence(case: str, tmp_path: Path) -> None:
    callbacks = RESUME_CASES[case]()
    full, full_model = _fit(callbacks, tmp_path)
    resumed_callbacks = RESUME_CASES[case]()  # fresh instances: all state comes from the checkpoint
    ckpt = tmp_path / f"epoch={RESUME_AFTER}.ckpt"
    resumed, resumed_model = _fit(resumed_callbacks, tmp_path, ckpt_path=str(ckpt))

    done = (RESUME_AFTER + 1) * 8  # optimizer steps before the checkpoint
    assert len(resumed.lrs) == len(full.lrs) - done
    assert resumed.lrs == full.lrs[done:]
    assert all(torch.equal(a, b) for a, b in zip(full_model.parameters(), resumed_model.parameters()))
    for before, after in zip(callbacks, resumed_callbacks):
        assert after.state_dict().keys() == before.state_dict().keys()
        if isinstance(before, SpikeAdaptiveLR):
            assert after.spikes == before.spikes
            assert after.scales == before.scales
            if case in ("spike", "spike-rollback", "all-four"):
                assert before.spikes
                assert before.spikes[-1] > RESUME_AFTER

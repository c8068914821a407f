"""SpikeAdaptiveLR resumed from a checkpoint taken mid-epoch (``ModelCheckpoint(every_n_train_steps=...)``).

Each test trains once without stopping while a ``ModelCheckpoint`` saves every few steps, then resumes a fresh
model and callback from a mid-epoch checkpoint. The resumed run must use the same LR at every later optimizer
step, reach the same spike decisions and, since the loader is resumable, end with bitwise the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lr_callbacks import SpikeAdaptiveLR, SpikeGuard
from lr_callbacks.spike import Backoff, TailDetector
from tests.helpers.spike import ResumableLoader, Scripted, StepProbe, identical
from tests.helpers.tiny import tiny_trainer

pytestmark = pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")

BATCHES = 4  # per epoch: 32 samples, batch 8


def resume_pair(
    make: Callable[[], SpikeAdaptiveLR], values: list[float], resume_at: int, epochs: int, tmp_path: Path, **kw: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The uninterrupted run and the run resumed from its checkpoint after ``resume_at`` optimizer steps."""
    runs = []
    for ckpt_path in (None, tmp_path / f"step={resume_at}.ckpt"):
        torch.manual_seed(0)
        model = Scripted(values, mode="scale", per_step=True, base_lrs=(0.05,), optimizer=torch.optim.Adam)
        spike, probe = make(), StepProbe()
        callbacks: list[Any] = [spike, probe]
        if ckpt_path is None:
            callbacks.append(ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1))
        trainer = tiny_trainer(callbacks, max_epochs=epochs, enable_checkpointing=ckpt_path is None, **kw)
        trainer.fit(model, ResumableLoader(n=32, batch_size=8), ckpt_path=ckpt_path)
        runs.append({"spike": spike, "probe": probe, "model": model, "trainer": trainer})
    return runs[0], runs[1]


def assert_same_continuation(full: dict[str, Any], resumed: dict[str, Any], resume_at: int) -> None:
    assert resumed["probe"].lrs == full["probe"].lrs[resume_at:]  # the LR of every later optimizer step
    assert resumed["spike"].spikes == full["spike"].spikes
    assert resumed["spike"].steps_lost == full["spike"].steps_lost
    assert resumed["spike"].scales == full["spike"].scales
    after = [identical(a, b) for a, b in zip(resumed["probe"].after, full["probe"].after[resume_at:])]
    assert all(after)
    assert len(after) == len(full["probe"].after) - resume_at


def callback_state(path: Path) -> dict[str, Any]:
    checkpoint = torch.load(path, weights_only=False)
    return next(v for k, v in checkpoint["callbacks"].items() if k.startswith(("SpikeAdaptiveLR", "SpikeGuard")))


def test_epoch_rule_resumes_with_the_partial_epoch_loss(tmp_path: Path) -> None:
    # Epoch 1 is loud in its first three batches only: its mean spikes against epoch 0 only if those three,
    # summed before the checkpoint at step 7, survive the resume.
    values = [1.0] * 4 + [4.0, 4.0, 4.0, 1.0] + [1.0] * 16
    full, resumed = resume_pair(lambda: SpikeAdaptiveLR(), values, resume_at=7, epochs=6, tmp_path=tmp_path)
    state = callback_state(tmp_path / "step=7.ckpt")
    assert state["loss_count"] == 3
    assert state["loss_sum"] > 0
    assert full["spike"].spikes == [1]
    assert_same_continuation(full, resumed, 7)
    assert full["probe"].lrs[8] == [0.025]
    assert full["probe"].lrs[7] == [0.05]


def test_step_level_rollback_and_pending_recovery_resume(tmp_path: Path) -> None:
    """A rollback and backoff before the checkpoint, a recovery pending at it, a second spike after it."""
    values = [1.0] * 32
    values[9] = values[17] = 1e3

    def make() -> SpikeGuard:
        return SpikeGuard(
            TailDetector(warmup=3),
            reactions=("rollback", "backoff"),
            backoff=Backoff(recovery_patience=4),
            snapshot_every=1,
        )

    full, resumed = resume_pair(make, values, resume_at=11, epochs=8, tmp_path=tmp_path)
    state = callback_state(tmp_path / "step=11.ckpt")
    assert state["calm"] == 1
    assert state["scales"] == [[0.5]]
    assert state["snapshot"]["step"] == 10
    assert full["spike"].spikes == [9, 17]
    lrs = [row[0] for row in full["probe"].lrs]
    assert lrs[10:14] == [0.025] * 4
    assert lrs[14] == 0.05
    assert_same_continuation(full, resumed, 11)


def test_rollback_right_after_resume_uses_the_checkpointed_copy(tmp_path: Path) -> None:
    values = [1.0] * 24
    values[9] = values[11] = 1e3  # step 11 is the first after the resume

    def make() -> SpikeGuard:
        return SpikeGuard(TailDetector(warmup=3), reactions="rollback", snapshot_every=1)

    full, resumed = resume_pair(make, values, resume_at=11, epochs=6, tmp_path=tmp_path)
    assert full["spike"].spikes == [9, 11]
    assert identical(full["probe"].after[11], full["probe"].before[10])  # the copy from before step 10
    assert_same_continuation(full, resumed, 11)


def test_step_level_device_path_resumes_with_decisions_not_yet_read_back(tmp_path: Path) -> None:
    values = [1.0] * 24
    values[8] = 1e3

    def make() -> SpikeGuard:
        return SpikeGuard(TailDetector(warmup=3), reactions=("skip", "backoff"), sync_every=6)

    full, resumed = resume_pair(make, values, resume_at=9, epochs=6, tmp_path=tmp_path)
    state = callback_state(tmp_path / "step=9.ckpt")
    assert state["pending"]["slots"][0]["t"] == 8
    assert state["pending"]["flags"][0] == [1.0]
    lrs = [row[0] for row in full["probe"].lrs]
    assert lrs[11] == 0.05
    assert lrs[12] == 0.025
    assert_same_continuation(full, resumed, 9)


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_resume_under_bf16_mixed(tmp_path: Path, interval: str) -> None:
    values = [1.0] * 4 + [4.0, 4.0, 4.0, 1.0] + [1.0] * 8
    values[13] = 1e3

    def make() -> SpikeAdaptiveLR | SpikeGuard:
        if interval == "epoch":
            return SpikeAdaptiveLR(rollback=True)
        return SpikeGuard(TailDetector(warmup=3), reactions="rollback", snapshot_every=2)

    full, resumed = resume_pair(make, values, resume_at=6, epochs=4, tmp_path=tmp_path, precision="bf16-mixed")
    assert full["spike"].spikes
    assert_same_continuation(full, resumed, 6)

"""The finder under mixed precision: bf16 autocast on CPU, and a GradScaler whose skipped steps the restore undoes.

With ``"16-mixed"`` a GradScaler multiplies the loss before ``backward``; when the scaled gradients overflow it skips
that optimizer step and halves its scale. A sweep towards large LRs overflows on purpose, so the scaler's state
(scale and growth tracker) is part of what the finder restores. On CPU the test builds Lightning's
``MixedPrecision("16-mixed", "cpu")`` plugin itself (the Trainer flag maps CPU fp16 to bf16); the CUDA test runs
the real ``precision="16-mixed"`` path where a GPU exists.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision

from lr_callbacks import LRFinder, Race
from tests.helpers.finder import Probe, assert_identical, bn_regression, shuffled_loader
from tests.helpers.tiny import tiny_trainer


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def finder_for_restore() -> LRFinder:
    return LRFinder(
        num_steps=20, max_lr=1e4, apply=False, run_at_start=False, suggestion=Race(budget_steps=60, candidates=3)
    )


@pytest.mark.parametrize("fail_in", [None, "race"])
def test_bf16_mixed_on_cpu_restores_everything(fail_in: str | None) -> None:
    model = bn_regression(torch.optim.AdamW, weight_decay=0.1)
    finder = finder_for_restore()
    probe = Probe(finder, epoch=1, fail_at=None if fail_in is None else 30)
    trainer = tiny_trainer([probe], max_epochs=2, precision="bf16-mixed")
    trainer.fit(model, shuffled_loader())
    assert type(trainer.precision_plugin).__name__ == "MixedPrecision"
    assert trainer.precision_plugin.precision == "bf16-mixed"
    assert_identical(probe.before, probe.after)
    if fail_in is None:
        assert finder.result is not None
        assert finder.result.race_lrs
    else:
        assert probe.error is not None
        assert "injected" in str(probe.error)


@pytest.mark.parametrize("fail_in", [None, "race"])
def test_grad_scaler_state_is_restored_after_skipped_steps(fail_in: str | None) -> None:
    model = bn_regression(torch.optim.SGD, momentum=0.9)
    scales: list[float] = []
    original = model.training_step

    def recording_step(batch: Any, batch_idx: int) -> torch.Tensor:
        scales.append(model.trainer.precision_plugin.scaler.get_scale())
        return original(batch, batch_idx)

    model.training_step = recording_step  # type: ignore[method-assign]
    finder = finder_for_restore()
    probe = Probe(finder, epoch=1, fail_at=None if fail_in is None else 30)
    trainer = tiny_trainer([probe], max_epochs=2, plugins=[MixedPrecision("16-mixed", "cpu")])
    trainer.fit(model, shuffled_loader())

    assert probe.before is not None
    assert "scaler" in probe.before
    start = probe.before["scaler"]["scale"]
    during = scales[8 : 8 + (finder.result.cost_steps if finder.result else 30)]
    assert min(during) < start, "the sweep overflowed and the scaler skipped steps"
    assert_identical(probe.before, probe.after)
    assert scales[-8] == start  # epoch 1 starts from the restored scale


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed with a GradScaler needs a CUDA device")
def test_cuda_16_mixed_restores_the_scaler_and_everything_else() -> None:
    model = bn_regression(torch.optim.Adam)
    finder = finder_for_restore()
    probe = Probe(finder, epoch=1, fail_at=30)
    trainer = tiny_trainer([probe], max_epochs=2, accelerator="cuda", precision="16-mixed", deterministic=False)
    trainer.fit(model, shuffled_loader())
    assert trainer.precision_plugin.scaler is not None
    assert probe.before is not None
    assert "scaler" in probe.before
    assert "cuda_rng" in probe.before
    assert probe.error is not None
    assert "injected" in str(probe.error)
    assert_identical(probe.before, probe.after)

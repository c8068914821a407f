"""Resuming from a checkpoint taken mid-epoch: the same LR at every later step, and bitwise the same weights.

The harness's ``IndexBatchLoader`` implements Lightning's resumable-loader protocol, so a resumed run sees
the rest of the interrupted epoch, in the same shuffled order, and Lightning does not warn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from experiments.data.batching import IndexBatchLoader
from lr_callbacks import CosineAnnealing, ReduceOnPlateau, SignAlternation, SpikeAdaptiveLR, SpikeGuard, Warmup
from lr_callbacks.spike import RatioDetector
from tests.helpers.lr_cases import CASE_IDS, CASES, Case, PerOptimizerLRs
from tests.helpers.tiny import TinyRegression, regression_data, tiny_trainer
from tests.helpers.tiny_manual import TinyGAN

N, BATCH, EPOCHS = 40, 8, 4  # 5 batches per epoch, 20 batches in all
NOT_RESUMABLE = "dataloader is not resumable"


def _loader(shuffle: bool = True) -> IndexBatchLoader:
    return IndexBatchLoader(regression_data(N).tensors, batch_size=BATCH, shuffle=shuffle, seed=3)


def _val_loader() -> IndexBatchLoader:
    return IndexBatchLoader(regression_data(16, seed=1).tensors, batch_size=8)


def _fit(
    make_callbacks: Callable[[], list[Callback]],
    make_module: Callable[[], Any],
    ckpt_dir: Path,
    ckpt_path: Path | None = None,
    train_loader: Callable[[], Any] = _loader,
    save_every: dict[str, int] | None = None,
    **kwargs: Any,
) -> tuple[PerOptimizerLRs, Any, list[str], list[Callback]]:
    """Fit, saving ``step=<global step>.ckpt`` files as ``save_every`` says (ModelCheckpoint's arguments)."""
    torch.manual_seed(0)
    module = make_module()
    recorder = PerOptimizerLRs()
    checkpoint = ModelCheckpoint(ckpt_dir, filename="{step}", save_top_k=-1, **(save_every or {"every_n_epochs": 0}))
    callbacks = make_callbacks()
    trainer = tiny_trainer(
        [*callbacks, recorder, checkpoint], enable_checkpointing=True, **{"max_epochs": EPOCHS, **kwargs}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        val = {"val_dataloaders": _val_loader()} if kwargs.get("limit_val_batches") else {}
        trainer.fit(module, train_loader(), ckpt_path=ckpt_path, **val)
    return recorder, module, [str(w.message) for w in caught], callbacks


def _assert_resumes_exactly(
    make_callbacks: Callable[[], list[Callback]],
    make_module: Callable[[], Any],
    tmp_path: Path,
    global_step: int,
    steps_done: int,
    **kwargs: Any,
) -> list[Callback]:
    """Resume from ``step=<global_step>.ckpt``, taken after ``steps_done`` training steps; return the
    uninterrupted run's callbacks."""
    full, full_module, _, callbacks = _fit(
        make_callbacks, make_module, tmp_path / "full", save_every={"every_n_train_steps": global_step}, **kwargs
    )
    ckpt = tmp_path / "full" / f"step={global_step}.ckpt"
    resumed, module, messages, _ = _fit(make_callbacks, make_module, tmp_path / "resumed", ckpt_path=ckpt, **kwargs)
    assert not [m for m in messages if NOT_RESUMABLE in m]
    assert resumed.lrs.keys() == full.lrs.keys()
    for opt, lrs in full.lrs.items():
        assert len(resumed.lrs[opt]) == len(lrs) - steps_done > 0
        assert resumed.lrs[opt] == lrs[steps_done:], f"optimizer {opt}"
    for a, b in zip(full_module.parameters(), module.parameters(), strict=True):
        assert torch.equal(a, b)
    return callbacks


def _regression() -> TinyRegression:
    return TinyRegression(base_lrs=(0.1, 0.03), momentum=0.9)


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_resume_mid_epoch_continues_exactly(case: Case, interval: str, tmp_path: Path) -> None:
    """Checkpoint after step 7 (batch 3 of 5 in epoch 1)."""
    _assert_resumes_exactly(lambda: [case.make(interval)], _regression, tmp_path, global_step=7, steps_done=7)


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_two_optimizers_resume_mid_epoch_exactly(case: Case, interval: str, tmp_path: Path) -> None:
    """Manual optimization: ``global_step`` counts both optimizers, so step 14 is after batch 7 (epoch 1)."""
    _assert_resumes_exactly(lambda: [case.make(interval)], TinyGAN, tmp_path, global_step=14, steps_done=7)


def test_resume_mid_epoch_under_gradient_accumulation(tmp_path: Path) -> None:
    """Accumulating 2 batches: 3 optimizer steps per 5-batch epoch; step 4 is inside epoch 1."""

    def callbacks() -> list[Callback]:
        return [CASES[CASE_IDS.index("sgdr")].make("step"), Warmup(5), SignAlternation(interval="step")]

    _assert_resumes_exactly(callbacks, _regression, tmp_path, global_step=4, steps_done=4, accumulate_grad_batches=2)


PLATEAU_EXACT = {
    # A step metric is read after each step: nothing of it is lost at a resume.
    "step-train-loss": lambda: ReduceOnPlateau("train_loss_step", mode="max", factor=0.5, patience=1, interval="step"),
    # A validation metric is computed whole at the epoch's end.
    "epoch-val-loss": lambda: ReduceOnPlateau("val_loss", mode="max", factor=0.5, patience=0),
}


@pytest.mark.parametrize("case", list(PLATEAU_EXACT))
def test_plateau_resumes_mid_epoch_exactly(case: str, tmp_path: Path) -> None:
    make = PLATEAU_EXACT[case]
    kwargs = {"limit_val_batches": 1.0} if "val" in case else {}
    _assert_resumes_exactly(lambda: [make()], _regression, tmp_path, global_step=7, steps_done=7, **kwargs)
    full, _, _, _ = _fit(lambda: [make()], _regression, tmp_path / "again", **kwargs)
    assert len(set(map(tuple, full.lrs[0]))) > 2, "the run must reduce the LR more than once"


class _Spiky(TinyRegression):
    """The regression loss, 30x in epoch 1 and 60x in epoch 2: spikes at the ends of epochs 1 and 2."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y) * SPIKY[self.current_epoch]


SPIKY = {0: 1.0, 1: 30.0, 2: 60.0, 3: 1.0}
SPIKE_CASES: dict[str, Callable[[], list[Callback]]] = {
    "spike": lambda: [SpikeAdaptiveLR()],
    "spike-step-ema": lambda: [SpikeGuard(RatioDetector(threshold=1.05, ema=0.5), reactions="backoff")],
    "spike-rollback": lambda: [SpikeAdaptiveLR(rollback=True)],
    "four": lambda: [
        CosineAnnealing(T_max=20, interval="step"),
        Warmup(5, start_factor=0.1),
        SpikeAdaptiveLR(decay="sqrt"),
        SignAlternation(negative_scale=0.3),
    ],
}


@pytest.mark.parametrize("module", ["regression", "two-optimizers"])
@pytest.mark.parametrize("case", list(SPIKE_CASES))
def test_spike_resumes_mid_epoch_exactly(case: str, module: str, tmp_path: Path) -> None:
    """The checkpoint falls inside the first spiking epoch; spikes follow on both sides of it."""
    if module == "regression":
        make, global_step = (lambda: _Spiky(base_lrs=(0.1, 0.03), momentum=0.9)), 7
    else:
        make, global_step = (lambda: TinyGAN(loss_scale=SPIKY)), 14
    callbacks = _assert_resumes_exactly(SPIKE_CASES[case], make, tmp_path, global_step=global_step, steps_done=7)
    (spike,) = [c for c in callbacks if isinstance(c, (SpikeAdaptiveLR, SpikeGuard))]
    assert spike.spikes
    assert spike.spikes[-1] >= (2 if spike.interval == "epoch" else 10)


def _plateau_on_train_aggregate() -> list[Callback]:
    return [ReduceOnPlateau("train_loss_epoch", mode="max", factor=0.5, patience=0)]


@pytest.mark.parametrize(
    ("save_every", "global_step", "warning"),
    [
        ({"every_n_train_steps": 7}, 7, "covers only the batches after the resume"),  # inside epoch 1
        ({"every_n_train_steps": 5}, 5, "does not run the end of epoch 0"),  # at epoch 0's last batch end
        ({"every_n_epochs": 1}, 10, None),  # at epoch 1's end
    ],
)
def test_plateau_warns_at_a_resume_it_cannot_continue_exactly(
    save_every: dict[str, int], global_step: int, warning: str | None, tmp_path: Path
) -> None:
    """Lightning keeps no partial epoch aggregate of ``train_loss_epoch``, and skips the end of an epoch
    whose last batch was checkpointed; an end-of-epoch checkpoint resumes exactly and quietly."""
    full, _, _, _ = _fit(_plateau_on_train_aggregate, _regression, tmp_path / "full", save_every=save_every)
    ckpt = tmp_path / "full" / f"step={global_step}.ckpt"
    resumed, _, messages, _ = _fit(_plateau_on_train_aggregate, _regression, tmp_path / "resumed", ckpt_path=ckpt)
    ours = [m for m in messages if m.startswith("ReduceOnPlateau")]
    if warning is None:
        assert ours == []
        assert resumed.lrs[0] == full.lrs[0][global_step:]
        assert full.lrs[0][-1] != full.lrs[0][0], "the run must reduce the LR"
    else:
        assert len(ours) == 1
        assert warning in ours[0]


def test_a_plain_dataloader_resumed_mid_epoch_is_not_resumable(tmp_path: Path) -> None:
    """The control for the absent warning above: Lightning warns for a loader without the protocol."""
    plain = lambda: DataLoader(regression_data(N), batch_size=BATCH)
    _fit(lambda: [], _regression, tmp_path / "full", train_loader=plain, save_every={"every_n_train_steps": 7})
    ckpt = tmp_path / "full" / "step=7.ckpt"
    _, _, messages, _ = _fit(lambda: [], _regression, tmp_path / "r", ckpt_path=ckpt, train_loader=plain)
    assert [m for m in messages if NOT_RESUMABLE in m]


def test_a_harness_task_and_datamodule_resume_mid_epoch_exactly(tmp_path: Path) -> None:
    """The experiment suite's own pieces: linear regression on a shuffled ``LinearDataModule``, validated each
    epoch, with a schedule, two modifiers and a plateau on the validation loss."""
    from functools import partial

    from experiments.data import LinearDataModule
    from experiments.tasks import LinearRegressionTask

    def fit(ckpt_dir: Path, ckpt_path: Path | None = None) -> tuple[PerOptimizerLRs, Any, list[str]]:
        torch.manual_seed(0)
        task = LinearRegressionTask(optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9))
        data = LinearDataModule(n=N, noise=0.3, batch_size=BATCH, eval_batch_size=16, n_eval=16, seed=5)
        recorder = PerOptimizerLRs()
        callbacks = [
            CosineAnnealing(T_max=25, interval="step"),
            Warmup(4),
            SignAlternation(interval="step", period=3, negative_scale=0.3),
            recorder,
            ModelCheckpoint(ckpt_dir, filename="{step}", save_top_k=-1, every_n_train_steps=7),
        ]
        trainer = tiny_trainer(callbacks, max_epochs=EPOCHS, enable_checkpointing=True, limit_val_batches=1.0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(task, datamodule=data, ckpt_path=ckpt_path)
        return recorder, task, [str(w.message) for w in caught]

    full, full_task, _ = fit(tmp_path / "full")
    resumed, task, messages = fit(tmp_path / "resumed", tmp_path / "full" / "step=7.ckpt")
    assert not [m for m in messages if NOT_RESUMABLE in m]
    assert resumed.lrs[0] == full.lrs[0][7:]
    for a, b in zip(full_task.parameters(), task.parameters(), strict=True):
        assert torch.equal(a, b)

"""SpikeGuard and SpikeAdaptiveLR under DDP (2 CPU processes, gloo): a spike on one rank, handled by both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from lr_callbacks import SpikeAdaptiveLR, SpikeGuard
from lr_callbacks.spike import TailDetector
from tests.helpers.spike import ResumableLoader
from tests.helpers.tiny import TinyRegression, loader

SPIKE_AT = 11  # optimizer step at which rank 1's batch is corrupted


class OneRankSpike(TinyRegression):
    """MSE on each rank; rank 1's loss of one step is multiplied by 1000 (a corrupted batch on that rank only)."""

    def __init__(self, spike_at: int = SPIKE_AT, factor: float = 1e3, scripted: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spike_at, self.factor, self.scripted = spike_at, factor, scripted

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        if self.scripted:  # the loss is 1 (the factor at the spike) and the weights do not move
            loss = 0.0 * loss + 1.0
        if self.global_rank == 1 and self.trainer.global_step == self.spike_at:
            loss = loss * self.factor
        return loss


class Report(Callback):
    """Writes this rank's LRs, spike decisions and weights around every step to a JSON file."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.lrs: list[list[float]] = []
        self.before: list[list[float]] = []
        self.after: list[list[float]] = []

    def _weights(self, pl_module: pl.LightningModule) -> list[float]:
        return [v for p in pl_module.parameters() for v in p.detach().flatten().tolist()]

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.before.append(self._weights(pl_module))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.lrs.append([g["lr"] for g in optimizer.param_groups])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.after.append(self._weights(pl_module))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        spike = next(cb for cb in trainer.callbacks if isinstance(cb, (SpikeAdaptiveLR, SpikeGuard)))
        data = {
            "lrs": self.lrs,
            "before": self.before,
            "after": self.after,
            "spikes": spike.spikes,
            "steps_lost": spike.steps_lost,
            "scales": spike.scales,
            "detector": spike.detector.state_dict(),
        }
        (Path(self.out_dir) / f"rank{trainer.global_rank}.json").write_text(json.dumps(data))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning leaves a gloo group alive at worker exit, where its threads can abort the process.
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def ddp_trainer(callbacks: list[Callback], tmp_path: Path, epochs: int, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=epochs,
        callbacks=callbacks,
        default_root_dir=str(tmp_path),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        **kwargs,
    )


def test_one_rank_spike_is_skipped_and_backed_off_on_every_rank(tmp_path: Path) -> None:
    spike = SpikeGuard(TailDetector(warmup=3), reactions=("skip", "backoff", "record"))
    trainer = ddp_trainer([spike, Report(str(tmp_path))], tmp_path, epochs=8, enable_checkpointing=False)
    # 32 samples, batch 8, 2 ranks: 2 steps per epoch.
    trainer.fit(OneRankSpike(base_lrs=(0.05,), optimizer=torch.optim.SGD, momentum=0.9), loader(n=32, batch_size=8))

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank in ranks:
        assert rank["spikes"] == [SPIKE_AT]
        assert rank["steps_lost"] == 1
        assert rank["after"][SPIKE_AT] == rank["before"][SPIKE_AT]  # the update was dropped on this rank too
        assert rank["after"][SPIKE_AT + 1] != rank["before"][SPIKE_AT + 1]
        lrs = [row[0] for row in rank["lrs"]]
        assert lrs == [0.05] * (SPIKE_AT + 1) + [0.025] * (len(lrs) - SPIKE_AT - 1)
    assert ranks[0] == ranks[1]  # same LRs, weights at every step, statistics
    # Rank 0 alone writes the skip file: step 11 is epoch 5's batch 1.
    assert json.loads((tmp_path / "skip_batches.json").read_text()) == [1]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_ddp_epoch_rule_resumes_mid_epoch_with_the_partial_sums_of_all_ranks(tmp_path: Path) -> None:
    """A mid-epoch checkpoint keeps the partial epoch sum of both ranks; the resumed LRs equal the full run's."""
    runs = []
    for name, ckpt in (("full", None), ("resumed", tmp_path / "full" / "step=11.ckpt")):
        out = tmp_path / name
        out.mkdir()
        callbacks: list[Callback] = [SpikeAdaptiveLR(), Report(str(out))]
        if ckpt is None:
            callbacks.append(ModelCheckpoint(dirpath=out, filename="{step}", every_n_train_steps=11, save_top_k=-1))
        trainer = ddp_trainer(callbacks, out, epochs=3, enable_checkpointing=ckpt is None)
        # The loader is not sharded: 8 steps per epoch on each rank. Rank 1's step 10 (epoch 1) spikes; the
        # checkpoint after step 11 holds it in rank 1's partial sum only.
        model = OneRankSpike(spike_at=10, factor=100.0, scripted=True, base_lrs=(0.05,))
        trainer.fit(model, ResumableLoader(n=64, batch_size=8), ckpt_path=ckpt)
        runs.append([json.loads((out / f"rank{r}.json").read_text()) for r in range(2)])
    full, resumed = runs
    assert full[0]["spikes"] == [1]
    for r in range(2):
        assert resumed[r]["lrs"] == full[r]["lrs"][11:]
        assert resumed[r]["detector"] == full[r]["detector"]

"""Under DDP (2 CPU processes, gloo) every rank takes the same spike decision and keeps the same LR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from lr_callbacks import SignAlternation, SpikeAdaptiveLR, Warmup
from tests.helpers.tiny import TinyRegression, loader

# Each rank's epoch loss. Alone, rank 0 would spike after epochs 1 and 4 and rank 1 after 2 and 3; their
# mean (1, 1.15, 1.3, 1.25, 1.25, 1.25) spikes after epochs 1 and 2 only.
LOCAL_LOSSES = [[1.0, 1.3, 1.3, 1.0, 1.5, 1.5], [1.0, 1.0, 1.3, 1.5, 1.0, 1.0]]
MEAN_SPIKES = [1, 2]


class PerRankLoss(TinyRegression):
    """The step loss is a per-rank, per-epoch constant (plus a zero-weight real loss so DDP has gradients)."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        value = LOCAL_LOSSES[self.global_rank][self.current_epoch]
        # The same value as a rank-local logged metric (no sync_dist): the callback has to reduce it.
        self.log("local", torch.tensor(value, dtype=torch.float64), on_step=False, on_epoch=True)
        return 0.0 * nn.functional.mse_loss(self(x), y).double() + value


class Report(Callback):
    """Writes this rank's LRs (every step) and its spike decisions (every epoch end) to a JSON file."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.step_lrs: list[list[float]] = []
        self.epoch_end: list[dict[str, Any]] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.step_lrs.append([g["lr"] for g in optimizer.param_groups])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        spike = next(cb for cb in trainer.callbacks if isinstance(cb, SpikeAdaptiveLR))
        lrs = [g["lr"] for g in trainer.optimizers[0].param_groups]
        self.epoch_end.append({"lrs": lrs, "spikes": list(spike.spikes), "baseline": spike.baseline})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = {"world_size": trainer.world_size, "step_lrs": self.step_lrs, "epoch_end": self.epoch_end}
        (Path(self.out_dir) / f"rank{trainer.global_rank}.json").write_text(json.dumps(data))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning leaves a gloo group alive at worker exit, where its threads can abort the process.
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.mark.filterwarnings("ignore:.*sync_dist=True.*")
@pytest.mark.parametrize(
    "monitor",
    [None, pytest.param("local", marks=pytest.mark.slow)],  # one spawn costs ~15-20 s on 2 cores
    ids=["step-losses", "logged-metric"],
)
def test_ddp_ranks_agree_on_spikes_and_lrs(monitor: str | None, tmp_path: Path) -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=len(LOCAL_LOSSES[0]),
        callbacks=[SpikeAdaptiveLR(monitor=monitor), SignAlternation(period=2), Warmup(3), Report(str(tmp_path))],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(PerRankLoss(base_lrs=(0.1, 0.03)), loader(n=32, batch_size=8))  # 2 batches per rank per epoch

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["epoch_end"] == ranks[1]["epoch_end"]
    assert ranks[0]["step_lrs"] == ranks[1]["step_lrs"]
    assert ranks[0]["epoch_end"][-1]["spikes"] == MEAN_SPIKES
    assert ranks[0]["epoch_end"][-1]["baseline"] == pytest.approx(1.25)
    # The LR each epoch ends with: base x warmup at its last step x the epoch's sign x the spike scale
    # already updated from the mean loss.
    want_scale = [1.0, 0.5, 0.25, 0.25, 0.25, 0.25]
    for epoch, row in enumerate(ranks[0]["epoch_end"]):
        warm = min(1.0, (2 * epoch + 1) / 3)
        sign = 1.0 if (epoch // 2) % 2 == 0 else -1.0
        want = [b * warm * sign * want_scale[epoch] for b in (0.1, 0.03)]
        assert row["lrs"] == pytest.approx(want, rel=1e-12)

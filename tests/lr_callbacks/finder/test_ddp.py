"""Under DDP (2 CPU processes, gloo) the finder records one curve, runs the same races and applies one suggestion on
every rank."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lr_callbacks import LRFinder, Race
from tests.helpers.tiny import TinyRegression, loader


class Report(Callback):
    """Writes this rank's finder result and applied base LRs to a JSON file."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        finder = next(cb for cb in trainer.callbacks if isinstance(cb, LRFinder))
        assert finder.result is not None
        data = {
            "world_size": trainer.world_size,
            "losses": finder.result.losses,
            "race_scores": finder.result.race_scores,
            "suggestion": finder.result.suggestion,
            "initial_lrs": [g["initial_lr"] for g in trainer.optimizers[0].param_groups],
        }
        (Path(self.out_dir) / f"rank{trainer.global_rank}.json").write_text(json.dumps(data))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning leaves a gloo group alive at worker exit, where its threads can abort the process.
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class RankShiftedLoss(TinyRegression):
    """Each rank's loss differs (rank 1 adds an offset), so a rank-local curve would differ too."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return super().training_step(batch, batch_idx) * (1.0 + self.global_rank)


@pytest.mark.filterwarnings("ignore:.*sync_dist=True.*")
def test_ddp_ranks_share_the_curve_and_the_suggestion(tmp_path: Path) -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=1,
        callbacks=[
            LRFinder(num_steps=30, max_lr=1.0, save_png=False, suggestion=Race(budget_steps=70)),
            Report(str(tmp_path)),
        ],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(RankShiftedLoss(base_lrs=(0.1, 0.03)), loader(n=64, batch_size=8))

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert len(ranks[0]["losses"]) >= 6
    assert ranks[0]["losses"] == ranks[1]["losses"]
    assert len(ranks[0]["race_scores"]) >= 5
    assert ranks[0]["race_scores"] == ranks[1]["race_scores"]
    assert ranks[0]["suggestion"] == ranks[1]["suggestion"]
    assert ranks[0]["initial_lrs"] == ranks[1]["initial_lrs"]
    suggestion = ranks[0]["suggestion"]
    assert ranks[0]["initial_lrs"] == pytest.approx([suggestion, suggestion * 0.3], rel=1e-12)

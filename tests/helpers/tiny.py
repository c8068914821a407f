"""A tiny real Lightning setup shared by the callback tests: a linear model, in-memory data, an LR recorder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from experiments.benchmarks.timing import BARE_TRAINER


class TinyRegression(pl.LightningModule):
    """``y = w.x + b`` with MSE. With ``base_lrs`` of length 2, weight and bias are separate param groups."""

    def __init__(
        self,
        base_lrs: Sequence[float] = (0.1,),
        optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.SGD,
        n_features: int = 3,
        **optimizer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.layer = nn.Linear(n_features, 1)
        self.base_lrs = list(base_lrs)
        self.optimizer_cls = optimizer
        self.optimizer_kwargs = optimizer_kwargs
        self.step_losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.step_losses.append(loss.item())
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if len(self.base_lrs) == 1:
            groups = [{"params": self.parameters(), "lr": self.base_lrs[0]}]
        else:
            groups = [
                {"params": [self.layer.weight], "lr": self.base_lrs[0]},
                {"params": [self.layer.bias], "lr": self.base_lrs[1]},
            ]
        # The constructor refuses a negative lr; the group keeps the requested one afterwards.
        optimizer = self.optimizer_cls(
            [{**g, "lr": abs(g["lr"])} for g in groups], lr=abs(self.base_lrs[0]), **self.optimizer_kwargs
        )
        for group, wanted in zip(optimizer.param_groups, groups):
            group["lr"] = wanted["lr"]
        return optimizer


def regression_data(n: int = 64, n_features: int = 3, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_features, generator=g)
    y = x @ torch.arange(1.0, n_features + 1).unsqueeze(1) + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def loader(n: int = 64, batch_size: int = 8, seed: int = 0) -> DataLoader:
    return DataLoader(regression_data(n, seed=seed), batch_size=batch_size, shuffle=False)


class LRRecorder(Callback):
    """Records every param group's LR as the optimizer steps (after all callbacks have written it)."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.lrs.append([g["lr"] for g in optimizer.param_groups])


def tiny_trainer(callbacks: Sequence[Callback], **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = dict(
        max_epochs=3, **BARE_TRAINER, num_sanity_val_steps=0, limit_val_batches=0, deterministic=True
    )
    options.update(kwargs)
    return pl.Trainer(callbacks=list(callbacks), **options)

"""Linear regression: one linear layer trained on MSE."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import MeanSquaredError, MetricCollection, R2Score

from experiments.tasks.base import BaseTask, OptimizerFactory


class LinearRegressionTask(BaseTask):
    """``y_hat = W x + b`` with MSE loss; RMSE and R² (torchmetrics) on validation and test.

    Logs ``train/loss`` (epoch mean), ``{val,test}/loss``, ``{val,test}/rmse`` and ``{val,test}/r2``.

    Args:
        in_features: number of input features.
        init_std: weights start at ``N(0, init_std²)`` (the seed uses 0.01); the bias at 0.
        optimizer: optimizer factory (see :class:`BaseTask`).

    Raises:
        ValueError: if ``in_features`` < 1 or ``init_std`` < 0.

    >>> task = LinearRegressionTask(in_features=3)
    >>> tuple(task(torch.zeros(5, 3)).shape)
    (5, 1)
    """

    def __init__(self, in_features: int = 1, init_std: float = 0.01, optimizer: OptimizerFactory | None = None) -> None:
        super().__init__(optimizer)
        if in_features < 1:
            raise ValueError(f"`in_features` must be >= 1, got {in_features}.")
        if init_std < 0:
            raise ValueError(f"`init_std` must be >= 0, got {init_std}.")
        self.linear = nn.Linear(in_features, 1)
        with torch.no_grad():
            self.linear.weight.normal_(0.0, init_std)
            self.linear.bias.zero_()
        metrics = MetricCollection({"rmse": MeanSquaredError(squared=False), "r2": R2Score()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.linear(x), y)  # not self(x): one module call less per step
        self.log_train_loss(loss, len(x))
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str, metrics: MetricCollection) -> None:
        x, y = batch
        pred = self(x)
        self.log(f"{stage}/loss", nn.functional.mse_loss(pred, y), batch_size=len(x))
        metrics.update(pred.squeeze(1), y.squeeze(1))
        self.log_dict(metrics)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_metrics)

"""Shared base of the tasks: the optimizer comes in from the config, LR control from callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from experiments.history import HistoryRecorder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class BaseTask(pl.LightningModule):
    """A LightningModule whose optimizer is a factory (a Hydra ``_partial_`` optimizer).

    Tasks never set or schedule the learning rate: that is the job of the callbacks list.
    Every fit's per-epoch metrics and LRs are recorded in ``self.recorder`` (subclasses that
    override the hooks below call ``super()``).

    Args:
        optimizer: callable mapping parameters to an optimizer; ``None`` means
            ``torch.optim.SGD(lr=0.01)``.
    """

    def __init__(self, optimizer: OptimizerFactory | None = None) -> None:
        super().__init__()
        self.optimizer_factory: OptimizerFactory = optimizer or partial(torch.optim.SGD, lr=0.01)
        self.train_loss = MeanMetric()
        self._step_losses: list[Tensor] = []
        self._step_sizes: list[int] = []
        self.recorder = HistoryRecorder()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())

    def on_fit_start(self) -> None:
        self.recorder.reset()

    def on_train_epoch_start(self) -> None:
        self.train_loss.reset()
        self._step_losses, self._step_sizes = [], []
        self.recorder.epoch_start()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.recorder.before_optimizer_step(self.trainer, optimizer)

    def on_validation_epoch_end(self) -> None:
        self.recorder.validation_end(self.trainer)

    def on_train_epoch_end(self) -> None:
        self.recorder.epoch_end(self.trainer)

    def log_train_loss(self, loss: Tensor, batch_size: int) -> None:
        """Accumulates the epoch's batch-size-weighted mean training loss and logs it as ``train/loss``.

        ``self.log`` and a metric update each cost more than a small model's whole step, so
        the step losses are buffered and handed to the ``MeanMetric`` (and to ``self.log``)
        once, on the epoch's last batch. Lightning computes and resets the metric at epoch
        end, before callbacks read ``train/loss``.
        """
        self._step_losses.append(loss.detach())
        self._step_sizes.append(batch_size)
        if self.trainer.is_last_batch:
            weights = torch.tensor(self._step_sizes, dtype=loss.dtype, device=loss.device)
            self.train_loss.update(torch.stack(self._step_losses), weights)
            self._step_losses, self._step_sizes = [], []
            self.log("train/loss", self.train_loss, on_step=False, on_epoch=True)

    def summary_metrics(self) -> dict[str, float]:
        """Task-specific scalar results reported next to the logged metrics (e.g. convergence epoch)."""
        return {}

    def summary_history(self) -> dict[str, list[float]]:
        """Task-specific curves stored in ``metrics.json`` (e.g. optimizer trajectories)."""
        return {}

    def figures(self) -> dict[str, Figure]:
        """Task-specific figures logged to TensorBoard and saved as PNG."""
        return {}

"""Shared base of the tasks: the optimizer comes in from the config, LR control from callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING

import lightning.pytorch as pl
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class BaseTask(pl.LightningModule):
    """A LightningModule whose optimizer is a factory (a Hydra ``_partial_`` optimizer).

    Tasks never set or schedule the learning rate: that is the job of the callbacks list.

    Args:
        optimizer: callable mapping parameters to an optimizer; ``None`` means
            ``torch.optim.SGD(lr=0.01)``.
    """

    def __init__(self, optimizer: OptimizerFactory | None = None) -> None:
        super().__init__()
        self.optimizer_factory: OptimizerFactory = optimizer or partial(torch.optim.SGD, lr=0.01)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())

    def summary_metrics(self) -> dict[str, float]:
        """Task-specific scalar results reported next to the logged metrics (e.g. convergence epoch)."""
        return {}

    def summary_history(self) -> dict[str, list[float]]:
        """Task-specific curves stored in ``metrics.json`` (e.g. optimizer trajectories)."""
        return {}

    def figures(self) -> dict[str, Figure]:
        """Task-specific figures logged to TensorBoard and saved as PNG."""
        return {}

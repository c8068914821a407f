"""Autoencoder for continual learning: pretrain on task A, then adapt to task B."""

from __future__ import annotations

import math
from typing import cast

from torch import Tensor, nn
from torchmetrics import MeanMetric

from experiments.tasks.base import BaseTask, OptimizerFactory


class ContinualAutoencoderTask(BaseTask):
    """``input_dim → hidden_dim → input_dim`` autoencoder with MSE reconstruction loss.

    Training runs in two phases, one ``Trainer.fit`` each (driven by ``experiments.train``):
    ``"pretrain"`` on task A, then ``"adapt"`` on task B (see :meth:`set_phase`). Validation
    serves both tasks every epoch (dataloader 0 = A, 1 = B) and logs ``val/loss_A`` and
    ``val/loss_B``. Results (:meth:`summary_metrics`):

    - ``epochs_to_adapt``: the first adapt epoch (1-based count) whose task-B loss is
      ``<= adapt_threshold``; NaN if it never gets there.
    - ``forgetting``: task-A loss after adapting minus task-A loss at the end of pretraining
      (positive = forgotten).

    Args:
        input_dim: input (and output) dimension.
        hidden_dim: bottleneck width.
        adapt_threshold: task-B loss that counts as adapted.
        output_activation: ``"sigmoid"`` or ``"identity"`` on the decoder output.
        optimizer: optimizer factory of the first phase (see :class:`BaseTask`).

    Raises:
        ValueError: on a non-positive size or threshold, or an unknown activation / phase.

    >>> ContinualAutoencoderTask(input_dim=6, hidden_dim=2)(torch.zeros(3, 6)).shape
    torch.Size([3, 6])
    """

    ACTIVATIONS = ("sigmoid", "identity")
    PHASES = ("pretrain", "adapt")
    TASKS = ("A", "B")

    def __init__(
        self,
        input_dim: int = 784,
        hidden_dim: int = 64,
        adapt_threshold: float = 0.02,
        output_activation: str = "sigmoid",
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(optimizer)
        if input_dim < 1 or hidden_dim < 1:
            raise ValueError(f"`input_dim` and `hidden_dim` must be >= 1, got {input_dim}, {hidden_dim}.")
        if adapt_threshold <= 0:
            raise ValueError(f"`adapt_threshold` must be > 0, got {adapt_threshold}.")
        if output_activation not in self.ACTIVATIONS:
            raise ValueError(f"`output_activation` must be one of {self.ACTIVATIONS}, got {output_activation!r}.")
        out = nn.Sigmoid() if output_activation == "sigmoid" else nn.Identity()
        self.encoder = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(hidden_dim, input_dim), out)
        self.adapt_threshold = adapt_threshold
        self.phase = "pretrain"
        self.eval_loss = nn.ModuleList([MeanMetric(), MeanMetric()])
        # task-A/B losses at the end of each phase, and the adapt epoch that reached the threshold
        self.phase_end_loss: dict[str, dict[str, float]] = {}
        self.epochs_to_adapt: int | None = None

    def set_phase(self, phase: str, optimizer: OptimizerFactory | None = None) -> None:
        """Starts ``phase`` (``"pretrain"`` or ``"adapt"``), optionally with a new optimizer factory."""
        if phase not in self.PHASES:
            raise ValueError(f"`phase` must be one of {self.PHASES}, got {phase!r}.")
        self.phase = phase
        if optimizer is not None:
            self.optimizer_factory = optimizer

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def training_step(self, batch: tuple[Tensor], batch_idx: int) -> Tensor:
        (x,) = batch
        loss = nn.functional.mse_loss(self(x), x)
        self.log_train_loss(loss, len(x))
        return loss

    def _eval_step(self, batch: tuple[Tensor], stage: str, dataloader_idx: int) -> None:
        (x,) = batch
        # nn.ModuleList types its items as Module; this one holds a MeanMetric per task
        metric = cast(MeanMetric, self.eval_loss[dataloader_idx])
        metric.update(nn.functional.mse_loss(self(x), x), weight=len(x))
        self.log(f"{stage}/loss_{self.TASKS[dataloader_idx]}", metric, add_dataloader_idx=False)

    def validation_step(self, batch: tuple[Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "val", dataloader_idx)

    def test_step(self, batch: tuple[Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "test", dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking:
            return
        losses = {task: float(cast(MeanMetric, m).compute()) for task, m in zip(self.TASKS, self.eval_loss)}
        self.phase_end_loss[self.phase] = losses  # the last validation of a phase wins
        if self.phase == "adapt" and self.epochs_to_adapt is None and losses["B"] <= self.adapt_threshold:
            self.epochs_to_adapt = self.current_epoch + 1

    def summary_metrics(self) -> dict[str, float]:
        """End-of-phase losses, ``epochs_to_adapt`` and ``forgetting`` (NaN when a phase never validated)."""
        pre, post = self.phase_end_loss.get("pretrain"), self.phase_end_loss.get("adapt")
        out: dict[str, float] = {}
        for phase, losses in (("pretrain", pre), ("adapt", post)):
            for task in self.TASKS:
                out[f"{phase}/loss_{task}"] = (losses or {}).get(task, math.nan)
        out["epochs_to_adapt"] = math.nan if self.epochs_to_adapt is None else float(self.epochs_to_adapt)
        out["forgetting"] = out["adapt/loss_A"] - out["pretrain/loss_A"]
        return out

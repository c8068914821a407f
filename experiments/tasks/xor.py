"""XOR MLP 2 → H → 1 with ReLU and BCE-with-logits, recording when it converges."""

from __future__ import annotations

import math

from torch import Tensor, nn
from torchmetrics.classification import BinaryAccuracy

from experiments.tasks.base import BaseTask, OptimizerFactory


class XORTask(BaseTask):
    """MLP for XOR; optional BatchNorm after the hidden layer and He (Kaiming) init.

    After every training epoch the convergence criterion is checked on the epoch's mean
    training loss and training accuracy: it holds when every given condition holds
    (``loss < converge_loss``, ``accuracy >= converge_accuracy``). The first epoch (0-based)
    where it holds is reported as ``convergence_epoch`` (NaN if never).

    Args:
        hidden_dim: width H of the hidden layer.
        batch_norm: insert ``BatchNorm1d(H)`` before the ReLU.
        he_init: Kaiming-normal init of the weights (fan_in, ReLU gain), zero biases.
        converge_loss: loss threshold of the criterion; ``None`` to ignore the loss.
        converge_accuracy: accuracy the criterion requires; ``None`` to ignore accuracy.
        optimizer: optimizer factory (see :class:`BaseTask`).

    Raises:
        ValueError: if ``hidden_dim`` < 1, or both criteria are ``None``, or
            ``converge_accuracy`` is outside ``[0, 1]``.

    >>> XORTask(hidden_dim=3)(torch.zeros(4, 2)).shape
    torch.Size([4, 1])
    """

    def __init__(
        self,
        hidden_dim: int = 4,
        batch_norm: bool = False,
        he_init: bool = False,
        converge_loss: float | None = 0.1,
        converge_accuracy: float | None = 1.0,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(optimizer)
        if hidden_dim < 1:
            raise ValueError(f"`hidden_dim` must be >= 1, got {hidden_dim}.")
        if converge_loss is None and converge_accuracy is None:
            raise ValueError("At least one of `converge_loss` and `converge_accuracy` must be set.")
        if converge_accuracy is not None and not 0.0 <= converge_accuracy <= 1.0:
            raise ValueError(f"`converge_accuracy` must be in [0, 1], got {converge_accuracy}.")
        layers: list[nn.Module] = [nn.Linear(2, hidden_dim)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(), nn.Linear(hidden_dim, 1)]
        self.net = nn.Sequential(*layers)
        if he_init:
            for m in self.net:
                if isinstance(m, nn.Linear):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        self.converge_loss = converge_loss
        self.converge_accuracy = converge_accuracy
        self.convergence_epoch: int | None = None
        self.train_acc = BinaryAccuracy()
        self.val_acc, self.test_acc = BinaryAccuracy(), BinaryAccuracy()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        self.train_acc.update(logits.detach(), y.int())
        self.log_train_loss(loss, len(x))
        if self.trainer.is_last_batch:
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.train_acc.reset()

    def on_train_epoch_end(self) -> None:
        if self.convergence_epoch is None and self._criterion_holds():
            self.convergence_epoch = self.current_epoch
        super().on_train_epoch_end()

    def _criterion_holds(self) -> bool:
        ok = True
        if self.converge_loss is not None:
            ok &= float(self.train_loss.compute()) < self.converge_loss
        if self.converge_accuracy is not None:
            ok &= float(self.train_acc.compute()) >= self.converge_accuracy
        return bool(ok)

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str, acc: BinaryAccuracy) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}/loss", nn.functional.binary_cross_entropy_with_logits(logits, y), batch_size=len(x))
        acc.update(logits, y.int())
        self.log(f"{stage}/acc", acc)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def summary_metrics(self) -> dict[str, float]:
        epoch = self.convergence_epoch
        return {"convergence_epoch": math.nan if epoch is None else float(epoch)}

"""Two Gaussian "classes" in 784 dims (low vs high values) for continual learning."""

from __future__ import annotations

import torch
from torch import Tensor

from experiments.data.base import InMemoryDataModule
from experiments.data.batching import IndexBatchLoader


class GaussianClassesDataModule(InMemoryDataModule):
    """Class 0 (task A) ~ N(low_mean, std²), class 1 (task B) ~ N(high_mean, std²), i.i.d. per dim.

    The training set is the class of the current phase: task A while ``phase="pretrain"``,
    task B while ``phase="adapt"``. Validation and test always serve both tasks, as two
    loaders (index 0 = task A, 1 = task B), so both reconstruction losses are logged every
    epoch. Batches are 1-tuples ``(x,)`` (autoencoder targets are the inputs).

    Args:
        n: training samples per class.
        n_eval: evaluation samples per class.
        dim: input dimension.
        low_mean: mean of class 0.
        high_mean: mean of class 1.
        std: standard deviation of both classes.
        phase: ``"pretrain"`` or ``"adapt"``; switch later with :meth:`set_phase`.
        batch_size: training batch size; ``None`` means full batch.
        eval_batch_size: evaluation batch size; ``None`` means full batch.
        shuffle: reshuffle the training set every epoch.
        seed: seed of the data and of the shuffle.

    Raises:
        ValueError: on a non-positive size/std or an unknown phase.

    >>> dm = GaussianClassesDataModule(n=8, n_eval=4, dim=3); dm.setup()
    >>> tuple(dm.train_set[0].shape), len(dm.val_dataloader())
    ((8, 3), 2)
    """

    PHASES = ("pretrain", "adapt")

    def __init__(
        self,
        n: int = 1000,
        n_eval: int = 200,
        dim: int = 784,
        low_mean: float = 0.2,
        high_mean: float = 0.8,
        std: float = 0.1,
        phase: str = "pretrain",
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle, seed)
        for name, value in (("n", n), ("n_eval", n_eval), ("dim", dim)):
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}.")
        if std <= 0:
            raise ValueError(f"`std` must be > 0, got {std}.")
        self.n, self.n_eval, self.dim = n, n_eval, dim
        self.low_mean, self.high_mean, self.std = low_mean, high_mean, std
        self.phase = self._check_phase(phase)
        self.classes: dict[str, tuple[Tensor, Tensor]] = {}

    @classmethod
    def _check_phase(cls, phase: str) -> str:
        if phase not in cls.PHASES:
            raise ValueError(f"`phase` must be one of {cls.PHASES}, got {phase!r}.")
        return phase

    def set_phase(self, phase: str, batch_size: int | None = None) -> None:
        """Switches the training set to the task of ``phase`` (and its batch size)."""
        self.phase = self._check_phase(phase)
        self.batch_size = batch_size
        if self.classes:
            self._select_train()

    def _select_train(self) -> None:
        train_a, train_b = self.classes["A"][0], self.classes["B"][0]
        self.train_set = (train_a if self.phase == "pretrain" else train_b,)

    def setup(self, stage: str | None = None) -> None:
        if not self.classes:
            gen = torch.Generator().manual_seed(self.seed)
            for task, mean in (("A", self.low_mean), ("B", self.high_mean)):
                train, evals = (
                    mean + self.std * torch.randn(m, self.dim, generator=gen) for m in (self.n, self.n_eval)
                )
                self.classes[task] = (train, evals)
            self.val_set = self.test_set = (self.classes["A"][1],)
        self._select_train()

    def _eval_loaders(self) -> list[IndexBatchLoader]:
        return [self._loader((self.classes[t][1],), self.eval_batch_size, False) for t in ("A", "B")]

    def val_dataloader(self) -> list[IndexBatchLoader]:  # type: ignore[override]
        return self._eval_loaders()

    def test_dataloader(self) -> list[IndexBatchLoader]:  # type: ignore[override]
        return self._eval_loaders()

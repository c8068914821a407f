"""Shared base of the in-memory data modules."""

from __future__ import annotations

import lightning.pytorch as pl
from torch import Tensor

from experiments.data.batching import IndexBatchLoader


class InMemoryDataModule(pl.LightningDataModule):
    """Holds ``train`` / ``val`` / ``test`` tensor tuples and serves them by index slicing.

    Subclasses fill ``self.train_set``, ``self.val_set`` and ``self.test_set`` in ``setup``.

    Args:
        batch_size: training batch size; ``None`` means full batch.
        eval_batch_size: batch size of validation and test; ``None`` means full batch.
        shuffle: reshuffle the training set every epoch.
        seed: seed of the shuffle.
    """

    def __init__(
        self, batch_size: int | None = None, eval_batch_size: int | None = None, shuffle: bool = True, seed: int = 0
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be a positive int or None (full batch), got {value}.")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.train_set: tuple[Tensor, ...] | None = None
        self.val_set: tuple[Tensor, ...] | None = None
        self.test_set: tuple[Tensor, ...] | None = None

    def _rank_info(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, tensors: tuple[Tensor, ...] | None, batch_size: int | None, shuffle: bool) -> IndexBatchLoader:
        if tensors is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader.")
        rank, world = self._rank_info()
        return IndexBatchLoader(tensors, batch_size, shuffle=shuffle, seed=self.seed, rank=rank, world_size=world)

    def train_dataloader(self) -> IndexBatchLoader:
        return self._loader(self.train_set, self.batch_size, self.shuffle)

    def val_dataloader(self) -> IndexBatchLoader:
        return self._loader(self.val_set, self.eval_batch_size, False)

    def test_dataloader(self) -> IndexBatchLoader:
        return self._loader(self.test_set, self.eval_batch_size, False)

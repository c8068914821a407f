"""The four XOR points."""

from __future__ import annotations

import torch

from experiments.data.base import InMemoryDataModule

XOR_X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])


class XORDataModule(InMemoryDataModule):
    """XOR truth table, optionally repeated and jittered (training set only).

    Validation and test sets are always the four clean points.

    Args:
        repeats: copies of the four points in the training set.
        noise: standard deviation of Gaussian jitter added to the training inputs.
        batch_size: training batch size; ``None`` means full batch.
        eval_batch_size: validation/test batch size; ``None`` means full batch.
        shuffle: reshuffle the training set every epoch.
        seed: seed of the jitter and of the shuffle.

    Raises:
        ValueError: if ``repeats`` < 1 or ``noise`` < 0.

    >>> dm = XORDataModule(repeats=2); dm.setup()
    >>> tuple(dm.train_set[0].shape), dm.test_set[1].flatten().tolist()
    ((8, 2), [0.0, 1.0, 1.0, 0.0])
    """

    def __init__(
        self,
        repeats: int = 1,
        noise: float = 0.0,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle, seed)
        if repeats < 1:
            raise ValueError(f"`repeats` must be >= 1, got {repeats}.")
        if noise < 0:
            raise ValueError(f"`noise` must be >= 0, got {noise}.")
        self.repeats, self.noise = repeats, noise

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        gen = torch.Generator().manual_seed(self.seed)
        x = XOR_X.repeat(self.repeats, 1)
        x = x + self.noise * torch.randn(x.shape, generator=gen)
        self.train_set = (x, XOR_Y.repeat(self.repeats, 1))
        self.val_set = self.test_set = (XOR_X.clone(), XOR_Y.clone())

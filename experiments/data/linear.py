"""Synthetic line ``y = slope * x + noise``."""

from __future__ import annotations

import torch

from experiments.data.base import InMemoryDataModule


class LinearDataModule(InMemoryDataModule):
    """Samples ``x ~ N(0, 1)`` and ``y = slope * x + noise * N(0, 1)``.

    Train, validation and test sets are independent draws from one seeded generator.

    Args:
        n: number of training samples.
        noise: standard deviation of the additive Gaussian noise on ``y``.
        slope: true slope of the line.
        n_eval: number of samples in each of the validation and test sets.
        batch_size: training batch size; ``None`` means full batch.
        eval_batch_size: validation/test batch size; ``None`` means full batch.
        shuffle: reshuffle the training set every epoch.
        seed: seed of the data and of the shuffle.

    Raises:
        ValueError: if ``n`` or ``n_eval`` < 1, or ``noise`` < 0.

    >>> dm = LinearDataModule(n=4, noise=0.0); dm.setup()
    >>> bool(torch.allclose(dm.train_set[1], 2 * dm.train_set[0]))
    True
    """

    def __init__(
        self,
        n: int = 100,
        noise: float = 0.0,
        slope: float = 2.0,
        n_eval: int = 100,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle, seed)
        if n < 1 or n_eval < 1:
            raise ValueError(f"`n` and `n_eval` must be >= 1, got n={n}, n_eval={n_eval}.")
        if noise < 0:
            raise ValueError(f"`noise` must be >= 0, got {noise}.")
        self.n, self.noise, self.slope, self.n_eval = n, noise, slope, n_eval

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        gen = torch.Generator().manual_seed(self.seed)
        sets = []
        for size in (self.n, self.n_eval, self.n_eval):
            x = torch.randn(size, 1, generator=gen)
            y = self.slope * x + self.noise * torch.randn(size, 1, generator=gen)
            sets.append((x, y))
        self.train_set, self.val_set, self.test_set = sets

"""Step ticks for tasks without data (optimizer trajectories on an analytic surface)."""

from __future__ import annotations

import torch

from experiments.data.base import InMemoryDataModule


class StepsDataModule(InMemoryDataModule):
    """Yields ``steps_per_epoch`` batches holding only the step index.

    Args:
        steps_per_epoch: optimizer steps per epoch (batches per epoch).

    Raises:
        ValueError: if ``steps_per_epoch`` < 1.

    >>> dm = StepsDataModule(3); dm.setup()
    >>> [int(b[0]) for b in dm.train_dataloader()]
    [0, 1, 2]
    """

    def __init__(self, steps_per_epoch: int = 50) -> None:
        super().__init__(batch_size=1, shuffle=False)
        if steps_per_epoch < 1:
            raise ValueError(f"`steps_per_epoch` must be >= 1, got {steps_per_epoch}.")
        self.steps_per_epoch = steps_per_epoch

    def setup(self, stage: str | None = None) -> None:
        self.train_set = (torch.arange(self.steps_per_epoch),)

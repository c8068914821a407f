"""In-memory batching by index slicing.

Per-sample collation (``DataLoader(TensorDataset(...))``) builds every batch from
``batch_size`` single-row lookups. For small in-memory tensors that dominates the step
time, so the loaders here permute the tensors once per epoch and hand out contiguous
slices instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


class EpochPermutation:
    """Per-epoch shuffled (or identity) index order, sharded across ranks.

    Lightning calls ``set_epoch`` on a loader's ``sampler`` at each epoch start (also after a
    resume), so the order is a pure function of ``(seed, epoch)``.

    Args:
        num_samples: number of rows in the data set.
        shuffle: draw a fresh permutation every epoch (from a ``torch.Generator``).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        rank: index of this process among ``world_size``.
        world_size: number of processes sharing the data. Each rank gets
            ``ceil(num_samples / world_size)`` indices (padded by wrapping around, like
            ``DistributedSampler``) so every rank runs the same number of steps.

    Raises:
        ValueError: if ``num_samples`` < 1 or ``rank`` is not in ``[0, world_size)``.

    >>> p = EpochPermutation(5, shuffle=False, rank=1, world_size=2)
    >>> p.indices().tolist()
    [1, 3, 0]
    """

    def __init__(
        self, num_samples: int, shuffle: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"`num_samples` must be >= 1, got {num_samples}.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"`rank` must be in [0, world_size={world_size}), got {rank}.")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`indices` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size)

    def indices(self) -> Tensor:
        """This rank's indices for the current epoch."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=gen)
        else:
            order = torch.arange(self.num_samples)
        if self.world_size == 1:
            return order
        total = len(self) * self.world_size
        if total > self.num_samples:  # pad by wrapping so all ranks have equal length
            order = torch.cat([order, order[: total - self.num_samples]])
        return order[self.rank :: self.world_size]


class IndexBatchLoader:
    """Iterable of index-sliced batches over tensors kept in memory, resumable mid-epoch.

    It follows Lightning's resumable-loader protocol (``state_dict`` / ``load_state_dict``): a checkpoint
    records the epoch and the batches handed out in it, and a run resumed from a checkpoint taken
    mid-epoch continues with the next batch of the same epoch order instead of starting the epoch over.

    Args:
        tensors: tensors sharing their first dimension (e.g. ``(x, y)``).
        batch_size: rows per batch; ``None`` means the whole (rank's share of the) data set.
        shuffle: reshuffle every epoch.
        drop_last: drop the last incomplete batch.
        seed: base seed of the shuffle.
        rank: this process's rank (for DDP sharding).
        world_size: number of processes.

    Raises:
        ValueError: if the tensors are empty or disagree in length, or ``batch_size`` < 1.

    >>> x = torch.arange(5.0).unsqueeze(1)
    >>> [b[0].flatten().tolist() for b in IndexBatchLoader((x,), batch_size=2)]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    >>> loader = IndexBatchLoader((x,), batch_size=2)
    >>> loader.load_state_dict({"epoch": 0, "batches": 2})  # resume after two batches of epoch 0
    >>> [b[0].flatten().tolist() for b in loader]
    [[4.0]]
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not tensors:
            raise ValueError("`tensors` must hold at least one tensor.")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError(f"`tensors` must share their first dimension, got {[t.shape[0] for t in tensors]}.")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int or None (full batch), got {batch_size}.")
        self.tensors = tuple(tensors)
        # `sampler.set_epoch` is called by Lightning every epoch; no torch batch sampler is involved
        self.sampler = EpochPermutation(n, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
        self.batch_sampler = None
        self.batch_size = batch_size or len(self.sampler)
        self.drop_last = drop_last
        self._handed_out = 0  # batches of the current epoch handed out so far
        self._resume_at: tuple[int, int] | None = None

    def __len__(self) -> int:
        per_rank = len(self.sampler)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def state_dict(self) -> dict[str, int]:
        """The position in the data: the epoch and how many of its batches were handed out."""
        return {"epoch": self.sampler.epoch, "batches": self._handed_out}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Continue from ``state_dict``'s position at the next iteration over the same epoch.

        Lightning loads the state before it sets the epoch, so the position is checked against the epoch
        when iteration starts: a checkpoint taken at an epoch's end resumes with the next epoch's first batch.
        """
        self._resume_at = (int(state_dict["epoch"]), int(state_dict["batches"]))

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        # A generator: this body runs at the first `next`, after Lightning's `sampler.set_epoch`.
        start = 0
        if self._resume_at is not None:
            epoch, batches = self._resume_at
            self._resume_at = None
            if epoch == self.sampler.epoch:
                start = batches
        self._handed_out = start
        idx = self.sampler.indices()
        whole = self.sampler.world_size == 1 and not self.sampler.shuffle
        # one gather per epoch, then contiguous views per batch
        data = self.tensors if whole else tuple(t[idx] for t in self.tensors)
        bs = self.batch_size
        for i in range(start, len(self)):
            self._handed_out = i + 1
            yield tuple(t[i * bs : (i + 1) * bs] for t in data)

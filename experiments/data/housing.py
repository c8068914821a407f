"""California Housing through scikit-learn's loader, with the seed study's split and scaling."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from experiments.data.base import InMemoryDataModule

if TYPE_CHECKING:
    import numpy as np

DATA_HELP = (
    "California Housing is not available offline. Provide it by one of: "
    "(1) set SCIKIT_LEARN_DATA to a folder holding scikit-learn's cache file cal_housing_py3.pkz; "
    "(2) pass data_home=<that folder> (config key data.data_home); "
    "(3) run once with network access so scikit-learn downloads and caches it."
)


def load_housing_arrays(data_home: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(X, y)`` from ``sklearn.datasets.fetch_california_housing``.

    Args:
        data_home: scikit-learn data folder; ``None`` uses ``SCIKIT_LEARN_DATA`` or
            scikit-learn's default.

    Raises:
        FileNotFoundError: if the data is neither cached nor downloadable; the message says
            how to provide it.
    """
    from sklearn.datasets import fetch_california_housing

    home = data_home or os.environ.get("SCIKIT_LEARN_DATA")
    try:
        bunch = fetch_california_housing(data_home=home, download_if_missing=True)
    except OSError as err:  # URLError / socket errors / missing cache are all OSErrors
        raise FileNotFoundError(f"{DATA_HELP} (data_home={home!r}; cause: {err})") from err
    return bunch.data, bunch.target


class HousingDataModule(InMemoryDataModule):
    """California Housing regression (8 features → median house value in $100k).

    Split as in the seed: ``train_test_split(test_size=0.2, random_state=42)``; a
    ``StandardScaler`` fitted on the training part only. A validation set can be carved
    from the training part (after the scaler is fitted, so the test split and the scaling
    stay those of the seed).

    Args:
        data_home: scikit-learn data folder; ``None`` uses ``SCIKIT_LEARN_DATA``.
        test_size: test fraction of the seed split.
        split_seed: ``random_state`` of the seed split.
        val_fraction: fraction of the training part held out for validation; with 0 the
            test set doubles as validation set.
        batch_size: training batch size; ``None`` means full batch.
        eval_batch_size: validation/test batch size; ``None`` means full batch.
        shuffle: reshuffle the training set every epoch.
        seed: seed of the validation carve-out and of the shuffle.

    Raises:
        ValueError: if ``test_size`` or ``val_fraction`` is outside ``[0, 1)``.
        FileNotFoundError: (in ``setup``) if the data cannot be loaded.
    """

    def __init__(
        self,
        data_home: str | None = None,
        test_size: float = 0.2,
        split_seed: int = 42,
        val_fraction: float = 0.0,
        batch_size: int | None = 32,
        eval_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle, seed)
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"`test_size` must be in (0, 1), got {test_size}.")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"`val_fraction` must be in [0, 1), got {val_fraction}.")
        self.data_home, self.test_size, self.split_seed, self.val_fraction = (
            data_home,
            test_size,
            split_seed,
            val_fraction,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        x, y = load_housing_arrays(self.data_home)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=self.test_size, random_state=self.split_seed)
        scaler = StandardScaler().fit(x_tr)
        x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)
        train = (as_t(x_tr), as_t(y_tr).unsqueeze(1))
        self.test_set = (as_t(x_te), as_t(y_te).unsqueeze(1))
        if self.val_fraction > 0:
            n_val = max(1, round(self.val_fraction * len(train[0])))
            perm = torch.randperm(len(train[0]), generator=torch.Generator().manual_seed(self.seed))
            val_idx, tr_idx = perm[:n_val], perm[n_val:]
            self.train_set = tuple(t[tr_idx] for t in train)
            self.val_set = tuple(t[val_idx] for t in train)
        else:
            self.train_set, self.val_set = train, self.test_set

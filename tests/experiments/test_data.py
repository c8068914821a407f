"""In-memory data modules: index-sliced batching, DDP sharding, the housing split, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.data import (
    EpochPermutation,
    GaussianClassesDataModule,
    HousingDataModule,
    IndexBatchLoader,
    LinearDataModule,
    XORDataModule,
)
from experiments.data import housing as housing_mod
from tests.helpers.harness import ensure_housing_data


def test_loader_covers_every_row_once_per_epoch_and_reshuffles() -> None:
    x = torch.arange(10.0).unsqueeze(1)
    loader = IndexBatchLoader((x, x * 2), batch_size=3, shuffle=True, seed=7)
    assert len(loader) == 4
    epochs = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert [len(b[0]) for b in batches] == [3, 3, 3, 1]
        rows = torch.cat([b[0] for b in batches]).flatten()
        assert sorted(rows.tolist()) == list(range(10))
        assert all(torch.equal(b[1], 2 * b[0]) for b in batches)
        epochs.append(rows.tolist())
    assert epochs[0] != epochs[1]
    loader.sampler.set_epoch(0)
    assert torch.cat([b[0] for b in loader]).flatten().tolist() == epochs[0]  # same epoch, same order


def test_loader_full_batch_and_drop_last() -> None:
    x = torch.arange(7.0)
    assert [len(b[0]) for b in IndexBatchLoader((x,), batch_size=None)] == [7]
    assert [len(b[0]) for b in IndexBatchLoader((x,), batch_size=3, drop_last=True)] == [3, 3]


def test_ranks_get_equal_disjoint_shards() -> None:
    shards = [EpochPermutation(10, shuffle=True, seed=1, rank=r, world_size=3).indices() for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set(torch.cat(shards).tolist()) == set(range(10))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"batch_size": 0}, "batch_size"), ({"batch_size": 2, "rank": 2, "world_size": 2}, "rank")],
)
def test_loader_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IndexBatchLoader((torch.zeros(4),), **kwargs)


def test_loader_rejects_mismatched_tensors() -> None:
    with pytest.raises(ValueError, match="first dimension"):
        IndexBatchLoader((torch.zeros(4), torch.zeros(5)))


def test_linear_and_xor_data() -> None:
    dm = LinearDataModule(n=50, noise=0.0, slope=2.0, seed=3)
    dm.setup()
    x, y = dm.train_set
    assert x.shape == (50, 1)
    assert torch.allclose(y, 2 * x)
    xor = XORDataModule()
    xor.setup()
    assert xor.train_set[1].flatten().tolist() == [0.0, 1.0, 1.0, 0.0]


def test_gaussian_classes_switch_phase() -> None:
    dm = GaussianClassesDataModule(n=100, n_eval=20, dim=16, low_mean=0.2, high_mean=0.8, std=0.1, seed=0)
    dm.setup()
    assert abs(dm.train_set[0].mean().item() - 0.2) < 0.02
    dm.set_phase("adapt", batch_size=10)
    assert abs(dm.train_set[0].mean().item() - 0.8) < 0.02
    assert len(dm.train_dataloader()) == 10
    val_a, val_b = dm.val_dataloader()
    assert next(iter(val_a))[0].mean() < 0.5 < next(iter(val_b))[0].mean()
    with pytest.raises(ValueError, match="phase"):
        dm.set_phase("finetune")


def test_housing_split_matches_the_seed() -> None:
    ensure_housing_data()
    from sklearn.datasets import fetch_california_housing
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    dm = HousingDataModule(batch_size=32)
    dm.setup()
    x_tr, y_tr = dm.train_set
    x_te, y_te = dm.test_set
    assert (len(x_tr), len(x_te)) == (16512, 4128)
    assert torch.allclose(x_tr.mean(0), torch.zeros(8), atol=1e-4)  # scaler fitted on train
    bunch = fetch_california_housing()
    a_tr, a_te, b_tr, b_te = train_test_split(bunch.data, bunch.target, test_size=0.2, random_state=42)
    scaler = StandardScaler().fit(a_tr)
    np.testing.assert_allclose(x_te.numpy(), scaler.transform(a_te), rtol=1e-5, atol=1e-5)
    ols = LinearRegression().fit(x_tr.numpy(), y_tr.numpy())
    rmse = float(np.sqrt(np.mean((ols.predict(x_te.numpy()) - y_te.numpy()) ** 2)))
    assert rmse == pytest.approx(0.745581, abs=1e-5)


def test_housing_validation_is_carved_from_train() -> None:
    ensure_housing_data()
    dm = HousingDataModule(val_fraction=0.1)
    dm.setup()
    assert (len(dm.train_set[0]), len(dm.val_set[0]), len(dm.test_set[0])) == (14861, 1651, 4128)


def test_housing_missing_data_offline_says_how_to_provide_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from urllib.error import URLError

    import sklearn.datasets

    def offline(**kwargs):  # what scikit-learn raises with no cache and no network
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(sklearn.datasets, "fetch_california_housing", offline)
    with pytest.raises(FileNotFoundError) as err:
        housing_mod.load_housing_arrays(str(tmp_path))
    message = str(err.value)
    assert "SCIKIT_LEARN_DATA" in message
    assert "data_home" in message
    assert "network" in message


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"val_fraction": 1.0}, "val_fraction"), ({"test_size": 0}, "test_size")]
)
def test_housing_rejects_bad_fractions(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HousingDataModule(**kwargs)

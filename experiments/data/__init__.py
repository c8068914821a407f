"""In-memory LightningDataModules batched by index slicing."""

from experiments.data.batching import EpochPermutation, IndexBatchLoader
from experiments.data.gaussian import GaussianClassesDataModule
from experiments.data.housing import HousingDataModule
from experiments.data.linear import LinearDataModule
from experiments.data.surface import StepsDataModule
from experiments.data.xor import XORDataModule

__all__ = [
    "EpochPermutation",
    "GaussianClassesDataModule",
    "HousingDataModule",
    "IndexBatchLoader",
    "LinearDataModule",
    "StepsDataModule",
    "XORDataModule",
]

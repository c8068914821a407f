"""The fifth evaluation part of the finder benchmark: 16 tasks, written (and this file's SHA-256 recorded) before
anything ran on them and before any tuning for the restated bar (cross-fitted references, constant, cosine and
one-cycle pairings, LR-free rivals).

Thirteen tasks train on data sets that scikit-learn ships inside its package (digits, wine, breast cancer,
diabetes, iris: no download), three on seeded synthetic sequences. They spread over every optimizer of
:data:`experiments.benchmarks.finder.tasks.OPTIMIZERS`, the three losses, normalised and unnormalised inputs,
batch sizes from 8 to the full data set and budgets from 200 to 800 steps. The real data sets do not depend on
the seed (the seed fixes the initial weights and the batch order); the synthetic ones are drawn per seed.

>>> [task.name for task in FIFTH_PART][:2]
['digits_mlp_adam', 'digits_logistic_unnormalised_sgd']
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from experiments.benchmarks.finder.data import _generator
from experiments.benchmarks.finder.tasks import (
    AttentionClassifier,
    FinderTask,
    GRURegressor,
    LSTMRegressor,
    SmallCNN,
    mlp,
)

Tensors = tuple[Tensor, Tensor]


# ----------------------------------------------------------------------------------------------- data
def _bundled(name: str) -> tuple[Tensor, Tensor]:
    """A data set scikit-learn ships in its package (``load_<name>``), as float features and the raw target."""
    from sklearn import datasets

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def _standardized(x: Tensor) -> Tensor:
    return (x - x.mean(dim=0)) / x.std(dim=0).clamp_min(1e-6)


def digits_scaled_data(seed: int) -> Tensors:
    """8x8 digits (1797 images), pixels scaled from 0..16 to 0..1, flattened; 10 classes."""
    x, y = _bundled("digits")
    return x / 16.0, y.long()


def digits_raw_data(seed: int) -> Tensors:
    """The digits with their raw pixel values 0..16 (unnormalised); 10 classes."""
    x, y = _bundled("digits")
    return x, y.long()


def digits_image_data(seed: int) -> Tensors:
    """The digits as 1x8x8 images, pixels scaled to 0..1."""
    x, y = digits_scaled_data(seed)
    return x.view(-1, 1, 8, 8), y


def digits_autoencoder_data(seed: int) -> Tensors:
    """The scaled digits as their own target (for an autoencoder)."""
    x, _ = digits_scaled_data(seed)
    return x, x


def wine_raw_data(seed: int) -> Tensors:
    """Wine (178 samples, 13 features with raw scales from about 0.1 to 1000); 3 classes."""
    x, y = _bundled("wine")
    return x, y.long()


def wine_standardized_data(seed: int) -> Tensors:
    x, y = _bundled("wine")
    return _standardized(x), y.long()


def breast_cancer_standardized_data(seed: int) -> Tensors:
    """Breast cancer (569 samples, 30 features), standardized; binary labels."""
    x, y = _bundled("breast_cancer")
    return _standardized(x), y.float().unsqueeze(1)


def breast_cancer_raw_data(seed: int) -> Tensors:
    """Breast cancer with its raw features (scales from about 0.001 to 4000); binary labels."""
    x, y = _bundled("breast_cancer")
    return x, y.float().unsqueeze(1)


def diabetes_data(seed: int) -> Tensors:
    """Diabetes (442 samples, 10 features as scikit-learn scales them), the target standardized."""
    x, y = _bundled("diabetes")
    target = y.float().unsqueeze(1)
    return x, (target - target.mean()) / target.std()


def iris_data(seed: int) -> Tensors:
    """Iris (150 samples, 4 features), standardized; 3 classes."""
    x, y = _bundled("iris")
    return _standardized(x), y.long()


def peak_half_data(seed: int, n: int = 2048, length: int = 10) -> Tensors:
    """Gaussian sequences of 10 values; the class is whether the largest value lies in the first half."""
    g = _generator(seed, 60)
    x = torch.randn(n, length, 1, generator=g)
    return x, (x[:, :, 0].argmax(dim=1) < length // 2).long()


def halves_difference_data(seed: int, n: int = 2048, length: int = 12) -> Tensors:
    """``U(0, 1)`` sequences of 12 values; the target is the mean of the last four minus the mean of the first four."""
    g = _generator(seed, 61)
    x = torch.rand(n, length, 1, generator=g)
    return x, x[:, -4:, 0].mean(dim=1, keepdim=True) - x[:, :4, 0].mean(dim=1, keepdim=True)


def distinct_tokens_data(seed: int, n: int = 2048, length: int = 8) -> Tensors:
    """Sequences over 8 tokens; the class is how many distinct tokens the first four hold, minus one (0 to 3)."""
    g = _generator(seed, 62)
    x = torch.randint(0, 8, (n, length), generator=g)
    head = x[:, :4]
    distinct = torch.stack([(head == k).any(dim=1) for k in range(8)], dim=1).sum(dim=1)
    return x, distinct - 1


# ----------------------------------------------------------------------------------------------- tasks
FIFTH_PART: tuple[FinderTask, ...] = (
    FinderTask("digits_mlp_adam", lambda: mlp([64, 128, 10]), "cross_entropy", "adam", digits_scaled_data, 32, 600),
    FinderTask(
        "digits_logistic_unnormalised_sgd",
        lambda: nn.Linear(64, 10),
        "cross_entropy",
        "sgd",
        digits_raw_data,
        64,
        400,
        "unnormalised",
    ),
    FinderTask(
        "digits_cnn_momentum", lambda: SmallCNN(10), "cross_entropy", "sgd_momentum", digits_image_data, 64, 300
    ),
    FinderTask(
        "digits_autoencoder_adamw",
        lambda: mlp([64, 32, 8, 32, 64], nn.Tanh),
        "mse",
        "adamw",
        digits_autoencoder_data,
        64,
        500,
    ),
    FinderTask(
        "digits_bn_mlp_nesterov_b16",
        lambda: mlp([64, 64, 64, 10], batchnorm=True),
        "cross_entropy",
        "nesterov",
        digits_scaled_data,
        16,
        400,
    ),
    FinderTask(
        "wine_mlp_unnormalised_rmsprop",
        lambda: mlp([13, 32, 3]),
        "cross_entropy",
        "rmsprop",
        wine_raw_data,
        16,
        500,
        "unnormalised",
    ),
    FinderTask(
        "wine_softmax_fullbatch_sgd",
        lambda: nn.Linear(13, 3),
        "cross_entropy",
        "sgd",
        wine_standardized_data,
        None,
        200,
    ),
    FinderTask(
        "breast_cancer_logistic_fullbatch_nesterov",
        lambda: nn.Linear(30, 1),
        "bce",
        "nesterov",
        breast_cancer_standardized_data,
        None,
        300,
    ),
    FinderTask(
        "breast_cancer_mlp_adamw",
        lambda: mlp([30, 64, 64, 1]),
        "bce",
        "adamw",
        breast_cancer_standardized_data,
        64,
        300,
    ),
    FinderTask(
        "breast_cancer_unnormalised_fullbatch_adam",
        lambda: nn.Linear(30, 1),
        "bce",
        "adam",
        breast_cancer_raw_data,
        None,
        500,
        "unnormalised",
    ),
    FinderTask("diabetes_linear_momentum", lambda: nn.Linear(10, 1), "mse", "sgd_momentum", diabetes_data, 32, 500),
    FinderTask("diabetes_mlp_adam_b8", lambda: mlp([10, 64, 1]), "mse", "adam", diabetes_data, 8, 800),
    FinderTask("iris_mlp_sgd_b8", lambda: mlp([4, 16, 3]), "cross_entropy", "sgd", iris_data, 8, 400),
    FinderTask(
        "gru_peak_half_rmsprop",
        lambda: GRURegressor(1, n_outputs=2),
        "cross_entropy",
        "rmsprop",
        peak_half_data,
        64,
        400,
    ),
    FinderTask(
        "lstm_halves_momentum", lambda: LSTMRegressor(1), "mse", "sgd_momentum", halves_difference_data, 32, 400
    ),
    FinderTask(
        "attention_distinct_adamw",
        lambda: AttentionClassifier(8, 8, 4),
        "cross_entropy",
        "adamw",
        distinct_tokens_data,
        64,
        500,
    ),
)
"""The fifth evaluation part, in the order it was written."""

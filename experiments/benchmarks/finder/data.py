"""Seeded synthetic data sets of the finder tasks: ``data(seed) -> (x, y)``.

The tasks are in :mod:`experiments.benchmarks.finder.tasks`. Each generator draws from a private
``torch.Generator`` seeded by the seed and a salt of its own, so tasks do not share draws and a seed always gives
the same data.

>>> x, y = spirals_data(0, per_class=4)
>>> tuple(x.shape), y.tolist()
((12, 2), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Tensors = tuple[Tensor, Tensor]


def _generator(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * seed + salt)


def unnormalised_linear_data(seed: int) -> Tensors:
    """Least squares, 16 features with scales 1..10 and offsets up to 3 scales: badly conditioned."""
    g = _generator(seed, 1)
    scales = torch.logspace(0, 1, 16)
    offsets = 3.0 * scales * torch.rand(16, generator=g)
    x = offsets + torch.randn(1024, 16, generator=g) * scales
    w = torch.randn(16, 1, generator=g) / scales.unsqueeze(1)
    y = (x - offsets) @ w + 0.1 * torch.randn(1024, 1, generator=g)
    return x, y


def sine_regression_data(seed: int, n: int = 2048, dim: int = 8) -> Tensors:
    g = _generator(seed, 2)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, 3, generator=g)
    return x, torch.sin(x @ w).sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)


def cluster_classes_data(seed: int) -> Tensors:
    """5 classes in 20-D, each a mixture of two unit Gaussian clusters."""
    g = _generator(seed, 3)
    centres = 1.5 * torch.randn(10, 20, generator=g)
    cluster = torch.arange(2048) % 10
    return centres[cluster] + torch.randn(2048, 20, generator=g), cluster % 5


def _draw_images(kind: Tensor, g: torch.Generator, shapes: list[Callable[[int, int], Tensor]], noise: float) -> Tensor:
    images = torch.zeros(len(kind), 1, 12, 12)
    pos = torch.randint(2, 10, (len(kind), 2), generator=g)
    for i, (k, (r, c)) in enumerate(zip(kind.tolist(), pos.tolist())):
        images[i, 0] = shapes[k](r, c)
    return images + noise * torch.randn(images.shape, generator=g)


def _canvas(points: list[tuple[int, int]]) -> Tensor:
    img = torch.zeros(12, 12)
    for r, c in points:
        if 0 <= r < 12 and 0 <= c < 12:
            img[r, c] = 1.0
    return img


BARS = [
    lambda r, c: _canvas([(r, c + d) for d in range(-2, 3)]),  # horizontal
    lambda r, c: _canvas([(r + d, c) for d in range(-2, 3)]),  # vertical
    lambda r, c: _canvas([(r + d, c + d) for d in range(-2, 3)]),  # diagonal
    lambda r, c: _canvas([(r + d, c - d) for d in range(-2, 3)]),  # anti-diagonal
]
SHAPES = [
    lambda r, c: _canvas([(r, c + d) for d in range(-2, 3)] + [(r + d, c) for d in (-2, -1, 1, 2)]),  # plus
    lambda r, c: _canvas([(r + a, c + b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]),  # ring
    lambda r, c: _canvas([(r + a, c + b) for a in (-1, 0, 1) for b in (-1, 0, 1)]),  # filled square
]


def bar_images_data(seed: int) -> Tensors:
    g = _generator(seed, 4)
    kind = torch.arange(1024) % 4
    return _draw_images(kind, g, BARS, noise=0.5), kind


def shape_images_data(seed: int) -> Tensors:
    g = _generator(seed, 5)
    kind = torch.arange(1536) % 3
    return _draw_images(kind, g, SHAPES, noise=0.6), kind


def adding_problem_data(seed: int, n: int = 2048, length: int = 12) -> Tensors:
    """The adding problem: the sum of the two values whose marker is set."""
    g = _generator(seed, 6)
    values = torch.rand(n, length, generator=g)
    marks = torch.zeros(n, length)
    first = torch.randint(0, length // 2, (n,), generator=g)
    second = torch.randint(length // 2, length, (n,), generator=g)
    marks[torch.arange(n), first] = 1.0
    marks[torch.arange(n), second] = 1.0
    return torch.stack([values, marks], dim=2), (values * marks).sum(dim=1, keepdim=True)


def unnormalised_logistic_data(seed: int) -> Tensors:
    """Binary labels from a linear rule with 10% flipped; 10 features with scales 1..100 and offsets."""
    g = _generator(seed, 7)
    scales = torch.logspace(0, 2, 10)
    z = torch.randn(2048, 10, generator=g)
    w = torch.randn(10, generator=g)
    labels = ((z @ w) > 0).float()
    flip = torch.rand(2048, generator=g) < 0.1
    labels = torch.where(flip, 1.0 - labels, labels)
    x = scales * (z + 2.0 * torch.rand(10, generator=g))
    return x, labels.unsqueeze(1)


def subspace_autoencoder_data(seed: int) -> Tensors:
    g = _generator(seed, 8)
    basis = torch.randn(4, 32, generator=g) / 2
    x = torch.randn(1024, 4, generator=g) @ basis + 0.2 * torch.randn(1024, 32, generator=g)
    return x, x


def smooth_regression_data(seed: int) -> Tensors:
    g = _generator(seed, 9)
    x = torch.randn(256, 4, generator=g)
    y = torch.sin(2 * x[:, :1]) * x[:, 1:2] + x[:, 2:3] ** 2 / 2 - x[:, 3:4] + 0.05 * torch.randn(256, 1, generator=g)
    return x, y


def housing_data(seed: int) -> Tensors:
    """California Housing training part, the seed study's split and scaling (the data do not depend on ``seed``)."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from experiments.data.housing import load_housing_arrays

    x, y = load_housing_arrays()
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=42)
    x_train = StandardScaler().fit(x_train).transform(x_train)
    return torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train, dtype=torch.float32).unsqueeze(1)


def spirals_data(seed: int, per_class: int = 500) -> Tensors:
    g = _generator(seed, 10)
    xs, ys = [], []
    for k in range(3):
        r = torch.linspace(0.0, 1.0, per_class)
        t = torch.linspace(4.0 * k, 4.0 * (k + 1), per_class) + 0.2 * torch.randn(per_class, generator=g)
        xs.append(torch.stack([r * torch.sin(t), r * torch.cos(t)], dim=1))
        ys.append(torch.full((per_class,), k))
    return torch.cat(xs), torch.cat(ys)


def xor_bce_data(seed: int) -> Tensors:
    """Binary labels from an XOR of two features' signs, 5% flipped; 12 features with scales 1..50 and offsets."""
    g = _generator(seed, 11)
    z = torch.randn(4096, 12, generator=g)
    labels = ((z[:, 0] > 0) ^ (z[:, 1] > 0)).float()
    labels = torch.where(torch.rand(4096, generator=g) < 0.05, 1.0 - labels, labels)
    scales = torch.logspace(0, 1.7, 12)[torch.randperm(12, generator=g)]
    return scales * (z + torch.rand(12, generator=g)), labels.unsqueeze(1)


def majority_token_data(seed: int, n: int = 2048, length: int = 10) -> Tensors:
    """Sequences over 8 tokens; the label is whichever of tokens 0, 1, 2 occurs most often (ties: the lowest)."""
    g = _generator(seed, 12)
    x = torch.randint(0, 8, (n, length), generator=g)
    counts = torch.stack([(x == k).sum(dim=1) for k in range(3)], dim=1)
    return x, counts.argmax(dim=1)


def blobs_data(seed: int) -> Tensors:
    """8 Gaussian blobs in 16-D (for an autoencoder)."""
    g = _generator(seed, 13)
    centres = 2.0 * torch.randn(8, 16, generator=g)
    x = centres[torch.arange(2048) % 8] + 0.3 * torch.randn(2048, 16, generator=g)
    return x, x


def unnormalised_regression_data(seed: int) -> Tensors:
    g = _generator(seed, 14)
    scales = torch.tensor([1.0, 2.0, 5.0, 10.0, 20.0, 50.0])
    z = torch.randn(1024, 6, generator=g)
    w = torch.randn(6, 4, generator=g)
    y = torch.tanh(z @ w).sum(dim=1, keepdim=True) + 0.1 * torch.randn(1024, 1, generator=g)
    return scales * (z + torch.rand(6, generator=g)), y


def gaussian_xor_data(seed: int) -> Tensors:
    """Two classes of four 2-D Gaussian clusters in an XOR layout."""
    g = _generator(seed, 15)
    corner = torch.arange(512) % 4
    centres = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    return centres[corner] + 0.45 * torch.randn(512, 2, generator=g), (corner >= 2).long()


def _normal_linear(seed: int, salt: int, n: int, dim: int, noise: float) -> tuple[Tensor, Tensor, torch.Generator]:
    g = _generator(seed, salt)
    x = torch.randn(n, dim, generator=g)
    return x, x @ torch.randn(dim, 1, generator=g) + noise * torch.randn(n, 1, generator=g), g


def linear_regression_data(seed: int) -> Tensors:
    x, y, _ = _normal_linear(seed, 16, 2048, 20, 0.5)
    return x, y


def softmax_regression_data(seed: int) -> Tensors:
    """10 overlapping Gaussian classes in 30-D (a linear classifier's problem), 20% of the labels replaced at random
    so that no linear classifier separates them (the loss then has a floor, and the best LR is finite)."""
    g = _generator(seed, 17)
    labels = torch.arange(3000) % 10
    x = torch.randn(10, 30, generator=g)[labels] + torch.randn(3000, 30, generator=g)
    return x, torch.where(torch.rand(3000, generator=g) < 0.2, torch.randint(0, 10, (3000,), generator=g), labels)


def noisy_clusters_data(seed: int) -> Tensors:
    """8 classes of Gaussian clusters in 16-D, 10% of the labels replaced at random."""
    g = _generator(seed, 18)
    labels = torch.arange(4096) % 8
    x = 1.2 * torch.randn(8, 16, generator=g)[labels] + torch.randn(4096, 16, generator=g)
    noisy = torch.where(torch.rand(4096, generator=g) < 0.1, torch.randint(0, 8, (4096,), generator=g), labels)
    return x, noisy


def product_regression_data(seed: int) -> Tensors:
    g = _generator(seed, 19)
    x = torch.randn(2048, 10, generator=g)
    y = (x[:, :-1] * x[:, 1:]).sum(dim=1, keepdim=True) / 3 + 0.1 * torch.randn(2048, 1, generator=g)
    return x, y


QUADRANT_BLOBS = [
    lambda r, c: _canvas([(3 + a, 3 + b) for a in (-1, 0, 1) for b in (-1, 0, 1)]),
    lambda r, c: _canvas([(3 + a, 8 + b) for a in (-1, 0, 1) for b in (-1, 0, 1)]),
    lambda r, c: _canvas([(8 + a, 3 + b) for a in (-1, 0, 1) for b in (-1, 0, 1)]),
    lambda r, c: _canvas([(8 + a, 8 + b) for a in (-1, 0, 1) for b in (-1, 0, 1)]),
]
DOTS = [
    lambda r, c: _canvas([(r, c)]),
    lambda r, c: _canvas([(r, c), (r - 2, c + 2)]),
    lambda r, c: _canvas([(r, c), (r - 2, c + 2), (r + 2, c - 2)]),
]


def quadrant_images_data(seed: int) -> Tensors:
    g = _generator(seed, 20)
    kind = torch.arange(1024) % 4
    return _draw_images(kind, g, QUADRANT_BLOBS, noise=0.8), kind


def dot_count_images_data(seed: int) -> Tensors:
    """How many dots (1 to 3), with pixel values in 0..255 as raw 8-bit images have them."""
    g = _generator(seed, 21)
    kind = torch.arange(1536) % 3
    return 255.0 * _draw_images(kind, g, DOTS, noise=0.3), kind


def half_sums_data(seed: int, n: int = 2048, length: int = 10) -> Tensors:
    """Which half of the sequence has the larger sum."""
    g = _generator(seed, 22)
    x = torch.randn(n, length, 1, generator=g)
    return x, (x[:, length // 2 :].sum(dim=(1, 2)) > x[:, : length // 2].sum(dim=(1, 2))).long()


def first_token_count_data(seed: int, n: int = 2048, length: int = 12) -> Tensors:
    """How often the first token occurs in the sequence (over 4), from tokens of a vocabulary of 10."""
    g = _generator(seed, 23)
    x = torch.randint(0, 10, (n, length), generator=g)
    return x, ((x == x[:, :1]).sum(dim=1, keepdim=True).float() / 4.0)


def binary_patterns_data(seed: int) -> Tensors:
    """24-bit patterns: 6 prototypes with 10% of the bits flipped (for an autoencoder with a BCE loss)."""
    g = _generator(seed, 24)
    prototypes = (torch.rand(6, 24, generator=g) < 0.5).float()
    x = prototypes[torch.arange(2048) % 6]
    x = torch.where(torch.rand(2048, 24, generator=g) < 0.1, 1.0 - x, x)
    return x, x


def wave_regression_data(seed: int) -> Tensors:
    g = _generator(seed, 25)
    x = torch.randn(512, 3, generator=g)
    y = torch.sin(3 * x[:, :1]) + torch.cos(2 * x[:, 1:2]) * x[:, 2:3] + 0.05 * torch.randn(512, 1, generator=g)
    return x, y


def normal_logistic_data(seed: int) -> Tensors:
    x, y, g = _normal_linear(seed, 26, 1024, 12, 0.0)
    labels = (y > 0).float()
    return x, torch.where(torch.rand(1024, 1, generator=g) < 0.15, 1.0 - labels, labels)


def unnormalised_deep_regression_data(seed: int) -> Tensors:
    g = _generator(seed, 27)
    scales = torch.logspace(0, 1.5, 6)
    z = torch.randn(2048, 6, generator=g)
    y = torch.tanh(z @ torch.randn(6, 3, generator=g)).prod(dim=1, keepdim=True) + 0.05 * torch.randn(
        2048, 1, generator=g
    )
    return scales * (z + 2.0 * torch.rand(6, generator=g)), y


# ----------------------------------------------------------------------------------------------- third evaluation part
# Written before the second round of tuning; see :data:`experiments.benchmarks.finder.tasks.THIRD_EVAL`.
def polynomial_features_data(seed: int) -> Tensors:
    """Powers 1..4 of ``t ~ U(-2, 2)`` (scales from about 1 to 16, strongly correlated) and a noisy cubic of ``t``."""
    g = _generator(seed, 28)
    t = 4.0 * torch.rand(1024, 1, generator=g) - 2.0
    x = torch.cat([t**k for k in range(1, 5)], dim=1)
    y = 0.5 * t - 0.3 * t**2 + 0.2 * t**3 + 0.3 * torch.randn(1024, 1, generator=g)
    return x, y


def moons_data(seed: int, n: int = 1000) -> Tensors:
    """Two interleaving half circles with Gaussian noise of 0.25 (scikit-learn's ``make_moons``, re-drawn)."""
    g = _generator(seed, 29)
    label = torch.arange(n) % 2
    angle = torch.pi * torch.rand(n, generator=g)
    outer = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    inner = torch.stack([1.0 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)
    x = torch.where(label.unsqueeze(1) == 0, outer, inner) + 0.25 * torch.randn(n, 2, generator=g)
    return x, label


def grating_images_data(seed: int, n: int = 1536) -> Tensors:
    """12x12 sine gratings in 3 orientations (the class), random frequency and phase, Gaussian noise of 0.5."""
    g = _generator(seed, 30)
    label = torch.arange(n) % 3
    theta = label.float() * torch.pi / 3 + 0.2 * torch.randn(n, generator=g)
    freq = 0.5 + 0.5 * torch.rand(n, generator=g)
    phase = 2 * torch.pi * torch.rand(n, generator=g)
    rows, cols = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    along = cols * torch.cos(theta)[:, None, None] + rows * torch.sin(theta)[:, None, None]
    images = torch.sin(freq[:, None, None] * along + phase[:, None, None])
    return (images + 0.5 * torch.randn(images.shape, generator=g)).unsqueeze(1), label


def trend_sequences_data(seed: int, n: int = 2048, length: int = 16) -> Tensors:
    """Noisy straight lines of 16 points; the target is the slope."""
    g = _generator(seed, 31)
    slope, intercept = torch.randn(n, 1, generator=g), torch.randn(n, 1, generator=g)
    t = torch.linspace(-1.0, 1.0, length)
    x = intercept + slope * t + 0.3 * torch.randn(n, length, generator=g)
    return x.unsqueeze(2), slope


def first_last_token_data(seed: int, n: int = 2048, length: int = 8) -> Tensors:
    """Sequences over 5 tokens; the label is whether the first and the last token are equal."""
    g = _generator(seed, 32)
    x = torch.randint(0, 5, (n, length), generator=g)
    return x, (x[:, :1] == x[:, -1:]).float()


def smooth_patches_data(seed: int, n: int = 2048) -> Tensors:
    """6x6 patches (flattened) of smooth random fields: 3 random low-frequency cosines each, and noise of 0.1."""
    g = _generator(seed, 33)
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij")
    patches = torch.zeros(n, 6, 6)
    for _ in range(3):
        fr, fc = (0.6 * torch.rand(n, 1, 1, generator=g) for _ in range(2))
        phase = 2 * torch.pi * torch.rand(n, 1, 1, generator=g)
        patches += torch.randn(n, 1, 1, generator=g) * torch.cos(fr * rows + fc * cols + phase)
    x = patches.flatten(1) + 0.1 * torch.randn(n, 36, generator=g)
    return x, x


def unnormalised_clusters_data(seed: int, n: int = 3072) -> Tensors:
    """6 Gaussian classes in 12-D, 10% of the labels replaced at random; features scaled by 0.1..1000 and offset."""
    g = _generator(seed, 34)
    labels = torch.arange(n) % 6
    z = 2.0 * torch.randn(6, 12, generator=g)[labels] + torch.randn(n, 12, generator=g)
    scales = torch.logspace(-1, 3, 12)[torch.randperm(12, generator=g)]
    x = scales * (z + 3.0 * torch.rand(12, generator=g))
    noisy = torch.where(torch.rand(n, generator=g) < 0.1, torch.randint(0, 6, (n,), generator=g), labels)
    return x, noisy


def noisy_logistic_data(seed: int, n: int = 2000) -> Tensors:
    """Labels of a noisy linear score in 15-D, 10% of them flipped."""
    g = _generator(seed, 35)
    x = torch.randn(n, 15, generator=g)
    labels = ((x @ torch.randn(15, 1, generator=g) + 0.5 * torch.randn(n, 1, generator=g)) > 0).float()
    return x, torch.where(torch.rand(n, 1, generator=g) < 0.1, 1.0 - labels, labels)


def kinked_regression_data(seed: int, n: int = 4096) -> Tensors:
    """A piecewise-linear function of 5 features with a product term, and noise of 0.2."""
    g = _generator(seed, 36)
    x = torch.randn(n, 5, generator=g)
    y = x[:, :1].abs() - x[:, 1:2].abs() + 0.5 * x[:, 2:3] * x[:, 3:4] + torch.relu(x[:, 4:5])
    return x, y + 0.2 * torch.randn(n, 1, generator=g)


def wavy_boundary_data(seed: int, n: int = 4096) -> Tensors:
    """Binary labels of ``sin(3 x0) + x1 x2 > 0`` on ``U(-1, 1)^4``, 5% of them flipped."""
    g = _generator(seed, 37)
    x = 2.0 * torch.rand(n, 4, generator=g) - 1.0
    labels = ((torch.sin(3.0 * x[:, 0]) + x[:, 1] * x[:, 2]) > 0).float().unsqueeze(1)
    return x, torch.where(torch.rand(n, 1, generator=g) < 0.05, 1.0 - labels, labels)


def unnormalised_smooth_data(seed: int, n: int = 512) -> Tensors:
    """A smooth function of 3 features, the inputs scaled by 1, 30 and 300 and offset; noise of 0.1."""
    g = _generator(seed, 38)
    z = torch.randn(n, 3, generator=g)
    y = torch.sin(z[:, :1]) + 0.5 * z[:, 1:2] * z[:, 2:3] + 0.1 * torch.randn(n, 1, generator=g)
    scales = torch.tensor([1.0, 30.0, 300.0])
    return scales * (z + 2.0 * torch.rand(3, generator=g)), y


def sparse_atoms_data(seed: int, n: int = 2048) -> Tensors:
    """40-D signals, each a non-negative mix of 3 of 12 unit atoms, plus noise of 0.05 (for an autoencoder)."""
    g = _generator(seed, 39)
    atoms = torch.randn(12, 40, generator=g)
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    chosen = torch.rand(n, 12, generator=g).argsort(dim=1)[:, :3]
    weights = torch.zeros(n, 12).scatter_(1, chosen, 1.0 + torch.rand(n, 3, generator=g))
    x = weights @ atoms + 0.05 * torch.randn(n, 40, generator=g)
    return x, x


def topic_tokens_data(seed: int, n: int = 2048, length: int = 20) -> Tensors:
    """Bags of 20 tokens (vocabulary 50) drawn from one of 4 overlapping topic distributions; the topic is the
    label."""
    g = _generator(seed, 40)
    topics = torch.softmax(1.5 * torch.randn(4, 50, generator=g), dim=1)
    labels = torch.arange(n) % 4
    tokens = torch.multinomial(topics[labels], length, replacement=True, generator=g)
    return tokens, labels


def blob_position_images_data(seed: int, n: int = 2048) -> Tensors:
    """12x12 images of one Gaussian blob at a random position, noise of 0.3; the target is its (row, column) / 12."""
    g = _generator(seed, 41)
    centre = 2.0 + 8.0 * torch.rand(n, 2, generator=g)
    rows, cols = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    dist2 = (rows - centre[:, 0, None, None]) ** 2 + (cols - centre[:, 1, None, None]) ** 2
    images = torch.exp(-dist2 / 4.0) + 0.3 * torch.randn(n, 12, 12, generator=g)
    return images.unsqueeze(1), centre / 12.0


# ----------------------------------------------------------------------------------------------- fourth evaluation part
# Written after the current method was frozen; see :data:`experiments.benchmarks.finder.tasks.EVAL`.
def ring_classes_data(seed: int, n: int = 1536) -> Tensors:
    """Three concentric rings in 2-D (radii 1, 2, 3, radial noise 0.25); the ring is the class."""
    g = _generator(seed, 42)
    labels = torch.arange(n) % 3
    angle = 2.0 * torch.pi * torch.rand(n, generator=g)
    radius = 1.0 + labels.float() + 0.25 * torch.randn(n, generator=g)
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1), labels


def heteroscedastic_linear_data(seed: int, n: int = 1024) -> Tensors:
    """A linear target of 12 features whose noise grows with the first feature's magnitude."""
    g = _generator(seed, 43)
    x = torch.randn(n, 12, generator=g)
    noise = (0.1 + 0.5 * x[:, :1].abs()) * torch.randn(n, 1, generator=g)
    return x, x @ torch.randn(12, 1, generator=g) + noise


def checkerboard_data(seed: int, n: int = 4096) -> Tensors:
    """Binary labels of a 4x4 checkerboard on ``U(-2, 2)^2``."""
    g = _generator(seed, 44)
    x = 4.0 * torch.rand(n, 2, generator=g) - 2.0
    cells = torch.floor(x + 2.0).long().sum(dim=1)
    return x, (cells % 2).float().unsqueeze(1)


def line_orientation_images_data(seed: int, n: int = 1536) -> Tensors:
    """12x12 images of a horizontal, vertical or diagonal line through a random point, noise of 0.4."""
    g = _generator(seed, 45)
    labels = torch.arange(n) % 3
    rows, cols = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    centre = 3.0 + 6.0 * torch.rand(n, 2, generator=g)
    dr, dc = rows - centre[:, 0, None, None], cols - centre[:, 1, None, None]
    distance = torch.stack([dr.abs(), dc.abs(), (dr - dc).abs() / 2**0.5])[labels, torch.arange(n)]
    images = (distance < 0.8).float() + 0.4 * torch.randn(n, 12, 12, generator=g)
    return images.unsqueeze(1), labels


def rising_sequence_data(seed: int, n: int = 2048, length: int = 10) -> Tensors:
    """Random walks of 10 steps; the class is whether the walk ends above where it started."""
    g = _generator(seed, 46)
    walk = torch.randn(n, length, 1, generator=g).cumsum(dim=1)
    return walk, (walk[:, -1, 0] > walk[:, 0, 0]).long()


def threshold_count_data(seed: int, n: int = 2048, length: int = 12) -> Tensors:
    """Sequences of ``U(0, 1)`` values; the target is the share of them above 0.7."""
    g = _generator(seed, 47)
    x = torch.rand(n, length, 1, generator=g)
    return x, (x > 0.7).float().mean(dim=1)


def indexed_token_data(seed: int, n: int = 2048, length: int = 10) -> Tensors:
    """Tokens of a vocabulary of 6 whose first token (1 to 5) points at a position; the class is the token there."""
    g = _generator(seed, 48)
    x = torch.randint(0, 6, (n, length), generator=g)
    x[:, 0] = torch.randint(1, 6, (n,), generator=g)
    return x, x[torch.arange(n), x[:, 0]]


def scaled_low_rank_data(seed: int, n: int = 2048) -> Tensors:
    """30-D signals of rank 5 with per-feature scales from 1 to 20 and offsets (for an autoencoder)."""
    g = _generator(seed, 49)
    signal = torch.randn(n, 5, generator=g) @ torch.randn(5, 30, generator=g) / 5**0.5
    scales = torch.logspace(0, 1.3, 30)
    x = scales * (signal + 0.05 * torch.randn(n, 30, generator=g)) + 2.0 * torch.rand(30, generator=g)
    return x, x


def scaled_classes_data(seed: int, n: int = 2048) -> Tensors:
    """4 classes of Gaussian clusters in 8-D whose features are scaled by 0.1 to 100."""
    g = _generator(seed, 50)
    labels = torch.arange(n) % 4
    x = 1.2 * torch.randn(4, 8, generator=g)[labels] + torch.randn(n, 8, generator=g)
    return x * torch.logspace(-1, 2, 8), labels


def sparse_binary_logistic_data(seed: int, n: int = 1024) -> Tensors:
    """40 binary features, each on with probability 0.1; labels from a sparse linear score with noise."""
    g = _generator(seed, 51)
    x = (torch.rand(n, 40, generator=g) < 0.1).float()
    w = torch.randn(40, 1, generator=g) * (torch.rand(40, 1, generator=g) < 0.3)
    score = 3.0 * x @ w + 0.3 * torch.randn(n, 1, generator=g)
    return x, (score > score.median()).float()


def log_count_regression_data(seed: int, n: int = 1024) -> Tensors:
    """``log1p`` of Poisson counts whose rate is a smooth function of 6 features."""
    g = _generator(seed, 52)
    x = torch.randn(n, 6, generator=g)
    rate = torch.exp(0.8 * torch.tanh(x @ torch.randn(6, 1, generator=g)) + 1.0)
    return x, torch.log1p(torch.poisson(rate, generator=g))


def radial_regression_data(seed: int, n: int = 2048) -> Tensors:
    """``cos(2 r)`` of the distance ``r`` from the origin in 4-D, with noise of 0.05."""
    g = _generator(seed, 53)
    x = torch.randn(n, 4, generator=g)
    return x, torch.cos(2.0 * x.norm(dim=1, keepdim=True)) + 0.05 * torch.randn(n, 1, generator=g)


def stripe_frequency_images_data(seed: int, n: int = 1536) -> Tensors:
    """12x12 images of vertical stripes with a random frequency and phase, noise of 0.3; the target is the
    frequency."""
    g = _generator(seed, 54)
    frequency = 0.5 + 1.5 * torch.rand(n, 1, 1, generator=g)
    phase = 2.0 * torch.pi * torch.rand(n, 1, 1, generator=g)
    cols = torch.arange(12.0).view(1, 1, 12)
    images = torch.sin(frequency * cols + phase).expand(n, 12, 12) + 0.3 * torch.randn(n, 12, 12, generator=g)
    return images.unsqueeze(1), frequency.view(n, 1)


def overlapping_gaussians_data(seed: int, n: int = 4096) -> Tensors:
    """Two Gaussian classes in 30-D whose means are 1.5 apart; binary labels."""
    g = _generator(seed, 55)
    direction = torch.randn(30, generator=g)
    labels = (torch.arange(n) % 2).float().unsqueeze(1)
    x = torch.randn(n, 30, generator=g) + 1.5 * (labels - 0.5) * direction / direction.norm()
    return x, labels

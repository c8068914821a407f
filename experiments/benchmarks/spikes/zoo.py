"""The spike benchmark's tasks, its injections, and the definitions its tables are scored by.

This file was written, and its SHA-256 recorded, before any setting of ``SpikeGuard`` was tuned: the tasks of both
halves, the injections and the definitions below are fixed. Settings may be tuned on :data:`DEV` only;
:data:`EVAL` only measures.

**Tasks.** Sixteen seeded problems, each a model, a loss, an optimizer at a fixed LR, a batch size and a budget
of optimizer steps, on in-memory data split 80/20 into a training and a held-out part. They spread over optimizers
(SGD, SGD with momentum, Adam, AdamW, RMSprop), models (linear, MLP, CNN, LSTM/GRU, self-attention, autoencoder),
losses (MSE, cross-entropy, BCE) and data (data sets scikit-learn ships in its package, California Housing
through scikit-learn's loader, and the synthetic sets of the finder benchmark). The models and most data come
from the finder benchmark's task zoo (:mod:`experiments.benchmarks.finder.tasks`). Each half covers every
optimizer, model and loss. Two evaluation tasks are the cases of the issue that asked for this benchmark: an MLP
on scikit-learn's digits with Adam at batch 32, and a GRU with RMSprop.

**Injections.** Each task and seed runs three scenarios, through a real ``Trainer.fit``:

- ``clean``: nothing injected;
- ``batch``: six corrupted batches, three *early* (at 12 %, 18 % and 24 % of the budget, while the loss still
  falls fast) and three *late* (70 %, 78 %, 86 %, where a classifier's loss is near zero): corrupted targets
  (regression: Gaussian noise of 2-20 target standard deviations added; classification: labels drawn at random),
  a single outlier sample in an otherwise normal batch (its inputs plus noise of 5-50 feature standard
  deviations; on token inputs, which have no magnitude, a second corrupted-target batch instead), and flipped
  labels (binary: ``1 - y``; classes: every label moved to another class; regression and autoencoders: ``-y``);
- ``lr``: two LR bursts, early (15 %) and late (75 %), each 3-30x for 1-3 steps.

Magnitudes and lengths are drawn per task and seed, log-uniformly. Injections are tied to batches (epoch and
index in the epoch), so a restart that skips a batch skips its injection.

**Definitions** (fixed with the tasks; :func:`real_spikes`, :func:`false_alarms`, :func:`final_ratio`):

- A run's *trace* is the loss of every optimizer step it executed, in order, as measured before that step's update
  (the value any guard sees). After a rollback or a restart the trace goes on with the steps executed next.
- A *real spike* is a step ``t >= 10`` of a trace whose loss is at least ``3x`` the median ``m`` of the 10 steps
  before it in the same trace, and at least ``0.05 * L0`` above it, where ``L0`` is the median of the trace's
  first 10 steps (the loss scale at the start, shared by every run of a task and seed). Its *size* is ``L_t / m``:
  3-5x, 5-20x or above 20x. Injected or natural, every real spike counts.
- A real spike is *detected* when the run flags one of the steps ``t, t+1, t+2``.
- A *false alarm* is a flag at a step ``f`` with no real spike at ``f-2 .. f`` and outside every injection's
  reach (a corrupted batch: its step and the two after; an LR burst: its steps and the three after).
- The *final loss* is the held-out loss averaged over the last five of evaluations every 10 steps (the budget's
  last 40 steps); a run that stops being finite scores ``inf``. It is compared with the clean run of the same task
  and seed without any intervention as ``(L + eps) / (L_clean + eps)``, ``eps = 0.02 * L_init`` (2 % of the
  held-out loss at the initial weights): a loss near zero cannot make a large ratio of a small difference.
- A task's *noise* is ``|ratio - 1|`` of a clean run that skips 20 consecutive batches from the middle of the
  budget (what a rollback costs), at least 0.01. A guarded run is *no worse than the unguarded one* when its
  ratio is at most the unguarded ratio times ``1 + noise``.
- *Updates lost*: optimizer updates computed and then discarded (skipped, undone by a rollback, or redone after a
  restart).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor, nn

from experiments.benchmarks.finder import data as finder_data
from experiments.benchmarks.finder.tasks import (
    AttentionClassifier,
    GRURegressor,
    LSTMRegressor,
    SmallCNN,
    TaskModule,
    mlp,
)

Tensors = tuple[Tensor, Tensor]


# ----------------------------------------------------------------------------------------------- data


def _sklearn(name: str, standardize_target: bool = False) -> Callable[[int], Tensors]:
    """A data set scikit-learn ships in its package (no download): features standardized later, labels as given."""

    def load(seed: int) -> Tensors:
        from sklearn import datasets

        x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        features = torch.tensor(x, dtype=torch.float32)
        if standardize_target:
            target = torch.tensor(y, dtype=torch.float32).unsqueeze(1)
            return features, (target - target.mean()) / target.std()
        return features, torch.tensor(y, dtype=torch.long)

    return load


def _binary(load: Callable[[int], Tensors]) -> Callable[[int], Tensors]:
    return lambda seed: (lambda xy: (xy[0], xy[1].float().reshape(-1, 1)))(load(seed))


def _autoencode(load: Callable[[int], Tensors], scale: float = 1.0) -> Callable[[int], Tensors]:
    return lambda seed: (lambda x: (x, x))(load(seed)[0] / scale)


def _housing(seed: int) -> Tensors:
    return finder_data.housing_data(seed)


@dataclass(frozen=True)
class SpikeTask:
    """One task of the benchmark.

    Attributes:
        name: Key in :data:`TASKS`.
        data: ``data(seed) -> (x, y)``, the whole data set (split 80/20 by :func:`split`).
        net: Builds the network (after seeding torch).
        loss: ``"mse"``, ``"cross_entropy"`` or ``"bce"``.
        optimizer: A key of the finder's ``OPTIMIZERS``.
        lr: The fixed LR.
        batch_size: Rows per batch.
        steps: Optimizer steps of a run.
        tokens: Whether the inputs are token indices (no outlier input then).
        standardize: Whether the features are standardized with the training part's statistics.
        source: What the data are, for the tables.
    """

    name: str
    data: Callable[[int], Tensors]
    net: Callable[[], nn.Module]
    loss: str
    optimizer: str
    lr: float
    batch_size: int
    steps: int
    tokens: bool = False
    standardize: bool = False
    source: str = "synthetic"

    def module(self, seed: int) -> TaskModule:
        torch.manual_seed(seed)
        return TaskModule(self.net(), self.loss, self.optimizer, self.lr)

    def split(self, seed: int) -> tuple[Tensors, Tensors]:
        return _split(self, seed)

    def steps_per_epoch(self, seed: int) -> int:
        return -(-len(self.split(seed)[0][0]) // self.batch_size)


@cache
def _split_cached(name: str, seed: int) -> tuple[Tensors, Tensors]:
    task = TASKS[name]
    x, y = task.data(seed)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(7919 + seed))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    x_train, x_test = x[train], x[test]
    if task.standardize:
        mean, std = x_train.mean(0), x_train.std(0)
        std = torch.where(std > 1e-3, std, torch.ones_like(std))  # a feature constant in training stays as is
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        if y.dtype.is_floating_point and y.shape == x.shape:  # an autoencoder reconstructs the standardized inputs
            return (x_train, x_train), (x_test, x_test)
    return (x_train, y[train]), (x_test, y[test])


def _split(task: SpikeTask, seed: int) -> tuple[Tensors, Tensors]:
    return _split_cached(task.name, seed)


_TASK_LIST = [
    # ------------------------------------------------------------------ development half (settings are tuned here)
    SpikeTask("housing_linear_sgd", _housing, lambda: nn.Linear(8, 1), "mse", "sgd", 0.01, 32, 1000,
              source="California Housing"),
    SpikeTask("wine_mlp_momentum", _sklearn("wine"), lambda: mlp([13, 32, 3]), "cross_entropy", "sgd_momentum", 0.02,
              16, 600, standardize=True, source="scikit-learn wine"),
    SpikeTask("breast_cancer_logistic_adamw", _binary(_sklearn("breast_cancer")), lambda: nn.Linear(30, 1), "bce",
              "adamw", 0.01, 32, 600, standardize=True, source="scikit-learn breast cancer"),
    SpikeTask("bars_cnn_adam", finder_data.bar_images_data, lambda: SmallCNN(4), "cross_entropy", "adam", 3e-3, 32,
              600),
    SpikeTask("adding_lstm_rmsprop", finder_data.adding_problem_data, lambda: LSTMRegressor(2), "mse", "rmsprop",
              1e-3, 32, 800),
    SpikeTask("majority_attention_adamw", finder_data.majority_token_data, lambda: AttentionClassifier(8, 10, 3),
              "cross_entropy", "adamw", 3e-3, 64, 600, tokens=True),
    SpikeTask("blobs_autoencoder_momentum", finder_data.blobs_data, lambda: mlp([16, 8, 2, 8, 16], nn.Tanh), "mse",
              "sgd_momentum", 0.01, 32, 800),
    SpikeTask("moons_mlp_sgd", finder_data.moons_data, lambda: mlp([2, 64, 64, 2]), "cross_entropy", "sgd", 0.1, 32,
              800),
    # ------------------------------------------------------------------ evaluation half (measures only)
    SpikeTask("digits_mlp_adam", _sklearn("digits"), lambda: mlp([64, 64, 10]), "cross_entropy", "adam", 1e-3, 32,
              800, standardize=True, source="scikit-learn digits"),
    SpikeTask("threshold_gru_rmsprop", finder_data.threshold_count_data, lambda: GRURegressor(1), "mse", "rmsprop",
              1e-3, 32, 800),
    SpikeTask("diabetes_linear_momentum", _sklearn("diabetes", standardize_target=True), lambda: nn.Linear(10, 1),
              "mse", "sgd_momentum", 0.01, 16, 600, standardize=True, source="scikit-learn diabetes"),
    SpikeTask("housing_mlp_adamw", _housing, lambda: mlp([8, 64, 64, 1]), "mse", "adamw", 1e-3, 64, 800,
              source="California Housing"),
    SpikeTask("gratings_cnn_momentum", finder_data.grating_images_data, lambda: SmallCNN(3), "cross_entropy",
              "sgd_momentum", 0.02, 32, 600),
    SpikeTask("first_last_attention_adam", finder_data.first_last_token_data, lambda: AttentionClassifier(5, 8, 1),
              "bce", "adam", 3e-3, 64, 600, tokens=True),
    SpikeTask("digits_autoencoder_rmsprop", _autoencode(_sklearn("digits"), 16.0), lambda: mlp([64, 32, 8, 32, 64]),
              "mse", "rmsprop", 1e-3, 32, 800, source="scikit-learn digits"),
    SpikeTask("spirals_mlp_sgd", finder_data.spirals_data, lambda: mlp([2, 64, 64, 3]), "cross_entropy", "sgd", 0.1,
              32, 1000),
]  # fmt: skip
TASKS: dict[str, SpikeTask] = {t.name: t for t in _TASK_LIST}
DEV: tuple[str, ...] = tuple(t.name for t in _TASK_LIST[:8])
"""Tasks that settings may be tuned on."""
EVAL: tuple[str, ...] = tuple(t.name for t in _TASK_LIST[8:])
"""Tasks that only measure: nothing is tuned on them."""
SEEDS: tuple[int, ...] = (0, 1)
SCENARIOS: tuple[str, ...] = ("clean", "batch", "lr")


# ----------------------------------------------------------------------------------------------- injections

BATCH_FRACTIONS = (0.12, 0.18, 0.24, 0.70, 0.78, 0.86)
BATCH_KINDS = ("targets", "outlier", "flip", "targets", "outlier", "flip")
LR_FRACTIONS = (0.15, 0.75)


@dataclass(frozen=True)
class Injection:
    """One injection: its kind, the optimizer step it starts at (counted without skipped batches), its magnitude
    (noise scale or LR factor) and its length in steps."""

    kind: str  # "targets", "outlier", "flip" or "lr"
    step: int
    magnitude: float
    length: int = 1

    @property
    def reach(self) -> range:
        """The steps whose flags it explains: a batch and the two after; an LR burst and the three after."""
        return range(self.step, self.step + self.length + (3 if self.kind == "lr" else 2))


def _log_uniform(g: torch.Generator, low: float, high: float) -> float:
    return math.exp(math.log(low) + (math.log(high) - math.log(low)) * float(torch.rand((), generator=g)))


def injections(task: SpikeTask, scenario: str, seed: int) -> list[Injection]:
    """The injections of a scenario, drawn from the task's name and the seed."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + sum(map(ord, task.name)) * 101 + len(scenario))
    if scenario == "batch":
        out = []
        for fraction, kind in zip(BATCH_FRACTIONS, BATCH_KINDS):
            if kind == "outlier" and task.tokens:
                kind = "targets"
            low, high = {"targets": (2.0, 20.0), "outlier": (5.0, 50.0), "flip": (1.0, 1.0)}[kind]
            out.append(Injection(kind, int(fraction * task.steps), _log_uniform(g, low, high)))
        return out
    if scenario == "lr":
        return [
            Injection("lr", int(f * task.steps), _log_uniform(g, 3.0, 30.0), int(torch.randint(1, 4, (), generator=g)))
            for f in LR_FRACTIONS
        ]
    return []


def corrupt(task: SpikeTask, injection: Injection, batch: Tensors, g: torch.Generator) -> Tensors:
    """The batch as the injection corrupts it (never in place)."""
    x, y = batch
    kind = injection.kind
    if kind == "outlier":
        x = x.clone()
        i = int(torch.randint(0, len(x), (), generator=g))
        x[i] = x[i] + injection.magnitude * torch.randn(x[i].shape, generator=g) * _feature_scale(task)
        return x, y  # an autoencoder's target stays the clean input
    if task.loss == "cross_entropy":
        classes = _classes(task)
        if kind == "targets":
            return x, torch.randint(0, classes, y.shape, generator=g)
        return x, (y + torch.randint(1, classes, y.shape, generator=g)) % classes
    if task.loss == "bce":
        if kind == "targets":
            return x, torch.randint(0, 2, y.shape, generator=g).to(y.dtype)
        return x, 1.0 - y
    if kind == "targets":
        return x, y + injection.magnitude * _target_scale(task) * torch.randn(y.shape, generator=g)
    return x, -y


def _feature_scale(task: SpikeTask) -> Tensor:
    (x_train, _), _ = task.split(0)
    return x_train.std(0).clamp_min(1e-3)


def _target_scale(task: SpikeTask) -> float:
    (_, y_train), _ = task.split(0)
    return float(y_train.float().std())


def _classes(task: SpikeTask) -> int:
    (_, y_train), _ = task.split(0)
    return int(y_train.max()) + 1


# ----------------------------------------------------------------------------------------------- definitions

SPIKE_RATIO = 3.0
SPIKE_WINDOW = 10
SPIKE_FLOOR = 0.05
DETECTION_REACH = 2
SIZES = (("3-5x", 3.0, 5.0), ("5-20x", 5.0, 20.0), (">20x", 20.0, math.inf))
FINAL_EVALUATIONS, FINAL_EVERY = 5, 10
EPS_SHARE = 0.02
NOISE_SKIP = 20
NOISE_FLOOR = 0.01


def real_spikes(trace: Sequence[float]) -> dict[int, float]:
    """The real spikes of a trace: step -> size (its loss over the median of the 10 steps before it)."""
    if len(trace) <= SPIKE_WINDOW:
        return {}
    start = statistics.median(trace[:SPIKE_WINDOW])
    out = {}
    for t in range(SPIKE_WINDOW, len(trace)):
        x = trace[t]
        m = statistics.median(trace[t - SPIKE_WINDOW : t])
        if not math.isfinite(x):
            out[t] = math.inf
        elif m > 0 and x >= SPIKE_RATIO * m and x - m >= SPIKE_FLOOR * start:
            out[t] = x / m
    return out


def size_class(size: float) -> str:
    return next(name for name, low, high in SIZES if low <= size < high or (high == math.inf and size >= low))


def detected(spikes: dict[int, float], flags: Sequence[int]) -> dict[int, bool]:
    """For each real spike, whether a flag fell on it or on one of the two steps after it."""
    flagged = set(flags)
    return {t: any(t + k in flagged for k in range(DETECTION_REACH + 1)) for t in spikes}


def false_alarms(spikes: dict[int, float], flags: Sequence[int], reaches: Sequence[range]) -> list[int]:
    """Flags on steps that are no real spike (nor just after one) and outside every injection's reach."""
    return [
        f
        for f in flags
        if not any(f - k in spikes for k in range(DETECTION_REACH + 1)) and not any(f in r for r in reaches)
    ]


def final_ratio(loss: float, clean: float, initial: float) -> float:
    """``(loss + eps) / (clean + eps)`` with ``eps`` 2 % of the held-out loss at the initial weights."""
    if not math.isfinite(loss):
        return math.inf
    eps = EPS_SHARE * initial
    return (loss + eps) / (clean + eps)


def no_worse(ratio: float, unguarded: float, noise: float) -> bool:
    return ratio <= unguarded * (1.0 + max(noise, NOISE_FLOOR))

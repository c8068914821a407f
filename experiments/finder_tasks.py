"""Small synthetic tasks that validate LR finders: does training at the suggested LR end near the best LR?

Each :class:`FinderTask` builds a seeded LightningModule (the same initial weights every time) with an ``lr``
attribute (so Lightning's ``LearningRateFinder`` can set it too) and an in-memory, index-sliced batch iterable.
:func:`final_loss` trains a fresh module for a fixed budget of optimizer steps at one LR, in a plain PyTorch loop
(the same batches for every LR), and returns the loss on the whole training set over the last few steps. :func:`validate` sets the
suggestions of :class:`lr_callbacks.LRFinder` (every method, from one sweep) and of Lightning's
``LearningRateFinder`` beside the best LR of a log-spaced grid.

The three tasks differ in kind and optimizer:

- ``regression``: linear least squares with feature scales spread over 1..10 (condition ~100), plain SGD.
- ``classifier``: a 2-hidden-layer ReLU MLP on 4 overlapping Gaussian classes in 10-D, SGD with momentum 0.9.
- ``autoencoder``: a tanh autoencoder 32-16-4-16-32 on data near a 4-D subspace, Adam.

>>> task = TASKS["regression"]
>>> round(final_loss(task, 0.0, steps=3), 3) == round(final_loss(task, 0.0, steps=0), 3)
True
"""

from __future__ import annotations

import contextlib
import io
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lr_callbacks.curvature import max_stable_lr
from lr_callbacks.finder import SUGGESTIONS, LRFinder, suggest


# ----------------------------------------------------------------------------------------------- data
class SliceBatches:
    """Re-iterable batches of in-memory tensors by index slicing; each pass draws a permutation from the global
    torch RNG (as ``RandomSampler`` does), so seeding torch fixes the order.

    >>> batches = SliceBatches((torch.arange(5.0),), batch_size=2, shuffle=False)
    >>> [b[0].tolist() for b in batches]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """

    def __init__(self, tensors: tuple[Tensor, ...], batch_size: int, shuffle: bool = True) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.tensors[0])
        order = torch.randperm(n) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield tuple(t[idx] for t in self.tensors)


# ----------------------------------------------------------------------------------------------- modules
class _TaskModule(pl.LightningModule):
    """A seeded network, a loss on a batch, and an optimizer built from ``self.lr``."""

    def __init__(self, lr: float, optimizer: Callable[..., torch.optim.Optimizer]) -> None:
        super().__init__()
        self.lr = lr
        self.optimizer_fn = optimizer

    def loss(self, batch: tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_fn(self.parameters(), lr=self.lr)


class LinearRegressor(_TaskModule):
    def __init__(self, lr: float, n_features: int) -> None:
        super().__init__(lr, torch.optim.SGD)
        self.net = nn.Linear(n_features, 1)

    def loss(self, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)


class MLPRegressor(_TaskModule):
    def __init__(self, lr: float, n_features: int, hidden: int = 32) -> None:
        super().__init__(lr, lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9))
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def loss(self, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)


class MLPClassifier(_TaskModule):
    def __init__(self, lr: float, n_features: int, n_classes: int, hidden: int = 32) -> None:
        super().__init__(lr, lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9))
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
        )

    def loss(self, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)


class Autoencoder(_TaskModule):
    def __init__(self, lr: float, dim: int, code: int) -> None:
        super().__init__(lr, torch.optim.Adam)
        self.net = nn.Sequential(
            nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, code), nn.Tanh(), nn.Linear(code, 16), nn.Tanh(), nn.Linear(16, dim)
        )

    def loss(self, batch: tuple[Tensor, ...]) -> Tensor:
        (x,) = batch
        return nn.functional.mse_loss(self.net(x), x)


# ----------------------------------------------------------------------------------------------- tasks
def _regression_data(seed: int) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, 1, 16)
    x = torch.randn(1024, 16, generator=g) * scales
    w = torch.randn(16, 1, generator=g) / scales.unsqueeze(1)
    return x, x @ w + 0.1 * torch.randn(1024, 1, generator=g)


def _mlp_regression_data(seed: int) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2048, 8, generator=g)
    w = torch.randn(8, 3, generator=g)
    y = torch.sin(x @ w).sum(dim=1, keepdim=True) + 0.1 * torch.randn(2048, 1, generator=g)
    return x, y


def _classifier_data(seed: int) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    centres = 0.6 * torch.randn(4, 10, generator=g)  # overlapping classes: the loss has a floor above 0
    y = torch.arange(4096) % 4
    return centres[y] + torch.randn(4096, 10, generator=g), y


def _autoencoder_data(seed: int) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(4, 32, generator=g) / 2
    return (torch.randn(1024, 4, generator=g) @ basis + 0.2 * torch.randn(1024, 32, generator=g),)


@dataclass
class FinderTask:
    """One validation task: a module factory (seeded init), its data, and the training budget in steps."""

    name: str
    build: Callable[[float], _TaskModule]
    data: Callable[[int], tuple[Tensor, ...]]
    batch_size: int = 64
    steps: int = 300
    seed: int = 0
    _tensors: tuple[Tensor, ...] | None = field(default=None, repr=False)

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        if self._tensors is None:
            self._tensors = self.data(self.seed)
        return self._tensors

    def module(self, lr: float = 1e-3) -> _TaskModule:
        torch.manual_seed(self.seed)
        return self.build(lr)

    def batches(self) -> SliceBatches:
        return SliceBatches(self.tensors, self.batch_size, shuffle=True)


TASKS: dict[str, FinderTask] = {
    "regression": FinderTask("regression", lambda lr: MLPRegressor(lr, 8), _mlp_regression_data),
    "classifier": FinderTask("classifier", lambda lr: MLPClassifier(lr, 10, 4), _classifier_data),
    "autoencoder": FinderTask("autoencoder", lambda lr: Autoencoder(lr, 32, 4), _autoencoder_data),
    "linear": FinderTask("linear", lambda lr: LinearRegressor(lr, 16), _regression_data, steps=500),
}


# ----------------------------------------------------------------------------------------------- measurements
def final_loss(task: FinderTask, lr: float, steps: int | None = None, tail: int = 5, every: int = 10) -> float:
    """Train a fresh module for ``steps`` optimizer steps at ``lr``; its loss on the whole training set at the end.

    The loss is the mean of ``tail`` evaluations ``every`` steps apart, ending at the last step: at a constant LR
    the loss jitters from step to step, and one evaluation would rank neighbouring LRs by that jitter. A run that
    blows up returns ``inf``.
    """
    module = task.module(lr)
    optimizer = module.configure_optimizers()
    batches = task.batches()
    budget = task.steps if steps is None else steps
    checkpoints = {budget - every * k for k in range(tail)}
    seen: list[float] = []

    def evaluate() -> None:
        with torch.no_grad():
            seen.append(float(module.loss(task.tensors)))

    done = 0
    if 0 in checkpoints:
        evaluate()
    while done < budget:
        for batch in batches:
            if done == budget:
                break
            optimizer.zero_grad()
            loss = module.loss(batch)
            if not torch.isfinite(loss):
                return math.inf
            loss.backward()
            optimizer.step()
            done += 1
            if done in checkpoints:
                evaluate()
    out = sum(seen) / len(seen)
    return out if math.isfinite(out) else math.inf


def grid_lrs(low: float = 1e-4, high: float = 10.0, per_decade: int = 4) -> list[float]:
    """Log-spaced grid, ``per_decade`` points per decade, both ends included."""
    decades = math.log10(high / low)
    n = round(decades * per_decade)
    return [low * 10 ** (i / per_decade) for i in range(n + 1)]


def grid_best(task: FinderTask, lrs: Sequence[float] | None = None) -> tuple[float, float]:
    """``(best lr, its final loss)`` over the grid."""
    losses = {lr: final_loss(task, lr) for lr in (lrs or grid_lrs())}
    best = min(losses, key=losses.__getitem__)
    return best, losses[best]


def _quiet_trainer(callbacks: list[pl.Callback], root: str, **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = dict(
        default_root_dir=root,
        max_steps=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    options.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **options)


def run_ours(task: FinderTask, **finder_kwargs: Any) -> tuple[LRFinder, float]:
    """Run :class:`LRFinder` at fit start (``apply=False``); the finder and its wall time in seconds."""
    finder = LRFinder(apply=False, **finder_kwargs)
    module = task.module()
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        _quiet_trainer([finder], root).fit(module, task.batches())
        return finder, time.perf_counter() - start


def run_lightning(task: FinderTask, min_lr: float = 1e-7, max_lr: float = 10.0, num_steps: int = 100) -> tuple[float | None, int, float]:
    """Lightning's ``LearningRateFinder`` on the same task: ``(suggestion, steps it took, seconds)``."""
    from lightning.pytorch.callbacks import LearningRateFinder

    finder = LearningRateFinder(min_lr=min_lr, max_lr=max_lr, num_training_steps=num_steps, update_attr=False)
    module = task.module()
    # It writes a checkpoint into the root dir, and draws a tqdm bar whatever the trainer says.
    with tempfile.TemporaryDirectory() as root, contextlib.redirect_stderr(io.StringIO()):
        start = time.perf_counter()
        _quiet_trainer([finder], root).fit(module, task.batches())
        seconds = time.perf_counter() - start
    result = finder.optimal_lr
    if result is None:
        return None, 0, seconds
    return result.suggestion(), len(result.results.get("lr", [])), seconds


def all_suggestions(task: FinderTask, finder: LRFinder) -> dict[str, float | None]:
    """Every method's suggestion from one finished sweep (``curvature`` computed at the initial weights)."""
    result = finder.result
    assert result is not None
    out: dict[str, float | None] = {}
    for method in SUGGESTIONS:
        if method == "curvature":
            module = task.module()
            batch = next(iter(task.batches()))
            bound = max_stable_lr(module, lambda m, b: m.loss(b), batch)
            optimizer = module.configure_optimizers()
            momentum = float(optimizer.param_groups[0].get("momentum", 0.0)) if isinstance(optimizer, torch.optim.SGD) else 0.0
            out[method] = finder.curvature_scale * bound * (1.0 + momentum)
        else:
            found = suggest(method, result.lrs, result.losses, result.smoothed_losses)
            out[method] = None if found is None else found[0]
    return out


@dataclass
class Row:
    """One task's validation figures. ``ratio`` = final loss at the suggestion / grid best (1.0 = as good)."""

    task: str
    grid_lr: float
    grid_loss: float
    ours: dict[str, tuple[float | None, float]]
    lightning: tuple[float | None, float]


def _ratio(task: FinderTask, lr: float | None, best: float) -> float:
    if lr is None or not math.isfinite(lr) or lr <= 0:
        return math.inf
    return final_loss(task, lr) / best


def validate(names: Sequence[str] = tuple(TASKS), methods: Sequence[str] = SUGGESTIONS, **finder_kwargs: Any) -> list[Row]:
    """For each task: grid best, each of our methods and Lightning's finder, as ``(lr, loss ratio to grid best)``."""
    rows = []
    for name in names:
        task = TASKS[name]
        grid_lr, grid_loss = grid_best(task)
        finder, _ = run_ours(task, **finder_kwargs)
        suggestions = all_suggestions(task, finder)
        ours = {m: (suggestions[m], _ratio(task, suggestions[m], grid_loss)) for m in methods}
        theirs, _, _ = run_lightning(task)
        rows.append(Row(name, grid_lr, grid_loss, ours, (theirs, _ratio(task, theirs, grid_loss))))
    return rows


def format_rows(rows: Sequence[Row]) -> str:
    """A plain-text table: per task the grid best, then ``lr (ratio)`` for each method and for Lightning."""
    methods = list(rows[0].ours) if rows else []
    head = f"{'task':<12} {'grid best lr (loss)':>22} " + " ".join(f"{m:>20}" for m in [*methods, "lightning"])
    lines = [head]
    for row in rows:
        cells = [f"{_fmt(lr)} ({ratio:.2f}x)" for lr, ratio in [*row.ours.values(), row.lightning]]
        lines.append(f"{row.task:<12} {row.grid_lr:>11.3g} ({row.grid_loss:.3g})".ljust(36) + " ".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)


def _fmt(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.3g}"


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run fastest (and least disturbed by other processes) on one intra-op thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    with one_thread():
        print(format_rows(validate()))

"""Throughput of the experiment harness on the housing task (batch 32).

Compares, in one process, with runs interleaved and medians of ``repeats``:

- the harness (``experiments.train.train`` with ``experiment=housing_sgd``: torchmetrics,
  TensorBoard logger, LR monitor, history callback) against a bare Lightning loop on the
  same model and data, and against a plain PyTorch loop;
- index-sliced batches (``IndexBatchLoader``) against ``DataLoader(TensorDataset)``, in
  plain PyTorch and in bare Lightning.

A timed window runs from the start of batch ``WARMUP`` to the end of the last batch, so
setup and validation stay outside it. Throughput is counted per CPU-second of this process
(all its threads, e.g. TensorBoard's writer; torch uses one thread), which stays stable when
other jobs share the machine; wall-clock steps/s are printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from experiments.data import HousingDataModule, IndexBatchLoader

WARMUP = 20
BATCH_SIZE = 32
HARNESS = "harness / index slicing"
BARE = "bare Lightning / index slicing"


class _Window:
    """CPU and wall time between :meth:`start` and the last :meth:`stop`."""

    def __init__(self) -> None:
        self.cpu0 = self.wall0 = self.cpu1 = self.wall1 = 0.0

    def start(self) -> None:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def stop(self) -> None:
        self.cpu1, self.wall1 = time.process_time(), time.perf_counter()

    def rates(self, steps: int) -> tuple[float, float]:
        """``(steps per CPU-second, steps per wall-second)``."""
        return steps / max(self.cpu1 - self.cpu0, 1e-9), steps / max(self.wall1 - self.wall0, 1e-9)


class StepTimer(Callback):
    """Times training batches after ``warmup`` of them (that batch's start → the last batch's end).

    Args:
        warmup: untimed leading batches.
    """

    def __init__(self, warmup: int = WARMUP) -> None:
        self.warmup = warmup
        self.seen = 0
        self.window = _Window()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.seen == self.warmup:
            self.window.start()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.seen += 1
        self.window.stop()

    def rates(self) -> tuple[float, float]:
        """``(steps per CPU-second, steps per wall-second)`` of the timed window."""
        if self.seen <= self.warmup:
            raise RuntimeError(f"StepTimer saw {self.seen} batches; needs more than warmup={self.warmup}.")
        return self.window.rates(self.seen - self.warmup)


class BareRegression(pl.LightningModule):
    """The housing model and nothing else: Linear(8, 1), MSE, SGD; no logging, metrics or callbacks."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 1)
        self.lr = lr

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.linear(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def housing_train_set() -> tuple[torch.Tensor, torch.Tensor]:
    """The scaled training split of the housing task."""
    dm = HousingDataModule(batch_size=BATCH_SIZE)
    dm.setup()
    if dm.train_set is None:
        raise RuntimeError("HousingDataModule.setup() left no training split")
    x, y = dm.train_set
    return x, y


def loaders(x: torch.Tensor, y: torch.Tensor) -> dict[str, Callable[[], Iterable]]:
    """Factories of the two batching methods, both shuffling."""
    return {
        "index slicing": lambda: IndexBatchLoader((x, y), BATCH_SIZE, shuffle=True),
        "DataLoader(TensorDataset)": lambda: DataLoader(TensorDataset(x, y), batch_size=BATCH_SIZE, shuffle=True),
    }


def plain_torch(loader_fn: Callable[[], Iterable], steps: int) -> tuple[float, float]:
    """Rates of a hand-written PyTorch loop (same model, loss and optimizer)."""
    model = nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    window, seen = _Window(), 0
    while True:
        for x, y in loader_fn():
            if seen == WARMUP:
                window.start()
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            seen += 1
            if seen == WARMUP + steps:
                window.stop()
                return window.rates(steps)


def bare_lightning(loader_fn: Callable[[], Iterable], steps: int) -> tuple[float, float]:
    """Rates of a minimal LightningModule + Trainer (no logger, metrics or callbacks but the timer)."""
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=WARMUP + steps, logger=False, callbacks=[timer],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(BareRegression(), train_dataloaders=loader_fn())
    return timer.rates()


def harness(steps: int, out_dir: str) -> tuple[float, float]:
    """Rates of ``train()`` on ``experiment=housing_sgd`` (metrics, TensorBoard, LR monitor, history)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from experiments.train import CONFIG_DIR, train

    overrides = [
        "experiment=housing_sgd", f"paths.output_dir={out_dir}", f"trainer.max_steps={WARMUP + steps}",
        "trainer.max_epochs=-1", "run_test=false", "+callbacks.timer._target_=experiments.benchmarks.harness.StepTimer",
    ]  # fmt: skip
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    _, objects = train(cfg)
    (timer,) = [cb for cb in objects["callbacks"] if isinstance(cb, StepTimer)]
    return timer.rates()


def measure(steps: int = 300, repeats: int = 5) -> dict[str, tuple[float, float]]:
    """Median ``(CPU, wall)`` steps/s per ``"<loop> / <batching>"``; the setups are interleaved per repeat."""
    torch.set_num_threads(1)  # tiny model: extra threads only add noise
    x, y = housing_train_set()
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name, loader_fn in loaders(x, y).items():
                runs.setdefault(f"plain PyTorch / {name}", []).append(plain_torch(loader_fn, steps))
                runs.setdefault(f"bare Lightning / {name}", []).append(bare_lightning(loader_fn, steps))
            runs.setdefault(HARNESS, []).append(harness(steps, f"{tmp}/run{r}"))
    return {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for k, v in runs.items()}


def _parse(args: argparse.Namespace | Sequence[str] | None) -> argparse.Namespace:
    if isinstance(args, argparse.Namespace):
        return args
    parser = argparse.ArgumentParser(prog="harness benchmark")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per setup; medians are reported")
    parser.add_argument("--steps", type=int, default=300, help="timed optimizer steps per run")
    return parser.parse_args(list(args or []))


def run(args: argparse.Namespace | Sequence[str] | None = None) -> None:
    """Prints steps/s per setup and the ratios: harness / bare Lightning, index slicing / DataLoader.

    Args:
        args: namespace (or argv list) with ``repeats`` and ``steps`` (timed optimizer steps per run).
    """
    ns = _parse(args)
    steps, repeats = getattr(ns, "steps", 300), getattr(ns, "repeats", 5)
    res = measure(steps=steps, repeats=repeats)
    base = res[BARE][0]
    print(f"housing task, batch {BATCH_SIZE}, {steps} timed steps per run, median of {repeats} interleaved runs")
    print(f"{'loop / batching':<44}{'steps/CPU-s':>12}{'steps/s wall':>14}{'vs bare Lightning':>19}")
    for name, (cpu, wall) in res.items():
        print(f"{name:<44}{cpu:>12.0f}{wall:>14.0f}{cpu / base:>19.2f}")
    print(f"harness / bare Lightning: {res[HARNESS][0] / base:.3f} (bar: >= 0.90)")
    for loop in ("plain PyTorch", "bare Lightning"):
        gain = res[f"{loop} / index slicing"][0] / res[f"{loop} / DataLoader(TensorDataset)"][0]
        print(f"index slicing / DataLoader(TensorDataset), {loop}: {gain:.2f}x")

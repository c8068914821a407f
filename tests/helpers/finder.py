"""Shared by the finder tests: exact state captures, a module that fails on demand, a probe that runs the finder,
a manually optimized module with two optimizers."""

from __future__ import annotations

import copy
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader

from lr_callbacks import LRFinder
from tests.helpers.tiny import TinyRegression, regression_data


def shuffled_loader() -> DataLoader:
    return DataLoader(regression_data(64), batch_size=8, shuffle=True)


def state_of(module: nn.Module, optimizers: list[torch.optim.Optimizer], scaler: Any = None) -> dict[str, Any]:
    state = {
        "module": {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in module.parameters()],
        "optimizers": [copy.deepcopy(opt.state_dict()) for opt in optimizers],
        "rng": (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()),
    }
    if scaler is not None:
        state["scaler"] = copy.deepcopy(scaler.state_dict())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def assert_identical(a: Any, b: Any) -> None:
    """Bit-identical nested structure of tensors / numbers / containers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert a.dtype == b.dtype
        assert torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_identical(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_identical(x, y)
    else:
        assert a == b


class FailingRegression(TinyRegression):
    """Raises from ``training_step`` on its ``fail_at``-th call once armed; ``fail_at="probe"`` raises on the first
    call without gradients (a probe batch). ``failed_with_grad`` records whether gradients were on when it raised."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_at: int | str | None = None
        self.calls = 0
        self.failed_with_grad: bool | None = None

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.fail_at is not None:
            self.calls += 1
            if self.calls == self.fail_at or (self.fail_at == "probe" and not torch.is_grad_enabled()):
                self.failed_with_grad = torch.is_grad_enabled()
                raise RuntimeError("injected failure")
        return super().training_step(batch, batch_idx)


class Probe(Callback):
    """At the start of ``epoch``: snapshot, run the finder by hand, snapshot again."""

    def __init__(self, finder: LRFinder, epoch: int = 1, fail_at: int | str | None = None) -> None:
        self.finder = finder
        self.epoch = epoch
        self.fail_at = fail_at
        self.before: dict[str, Any] | None = None
        self.after: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch:
            return
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self.before = state_of(pl_module, trainer.optimizers, scaler)
        pl_module.fail_at = self.fail_at
        try:
            self.finder.find(trainer, pl_module)
        except RuntimeError as err:
            self.error = err
        pl_module.fail_at = None
        self.after = state_of(pl_module, trainer.optimizers, scaler)


def bn_regression(optimizer: Any, **kwargs: Any) -> FailingRegression:
    """Two param groups of different LRs plus a third, BatchNorm buffers, dropout (the RNG)."""
    torch.manual_seed(0)
    model = FailingRegression(base_lrs=(0.05, 0.02), optimizer=optimizer, **kwargs)
    model.layer = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.2), nn.Linear(4, 1))
    model.configure_optimizers = lambda: optimizer(  # type: ignore[method-assign]
        [{"params": model.layer[0].parameters(), "lr": 0.05}, {"params": model.layer[3].parameters(), "lr": 0.02}]
        + [{"params": model.layer[1].parameters(), "lr": 0.05}],
        **kwargs,
    )
    return model


class TwoOptimizers(pl.LightningModule):
    """Manual optimization with two optimizers of different base LRs (10:1)."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)
        self.seen_lrs: list[tuple[float, float]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        opt_a, opt_b = self.optimizers()
        self.seen_lrs.append((opt_a.param_groups[0]["lr"], opt_b.param_groups[0]["lr"]))
        x, y = batch
        loss = nn.functional.mse_loss(self.b(torch.tanh(self.a(x))), y)
        opt_a.zero_grad()
        opt_b.zero_grad()
        self.manual_backward(loss)
        opt_a.step()
        opt_b.step()
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.a.parameters(), lr=0.1, momentum=0.9), torch.optim.Adam(
            self.b.parameters(), lr=0.01
        )

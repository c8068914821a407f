"""Helpers shared by the SpikeAdaptiveLR tests: a module with scripted losses, state probes, a resumable loader."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from tests.helpers.tiny import TinyRegression, regression_data


class Scripted(TinyRegression):
    """Tiny regression whose step loss is scripted per epoch (or per optimizer step).

    ``mode="replace"``: the loss value is the script's (float64), with a zero-weight real loss so that the
    optimizer still steps. ``mode="scale"``: the real MSE is multiplied by the script, so weights train.
    """

    def __init__(
        self,
        script: Sequence[float],
        *,
        mode: str = "replace",
        per_step: bool = False,
        log_as: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.script = list(script)
        self.mode = mode
        self.per_step = per_step
        self.log_as = log_as

    def value(self) -> float:
        return self.script[self.trainer.global_step if self.per_step else self.current_epoch]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        mse = nn.functional.mse_loss(self(x), y).double()
        value = self.value()
        loss = 0.0 * mse + value if self.mode == "replace" else mse * value
        if self.log_as:
            on_step = self.per_step
            self.log(self.log_as, torch.tensor(value, dtype=torch.float64), on_step=on_step, on_epoch=not on_step)
        return loss


def training_state(module: pl.LightningModule, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, Any]:
    """Deep copies of the weights and buffers and of every optimizer's per-parameter state."""
    return {
        "model": copy.deepcopy(module.state_dict()),
        "opt": [
            copy.deepcopy(opt.state.get(p, {})) for opt in optimizers for g in opt.param_groups for p in g["params"]
        ],
    }


def identical(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Bit-for-bit equality of two :func:`training_state` copies."""
    same_model = a["model"].keys() == b["model"].keys() and all(
        torch.equal(a["model"][k], b["model"][k]) for k in a["model"]
    )
    same_opt = len(a["opt"]) == len(b["opt"]) and all(
        sa.keys() == sb.keys() and all(_equal(sa[k], sb[k]) for k in sa) for sa, sb in zip(a["opt"], b["opt"])
    )
    return same_model and same_opt


def _equal(a: Any, b: Any) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


class StepProbe(Callback):
    """The training state before (batch start) and after (batch end) every optimizer step, and the LRs used."""

    def __init__(self) -> None:
        self.before: list[dict[str, Any]] = []
        self.after: list[dict[str, Any]] = []
        self.lrs: list[list[float]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.before.append(training_state(pl_module, trainer.optimizers))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.lrs.append([g["lr"] for opt in trainer.optimizers for g in opt.param_groups])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.after.append(training_state(pl_module, trainer.optimizers))


class ResumableLoader:
    """In-memory batches that resume mid-epoch through Lightning's ``state_dict`` / ``load_state_dict`` protocol.

    Each epoch's order is a permutation drawn from ``seed + epoch`` (Lightning calls ``sampler.set_epoch``).
    """

    class _Sampler:
        def __init__(self) -> None:
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

    def __init__(self, n: int = 32, batch_size: int = 8, seed: int = 0) -> None:
        data = regression_data(n, seed=seed)
        self.x, self.y = data.tensors
        self.batch_size = batch_size
        self.seed = seed
        self.sampler = self._Sampler()
        self.batch_sampler = None
        self._start = 0
        self._served = 0

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start, self._start = self._start, 0
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed + self.sampler.epoch))
        bs = self.batch_size
        for i in range(start, len(self)):
            self._served = i + 1
            idx = order[i * bs : (i + 1) * bs]
            yield self.x[idx], self.y[idx]

    def state_dict(self) -> dict[str, int]:
        return {"served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._start = state["served"]

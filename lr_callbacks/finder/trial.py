"""Trial optimizer steps of the user's LightningModule, run by a callback outside Lightning's fit loop.

:class:`TrialSteps` drives the user's own ``training_step`` through the strategy (device placement, precision,
gradient clipping, accumulation, closures, manual optimization), on private iterators over the train dataloader,
so the epoch the fit loop is running is not consumed. Inside :meth:`TrialSteps.isolated` the other callbacks get
no hooks and ``self.log`` in the module records values without logging them. The LR finder's sweep and races are
such trials; :class:`lr_callbacks.finder.snapshot.TrainingSnapshot` undoes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader

if TYPE_CHECKING:
    from torch.optim import Optimizer


class TrialSteps:
    """Runs single optimizer steps of ``pl_module`` on batches of the trainer's train dataloader.

    Args:
        trainer: The running trainer (its strategy, accumulation and train dataloader are used).
        pl_module: The module whose ``training_step`` is run.
        monitor: Name of a value ``training_step`` logs with ``self.log`` to report as the step's loss instead of
            the returned loss (for manual optimization steps that return nothing).

    Raises:
        RuntimeError: If the trainer has no train dataloader yet.

    Example::

        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> class Net(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.w = torch.nn.Linear(1, 1)
        ...     def training_step(self, batch, batch_idx):
        ...         return self.w(batch[0]).pow(2).mean()
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> class OneTrialStep(pl.Callback):
        ...     def on_train_start(self, trainer, pl_module):
        ...         trial = TrialSteps(trainer, pl_module)
        ...         with trial.isolated():
        ...             self.loss = trial.step(trainer.optimizers, trial.batches(), 0)
        >>> probe = OneTrialStep()
        >>> trainer = pl.Trainer(max_steps=1, callbacks=[probe], logger=False, enable_checkpointing=False,
        ...                      enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Net(), DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2))
        >>> isinstance(probe.loss, float) and probe.loss > 0
        True
    """

    def __init__(self, trainer: pl.Trainer, pl_module: pl.LightningModule, monitor: str | None = None) -> None:
        self.trainer = trainer
        self.pl_module = pl_module
        self.monitor = monitor
        self.loader = private_loader(train_iterable(trainer))
        self._logged: dict[str, float] = {}

    def batches(self) -> Iterator[Any]:
        """A fresh, endless iterator over the train dataloader (it restarts the loader when it runs out)."""
        while True:
            empty = True
            for batch in self.loader:
                empty = False
                yield batch
            if empty:
                raise RuntimeError("the train dataloader yielded no batch.")

    @contextmanager
    def isolated(self) -> Iterator[None]:
        """Other callbacks get no hooks, ``self.log`` only records, the model trains, grad is on."""
        trainer, pl_module = self.trainer, self.pl_module
        callbacks = trainer.callbacks
        modes = [(m, m.training) for m in pl_module.modules()]
        own = {name: vars(pl_module)[name] for name in ("log", "log_dict") if name in vars(pl_module)}
        trainer.callbacks = []
        pl_module.log = self._record_log  # type: ignore[method-assign]
        pl_module.log_dict = self._record_log_dict  # type: ignore[method-assign,assignment]
        pl_module.train()
        try:
            with torch.enable_grad():
                yield
        finally:
            trainer.callbacks = callbacks
            for name in ("log", "log_dict"):
                if name in own:
                    setattr(pl_module, name, own[name])
                else:
                    delattr(pl_module, name)
            for module, training in modes:
                module.training = training

    def step(self, optimizers: list[Optimizer], batches: Iterator[Any], step: int) -> float | None:
        """One optimizer step (``accumulate_grad_batches`` batches); the mean loss of its batches, averaged over
        ranks, or ``None`` when ``training_step`` returned no loss (the step is skipped, as Lightning does)."""
        loss = self._local_step(optimizers, batches, step)
        if loss is None:
            return None
        return float(self.trainer.strategy.reduce(torch.tensor(loss, dtype=torch.float64), reduce_op="mean"))

    def _local_step(self, optimizers: list[Optimizer], batches: Iterator[Any], step: int) -> float | None:
        strategy = self.trainer.strategy
        if not self.pl_module.automatic_optimization:  # the user's step runs its own optimizers
            self._logged.clear()
            return self._loss_value(strategy.training_step(strategy.batch_to_device(next(batches)), step))

        optimizer = optimizers[0]
        accumulate = max(int(self.trainer.accumulate_grad_batches), 1)
        micro = [strategy.batch_to_device(next(batches)) for _ in range(accumulate)]
        seen: list[float] = []

        def forward_backward(batch: Any, batch_idx: int, record: bool = True) -> Tensor | None:
            self._logged.clear()
            output = strategy.training_step(batch, batch_idx)
            loss = loss_tensor(output)
            if loss is None:
                return None
            strategy.backward(loss / accumulate, optimizer)
            if record:
                value = self._loss_value(output)
                if value is not None:
                    seen.append(value)
            return loss.detach()

        self.pl_module.optimizer_zero_grad(self.trainer.current_epoch, step, optimizer)
        for k, batch in enumerate(micro[:-1]):
            forward_backward(batch, step * accumulate + k)
        calls = [0]

        def closure() -> Tensor | None:
            calls[0] += 1  # optimizers that re-evaluate the closure (LBFGS): record the first loss only
            return forward_backward(micro[-1], (step + 1) * accumulate - 1, record=calls[0] == 1)

        strategy.optimizer_step(optimizer, closure)
        return sum(seen) / len(seen) if seen else None

    def probe(self, batches: Iterator[Any], count: int) -> list[float] | None:
        """The losses of the current weights on the next ``count`` batches, without a step or gradients (each
        averaged over ranks); ``None`` under manual optimization, where ``training_step`` steps the optimizers itself.
        Batches whose ``training_step`` returns no loss are left out."""
        if not self.pl_module.automatic_optimization:
            return None
        strategy = self.trainer.strategy
        losses: list[float] = []
        with torch.no_grad():
            for k in range(count):
                self._logged.clear()
                value = self._loss_value(strategy.training_step(strategy.batch_to_device(next(batches)), k))
                if value is not None:
                    losses.append(float(strategy.reduce(torch.tensor(value, dtype=torch.float64), reduce_op="mean")))
        return losses

    def loss_fn(self, module: torch.nn.Module, batch: Any) -> Tensor:
        """``training_step``'s loss on one (device) batch, as a differentiable tensor (for curvature probes)."""
        loss = loss_tensor(self.trainer.strategy.training_step(batch, 0))
        if loss is None:
            raise RuntimeError("`training_step` returned no loss.")
        return loss

    def _loss_value(self, output: Any) -> float | None:
        if self.monitor is not None:
            if self.monitor not in self._logged:
                raise KeyError(f"`monitor={self.monitor!r}` was not logged by `training_step`.")
            return self._logged[self.monitor]
        loss = loss_tensor(output)
        return None if loss is None else float(loss.detach())

    def _record_log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(value, Tensor) and value.numel() == 1:
            self._logged[name] = float(value.detach())
        elif isinstance(value, (int, float)):
            self._logged[name] = float(value)

    def _record_log_dict(self, dictionary: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        for name, value in dictionary.items():
            self._record_log(name, value)


def loss_tensor(output: Any) -> Tensor | None:
    """The loss in a ``training_step`` output: the tensor itself, or ``output["loss"]``."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        return output.get("loss")
    return None


def train_iterable(trainer: pl.Trainer) -> Iterable:
    """The trainer's train dataloader; several loaders are combined as Lightning does (``max_size_cycle``)."""
    loaders = trainer.train_dataloader
    if loaders is None:
        raise RuntimeError("the trainer has no train dataloader yet; run from `on_train_start` or later.")
    if isinstance(loaders, (Mapping, list, tuple)):
        return _FirstOfCombined(CombinedLoader(loaders, "max_size_cycle"))
    return loaders


class _FirstOfCombined:
    """Iterate a ``CombinedLoader`` yielding the batch only (it yields ``(batch, batch_idx, dataloader_idx)``)."""

    def __init__(self, combined: CombinedLoader) -> None:
        self.combined = combined

    def __iter__(self) -> Iterator[Any]:
        return (out[0] for out in iter(self.combined))


def private_loader(loader: Iterable) -> Iterable:
    """A second iterator over a ``persistent_workers`` DataLoader would reset the user's, so use a worker-less twin."""
    if isinstance(loader, DataLoader) and loader.persistent_workers and loader.num_workers > 0:
        return DataLoader(
            loader.dataset, batch_sampler=loader.batch_sampler, collate_fn=loader.collate_fn, num_workers=0
        )
    return loader

"""The LR-free optimizers that the finder benchmark sets beside the finders, each with its package defaults.

Fixed before any of them was run (the optional ``benchmarks`` extra installs them; a missing package skips its row
with a line that says so):

- ``prodigy``: ``prodigyopt.Prodigy(params)``;
- ``dadaptation``: ``dadaptation.DAdaptSGD(params)`` on the SGD-family tasks (SGD, with momentum, Nesterov) and
  ``dadaptation.DAdaptAdam(params)`` on the others (Adam, AdamW, RMSprop);
- ``dog``: ``dog.DoG(params)`` (``dog-optimizer``), on the SGD-family tasks only;
- ``mechanic``: ``mechanic_pytorch.mechanize(<the task's optimizer class>)(params, lr=1.0, <the task's other
  arguments>)``, as its README shows;
- ``schedulefree``: ``schedulefree.SGDScheduleFree(params, lr)`` on the SGD-family tasks and
  ``schedulefree.AdamWScheduleFree(params, lr)`` on the others, with ``lr`` the suggestion of
  :class:`lr_callbacks.LRFinder` (its default method) run on the task with that optimizer; evaluated in its
  ``eval()`` mode.

Each runs for the task's budget on the same seeds, with no schedule, and is scored against the task's own
optimizer's cross-fitted reference (:mod:`experiments.benchmarks.finder.score`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from experiments.benchmarks.finder.tasks import OptimizerFactory, TaskModule

SGD_FAMILY = ("sgd", "sgd_momentum", "nesterov")
RIVALS = ("prodigy", "dadaptation", "dog", "mechanic")
"""The LR-free rows run at their defaults."""
SCHEDULE_FREE = "schedulefree"
"""The row of schedule-free training at our finder's suggestion."""
PACKAGES = {
    "prodigy": ("prodigyopt", "prodigyopt"),
    "dadaptation": ("dadaptation", "dadaptation"),
    "dog": ("dog", "dog-optimizer"),
    "mechanic": ("mechanic_pytorch", "mechanic-pytorch"),
    SCHEDULE_FREE: ("schedulefree", "schedulefree"),
}
"""Each row's ``(module, distribution)``."""
TASK_OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {}),
    "sgd_momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.05}),
    "rmsprop": (torch.optim.RMSprop, {}),
}
"""The tasks' optimizers as class and arguments (for ``mechanize``), as in
:data:`experiments.benchmarks.finder.tasks.OPTIMIZERS`."""


def available(row: str) -> str | None:
    """The installed version of the row's package, or ``None`` when it is missing."""
    module, distribution = PACKAGES[row]
    try:
        importlib.import_module(module)
        return importlib.metadata.version(distribution)
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return None


def applies(row: str, optimizer: str) -> bool:
    """Whether the row runs on a task with this optimizer (DoG: the SGD family only).

    >>> applies("dog", "adam"), applies("dog", "nesterov"), applies("prodigy", "adam")
    (False, True, True)
    """
    return row != "dog" or optimizer in SGD_FAMILY


def rival_optimizer(row: str, optimizer: str) -> OptimizerFactory:
    """``factory(params, lr)`` of an LR-free row on a task with ``optimizer`` (``lr`` is ignored but by mechanic,
    which gets 1.0, and schedule-free, which gets the suggestion).

    Raises:
        ImportError: If the row's package is not installed.
        ValueError: If the row does not apply to the optimizer, or is unknown.
    """
    if not applies(row, optimizer):
        raise ValueError(f"{row!r} does not run on {optimizer!r} tasks.")
    sgd_family = optimizer in SGD_FAMILY
    if row == "prodigy":
        from prodigyopt import Prodigy

        return lambda params, lr: Prodigy(params)
    if row == "dadaptation":
        from dadaptation import DAdaptAdam, DAdaptSGD

        return lambda params, lr: DAdaptSGD(params) if sgd_family else DAdaptAdam(params)
    if row == "dog":
        from dog import DoG

        return lambda params, lr: DoG(params)
    if row == "mechanic":
        from mechanic_pytorch import mechanize

        base, kwargs = TASK_OPTIMIZERS[optimizer]
        return lambda params, lr: mechanize(base)(params, lr=1.0, **kwargs)
    if row == SCHEDULE_FREE:
        from schedulefree import AdamWScheduleFree, SGDScheduleFree

        return lambda params, lr: SGDScheduleFree(params, lr=lr) if sgd_family else AdamWScheduleFree(params, lr=lr)
    raise ValueError(f"unknown LR-free row {row!r}; choose from {[*RIVALS, SCHEDULE_FREE]}")


class FactoryModule(TaskModule):
    """A task's module whose optimizer comes from a factory; an optimizer with a ``train()`` mode (schedule-free)
    is put in it, as the finder steps it like any other."""

    def __init__(self, net: nn.Module, loss: str, optimizer: str, lr: float, factory: OptimizerFactory) -> None:
        super().__init__(net, loss, optimizer, lr)
        self.factory = factory

    def configure_optimizers(self) -> torch.optim.Optimizer:
        opt = self.factory(self.parameters(), self.lr)
        train: Callable[[], None] | None = getattr(opt, "train", None)
        if train is not None:
            train()
        return opt

"""An exact, in-memory snapshot of everything a trial run of training changes, and its restoration.

:class:`TrainingSnapshot` copies the model's parameters, gradients and buffers, every optimizer's state and
param-group values, the AMP grad scaler's state, the global RNG streams (torch, CUDA, Python, NumPy) and the torch
generators a data loader draws its order from. :meth:`TrainingSnapshot.restore` puts them back bit for bit, so a
trial (the LR finder's sweep, each of its races) leaves no trace; it can be called any number of times.

The LRs of the param groups are written back through :func:`lr_callbacks.core.write_lrs`, the LR-writing function
that code outside the LR rule uses.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lr_callbacks.core import write_lrs

if TYPE_CHECKING:
    from torch.optim import Optimizer


class TrainingSnapshot:
    """Copies of a module, its optimizers, a grad scaler, the RNG streams and a loader's generators.

    Args:
        module: Its parameters (with ``.grad``) and buffers are copied.
        optimizers: Their ``state`` and every param-group value except ``params`` are copied.
        scaler: An AMP ``GradScaler`` (``None`` when there is none).
        loader: A data loader (or any iterable); the ``torch.Generator`` objects of the loader, its ``sampler`` and
            its ``batch_sampler.sampler`` are copied, which fixes the order of a fresh iterator over it.

    Example::

        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
        >>> snapshot = TrainingSnapshot(model, [optimizer])
        >>> before = model.weight.clone()
        >>> model(torch.randn(4, 2)).sum().backward(); optimizer.step()
        >>> snapshot.restore()
        >>> torch.equal(model.weight, before), optimizer.state == {}, model.weight.grad is None
        (True, True, True)
    """

    def __init__(
        self, module: torch.nn.Module, optimizers: list[Optimizer], scaler: Any = None, loader: Iterable | None = None
    ) -> None:
        self.params = [
            (p, p.detach().clone(), None if p.grad is None else p.grad.detach().clone()) for p in module.parameters()
        ]
        self.buffers = [(b, b.detach().clone()) for b in module.buffers()]
        self.optimizers = [
            (
                opt,
                {p: {k: _clone(v) for k, v in s.items()} for p, s in opt.state.items()},
                [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups],
            )
            for opt in optimizers
        ]
        self.scaler = (scaler, copy.deepcopy(scaler.state_dict())) if scaler is not None else None
        self.rng = rng_states()
        self.generators = [(g, g.get_state()) for g in loader_generators(loader)] if loader is not None else []

    def restore(self) -> None:
        """Put everything back as it was when the snapshot was taken."""
        with torch.no_grad():
            for p, data, grad in self.params:
                p.copy_(data)
                p.grad = None if grad is None else grad.clone()
            for b, data in self.buffers:
                b.copy_(data)
        for opt, state, groups in self.optimizers:
            opt.state.clear()
            opt.state.update({p: {k: _clone(v) for k, v in s.items()} for p, s in state.items()})
            for group, saved in zip(opt.param_groups, groups):
                for key in [k for k in group if k != "params" and k not in saved]:
                    del group[key]
                group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "lr"})
        write_lrs(
            [opt for opt, _, _ in self.optimizers], [[g["lr"] for g in groups] for _, _, groups in self.optimizers]
        )
        if self.scaler is not None:
            self.scaler[0].load_state_dict(copy.deepcopy(self.scaler[1]))
        set_rng_states(self.rng)
        for gen, gen_state in self.generators:
            gen.set_state(gen_state)


def loader_generators(loader: Iterable) -> list[torch.Generator]:
    """The torch generators a data loader draws from when iterated (its own and its samplers')."""
    candidates = [
        getattr(loader, "generator", None),
        getattr(getattr(loader, "sampler", None), "generator", None),
        getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None),
    ]
    out: list[torch.Generator] = []
    for gen in candidates:
        if isinstance(gen, torch.Generator) and all(gen is not g for g in out):
            out.append(gen)
    return out


def rng_states() -> dict[str, Any]:
    """The global RNG states: torch, CUDA (when initialised), Python's ``random`` and NumPy (when installed)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        states["numpy"] = np.random.get_state()
    except ImportError:
        pass
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        import numpy as np

        np.random.set_state(states["numpy"])


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, Tensor) else copy.deepcopy(value)

"""Elastic weight consolidation (EWC) as a Lightning callback for the continual-learning autoencoder."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from typing_extensions import override


class EWC(Callback):
    """Pulls the weights towards those of the previous task, in proportion to how much that task needs them.

    At fit start (the adaptation phase) the callback anchors the current weights ``θ*`` and estimates the
    diagonal Fisher information of the previous task's reconstruction likelihood ``x ~ N(f_θ(x), σ² I)``.
    It is expressed in the units of the task loss ``ℓ = mean_d (f_d(x) − x_d)²``: there the Fisher is the
    Gauss-Newton matrix ``G = (2/D) E_x[JᵀJ]`` (``J`` the Jacobian of the ``D`` outputs), whose diagonal is
    estimated without forming ``J``: with one probe ``ε ~ N(0, I_D)`` per sample, ``E[(Jᵀε)_i²] = (JᵀJ)_ii``
    and ``Jᵀε`` is the gradient of ``Σ_d f_d(x) ε_d`` (one vectorised per-sample gradient). During the fit it
    adds the gradient of

        (weight / 2) · Σ_i G_ii (θ_i − θ*_i)²

    to every parameter's ``.grad`` after the backward pass: the same update as adding the penalty to the loss
    (Kirkpatrick et al., 2017), while the logged task loss stays the task loss. ``½ Δθᵀ G Δθ`` is the
    quadratic (Laplace) estimate of how much the previous task's loss rises, so ``weight=1`` weighs the old
    and the new task equally; larger values favour the old task. The penalty is logged as ``ewc/penalty``
    each epoch.

    The previous task's data comes from the data module: ``trainer.datamodule.classes[task][0]`` (the
    training tensor of that task, as :class:`experiments.data.GaussianClassesDataModule` keeps it).

    Args:
        weight: ``λ`` of the penalty, ``>= 0`` (0 turns the callback into a no-op).
        task: key of the previous task in the data module's ``classes``.
        max_samples: at most this many samples of the previous task estimate the Fisher, ``>= 1``.
        chunk_size: samples per vectorised per-sample-gradient chunk (memory bound), ``>= 1``.
        seed: seed of the probes.

    Raises:
        ValueError: if a number is out of range.
        AttributeError: (at fit start) if the data module does not hold the previous task's data.

    >>> import torch
    >>> model = torch.nn.Linear(3, 3)
    >>> fisher = EWC.diagonal_fisher(model, torch.rand(500, 3))
    >>> round(float(fisher["bias"].mean()), 1)  # G = (2/D) JᵀJ = 2/3 for the bias of a linear map
    0.7
    """

    def __init__(
        self, weight: float = 1.0, task: str = "A", max_samples: int = 1000, chunk_size: int = 100, seed: int = 0
    ) -> None:
        if weight < 0:
            raise ValueError(f"`weight` must be >= 0, got {weight}.")
        if max_samples < 1 or chunk_size < 1:
            raise ValueError(f"`max_samples` and `chunk_size` must be >= 1, got {max_samples}, {chunk_size}.")
        self.weight = float(weight)
        self.task = task
        self.max_samples = int(max_samples)
        self.chunk_size = int(chunk_size)
        self.seed = int(seed)
        self.fisher: dict[str, Tensor] = {}
        self.anchor: dict[str, Tensor] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            weight=self.weight, task=self.task, max_samples=self.max_samples, seed=self.seed
        )

    def _task_data(self, trainer: pl.Trainer) -> Tensor:
        classes = getattr(trainer.datamodule, "classes", None)
        if not classes or self.task not in classes:
            raise AttributeError(
                f"EWC needs the previous task's training data as `datamodule.classes[{self.task!r}][0]`; "
                f"{type(trainer.datamodule).__name__} has none."
            )
        return classes[self.task][0][: self.max_samples]

    @staticmethod
    def diagonal_fisher(module: nn.Module, data: Tensor, chunk_size: int = 100, seed: int = 0) -> dict[str, Tensor]:
        """Diagonal of the Gauss-Newton matrix of ``mean_d (module(x)_d − x_d)²`` over ``data`` (probe estimate)."""
        params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
        device = next(iter(params.values())).device
        gen = torch.Generator().manual_seed(seed)

        def probe(p: dict[str, Tensor], x: Tensor, eps: Tensor) -> Tensor:
            return (functional_call(module, p, (x.unsqueeze(0),)).squeeze(0) * eps).sum()

        per_sample = vmap(grad(probe), in_dims=(None, 0, 0))
        fisher = {k: torch.zeros_like(v) for k, v in params.items()}
        outputs = 0
        for chunk in data.split(chunk_size):
            chunk = chunk.to(device)
            with torch.no_grad():
                outputs = module(chunk[:1]).numel()
            eps = torch.randn((len(chunk), outputs), generator=gen).to(device)
            for k, g in per_sample(params, chunk, eps).items():
                fisher[k] += g.pow(2).sum(0)
        return {k: f * 2.0 / (outputs * len(data)) for k, f in fisher.items()}

    def penalty(self, module: nn.Module) -> Tensor:
        """``(weight / 2) Σ F (θ − θ*)²`` at the module's current weights."""
        total = torch.zeros(())
        for name, p in module.named_parameters():
            if name in self.fisher:
                total = total + (self.fisher[name] * (p.detach() - self.anchor[name]).pow(2)).sum().cpu()
        return 0.5 * self.weight * total

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.fisher:  # resumed: the anchor and Fisher came with the checkpoint
            return
        was_training = pl_module.training
        pl_module.eval()
        self.fisher = self.diagonal_fisher(pl_module, self._task_data(trainer), self.chunk_size, self.seed)
        pl_module.train(was_training)
        self.anchor = {k: v.detach().clone() for k, v in pl_module.named_parameters() if k in self.fisher}

    @override
    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.weight:
            return
        with torch.no_grad():
            for name, p in pl_module.named_parameters():
                if name in self.fisher and p.grad is not None:
                    p.grad.add_(self.fisher[name] * (p - self.anchor[name]), alpha=self.weight)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = float(self.penalty(pl_module))
        if trainer.loggers:
            for logger in trainer.loggers:
                logger.log_metrics({"ewc/penalty": value}, step=trainer.global_step)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"fisher": self.fisher, "anchor": self.anchor}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fisher = dict(state_dict.get("fisher", {}))
        self.anchor = dict(state_dict.get("anchor", {}))

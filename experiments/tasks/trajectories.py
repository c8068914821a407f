"""Optimizer trajectories on the elongated bowl f(x, y) = a·x² + b·y²."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from experiments.tasks.base import BaseTask, OptimizerFactory

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class TrajectoryTask(BaseTask):
    """Runs one torch optimizer per named 2-parameter point from the same start, in lockstep.

    Every training batch is one step of every optimizer (manual optimization, so each
    optimizer keeps its own state and its LR stays under the callbacks' control). Positions
    are recorded before the first and after every step.

    Args:
        optimizers: ``{name: optimizer factory}``; each gets its own point. Mutually
            exclusive with ``optimizer``.
        optimizer: a single optimizer factory (one trajectory named ``"optimizer"``), e.g.
            the config's ``optimizer`` group when sweeping one optimizer's LR.
        start: starting point ``(x0, y0)``.
        curvature: ``(a, b)`` of ``f = a·x² + b·y²``.

    Raises:
        ValueError: if both or neither of ``optimizers`` / ``optimizer`` are given, or
            ``start`` / ``curvature`` do not hold two numbers.

    >>> import functools
    >>> task = TrajectoryTask({"sgd": functools.partial(torch.optim.SGD, lr=0.05)})
    >>> float(task.surface(torch.tensor([5.0, 4.0])))
    185.0
    """

    curvature: Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        optimizers: Mapping[str, OptimizerFactory] | None = None,
        optimizer: OptimizerFactory | None = None,
        start: Sequence[float] = (5.0, 4.0),
        curvature: Sequence[float] = (1.0, 10.0),
    ) -> None:
        if optimizers is not None and optimizer is None:
            factories = dict(optimizers)
        elif optimizer is not None and optimizers is None:
            factories = {"optimizer": optimizer}
        else:
            raise ValueError("Pass exactly one of `optimizers` (name -> factory) and `optimizer`.")
        if len(start) != 2 or len(curvature) != 2:
            raise ValueError(f"`start` and `curvature` must hold 2 numbers, got {list(start)}, {list(curvature)}.")
        super().__init__(optimizer)
        self.automatic_optimization = False
        self.factories = factories
        self.names = list(self.factories)
        self.points = nn.ParameterList([nn.Parameter(torch.tensor([float(v) for v in start])) for _ in self.names])
        self.register_buffer("curvature", torch.tensor([float(c) for c in curvature]))
        self.paths: dict[str, list[list[float]]] = {n: [list(map(float, start))] for n in self.names}

    def surface(self, p: Tensor) -> Tensor:
        """``f(p) = a·p₀² + b·p₁²``."""
        return (self.curvature * p**2).sum()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:  # type: ignore[override]
        return [self.factories[n]([p]) for n, p in zip(self.names, self.points)]

    def training_step(self, batch: tuple[Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for name, point, opt in zip(self.names, self.points, optimizers):
            opt.zero_grad()
            loss = self.surface(point)
            self.manual_backward(loss)
            opt.step()
            self.paths[name].append(point.detach().tolist())
            self.log(f"train/loss_{name}", self.surface(point.detach()), on_step=False, on_epoch=True)

    def summary_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, path in self.paths.items():
            x, y = path[-1]
            out[f"trajectory/{name}/final_x"] = x
            out[f"trajectory/{name}/final_y"] = y
            out[f"trajectory/{name}/final_loss"] = float(self.surface(torch.tensor([x, y])))
        return out

    def summary_history(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for name, path in self.paths.items():
            out[f"trajectory/{name}/x"] = [p[0] for p in path]
            out[f"trajectory/{name}/y"] = [p[1] for p in path]
        return out

    def figures(self) -> dict[str, Figure]:
        from experiments.figures import trajectory_contour

        a, b = self.curvature.tolist()
        return {"trajectories": trajectory_contour(self.paths, a, b)}

"""The learning-rate range test (LR finder) as a Lightning callback.

The finder takes over the optimizer for ``num_steps`` steps, raising the LR from ``min_lr`` to ``max_lr`` while it
records the training loss, then puts everything back: model parameters, gradients and buffers, optimizer state and
param-group values, the AMP grad scaler, the global RNG streams and the generators of the train dataloader. It drives
the user's own ``training_step`` through the strategy, on its own iterator over the train dataloader, so the user's
epoch is not consumed. Finally it reads a suggestion off the curve and applies it as every group's base LR
(``initial_lr``), which schedule callbacks start from.

The curve helpers (:func:`sweep_lrs`, :func:`smooth`, :func:`suggest`) are pure functions.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import CombinedLoader
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from lightning_utilities.core.imports import RequirementCache
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import override

from lr_callbacks._checks import check_choice, check_number
from lr_callbacks.core import apply_lr, cached_state_key, lr_contributors
from lr_callbacks.curvature import max_stable_lr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch.optim import Optimizer

_MATPLOTLIB_AVAILABLE = RequirementCache("matplotlib")

MODES = ("exponential", "linear")
SUGGESTIONS = ("centered_min", "steepest", "valley", "min_div10", "curvature")
DEFAULT_SUGGESTION = "centered_min"
STEEPEST_WINDOW = 5
CENTERED_HALF_WIDTH = 0.06  # of the sweep's points, on each side: 6 of 100 (about 0.5 decade from 1e-7 to 10)
CENTERED_DIVISOR = 6.0
DIVERGENCE_GRACE = 5  # sweep steps before a smoothed loss is trusted to signal divergence (non-finite always is)


# ----------------------------------------------------------------------------------------------- the curve, pure
def sweep_lrs(min_lr: float, max_lr: float, num_steps: int, mode: str = "exponential") -> list[float]:
    """The LR of each sweep step; both ends are included.

    >>> [round(lr, 6) for lr in sweep_lrs(1e-3, 1e-1, 3)]
    [0.001, 0.01, 0.1]
    >>> sweep_lrs(0.0, 1.0, 3, "linear")
    [0.0, 0.5, 1.0]
    """
    last = num_steps - 1
    if mode == "exponential":
        return [min_lr * (max_lr / min_lr) ** (i / last) for i in range(num_steps)]
    return [min_lr + (max_lr - min_lr) * i / last for i in range(num_steps)]


def smooth(losses: Sequence[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average: ``avg_i / (1 - beta**(i + 1))`` for the 0-based step ``i``.

    The first smoothed value equals the first loss, whatever ``beta``.

    >>> smooth([2.0, 4.0], 0.5)
    [2.0, 3.3333333333333335]
    """
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1.0 - beta) * loss
        out.append(avg / (1.0 - beta ** (i + 1)))
    return out


def suggest(method: str, lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float]) -> tuple[float, int] | None:
    """Read a suggestion off a finished curve: ``(lr, index of the point it refers to)``, or ``None``.

    The points after the loss stopped being finite are ignored. ``"curvature"`` needs the model and is computed
    by :class:`LRFinder` itself.

    Args:
        method: ``"centered_min"``, ``"steepest"``, ``"valley"`` or ``"min_div10"``.
        lrs: The sweep LRs.
        losses: The raw loss at each LR.
        smoothed: The smoothed loss at each LR.
    """
    n = next((i for i, (a, b) in enumerate(zip(losses, smoothed)) if not (math.isfinite(a) and math.isfinite(b))), len(lrs))
    if n < 2:
        return None
    if method == "centered_min":
        idx = _centered_min(losses[:n], max(2, round(CENTERED_HALF_WIDTH * len(lrs))))
        return lrs[idx] / CENTERED_DIVISOR, idx
    if method == "steepest":
        idx = _steepest(losses[:n])
        return None if idx is None else (lrs[idx], idx)
    if method == "valley":
        idx = _valley(smoothed[:n])
        return lrs[idx], idx
    if method == "min_div10":
        idx = min(range(n), key=lambda i: smoothed[i])
        return lrs[idx] / 10.0, idx
    raise ValueError(f"`method` must be one of {[m for m in SUGGESTIONS if m != 'curvature']}, got {method!r}.")


def _centered_min(losses: Sequence[float], half_width: int) -> int:
    """Argmin of a centred moving average of the raw curve (``2*half_width + 1`` points, fewer at the ends).

    Unlike the EMA, a centred average has no lag, so its minimum sits where the loss really stops falling.
    """
    x = torch.tensor(losses, dtype=torch.float64)
    sums = torch.cat([torch.zeros(1, dtype=torch.float64), x.cumsum(0)])
    n = len(x)
    lo = (torch.arange(n) - half_width).clamp(min=0)
    hi = (torch.arange(n) + half_width + 1).clamp(max=n)
    return int(torch.argmin((sums[hi] - sums[lo]) / (hi - lo)))


def _steepest(losses: Sequence[float]) -> int | None:
    """Steepest descent of the raw curve after a centred moving average of 5: argmin of its gradient.

    The average of points ``j .. j+4`` belongs to the centre point ``j + 2``.
    """
    if len(losses) < STEEPEST_WINDOW:
        return None
    x = torch.tensor(losses, dtype=torch.float64)
    averaged = x.unfold(0, STEEPEST_WINDOW, 1).mean(dim=1)
    slope = torch.gradient(averaged)[0] if len(averaged) > 1 else torch.zeros(1, dtype=torch.float64)
    return int(torch.argmin(slope)) + STEEPEST_WINDOW // 2


def _valley(smoothed: Sequence[float]) -> int:
    """The fastai "valley": the longest strictly descending run (as a subsequence) of the smoothed curve, and the
    point halfway along it. It favours a wide descent over a single steep but noisy point."""
    n = len(smoothed)
    length = [1] * n  # length of the longest descending subsequence ending at i
    first = list(range(n))  # where that subsequence starts
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[j] + 1 > length[i]:
                length[i], first[i] = length[j] + 1, first[j]
    end = max(range(n), key=lambda i: (length[i], -i))
    start = first[end]
    return start + (end - start) // 2


# ----------------------------------------------------------------------------------------------- the result
@dataclass
class LRFinderResult:
    """What one sweep found.

    Attributes:
        lrs: LR of the reference group (the first group of the first optimizer) at each step.
        losses: Raw training loss at each step (averaged over ranks and accumulated batches).
        smoothed_losses: Bias-corrected EMA of ``losses``.
        suggestion: The suggested base LR of the reference group, or ``None`` if none could be read.
        method: The suggestion method.
        suggestion_index: The curve point the suggestion refers to (``None`` for ``"curvature"``).
        diverged: Whether the sweep stopped early on a diverging (or non-finite) loss.
        epoch: The epoch at whose start the sweep ran.
        seconds: Wall time of the sweep, restoration included.
        curvature_lr: ``2 / lambda_max`` at the start of the sweep when it was computed.
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed_losses: list[float] = field(default_factory=list)
    suggestion: float | None = None
    method: str = DEFAULT_SUGGESTION
    suggestion_index: int | None = None
    diverged: bool = False
    epoch: int = 0
    seconds: float = 0.0
    curvature_lr: float | None = None

    @property
    def steps(self) -> int:
        return len(self.lrs)


# ----------------------------------------------------------------------------------------------- the callback
class LRFinder(Callback):
    """LR range test: sweep the LR over a few steps, suggest a base LR from the loss curve, apply it.

    Runs once when training starts (``on_train_start``, once the train dataloader exists; skipped when fit resumes
    from a checkpoint or under ``fast_dev_run``), at the start of every epoch listed in ``run_at_epoch``, or
    whenever :meth:`find` is called. Each step ``i`` trains on one batch (``accumulate_grad_batches`` batches under
    accumulation) with every param group at ``lr_i * base_g / base_ref``, so group ratios are kept; the loss is
    smoothed as ``avg = beta*avg + (1-beta)*loss``, ``smoothed_i = avg / (1 - beta**(i+1))``, and the sweep stops
    once ``smoothed_i > diverge_threshold * min(smoothed)`` (checked from the 6th point on: an average of fewer
    batches is mostly batch-to-batch noise) or the loss is not finite.

    Suggestion methods (:attr:`SUGGESTIONS`):

    - ``"centered_min"`` (default): the minimum of a centred moving average of the raw curve (6% of the points on
      each side), divided by 6. The EMA's lag moves its minimum towards higher LRs by an amount that depends on
      ``smoothing`` and on how fast the loss rises; a centred average does not lag.
    - ``"valley"``: halfway along the longest descending stretch of the smoothed curve (fastai).
    - ``"steepest"``: the steepest descent of the raw curve after a moving average of 5 (the tutorial's method).
    - ``"min_div10"``: the LR at the minimum of the smoothed curve, divided by 10.
    - ``"curvature"``: ``curvature_scale * 2 / lambda_max`` of the loss Hessian on the first sweep batch
      (:func:`lr_callbacks.curvature.max_stable_lr`), times ``1 + momentum`` for SGD with heavy-ball momentum.
      Meaningful for (momentum) SGD only.

    The default was chosen by ``experiments/finder_tasks.py`` (``python -m experiments.finder_tasks``): train for
    the task's fixed budget at the suggestion (range 1e-7..10, 100 steps) and divide the final training loss by
    the best final loss of a log grid 1e-4..10 with 4 points per decade (1.00 = as good as the grid's best). Two
    data/initialisation seeds, ``seed 0 / seed 1``::

        task (optimizer, budget)      centered_min  steepest   valley    min_div10  curvature  Lightning
        MLP regression (SGD+mom, 300)  1.02 / 1.00  2.2 / 2.4  2.1 / 2.2 2.2 / 1.02  inf / inf  2.2 / 2.4
        MLP classifier (SGD+mom, 300)  1.00 / 1.00  2.5 / 4.9  2.4 / 3.1 1.00 / 1.02 2.5 / 3.5  1.01 / 3.1
        autoencoder (Adam, 300)        1.07 / 1.05  0.99/ 1.15 16 / 14   1.5 / 2.6   18 / 19    22 / 22
        linear least sq. (SGD, 500)    8.9 / 9.2    166 / 74   1243/320  4.2 / 3.3   1.00/ 0.99 2815 / 647

    ``"centered_min"`` is the only method within 10% of the grid's best on every network task. Its window and
    divisor were chosen on these same tasks and seeds, so the table is in-sample evidence. On linear least
    squares with plain SGD the best LR sits just below the stability edge ``2 / lambda_max``, which no curve
    heuristic finds from a 100-step sweep; ``suggestion="curvature"`` does. Lightning's steepest-gradient pick
    lands near the bottom of the sweep on most of these tasks.

    After the sweep the model, optimizer, grad scaler, RNG and dataloader generators are restored exactly (also when
    the sweep raises), then the suggestion becomes each group's ``initial_lr`` and ``lr``:
    ``suggestion * base_g / base_ref``. Torch LR schedulers returned by ``configure_optimizers`` get new
    ``base_lrs`` so that they do not write the old LR back.

    During the sweep other callbacks receive no hooks and ``self.log`` in the module records values (for
    ``monitor``) without logging them. Limits: the LightningModule's ``optimizer_step`` override is bypassed (the
    strategy steps the optimizer, honouring gradient clipping and AMP); under manual optimization each sweep step is
    one call of ``training_step``, which steps the optimizers itself; user state kept by ``training_step`` (lists of
    losses, counters) sees the sweep's steps; strategies that shard optimizer state (FSDP, DeepSpeed) are not
    supported.

    Args:
        min_lr: First LR of the sweep (reference group).
        max_lr: Last LR of the sweep.
        num_steps: Number of sweep steps (optimizer steps), ``>= 2``.
        mode: ``"exponential"`` or ``"linear"`` spacing of the LRs.
        smoothing: EMA factor ``beta`` in ``[0, 1)``; 0 disables smoothing.
        diverge_threshold: Stop once the smoothed loss exceeds this multiple of its minimum; ``> 1``.
        suggestion: One of :attr:`SUGGESTIONS`.
        apply: Apply the suggestion as the base LR of every group.
        run_at_start: Run when training starts.
        run_at_epoch: Epoch index or indices at whose start to run (mid-training).
        curvature_scale: Factor on the curvature bound ``2 / lambda_max`` for ``suggestion="curvature"``, ``> 0``.
            The default 0.5 gives ``1 / lambda_max``, the step that zeroes the sharpest direction of a quadratic.
        monitor: Name of a value ``training_step`` logs with ``self.log`` to use as the sweep loss instead of the
            returned loss (for manual optimization steps that return nothing).
        save_dir: Where the PNG of the curve goes; default the trainer's ``log_dir``.
        save_png: Draw the curve into a PNG and a TensorBoard figure (matplotlib; rendering costs ~0.2 s).

    Raises:
        ValueError: If an argument is outside what is allowed; the message names it.

    Example::

        >>> from lr_callbacks import LRFinder
        >>> LRFinder(num_steps=50, suggestion="min_div10")
        LRFinder(min_lr=1e-07, max_lr=10.0, num_steps=50, mode='exponential', smoothing=0.98, diverge_threshold=4.0, suggestion='min_div10')
    """

    MODES = MODES
    SUGGESTIONS = SUGGESTIONS

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        mode: str = "exponential",
        smoothing: float = 0.98,
        diverge_threshold: float = 4.0,
        suggestion: str = DEFAULT_SUGGESTION,
        apply: bool = True,
        run_at_start: bool = True,
        run_at_epoch: int | Sequence[int] | None = None,
        curvature_scale: float = 0.5,
        monitor: str | None = None,
        save_dir: str | os.PathLike | None = None,
        save_png: bool = True,
    ) -> None:
        self.min_lr = check_number("min_lr", min_lr, gt=0 if mode == "exponential" else None, ge=0)
        self.max_lr = check_number("max_lr", max_lr, gt=0)
        if not self.min_lr < self.max_lr:
            raise ValueError(f"`min_lr` must be smaller than `max_lr`, got min_lr={min_lr!r} >= max_lr={max_lr!r}.")
        self.num_steps = check_number("num_steps", num_steps, ge=2, integer=True)
        self.mode = check_choice("mode", mode, MODES)
        self.smoothing = check_number("smoothing", smoothing, ge=0, lt=1)
        self.diverge_threshold = check_number("diverge_threshold", diverge_threshold, gt=1)
        self.suggestion = check_choice("suggestion", suggestion, SUGGESTIONS)
        self.apply = bool(apply)
        self.run_at_start = bool(run_at_start)
        epochs = [] if run_at_epoch is None else [run_at_epoch] if isinstance(run_at_epoch, int) else list(run_at_epoch)
        self.run_at_epoch = tuple(check_number("run_at_epoch", e, ge=0, integer=True) for e in epochs)
        self.curvature_scale = check_number("curvature_scale", curvature_scale, gt=0)
        self.monitor = monitor
        self.save_dir = save_dir
        self.save_png = bool(save_png)
        self.result: LRFinderResult | None = None
        self.results: list[LRFinderResult] = []
        self._done_epochs: list[int] = []
        self._logged: dict[str, float] = {}

    def _identity(self) -> dict[str, Any]:
        return {
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
            "num_steps": self.num_steps,
            "mode": self.mode,
            "smoothing": self.smoothing,
            "diverge_threshold": self.diverge_threshold,
            "suggestion": self.suggestion,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self._identity().items()) + ")"

    @property
    @override
    def state_key(self) -> str:
        return cached_state_key(self, self._identity)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"result": None if self.result is None else asdict(self.result), "done_epochs": list(self._done_epochs)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        result = state_dict.get("result")
        self.result = None if result is None else LRFinderResult(**result)
        self._done_epochs = list(state_dict.get("done_epochs", []))

    # ---------------------------------------------------------------------------------------------- hooks
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.run_at_start:
            return
        if trainer.ckpt_path is not None:
            rank_zero_info("LRFinder: fit resumes from a checkpoint; skipping the range test.")
            return
        if trainer.fast_dev_run:
            rank_zero_warn("LRFinder: skipped under `fast_dev_run`.")
            return
        self.find(trainer, pl_module)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch in self.run_at_epoch and epoch not in self._done_epochs and not trainer.fast_dev_run:
            self.find(trainer, pl_module)

    # ---------------------------------------------------------------------------------------------- the test
    def find(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> LRFinderResult | None:
        """Run the range test now, restore everything, and apply the suggestion if ``apply``.

        Returns:
            The result (also kept as :attr:`result`), or ``None`` when there is no optimizer.
        """
        optimizers = list(trainer.optimizers)
        if not optimizers:
            rank_zero_warn("LRFinder: the trainer has no optimizer; nothing to sweep.")
            return None
        loader = _private_loader(_train_iterable(trainer))
        bases = [[float(g.get("initial_lr", g["lr"])) for g in opt.param_groups] for opt in optimizers]
        ref = next((b for row in bases for b in row if b != 0.0), 1.0)
        result = LRFinderResult(method=self.suggestion, epoch=trainer.current_epoch)
        start = time.perf_counter()
        snapshot = _Snapshot(pl_module, optimizers, trainer, loader)
        try:
            with self._isolated(trainer, pl_module):
                self._sweep(trainer, pl_module, optimizers, loader, bases, ref, result)
        finally:
            snapshot.restore()
        result.seconds = time.perf_counter() - start
        self._suggest(trainer, optimizers, result)
        self.result = result
        self.results.append(result)
        self._done_epochs.append(result.epoch)
        if self.apply and result.suggestion is not None:
            self._apply(trainer, optimizers, bases, ref, result.suggestion)
        self._report(trainer, result)
        return result

    def _sweep(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        optimizers: list[Optimizer],
        loader: Iterable,
        bases: list[list[float]],
        ref: float,
        result: LRFinderResult,
    ) -> None:
        batches = _cycle(loader)
        if self.suggestion == "curvature":
            result.curvature_lr = self._curvature_lr(trainer, pl_module, optimizers, batches)
        avg, best = 0.0, math.inf
        for i, lr in enumerate(sweep_lrs(self.min_lr, self.max_lr, self.num_steps, self.mode)):
            for opt, row in zip(optimizers, bases):
                for group, base in zip(opt.param_groups, row):
                    group["lr"] = lr * base / ref
            loss = self._train_step(trainer, pl_module, optimizers, batches, i)
            if loss is None:  # training_step returned None: the batch is skipped, like Lightning does
                continue
            loss = float(trainer.strategy.reduce(torch.tensor(loss, dtype=torch.float64), reduce_op="mean"))
            k = len(result.losses)
            avg = self.smoothing * avg + (1.0 - self.smoothing) * loss
            smoothed = avg / (1.0 - self.smoothing ** (k + 1))
            result.lrs.append(lr)
            result.losses.append(loss)
            result.smoothed_losses.append(smoothed)
            if not math.isfinite(smoothed) or (k >= DIVERGENCE_GRACE and smoothed > self.diverge_threshold * best):
                result.diverged = True
                break
            best = min(best, smoothed)

    def _train_step(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        optimizers: list[Optimizer],
        batches: Iterator[Any],
        step: int,
    ) -> float | None:
        strategy = trainer.strategy
        if not pl_module.automatic_optimization:  # the user's step runs its own optimizers
            self._logged.clear()
            return self._loss_value(strategy.training_step(strategy.batch_to_device(next(batches)), step))

        optimizer = optimizers[0]
        accumulate = max(int(trainer.accumulate_grad_batches), 1)
        micro = [strategy.batch_to_device(next(batches)) for _ in range(accumulate)]
        seen: list[float] = []

        def forward_backward(batch: Any, batch_idx: int, record: bool = True) -> Tensor | None:
            self._logged.clear()
            output = strategy.training_step(batch, batch_idx)
            loss = _loss_tensor(output)
            if loss is None:
                return None
            strategy.backward(loss / accumulate, optimizer)
            if record:
                seen.append(self._loss_value(output))
            return loss.detach()

        pl_module.optimizer_zero_grad(trainer.current_epoch, step, optimizer)
        for k, batch in enumerate(micro[:-1]):
            forward_backward(batch, step * accumulate + k)
        calls = [0]

        def closure() -> Tensor | None:
            calls[0] += 1  # optimizers that re-evaluate the closure (LBFGS): record the first loss only
            return forward_backward(micro[-1], (step + 1) * accumulate - 1, record=calls[0] == 1)

        strategy.optimizer_step(optimizer, closure)
        return sum(seen) / len(seen) if seen else None

    def _loss_value(self, output: Any) -> float | None:
        if self.monitor is not None:
            if self.monitor not in self._logged:
                raise KeyError(f"LRFinder: `monitor={self.monitor!r}` was not logged by `training_step`.")
            return self._logged[self.monitor]
        loss = _loss_tensor(output)
        return None if loss is None else float(loss.detach())

    def _curvature_lr(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizers: list[Optimizer], batches: Iterator[Any]
    ) -> float:
        """``2 / lambda_max`` on one batch at the current weights, with the heavy-ball factor of momentum SGD."""
        strategy = trainer.strategy
        batch = strategy.batch_to_device(next(batches))

        def loss_fn(module: torch.nn.Module, b: Any) -> Tensor:
            loss = _loss_tensor(strategy.training_step(b, 0))
            if loss is None:
                raise RuntimeError("LRFinder: `training_step` returned no loss to take the curvature of.")
            return loss

        bound = max_stable_lr(pl_module, loss_fn, batch)
        group = optimizers[0].param_groups[0]
        if isinstance(optimizers[0], torch.optim.SGD) and not group.get("nesterov", False):
            bound *= 1.0 + float(group.get("momentum", 0.0))
        return bound

    @contextmanager
    def _isolated(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Iterator[None]:
        """Other callbacks get no hooks, ``self.log`` only records, the model trains, grad is on."""
        callbacks = trainer.callbacks
        modes = [(m, m.training) for m in pl_module.modules()]
        own = {name: vars(pl_module)[name] for name in ("log", "log_dict") if name in vars(pl_module)}
        trainer.callbacks = []
        pl_module.log = self._record_log  # type: ignore[method-assign]
        pl_module.log_dict = self._record_log_dict  # type: ignore[method-assign]
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

    def _record_log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(value, Tensor) and value.numel() == 1:
            self._logged[name] = float(value.detach())
        elif isinstance(value, (int, float)):
            self._logged[name] = float(value)

    def _record_log_dict(self, dictionary: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        for name, value in dictionary.items():
            self._record_log(name, value)

    # ---------------------------------------------------------------------------------------------- after the sweep
    def _suggest(self, trainer: pl.Trainer, optimizers: list[Optimizer], result: LRFinderResult) -> None:
        if self.suggestion == "curvature":
            lr = result.curvature_lr
            result.suggestion = None if lr is None or not math.isfinite(lr) else self.curvature_scale * lr
        else:
            found = suggest(self.suggestion, result.lrs, result.losses, result.smoothed_losses)
            if found is not None:
                result.suggestion, result.suggestion_index = found
        # One decision for all ranks (the curves already agree: the losses were averaged over ranks).
        result.suggestion = trainer.strategy.broadcast(result.suggestion, src=0)
        if result.suggestion is None:
            rank_zero_warn(
                f"LRFinder: no suggestion from {result.steps} points; increase `num_steps` or widen the LR range."
            )

    def _apply(
        self, trainer: pl.Trainer, optimizers: list[Optimizer], bases: list[list[float]], ref: float, lr: float
    ) -> None:
        """Make ``lr * base_g / base_ref`` every group's base LR, also for torch schedulers and our schedules."""
        schedulers = {id(c.scheduler.optimizer): c.scheduler for c in trainer.lr_scheduler_configs if hasattr(c.scheduler, "optimizer")}
        for opt, row in zip(optimizers, bases):
            scheduler = schedulers.get(id(opt))
            for group, base in zip(opt.param_groups, row):
                new = lr * base / ref
                if scheduler is not None and base != 0.0:
                    group["lr"] *= new / base  # keep where the torch schedule currently is
                else:
                    group["lr"] = new
                group["initial_lr"] = new
            if scheduler is not None:
                _rebase_scheduler(scheduler, opt)
        if lr_contributors(trainer):
            apply_lr(trainer)

    def _report(self, trainer: pl.Trainer, result: LRFinderResult) -> None:
        shown = "none" if result.suggestion is None else f"{result.suggestion:.3g}"
        rank_zero_info(
            f"LRFinder: suggested LR {shown} ({result.method}) from {result.steps} steps"
            f"{', stopped on divergence' if result.diverged else ''}."
        )
        prefix = "lr_finder" if result.epoch == 0 else f"lr_finder_epoch{result.epoch}"
        for logger in trainer.loggers:
            for i, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed_losses)):
                logger.log_metrics({f"{prefix}/lr": lr, f"{prefix}/loss": loss, f"{prefix}/smoothed_loss": smoothed}, step=i)
            if result.suggestion is not None:
                logger.log_metrics({f"{prefix}/suggestion": result.suggestion}, step=trainer.global_step)
        if not self.save_png or not _MATPLOTLIB_AVAILABLE or not trainer.is_global_zero or not result.lrs:
            return
        figure = self.plot(result)
        directory = self.save_dir or trainer.log_dir or trainer.default_root_dir
        os.makedirs(directory, exist_ok=True)
        figure.savefig(os.path.join(directory, f"{prefix}.png"), dpi=100)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if type(logger).__name__ == "TensorBoardLogger" and hasattr(experiment, "add_figure"):
                experiment.add_figure(prefix, figure, global_step=trainer.global_step)

    def plot(self, result: LRFinderResult | None = None, ax: Axes | None = None) -> Figure:
        """Draw the raw and smoothed loss against the LR, with the suggestion marked.

        Args:
            result: The sweep to draw; default the latest one.
            ax: Axes to draw on; default a new figure.

        Raises:
            ModuleNotFoundError: If matplotlib is not installed.
            RuntimeError: If there is no result yet.
        """
        if not _MATPLOTLIB_AVAILABLE:
            raise ModuleNotFoundError("`LRFinder.plot` needs matplotlib: `pip install matplotlib`.")
        from matplotlib.figure import Figure

        result = result or self.result
        if result is None:
            raise RuntimeError("`LRFinder.plot` has nothing to draw before the finder ran.")
        if ax is None:
            figure = Figure(figsize=(7, 4.5))
            ax = figure.subplots()
        else:
            figure = ax.figure
        ax.plot(result.lrs, result.losses, color="tab:blue", alpha=0.3, label="loss")
        ax.plot(result.lrs, result.smoothed_losses, color="tab:blue", label=f"smoothed (β={self.smoothing})")
        if result.suggestion is not None:
            ax.axvline(result.suggestion, color="tab:red", linestyle="--", label=f"{result.method}: {result.suggestion:.3g}")
        if self.mode == "exponential":
            ax.set_xscale("log")
        finite = [v for v in result.smoothed_losses if math.isfinite(v)]
        if len(finite) > 1:  # keep the divergence from flattening the rest of the curve
            low, start = min(finite), finite[0]
            span = max(start - low, 1e-12)
            ax.set_ylim(low - 0.1 * span, start + 0.5 * span)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(f"LR range test (epoch {result.epoch}, {result.steps} steps)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        return figure


# ----------------------------------------------------------------------------------------------- helpers
def _loss_tensor(output: Any) -> Tensor | None:
    """The loss in a ``training_step`` output: the tensor itself, or ``output["loss"]``."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        return output.get("loss")
    return None


def _train_iterable(trainer: pl.Trainer) -> Iterable:
    loaders = trainer.train_dataloader
    if loaders is None:
        raise RuntimeError("LRFinder needs the train dataloader; run it from `on_train_start` or later.")
    if isinstance(loaders, (Mapping, list, tuple)):
        return _FirstOfCombined(CombinedLoader(loaders, "max_size_cycle"))
    return loaders


class _FirstOfCombined:
    """Iterate a ``CombinedLoader`` yielding the batch only (it yields ``(batch, batch_idx, dataloader_idx)``)."""

    def __init__(self, combined: CombinedLoader) -> None:
        self.combined = combined

    def __iter__(self) -> Iterator[Any]:
        return (out[0] for out in iter(self.combined))


def _private_loader(loader: Iterable) -> Iterable:
    """A second iterator over a ``persistent_workers`` DataLoader would reset the user's, so use a worker-less twin."""
    if isinstance(loader, DataLoader) and loader.persistent_workers and loader.num_workers > 0:
        return DataLoader(loader.dataset, batch_sampler=loader.batch_sampler, collate_fn=loader.collate_fn, num_workers=0)
    return loader


def _cycle(loader: Iterable) -> Iterator[Any]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise RuntimeError("LRFinder: the train dataloader yielded no batch.")


def _generators(loader: Iterable) -> list[torch.Generator]:
    """The torch generators a DataLoader draws from when iterated (its own and its samplers')."""
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


def _rebase_scheduler(scheduler: Any, optimizer: Optimizer) -> None:
    """Point a torch LR scheduler at the new base LRs, so its next step does not write the old ones back."""
    if hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    if type(scheduler).__name__ in ("OneCycleLR", "CyclicLR"):
        rank_zero_warn(
            f"LRFinder: {type(scheduler).__name__} keeps its own LR bounds; the suggestion only moved `base_lrs`."
        )


class _Snapshot:
    """Copies of everything the sweep changes, put back by :meth:`restore` (bit for bit)."""

    def __init__(self, module: torch.nn.Module, optimizers: list[Optimizer], trainer: pl.Trainer, loader: Iterable) -> None:
        self.params = [(p, p.detach().clone(), None if p.grad is None else p.grad.detach().clone()) for p in module.parameters()]
        self.buffers = [(b, b.detach().clone()) for b in module.buffers()]
        self.optimizers = [
            (
                opt,
                {p: {k: _clone(v) for k, v in s.items()} for p, s in opt.state.items()},
                [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups],
            )
            for opt in optimizers
        ]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self.scaler = (scaler, copy.deepcopy(scaler.state_dict())) if scaler is not None else None
        self.rng = _rng_states()
        self.generators = [(g, g.get_state()) for g in _generators(loader)]

    def restore(self) -> None:
        with torch.no_grad():
            for p, data, grad in self.params:
                p.copy_(data)
                p.grad = grad
            for b, data in self.buffers:
                b.copy_(data)
        for opt, state, groups in self.optimizers:
            opt.state.clear()
            opt.state.update({p: {k: _clone(v) for k, v in s.items()} for p, s in state.items()})
            for group, saved in zip(opt.param_groups, groups):
                for key in [k for k in group if k != "params" and k not in saved]:
                    del group[key]
                group.update(copy.deepcopy(saved))
        if self.scaler is not None:
            self.scaler[0].load_state_dict(self.scaler[1])
        _set_rng_states(self.rng)
        for gen, state in self.generators:
            gen.set_state(state)


def _clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, Tensor) else copy.deepcopy(value)


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        states["numpy"] = np.random.get_state()
    except ImportError:
        pass
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        import numpy as np

        np.random.set_state(states["numpy"])

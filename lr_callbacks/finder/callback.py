"""The learning-rate range test (LR finder) as a Lightning callback.

The finder takes over the optimizer for a sweep of ``num_steps`` steps, raising the LR from ``min_lr`` to ``max_lr``
while it records the training loss, and (for the default ``suggestion="race"``) for a few short races at constant
candidate LRs, each scored on a few probe batches without a step. Each trial starts from, and ends by restoring, an
exact snapshot
(:class:`lr_callbacks.finder.snapshot.TrainingSnapshot`): parameters, gradients, buffers, optimizer state, the AMP grad
scaler, the RNG streams and the dataloader's generators. The trials run the user's own ``training_step`` through
the strategy (:class:`lr_callbacks.finder.trial.TrialSteps`) on private iterators, so the user's epoch is not consumed.
Finally the suggestion, read by the pure functions of :mod:`lr_callbacks.finder.curve`, becomes every group's base
LR (``initial_lr``), which schedule callbacks start from.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lr_callbacks._checks import check_choice, check_number
from lr_callbacks._plotting import MATPLOTLIB_AVAILABLE, figure_and_axes
from lr_callbacks.core import (
    IdentifiedCallback,
    apply_lr,
    lr_contributors,
    optimizer_steps_per_epoch,
    run_length,
    write_lrs,
)
from lr_callbacks.curvature import sgd_stability_factor, top_eigenvalue
from lr_callbacks.finder.curve import (
    BUDGET_EXPONENT,
    CURVE_METHODS,
    RACE_SPACING,
    budget_factor,
    choose_race,
    divergence_index,
    lowest_wins,
    probe_score,
    race_candidates,
    race_diverged,
    race_score,
    starting_loss,
    suggest,
    sweep_lrs,
)
from lr_callbacks.finder.snapshot import TrainingSnapshot
from lr_callbacks.finder.suggestions import (
    Curvature,
    Race,
    SuggestionMethod,
    suggestion_method,
)
from lr_callbacks.finder.trial import TrialSteps

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch.optim import Optimizer


Mode = Literal["exponential", "linear"]
Suggestion = Literal["race", "centered_min", "steepest", "valley", "min_div10", "curvature"]
MODES: tuple[str, ...] = get_args(Mode)
SUGGESTIONS: tuple[str, ...] = get_args(Suggestion)
if ("race", *CURVE_METHODS, "curvature") != SUGGESTIONS:  # the Literal must list what the curve module offers
    raise ImportError(f"LRFinder's Suggestion literal {SUGGESTIONS} is out of step with {CURVE_METHODS}.")
DEFAULT_SUGGESTION: Suggestion = "race"
# The exponent when the races follow a schedule: 0.2 and 0.4 compared on the cosine development tasks, where 0.2
# had the lower median but diverged on one task more.
SCHEDULED_BUDGET_EXPONENT = BUDGET_EXPONENT
_RACE_ARGUMENTS = {
    "budget_steps": "budget_steps",
    "race_candidates": "candidates",
    "probe_batches": "probe_batches",
    "train_steps": "train_steps",
}
DIVERGENCE_GRACE = 5  # sweep steps before a smoothed loss is trusted to signal divergence (non-finite always is)
CURVATURE_ITERS = 20  # power iterations (Hessian-vector products) of the curvature probe
UNBOUNDED_TRAIN_STEPS = 2000  # the training budget assumed when the trainer's is unbounded (the longest tuned on)


@dataclass
class LRFinderResult:
    """What one run of the finder found.

    Attributes:
        lrs: LR of the reference group (the first group of the first optimizer) at each sweep step.
        losses: Raw training loss at each sweep step (averaged over ranks and accumulated batches).
        smoothed_losses: Bias-corrected EMA of ``losses``.
        suggestion: The suggested base LR of the reference group, or ``None`` if none could be read.
        method: The suggestion method.
        suggestion_index: The sweep point the suggestion refers to (``None`` for ``"race"`` and ``"curvature"``).
        diverged: Whether the sweep stopped early on a diverging (or non-finite) loss.
        epoch: The epoch at whose start the finder ran.
        seconds: Wall time of the finder, restorations included.
        curvature_lr: The curvature bound at the start, ``2 * factor / (lambda_max + weight_decay)`` with the SGD
            momentum factor (``suggestion="curvature"`` only).
        divergence_lr: The LR at the lag-free divergence point of the sweep (``"race"`` only; the last sweep LR
            when the loss never diverged).
        race_lrs: The race candidates, largest first.
        race_losses: Each race's raw training losses (a diverged race stops early).
        race_probe_losses: Each race's losses on the probe batches at its end (empty for a diverged race, and for
            every race when there is no probe).
        race_scores: Each race's score: the mean of its probe losses (without a probe, its mean training loss over
            the last half of its steps); ``inf`` if it diverged.
        race_steps: Steps per race.
        race_winner: The LR of the winning race (``"race"`` only).
        train_steps: The training budget the suggestion is for (``"race"`` only): ``train_steps`` if given, else the
            optimizer steps the trainer has left.
        budget_factor: The factor on the winner for that budget, ``(race_steps / train_steps) ** 0.4`` at most 1.
        followed_schedule: Whether the races ran the trainer's schedule callbacks, compressed to their length.
        race_informative: Whether some race brought its score 10% below the starting loss; if none did, the
            smallest candidate won (:func:`~lr_callbacks.finder.curve.choose_race`).
        probe_forwards: Batches evaluated by the probes, without a step.
        hessian_vector_products: Hessian-vector products of the curvature probe.

    Example::

        >>> result = LRFinderResult(
        ...     lrs=[1e-3, 1e-2], losses=[2.0, 1.5], race_losses=[[1.5, 1.2], [1.5]], probe_forwards=4
        ... )
        >>> result.steps, result.optimizer_steps, result.cost_steps
        (2, 5, 9)
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
    divergence_lr: float | None = None
    race_lrs: list[float] = field(default_factory=list)
    race_losses: list[list[float]] = field(default_factory=list)
    race_probe_losses: list[list[float]] = field(default_factory=list)
    race_scores: list[float] = field(default_factory=list)
    race_steps: int = 0
    race_winner: float | None = None
    train_steps: float | None = None
    budget_factor: float | None = None
    followed_schedule: bool = False
    race_informative: bool = True
    probe_forwards: int = 0
    hessian_vector_products: int = 0

    @property
    def steps(self) -> int:
        """Optimizer steps of the sweep."""
        return len(self.lrs)

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps of the sweep and the races together."""
        return len(self.lrs) + sum(len(r) for r in self.race_losses)

    @property
    def cost_steps(self) -> int:
        """What the finder cost, in steps: its optimizer steps plus its probe batches, each probe batch (a forward
        pass without a backward pass or a step) counted as a whole step. ``budget_steps`` bounds it."""
        return self.optimizer_steps + self.probe_forwards


class LRFinder(IdentifiedCallback):
    """LR range test: sweep the LR, race a few candidates, suggest a base LR, apply it.

    Runs once when training starts (``on_train_start``, once the train dataloader exists; skipped when fit resumes
    from a checkpoint or under ``fast_dev_run``), at the start of every epoch listed in ``run_at_epoch``, or
    whenever :meth:`find` is called.

    **The sweep.** Step ``i`` trains on one batch (``accumulate_grad_batches`` batches under accumulation) with
    every param group at ``lr_i * base_g / base_ref``, so group ratios are kept; the loss is smoothed as
    ``avg = beta*avg + (1-beta)*loss``, ``smoothed_i = avg / (1 - beta**(i+1))``, and the sweep stops once
    ``smoothed_i > diverge_threshold * min(smoothed)`` (checked from the 6th point on: an average of fewer batches
    is mostly batch-to-batch noise) or the loss is not finite.

    **The default suggestion, :class:`~lr_callbacks.finder.suggestions.Race`.** The divergence point is read from a
    lag-free curve: the first sweep point whose centred running median of 5 raw losses exceeds ``diverge_threshold``
    times the lowest median before it (:func:`~lr_callbacks.finder.curve.divergence_index`; the last sweep LR if the
    loss never diverged). Below it, ``candidates`` LRs spaced by ``2**1.5`` (the largest at ``divergence / 2**1.5``)
    each train from the same restored state, on the same batches, at a constant LR. A race stops as diverged once
    its loss exceeds ``diverge_threshold`` times its first loss. Otherwise its end weights are evaluated, without a
    step or gradients, on the next ``probe_batches`` batches of the same data order (the same batches and RNG state
    for every race), and the mean of those losses is its score (:func:`~lr_callbacks.finder.curve.probe_score`;
    under manual optimization, or with ``probe_batches=0``, the mean training loss over the second half of the
    race). The races share what ``budget_steps`` leaves after the sweep equally, each probe batch counting as a
    step. The winner is the largest candidate within 2% of the best score; if no race brought its score 10% below
    the starting loss (the mean of the first 5 sweep losses), the races learned nothing that ranks them and the
    smallest candidate wins. The suggestion is the winner times ``(race_steps / train_steps) ** 0.4`` (at most 1;
    :func:`~lr_callbacks.finder.curve.budget_factor`), where ``train_steps`` is what the trainer has left to run
    (``trainer.estimated_stepping_batches`` minus the steps done) unless given: a race finds the best LR for its
    own short horizon, and the best constant LR for a longer run is lower, as its loss settles at a noise floor
    that a smaller LR lowers. A full-batch run (one optimizer step per epoch) has no gradient noise and so no such
    floor: it keeps the winner. If the smallest candidate wins, one
    more candidate below it races while a full race still fits the budget. With ``Race(follow_schedule=True)`` (the
    default), the time-driven LR callbacks of the trainer (a schedule, ``Warmup``) run inside each race compressed
    to its length, as :func:`~lr_callbacks.preview` foresees them for the rest of the run, so the winner is the base
    (peak) LR for that schedule. These constants (in :mod:`lr_callbacks.finder.curve`) were chosen on the
    development tasks of ``experiments/benchmarks/finder/tasks.py`` only; ``docs/benchmarks.md`` gives the
    out-of-sample evaluation.

    Other suggestion methods (:mod:`lr_callbacks.finder.suggestions`), read from the sweep alone:

    - ``"centered_min"``: the minimum of a centred moving average of the raw curve (6% of the points on each
      side), divided by 6.
    - ``"valley"``: fastai's ``valley``, re-implemented (:func:`~lr_callbacks.finder.curve.fastai_valley`) on the
      smoothed curve trimmed as fastai's ``lr_find`` trims it.
    - ``"steepest"``: the steepest descent of the raw curve after a moving average of 5 (the tutorial's method).
    - ``"min_div10"``: the LR at the minimum of the smoothed curve, divided by 10.
    - ``Curvature(scale)``: ``scale * 2 * factor / (lambda_max + weight_decay)``, with ``lambda_max`` of the
      loss Hessian on the first batch (:func:`~lr_callbacks.curvature.top_eigenvalue`, 20 power iterations) and
      ``factor`` from :func:`~lr_callbacks.curvature.sgd_stability_factor`: ``1 + momentum`` for heavy-ball SGD,
      ``(1 + momentum) / (1 + 2 momentum)`` for Nesterov. It bounds (momentum) SGD only; for other optimizers the
      plain bound is used and a warning says so.

    **Cost.** The sweep, the races and their probes together take at most ``budget_steps`` steps
    (:attr:`LRFinderResult.cost_steps`: optimizer steps, plus one per probe batch although a probe batch has no
    backward pass); the curvature probe adds its Hessian-vector products
    (:attr:`LRFinderResult.hessian_vector_products`). Every race keeps the snapshot's state in memory, once, and
    the probe keeps nothing: its batches are drawn from the data order as the race goes on.

    **Restoration.** After every trial the model, optimizer, grad scaler, RNG and dataloader generators are
    restored exactly (also when a trial raises), then the suggestion becomes each group's ``initial_lr`` and ``lr``:
    ``suggestion * base_g / base_ref``. Torch LR schedulers returned by ``configure_optimizers`` get new
    ``base_lrs`` so that they do not write the old LR back. Under ``precision="16-mixed"`` a step whose scaled
    gradients overflow is skipped by the GradScaler (which halves its scale) but still counts as a trial step: its
    loss is recorded and the next step has the next LR; the scale and growth tracker are restored afterwards.

    During the trials other callbacks receive no hooks and ``self.log`` in the module records values (for
    ``monitor``) without logging them. Limits: the LightningModule's ``optimizer_step`` override is bypassed (the
    strategy steps the optimizer, honouring gradient clipping and AMP); under manual optimization each trial step
    is one call of ``training_step``, which steps the optimizers itself; user state kept by ``training_step`` (lists
    of losses, counters) sees the trial steps; strategies that shard optimizer state (FSDP, DeepSpeed) are not
    supported.

    Args:
        min_lr: First LR of the sweep (reference group).
        max_lr: Last LR of the sweep.
        num_steps: Number of sweep steps (optimizer steps), ``>= 2``.
        mode: ``"exponential"`` or ``"linear"`` spacing of the LRs.
        smoothing: EMA factor ``beta`` in ``[0, 1)``; 0 disables smoothing.
        diverge_threshold: Stop once the smoothed loss exceeds this multiple of its minimum; ``> 1``.
        suggestion: The method, as an object (:class:`~lr_callbacks.finder.suggestions.Race`,
            :class:`~lr_callbacks.finder.suggestions.Curvature`, :class:`~lr_callbacks.finder.suggestions.Valley`,
            ...) or by one of the names of :attr:`SUGGESTIONS` (the method with its defaults).
        apply: Apply the suggestion as the base LR of every group.
        run_at_start: Run when training starts.
        run_at_epoch: Epoch index or indices at whose start to run (mid-training).
        monitor: Name of a value ``training_step`` logs with ``self.log`` to use as the trial loss instead of the
            returned loss (for manual optimization steps that return nothing).
        save_dir: Where the PNG of the curve goes; default the trainer's ``log_dir``.
        save_png: Draw the curve into a PNG and a TensorBoard figure (matplotlib; rendering costs ~0.2 s).
        **deprecated: ``budget_steps``, ``race_candidates``, ``probe_batches`` and ``train_steps`` (now
            :class:`~lr_callbacks.finder.suggestions.Race`'s) and ``curvature_scale`` (now
            :class:`~lr_callbacks.finder.suggestions.Curvature`'s ``scale``) still work beside a suggestion name, with
            a ``FutureWarning``; one that does not apply to the named method is refused.

    Raises:
        ValueError: If an argument is outside what is allowed; the message names it.

    Example::

        >>> from lr_callbacks import LRFinder
        >>> from lr_callbacks import MinDiv10
        >>> LRFinder(num_steps=50, suggestion=MinDiv10())  # doctest: +NORMALIZE_WHITESPACE
        LRFinder(min_lr=1e-07, max_lr=10.0, num_steps=50, mode='exponential', smoothing=0.98,
                 diverge_threshold=4.0, suggestion=MinDiv10())
    """

    MODES = MODES
    SUGGESTIONS = SUGGESTIONS

    IDENTITY = ("min_lr", "max_lr", "num_steps", "mode", "smoothing", "diverge_threshold", "suggestion")

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        mode: Mode = "exponential",
        smoothing: float = 0.98,
        diverge_threshold: float = 4.0,
        suggestion: Suggestion | SuggestionMethod = DEFAULT_SUGGESTION,
        apply: bool = True,
        run_at_start: bool = True,
        run_at_epoch: int | Sequence[int] | None = None,
        monitor: str | None = None,
        save_dir: str | os.PathLike | None = None,
        save_png: bool = True,
        **deprecated: Any,
    ) -> None:
        self.mode = check_choice("mode", mode, MODES)
        self.min_lr = check_number("min_lr", min_lr, gt=0 if mode == "exponential" else None, ge=0)
        self.max_lr = check_number("max_lr", max_lr, gt=0)
        if not self.min_lr < self.max_lr:
            raise ValueError(f"`min_lr` must be smaller than `max_lr`, got min_lr={min_lr!r} >= max_lr={max_lr!r}.")
        self.num_steps = check_number("num_steps", num_steps, ge=2, integer=True)
        self.smoothing = check_number("smoothing", smoothing, ge=0, lt=1)
        self.diverge_threshold = check_number("diverge_threshold", diverge_threshold, gt=1)
        self.suggestion = _with_deprecated(suggestion_method(suggestion), isinstance(suggestion, str), deprecated)
        self.suggestion.check(self.num_steps)
        self.apply = bool(apply)
        self.run_at_start = bool(run_at_start)
        epochs = [] if run_at_epoch is None else [run_at_epoch] if isinstance(run_at_epoch, int) else list(run_at_epoch)
        self.run_at_epoch = tuple(check_number("run_at_epoch", e, ge=0, integer=True) for e in epochs)
        self.monitor = monitor
        self.save_dir = save_dir
        self.save_png = bool(save_png)
        self.result: LRFinderResult | None = None
        self.results: list[LRFinderResult] = []
        self._done_epochs: list[int] = []

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
        # Lightning's tuner callbacks (BatchSizeFinder, LearningRateFinder) leave `ckpt_path` at their own
        # temporary checkpoint of the untrained model: a resume is a checkpoint with training done.
        if trainer.ckpt_path is not None and (trainer.global_step > 0 or trainer.current_epoch > 0):
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
        """Run the range test (and the races) now, restore everything, and apply the suggestion if ``apply``.

        Returns:
            The result (also kept as :attr:`result`), or ``None`` when there is no optimizer.
        """
        optimizers = list(trainer.optimizers)
        if not optimizers:
            rank_zero_warn("LRFinder: the trainer has no optimizer; nothing to sweep.")
            return None
        trial = TrialSteps(trainer, pl_module, self.monitor)
        bases = [[float(g.get("initial_lr", g["lr"])) for g in opt.param_groups] for opt in optimizers]
        ref = next((b for row in bases for b in row if b != 0.0), 1.0)
        result = LRFinderResult(method=self.suggestion.name, epoch=trainer.current_epoch)
        start = time.perf_counter()
        snapshot = TrainingSnapshot(
            pl_module, optimizers, getattr(trainer.precision_plugin, "scaler", None), trial.loader
        )
        try:
            with trial.isolated():
                batches = trial.batches()
                if isinstance(self.suggestion, Curvature):
                    self._curvature(trial, optimizers, batches, result)
                self._sweep(trial, optimizers, batches, bases, ref, result)
        finally:
            snapshot.restore()
        if isinstance(self.suggestion, Race) and result.lrs:
            self._races(trial, snapshot, optimizers, bases, ref, result, self.suggestion)
        result.seconds = time.perf_counter() - start
        self._suggest(trainer, result)
        self.result = result
        self.results.append(result)
        self._done_epochs.append(result.epoch)
        if self.apply and result.suggestion is not None:
            self._apply(trainer, optimizers, bases, ref, result.suggestion)
        self._report(trainer, result)
        return result

    def _sweep(
        self,
        trial: TrialSteps,
        optimizers: list[Optimizer],
        batches: Iterator[Any],
        bases: list[list[float]],
        ref: float,
        result: LRFinderResult,
    ) -> None:
        avg, best = 0.0, math.inf
        for i, lr in enumerate(sweep_lrs(self.min_lr, self.max_lr, self.num_steps, self.mode)):
            write_lrs(optimizers, _scaled(bases, ref, lr))
            loss = trial.step(optimizers, batches, i)
            if loss is None:  # training_step returned None: the batch is skipped, like Lightning does
                continue
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

    def _races(
        self,
        trial: TrialSteps,
        snapshot: TrainingSnapshot,
        optimizers: list[Optimizer],
        bases: list[list[float]],
        ref: float,
        result: LRFinderResult,
        race: Race,
    ) -> None:
        """Race each candidate from the snapshot on the same batches; restore after each race, also on errors."""
        index = divergence_index(result.losses, self.diverge_threshold, lrs=result.lrs)
        result.divergence_lr = result.lrs[-1] if index is None else result.lrs[index]
        probe = race.probe_batches if trial.pl_module.automatic_optimization else 0
        result.race_steps = (race.budget_steps - result.steps) // race.candidates - probe
        shape = _schedule_shape(trial.trainer, bases, result.race_steps) if race.follow_schedule else None
        result.followed_schedule = shape is not None
        candidates = race_candidates(result.divergence_lr, race.candidates)
        while candidates:
            lr = candidates.pop(0)
            losses, probed, diverged = self._race(
                trial, snapshot, optimizers, _scaled(bases, ref, lr), result.race_steps, probe, shape
            )
            result.race_lrs.append(lr)
            result.race_losses.append(losses)
            result.race_probe_losses.append(probed or [])
            result.probe_forwards += 0 if probed is None else probe
            result.race_scores.append(
                probe_score(probed, diverged) if probed is not None else race_score(losses, diverged)
            )
            left = race.budget_steps - result.cost_steps
            if (
                not candidates
                and left >= result.race_steps + probe
                and lowest_wins(result.race_lrs, result.race_scores)
            ):
                candidates.append(lr / RACE_SPACING)  # the best LR may lie lower still: race on while budget lasts

    def _race(
        self,
        trial: TrialSteps,
        snapshot: TrainingSnapshot,
        optimizers: list[Optimizer],
        lrs: list[list[float]],
        steps: int,
        probe: int,
        shape: list[list[list[float]]] | None = None,
    ) -> tuple[list[float], list[float] | None, bool]:
        """Train ``steps`` steps from the snapshot at ``lrs`` (times ``shape[k]``, the schedule's factors at race
        step ``k``, when given), evaluate the end weights on the next ``probe`` batches, then restore the snapshot
        (also on errors).

        Returns the training losses, the probe losses (``None`` when the race diverged or there is no probe) and
        whether the race stopped as diverged."""
        losses: list[float] = []
        try:
            with trial.isolated():
                write_lrs(optimizers, lrs)
                batches = trial.batches()
                for k in range(steps):
                    if shape is not None:
                        write_lrs(optimizers, [[lr * f for lr, f in zip(*rows)] for rows in zip(lrs, shape[k])])
                    loss = trial.step(optimizers, batches, k)
                    if loss is None:
                        continue
                    losses.append(loss)
                    if race_diverged(losses, self.diverge_threshold):
                        return losses, None, True
                return losses, trial.probe(batches, probe) if probe else None, False
        finally:
            snapshot.restore()

    def _curvature(
        self, trial: TrialSteps, optimizers: list[Optimizer], batches: Iterator[Any], result: LRFinderResult
    ) -> None:
        """``2 * factor / (lambda_max + weight_decay)`` on one batch at the current weights (SGD's bound)."""
        batch = trial.trainer.strategy.batch_to_device(next(batches))
        try:
            lam, result.hessian_vector_products = top_eigenvalue(
                trial.pl_module, trial.loss_fn, batch, iters=CURVATURE_ITERS
            )
        except RuntimeError as err:  # an operation without a second derivative
            rank_zero_warn(f"LRFinder: no Hessian-vector product for this model, so no curvature bound ({err}).")
            return
        optimizer, group = optimizers[0], optimizers[0].param_groups[0]
        if isinstance(optimizer, torch.optim.SGD):
            factor = sgd_stability_factor(
                float(group.get("momentum", 0.0)),
                float(group.get("dampening", 0.0)),
                bool(group.get("nesterov", False)),
            )
            lam += float(group.get("weight_decay", 0.0))
        else:
            factor = 1.0
            rank_zero_warn(
                f"LRFinder: the curvature bound holds for (momentum) SGD; {type(optimizer).__name__} gets the plain "
                "2 / lambda_max."
            )
        result.curvature_lr = 2.0 * factor / lam if lam > 0 else math.inf

    # ---------------------------------------------------------------------------------------------- after the trials
    def _suggest(self, trainer: pl.Trainer, result: LRFinderResult) -> None:
        method = self.suggestion
        if isinstance(method, Curvature):
            lr = result.curvature_lr
            result.suggestion = None if lr is None or not math.isfinite(lr) else method.scale * lr
        elif isinstance(method, Race):
            start = starting_loss(result.losses)
            winner = choose_race(result.race_lrs, result.race_scores, start=start)
            result.race_informative = winner is not None and winner == choose_race(result.race_lrs, result.race_scores)
            if winner is not None:
                result.race_winner = result.race_lrs[winner]
                result.train_steps = self._train_steps(trainer, method)
                exponent = SCHEDULED_BUDGET_EXPONENT if result.followed_schedule else BUDGET_EXPONENT
                if optimizer_steps_per_epoch(trainer) == 1:
                    exponent = 0.0  # full batch: no gradient noise, so no noise floor for a smaller LR to lower
                result.budget_factor = budget_factor(result.race_steps, result.train_steps, exponent)
                result.suggestion = result.race_winner * result.budget_factor
        else:
            found = suggest(method.name, result.lrs, result.losses, result.smoothed_losses, num_steps=self.num_steps)
            if found is not None:
                result.suggestion, result.suggestion_index = found
        # One decision for all ranks (the curves already agree: the losses were averaged over ranks).
        result.suggestion = trainer.strategy.broadcast(result.suggestion, src=0)
        if result.suggestion is None:
            rank_zero_warn(
                f"LRFinder: no suggestion ({result.method}) from {result.steps} sweep steps"
                f"{' and races that all diverged' if result.race_lrs else ''}; widen the LR range or raise `num_steps`."
            )

    def _train_steps(self, trainer: pl.Trainer, race: Race) -> float:
        """The optimizer steps the suggestion is for: ``train_steps``, else what the trainer has left to run."""
        if race.train_steps is not None:
            return float(race.train_steps)
        left = run_length(trainer)[0] - trainer.global_step
        if math.isfinite(left) and left >= 1:
            return left
        rank_zero_warn(
            f"LRFinder: the trainer's budget is unbounded; the race suggestion assumes {UNBOUNDED_TRAIN_STEPS} training"
            " steps. Pass `Race(train_steps=...)` to say how long the run at the suggestion will be."
        )
        return float(UNBOUNDED_TRAIN_STEPS)

    def _apply(
        self, trainer: pl.Trainer, optimizers: list[Optimizer], bases: list[list[float]], ref: float, lr: float
    ) -> None:
        """Make ``lr * base_g / base_ref`` every group's base LR, also for torch schedulers and our schedules."""
        schedulers = {
            id(c.scheduler.optimizer): c.scheduler
            for c in trainer.lr_scheduler_configs
            if hasattr(c.scheduler, "optimizer")
        }
        new = _scaled(bases, ref, lr)
        current = []
        for opt, row, new_row in zip(optimizers, bases, new):
            scheduled = id(opt) in schedulers
            # Keep where a torch schedule currently is: scale its LR by the change of base.
            current.append(
                [g["lr"] * n / b if scheduled and b != 0.0 else n for g, b, n in zip(opt.param_groups, row, new_row)]
            )
        write_lrs(optimizers, current, initial_lrs=new)
        for opt in optimizers:
            if id(opt) in schedulers:
                _rebase_scheduler(schedulers[id(opt)], opt)
        if lr_contributors(trainer):
            apply_lr(trainer)

    def _report(self, trainer: pl.Trainer, result: LRFinderResult) -> None:
        shown = "none" if result.suggestion is None else f"{result.suggestion:.3g}"
        rank_zero_info(
            f"LRFinder: suggested LR {shown} ({result.method}) after {result.optimizer_steps} optimizer steps"
            f"{f' and {result.probe_forwards} probe batches' if result.probe_forwards else ''}"
            f"{', the sweep stopped on divergence' if result.diverged else ''}."
        )
        prefix = "lr_finder" if result.epoch == 0 else f"lr_finder_epoch{result.epoch}"
        for logger in trainer.loggers:
            for i, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed_losses)):
                logger.log_metrics(
                    {f"{prefix}/lr": lr, f"{prefix}/loss": loss, f"{prefix}/smoothed_loss": smoothed}, step=i
                )
            for i, (lr, score) in enumerate(zip(result.race_lrs, result.race_scores)):
                logger.log_metrics({f"{prefix}/race_lr": lr, f"{prefix}/race_score": score}, step=i)
            summary = {
                f"{prefix}/optimizer_steps": float(result.optimizer_steps),
                f"{prefix}/cost_steps": float(result.cost_steps),
            }
            if result.suggestion is not None:
                summary[f"{prefix}/suggestion"] = result.suggestion
            logger.log_metrics(summary, step=trainer.global_step)
        if not self.save_png or not MATPLOTLIB_AVAILABLE or not trainer.is_global_zero or not result.lrs:
            return
        figure = self.plot(result)
        directory = self.save_dir or trainer.log_dir or trainer.default_root_dir
        os.makedirs(directory, exist_ok=True)
        figure.savefig(os.path.join(directory, f"{prefix}.png"), dpi=100)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if (
                type(logger).__name__ == "TensorBoardLogger"
                and experiment is not None
                and hasattr(experiment, "add_figure")
            ):
                experiment.add_figure(prefix, figure, global_step=trainer.global_step)

    def plot(self, result: LRFinderResult | None = None, ax: Axes | None = None) -> Figure:
        """Draw the raw and smoothed loss against the LR, the race candidates and the suggestion.

        Args:
            result: The run to draw; default the latest one.
            ax: Axes to draw on; default a new figure.

        Raises:
            ModuleNotFoundError: If matplotlib is not installed.
            RuntimeError: If there is no result yet.
        """
        result = result or self.result
        if result is None:
            raise RuntimeError("`LRFinder.plot` has nothing to draw before the finder ran.")
        figure, ax = figure_and_axes(ax, (7, 4.5), "LRFinder.plot")
        ax.plot(result.lrs, result.losses, color="tab:blue", alpha=0.3, label="loss")
        ax.plot(result.lrs, result.smoothed_losses, color="tab:blue", label=f"smoothed (β={self.smoothing})")
        finite = [v for v in result.smoothed_losses if math.isfinite(v)]
        if result.race_lrs:
            scores = [s if math.isfinite(s) else (max(finite) if finite else 0.0) for s in result.race_scores]
            ax.plot(result.race_lrs, scores, "o", color="tab:green", label=f"race scores ({result.race_steps} steps)")
        if result.suggestion is not None:
            ax.axvline(
                result.suggestion, color="tab:red", linestyle="--", label=f"{result.method}: {result.suggestion:.3g}"
            )
        if self.mode == "exponential":
            ax.set_xscale("log")
        if len(finite) > 1:  # keep the divergence from flattening the rest of the curve
            low, start = min(finite + [s for s in result.race_scores if math.isfinite(s)]), finite[0]
            span = max(start - low, 1e-12)
            ax.set_ylim(low - 0.1 * span, start + 0.5 * span)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(f"LR range test (epoch {result.epoch}, {result.optimizer_steps} optimizer steps)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        return figure


def _scaled(bases: list[list[float]], ref: float, lr: float) -> list[list[float]]:
    """Every group's LR when the reference group's is ``lr``: ``lr * base_g / base_ref``."""
    return [[lr * base / ref for base in row] for row in bases]


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


def _with_deprecated(method: SuggestionMethod, named: bool, deprecated: dict[str, Any]) -> SuggestionMethod:
    """Fold the arguments ``LRFinder`` took before suggestion objects (``budget_steps``, ``race_candidates``,
    ``probe_batches``, ``train_steps``, ``curvature_scale``) into the method, with a ``FutureWarning``; refuse any
    that the method does not take, or that come beside a method object."""
    if not deprecated:
        return method
    known = {*_RACE_ARGUMENTS, "curvature_scale"}
    unknown = sorted(set(deprecated) - known)
    if unknown:
        raise TypeError(f"LRFinder got unexpected keyword argument(s) {unknown}.")
    if not named:
        raise ValueError(
            f"{sorted(deprecated)} cannot be given beside a suggestion object; pass them to {method!r} instead."
        )
    if isinstance(method, Race):
        accepted: tuple[str, ...] = tuple(_RACE_ARGUMENTS)
        replacement: SuggestionMethod = Race(**{_RACE_ARGUMENTS[k]: v for k, v in deprecated.items() if k in accepted})
    elif isinstance(method, Curvature):
        accepted = ("curvature_scale",)
        replacement = Curvature(scale=deprecated.get("curvature_scale", method.scale))
    else:
        accepted, replacement = (), method
    wrong = sorted(set(deprecated) - set(accepted))
    if wrong:
        takes = f"it takes only {list(accepted)}" if accepted else "it takes no arguments"
        raise ValueError(f"{', '.join(f'`{k}`' for k in wrong)} does not apply to suggestion={method.name!r}; {takes}.")
    given = ", ".join(f"{k}=..." for k in sorted(deprecated))
    warnings.warn(
        f"LRFinder({given}) is deprecated; pass suggestion={replacement!r}.",
        FutureWarning,
        stacklevel=3,
    )
    return replacement


def _schedule_shape(trainer: pl.Trainer, bases: list[list[float]], steps: int) -> list[list[list[float]]] | None:
    """The factors the trainer's time-driven LR callbacks put on each group's base LR, sampled at ``steps`` evenly
    spaced points of what is left of the run: ``shape[k][i][g]`` for race step ``k``. ``None`` when there is no
    such callback, the run is unbounded, or a factor is negative (sign alternation is not compressed)."""
    from lr_callbacks.lr_preview import preview

    timed = [c for c in lr_contributors(trainer) if c._time_driven]
    per_epoch = optimizer_steps_per_epoch(trainer)
    total, epochs = run_length(trainer)
    if not timed or per_epoch < 1 or not math.isfinite(total):
        return None
    epochs_run = int(epochs) if math.isfinite(epochs) else -(-int(total) // per_epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        planned = preview(timed, epochs=epochs_run, steps_per_epoch=per_epoch, base_lrs=bases, max_steps=int(total)).lrs
    start = min(trainer.global_step, len(planned) - 1)
    left = len(planned) - start
    shape = []
    for k in range(steps):
        row = planned[start + (k * left) // steps]
        shape.append([[lr / b if b != 0.0 else 0.0 for lr, b in zip(r, base)] for r, base in zip(row, bases)])
    if any(f < 0 for step in shape for r in step for f in r):
        return None
    return shape

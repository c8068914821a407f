"""Runs of the spike benchmark: one task, seed and scenario of :mod:`experiments.benchmarks.spikes.zoo` under one
configuration (no intervention, gradient clipping, Lightning's ``SpikeDetection`` with restarts, ZClip, an OLMo-style
skip, or a ``SpikeGuard``), through a real ``Trainer.fit``; each run's trace, flags, final loss and updates lost.

Results are cached in ``.spike_cache/`` (``LR_SPIKE_CACHE`` names another folder, ``none`` turns it off), keyed by
the task, seed, scenario and the configuration's ``repr``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.spike import TrainingSpikeException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, SpikeDetection
from torch import Tensor
from typing_extensions import override

from experiments.benchmarks.schedules import HookTimer
from experiments.benchmarks.spikes.zoo import (
    FINAL_EVALUATIONS,
    FINAL_EVERY,
    NOISE_SKIP,
    Injection,
    SpikeTask,
    corrupt,
    injections,
)
from lr_callbacks import Modifier
from lr_callbacks.core import apply_lr
from lr_callbacks.spike.reactions import drop_update

CACHE_VERSION = 1


# ----------------------------------------------------------------------------------------------- data


class _EpochSampler:
    """Lightning calls ``sampler.set_epoch`` at each epoch start; the loader reads the epoch from here."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class InjectedBatches:
    """Index-sliced batches of in-memory tensors that corrupt, skip and resume by *original* batch index.

    Each epoch's order is a permutation drawn from ``seed + epoch``. ``corrupt`` maps ``(epoch, index)`` to a
    function applied to that batch; ``skip`` holds ``(epoch, index)`` pairs left out (a restart's skip list).
    ``yielded`` lists the original indices handed out so far this epoch: Lightning's ``batch_idx`` is a position
    in it. ``state_dict`` / ``load_state_dict`` make the loader resumable mid-epoch.
    """

    def __init__(
        self,
        tensors: tuple[Tensor, ...],
        batch_size: int,
        seed: int,
        corrupt: dict[tuple[int, int], Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]]] | None = None,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.seed = seed
        self.corrupt = corrupt or {}
        self.skip: set[tuple[int, int]] = set()
        self.sampler = _EpochSampler()
        self.batch_sampler = None
        self.yielded: list[int] = []
        self._resume: dict[str, Any] | None = None
        self._next = 0

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        epoch = self.sampler.epoch
        start = 0
        self.yielded = []
        if self._resume is not None and self._resume["epoch"] == epoch:
            start, self.yielded = self._resume["next"], list(self._resume["yielded"])
        self._resume = None
        order = torch.randperm(len(self.tensors[0]), generator=torch.Generator().manual_seed(self.seed + epoch))
        bs = self.batch_size
        for i in range(start, len(self)):
            if (epoch, i) in self.skip:
                continue
            self.yielded.append(i)
            self._next = i + 1
            batch = tuple(t[order[i * bs : (i + 1) * bs]] for t in self.tensors)
            fn = self.corrupt.get((epoch, i))
            yield fn(batch) if fn is not None else batch

    def original(self, batch_idx: int) -> int:
        """The original index of this epoch's ``batch_idx``-th batch."""
        return self.yielded[batch_idx]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.sampler.epoch, "next": self._next, "yielded": list(self.yielded)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = dict(state)


class BatchLRSpike(Modifier):
    """An injected LR burst: the factor is ``factors[(epoch, index)]`` while that batch (by original index) trains."""

    def __init__(self, loader: InjectedBatches, factors: dict[tuple[int, int], float]) -> None:
        super().__init__("step")
        self.loader = loader
        self.factors = factors
        self.factor = 1.0

    @override
    def lr_factor(self, optimizer_idx: int, group_idx: int) -> float:
        return self.factor

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        factor = self.factors.get((trainer.current_epoch, self.loader.original(batch_idx)), 1.0)
        if factor != self.factor:
            self.factor = factor
            apply_lr(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pass


# ----------------------------------------------------------------------------------------------- probes


class Trace(Callback):
    """The loss of every optimizer step executed (before its update), and the held-out loss at the last steps."""

    def __init__(self, test: tuple[Tensor, Tensor], checkpoints: set[int]) -> None:
        self.losses: list[float] = []
        self.steps: list[int] = []  # the global step of each loss (they differ after a restart)
        self.held_out: dict[int, float] = {}
        self.test = test
        self.checkpoints = checkpoints

    @override
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        self.losses.append(float(loss))
        self.steps.append(trainer.global_step)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step in self.checkpoints:
            self.held_out[step] = held_out_loss(pl_module, self.test)


def held_out_loss(module: Any, test: tuple[Tensor, Tensor]) -> float:
    module.eval()
    with torch.no_grad():
        loss = float(module.loss(test))
    module.train()
    return loss if math.isfinite(loss) else math.inf


class OLMoSkip(Callback):
    """OLMo's skip step: drop the update when the loss exceeds the mean + 6 standard deviations of the losses of
    the last 128 steps not skipped (decided once at least half of that window is filled)."""

    def __init__(self, window: int = 128, sigmas: float = 6.0) -> None:
        self.losses: collections.deque[float] = collections.deque(maxlen=window)
        self.sigmas = sigmas
        self.flags: list[int] = []
        self._loss = math.nan

    @override
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        self._loss = float(loss)

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        x, window = self._loss, self.losses
        if len(window) >= (window.maxlen or 0) // 2:
            mean = statistics.fmean(window)
            if not math.isfinite(x) or x > mean + self.sigmas * statistics.pstdev(window, mean):
                drop_update(trainer.optimizers)
                self.flags.append(trainer.global_step)
                return
        window.append(x)


def zclip_callback() -> Callback | None:
    """ZClip (the ``zclip`` package) with its defaults but no fixed norm cap (that is the clip row), recording the
    steps it clipped as flags; ``None`` if the package is missing."""
    try:
        from zclip import ZClip
    except ImportError:
        return None

    class Recording(ZClip):
        def __init__(self) -> None:
            super().__init__(max_grad_norm=None)
            self.clipped = False

        def _compute_clip_val(self, grad_norm: float) -> Any:
            value = super()._compute_clip_val(grad_norm)
            self.clipped = value is not None
            return value

    class ZClipCallback(Callback):
        def __init__(self) -> None:
            self.zclip = Recording()
            self.flags: list[int] = []

        @override
        def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
            self.zclip.clipped = False
            self.zclip.step(pl_module)
            if self.zclip.clipped:
                self.flags.append(trainer.global_step)

    return ZClipCallback()


class _ResumableSpikeDetection(SpikeDetection):
    """Lightning's ``SpikeDetection``; its ``load_state_dict`` reads ``self.running``, which does not exist
    (Lightning 2.6), so a restart from a checkpoint that holds its state fails. The running mean is restored
    here as its own ``state_dict`` describes it."""

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.running_mean.load_state_dict(state.pop("running"))
        self.running_mean.base_metric.load_state_dict(state.pop("mean"))
        self.last_val = state["last_val"]
        self.bad_batches = list(state["bad_batches"])


@contextmanager
def quiet() -> Iterator[None]:
    """Keep Lightning's progress messages and warnings for tiny in-memory data out of the tables."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


# ----------------------------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One run: its trace, the steps it flagged, its final held-out loss (and at the initial weights), the updates
    it discarded, and the time in the guard's hooks and per step (seconds; guards only)."""

    trace: list[float]
    flags: list[int]
    final: float
    initial: float
    lost: int = 0
    restarts: int = 0
    hook_s: float | None = None
    step_s: float | None = None
    reaches: list[tuple[int, int]] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)


#: a configuration: ("none" | "clip" | "lightning" | "zclip" | "olmo" | "guard" | "skip-noise", its factory or value)
Config = tuple[str, Any]


def _trainer(task: SpikeTask, callbacks: list[Callback], root: str, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        max_steps=task.steps,
        max_epochs=100_000,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=root,
        callbacks=callbacks,
        **kwargs,
    )


def _setup(task: SpikeTask, scenario: str, seed: int) -> tuple[Any, InjectedBatches, list[Callback], list[Injection]]:
    (train, _), n = task.split(seed), task.steps_per_epoch(seed)
    planned = injections(task, scenario, seed)
    g = torch.Generator().manual_seed(10_000 + seed)
    table: dict[tuple[int, int], Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]]] = {}
    factors: dict[tuple[int, int], float] = {}
    for inj in planned:
        if inj.kind == "lr":
            for k in range(inj.length):
                factors[divmod(inj.step + k, n)] = inj.magnitude
        else:
            table[divmod(inj.step, n)] = lambda b, inj=inj: corrupt(task, inj, b, g)  # type: ignore[misc]
    loader = InjectedBatches(train, task.batch_size, seed=seed, corrupt=table)
    extra: list[Callback] = [BatchLRSpike(loader, factors)] if factors else []
    return task.module(seed), loader, extra, planned


def run(task: SpikeTask, seed: int, scenario: str, config: Config, name: str = "") -> Run:
    """One run, cached on disk."""
    key = f"{CACHE_VERSION}|{task.name}|{seed}|{scenario}|{config[0]}|{_describe(config)}"
    cached = _load(key)
    if cached is not None:
        return cached
    with quiet():
        result = _run(task, seed, scenario, config)
    _save(key, result)
    return result


def _describe(config: Config) -> str:
    kind, value = config
    if kind == "guard":
        return repr(value())
    return repr(value) if not callable(value) else kind


def _run(task: SpikeTask, seed: int, scenario: str, config: Config) -> Run:
    kind, value = config
    if kind == "lightning":
        return _run_lightning(task, seed, scenario)
    if kind == "norms":
        return _run_norms(task, seed)
    model, loader, extra, planned = _setup(task, scenario, seed)
    _, test = task.split(seed)
    initial = held_out_loss(model, test)
    trace = Trace(test, {task.steps - FINAL_EVERY * k for k in range(FINAL_EVALUATIONS)})
    callbacks: list[Callback] = [trace, *extra]
    kwargs: dict[str, Any] = {}
    guard: Any = None
    timer = HookTimer()
    if kind == "clip":
        kwargs["gradient_clip_val"] = value
    elif kind == "skip-noise":
        middle = task.steps // 2
        n = task.steps_per_epoch(seed)
        loader.skip |= {divmod(middle + k, n) for k in range(NOISE_SKIP)}
    elif kind in ("zclip", "olmo", "guard"):
        guard = value() if kind == "guard" else (zclip_callback() if kind == "zclip" else OLMoSkip())
        if guard is None:
            raise RuntimeError("zclip is not installed")
        if kind == "guard":
            timer.attach(guard)
        callbacks.append(guard)
    clock = _StepClock()
    callbacks.append(clock)
    with tempfile.TemporaryDirectory() as root:
        _trainer(task, callbacks, root, **kwargs).fit(model, loader)
    flags: list[int] = []
    lost = 0
    if guard is not None:
        flags = list(getattr(guard, "spikes", None) or getattr(guard, "flags", []))
        lost = getattr(guard, "steps_lost", len(flags) if kind == "olmo" else 0)
    final = _final(trace)
    hook_s = timer.ns / 1e9 / max(len(trace.losses), 1) if kind == "guard" else None
    return Run(trace.losses, flags, final, initial, lost, 0, hook_s, clock.median(), _reaches(planned), trace.steps)


class _StepClock(Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    @override
    def on_train_batch_start(self, *args: Any) -> None:
        self.stamps.append(time.perf_counter())

    def median(self) -> float | None:
        stamps = self.stamps[10:]
        return statistics.median(b - a for a, b in zip(stamps, stamps[1:])) if len(stamps) > 2 else None


def _final(trace: Trace) -> float:
    values = list(trace.held_out.values())
    if len(values) < FINAL_EVALUATIONS or not all(math.isfinite(v) for v in values):
        return math.inf
    return statistics.fmean(values)


def _reaches(planned: list[Injection]) -> list[tuple[int, int]]:
    return [(inj.reach.start, inj.reach.stop) for inj in planned]


def _run_norms(task: SpikeTask, seed: int) -> Run:
    """A clean run whose trace is the total gradient norm of each step (for the clip row's norm)."""
    model, loader, _, _ = _setup(task, "clean", seed)
    norms: list[float] = []

    class Norms(Callback):
        @override
        def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            norms.append(float(torch.nn.utils.get_total_norm(grads)))

    with tempfile.TemporaryDirectory() as root:
        _trainer(task, [Norms()], root).fit(model, loader)
    return Run(norms, [], math.nan, math.nan)


def _run_lightning(task: SpikeTask, seed: int, scenario: str, every: int = 50, max_restarts: int = 30) -> Run:
    """Lightning's ``SpikeDetection`` with the restart-and-skip workflow it is meant for: at a spike the run raises
    and writes the batch indices to skip; it restarts from the last checkpoint (every 50 steps) without them."""
    model, loader, extra, planned = _setup(task, scenario, seed)
    _, test = task.split(seed)
    initial = held_out_loss(model, test)
    trace = Trace(test, {task.steps - FINAL_EVERY * k for k in range(FINAL_EVALUATIONS)})
    flags: list[int] = []
    lost = restarts = 0
    with tempfile.TemporaryDirectory() as root:
        ckpt_dir = os.path.join(root, "ckpt")
        skip_file = os.path.join(root, "skip_batches.json")
        ckpt_path = None
        while True:
            detector = _ResumableSpikeDetection(exclude_batches_path=skip_file)
            checkpoint = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=every, save_top_k=1)
            trainer = _trainer(task, [trace, *extra, detector, checkpoint], root)
            try:
                trainer.fit(model, loader, ckpt_path=ckpt_path)
                break
            except TrainingSpikeException:
                epoch = trainer.current_epoch
                flags.append(len(trace.losses) - 1)
                with open(skip_file) as f:
                    listed = json.load(f)
                for b in listed[-2:]:
                    if 0 <= b < len(loader.yielded):
                        loader.skip.add((epoch, loader.original(b)))
                ckpt_path = checkpoint.best_model_path or None
                resumed_at = torch.load(ckpt_path, weights_only=False)["global_step"] if ckpt_path else 0
                lost += trainer.global_step - resumed_at
                restarts += 1
                trace.held_out = {k: v for k, v in trace.held_out.items() if k <= resumed_at}
                if ckpt_path is None:
                    model = task.module(seed)
                if restarts > max_restarts:
                    break
    return Run(trace.losses, flags, _final(trace), initial, lost, restarts, None, None, _reaches(planned), trace.steps)


# ----------------------------------------------------------------------------------------------- cache


def _cache_dir() -> str | None:
    where = os.environ.get("LR_SPIKE_CACHE", ".spike_cache")
    return None if where.lower() == "none" else where


def _path(key: str) -> str | None:
    folder = _cache_dir()
    if folder is None:
        return None
    return os.path.join(folder, hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def _load(key: str) -> Run | None:
    path = _path(key)
    if path is None or not os.path.exists(path):
        return None
    with open(path) as f:
        data = json.load(f)
    if data.get("key") != key:
        return None
    return Run(**data["run"])


def _save(key: str, result: Run) -> None:
    path = _path(key)
    if path is None:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"key": key, "run": asdict(result)}, f, allow_nan=True)

"""``lr-benchmark spikes``: SpikeAdaptiveLR on injected spikes beside the tools people use, and its per-step cost.

**Injected spikes** (tasks and injections in :mod:`experiments.benchmarks.spike_tasks`). Every configuration
trains each task on the report seeds, clean and with each injection, through a real ``Trainer.fit``:

- ``none``: no intervention;
- ``clip``: Lightning's ``gradient_clip_val``, at 2x the median gradient norm of a clean run on the first
  development seed;
- ``lightning``: Lightning's ``SpikeDetection`` with the restart-and-skip workflow it is made for: at a spike
  the run raises, and is restarted from the last checkpoint (``every_n_train_steps=50``) with the listed
  batches left out;
- ``ours ...``: :class:`lr_callbacks.SpikeAdaptiveLR`, the seed's epoch rule, the step-level default, and each
  reaction alone or combined.

Per configuration: the final held-out loss divided by the same configuration's clean run (median over seeds,
and the worst), the optimizer updates whose work was discarded (dropped, undone, or redone after a restart),
the injected spikes detected out of those injected, and the alarms on clean runs.

**Cost**: the time spent inside each callback's own hooks during a real fit (each overridden hook wrapped by a
timer), per optimizer step and as a share of a bare Lightning step; Linear 8->1, SGD, batch 32, 512 steps,
medians of interleaved repeats.

The step-level defaults (``SpikeAdaptiveLR.STEP_DEFAULTS``) were chosen on :data:`DEV_SEEDS` of these tasks
(``python -m experiments.benchmarks.spikes --tune`` replays those runs); the tables report :data:`REPORT_SEEDS`.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, SpikeDetection
from torch import nn

from experiments.benchmarks.spike_tasks import (
    TASKS,
    RunResult,
    SpikeTask,
    quiet,
    run_lightning_restart,
    run_ours,
)
from lr_callbacks import LRContributor, SpikeAdaptiveLR
from lr_callbacks.spike_detectors import ZScoreDetector

DEV_SEEDS = (0, 1, 2)
REPORT_SEEDS = (10, 11, 12)


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run fastest, and least disturbed by other processes, on one intra-op thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------------------------- configurations


def _ours(**kwargs: Any) -> Callable[[], SpikeAdaptiveLR]:
    return lambda: SpikeAdaptiveLR(**kwargs)


OURS: dict[str, Callable[[], Callback | None]] = {
    "ours: seed epoch rule (default)": _ours(),
    "ours: step default (rollback)": _ours(interval="step"),
    "ours: skip": _ours(interval="step", reactions="skip"),
    "ours: backoff": _ours(interval="step", reactions="backoff", recovery_patience=50),
    "ours: skip + backoff": _ours(interval="step", reactions=("skip", "backoff"), recovery_patience=50),
    "ours: rollback + backoff": _ours(interval="step", reactions=("rollback", "backoff"), recovery_patience=50),
}


CLIP_VALUES: dict[str, float] = {}


def clip_value(task: SpikeTask) -> float:
    """2x the median gradient norm of a clean run on the first development seed."""
    if task.name in CLIP_VALUES:
        return CLIP_VALUES[task.name]
    norms: list[float] = []

    class Norms(Callback):
        def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            norms.append(float(torch.nn.utils.get_total_norm(grads)))

    run_ours(task, "clean", DEV_SEEDS[0], Norms)
    CLIP_VALUES[task.name] = 2.0 * statistics.median(norms)
    return CLIP_VALUES[task.name]


def configurations(task: SpikeTask) -> dict[str, Callable[[str, int], RunResult]]:
    clip: list[float] = []  # measured once, when a clip run first needs it

    def clipped(injection: str, seed: int) -> RunResult:
        clip or clip.append(clip_value(task))
        return run_ours(task, injection, seed, lambda: None, gradient_clip_val=clip[0])

    out: dict[str, Callable[[str, int], RunResult]] = {
        "none": lambda inj, seed: run_ours(task, inj, seed, lambda: None),
        "clip (2x median grad norm)": clipped,
        "lightning SpikeDetection + restart": lambda inj, seed: run_lightning_restart(task, inj, seed),
    }
    for name, make in OURS.items():
        out[name] = lambda inj, seed, make=make: run_ours(task, inj, seed, make)
    return out


# ----------------------------------------------------------------------------------------------- the table


def spike_table(tasks: dict[str, SpikeTask], seeds: tuple[int, ...], only: tuple[str, ...] | None = None) -> str:
    """One row per configuration and task (and injection), one column per figure; ``only`` picks configurations."""
    head = (
        f"{'task':<9}{'injection':<10}{'configuration':<38}{'loss/clean':>11}{'worst':>10}"
        f"{'steps lost':>11}{'detected':>10}{'false alarms':>13}"
    )
    lines = [head, "-" * len(head)]
    for task in tasks.values():
        configs = {k: v for k, v in configurations(task).items() if only is None or k in only}
        clean: dict[str, list[RunResult]] = {}
        for name, run in configs.items():
            clean[name] = [run("clean", seed) for seed in seeds]
        for injection in task.injections:
            for name, run in configs.items():
                results = [run(injection, seed) for seed in seeds]
                ratios = [r.final_loss / c.final_loss for r, c in zip(results, clean[name])]
                injected = len(seeds) * len(_starts(task, injection))
                detects = name not in ("none",) and not name.startswith("clip")
                detected = f"{sum(r.detected for r in results)}/{injected}" if detects else "-"
                alarms = sum(c.false_alarms for c in clean[name]) if detects else "-"
                lost = sum(r.steps_lost for r in results) / len(seeds)
                lines.append(
                    f"{task.name:<9}{injection:<10}{name:<38}{_ratio(statistics.median(ratios)):>11}{_ratio(max(ratios)):>10}"
                    f"{lost:>11.1f}{detected:>10}{alarms!s:>13}"
                )
    clips = [f"{task.name} {CLIP_VALUES[task.name]:.3g}" for task in tasks.values() if task.name in CLIP_VALUES]
    if clips:
        lines.append("gradient_clip_val: " + ", ".join(clips))
    return "\n".join(lines)


def _ratio(x: float) -> str:
    return f"{x:.3f}" if x < 100 else f"{x:.3g}"


def _starts(task: SpikeTask, injection: str) -> list[int]:
    from experiments.benchmarks.spike_tasks import injected_steps

    return injected_steps(task, injection)


# ----------------------------------------------------------------------------------------------- the cost


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _Batches:
    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _StepClock(Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.stamps.append(time.perf_counter())

    def median_step(self, warmup: int = 10) -> float:
        return statistics.median(b - a for a, b in zip(self.stamps[warmup:], self.stamps[warmup + 1 :]))


_HOOKS = [name for name in dir(Callback) if name.startswith("on_") or name in ("setup", "teardown")]


def timed_hooks(callback: Callback) -> list[float]:
    """Wrap every hook ``callback``'s class overrides with a timer; returns the list the seconds add up in."""
    total = [0.0]
    for name in _HOOKS:
        if getattr(type(callback), name) is getattr(Callback, name):
            continue
        hook = getattr(callback, name)

        def wrapped(*args: Any, _hook: Callable[..., Any] = hook, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                total[0] += time.perf_counter() - start

        setattr(callback, name, wrapped)
    return total


def _cost_fit(make: Callable[[], Callback] | None, steps: int) -> tuple[float, float, float]:
    """(median step seconds, seconds per step inside the callback's hooks, of which in the shared core hooks)."""
    torch.manual_seed(0)
    batches = [(torch.randn(32, 8), torch.randn(32, 1)) for _ in range(steps)]
    clock = _StepClock()
    callbacks: list[Callback] = [clock]
    total = [0.0]
    if make is not None:
        callback = make()
        total = timed_hooks(callback)
        callbacks.append(callback)
    with tempfile.TemporaryDirectory() as root, _timed_core_hook() as core:
        trainer = pl.Trainer(
            max_epochs=1,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
            callbacks=callbacks,
        )
        trainer.fit(_Tiny(), _Batches(batches))
    return clock.median_step(), total[0] / steps, core[0] / steps


_CORE_HOOKS = ("on_train_epoch_start", "on_train_batch_start", "on_before_optimizer_step")


@contextmanager
def _timed_core_hook() -> Iterator[list[float]]:
    """Time the per-step hooks of :class:`lr_callbacks.core.LRContributor` (writing and logging the LRs of every
    contributor, shared by all of them), which the callback's own hooks call first."""
    total = [0.0]
    originals = {name: getattr(LRContributor, name) for name in _CORE_HOOKS}

    def timed(hook: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(self: Any, *args: Any) -> Any:
            start = time.perf_counter()
            try:
                return hook(self, *args)
            finally:
                total[0] += time.perf_counter() - start

        return wrapped

    for name, hook in originals.items():
        setattr(LRContributor, name, timed(hook))
    try:
        yield total
    finally:
        for name, hook in originals.items():
            setattr(LRContributor, name, hook)


COST_CONFIGS: dict[str, Callable[[], Callback] | None] = {
    "bare Lightning": None,
    "SpikeAdaptiveLR() (seed epoch rule)": lambda: SpikeAdaptiveLR(),
    "SpikeAdaptiveLR(interval='step') (rollback)": lambda: SpikeAdaptiveLR(interval="step"),
    "  ... reactions='skip'": lambda: SpikeAdaptiveLR(interval="step", reactions="skip"),
    "  ... grad_norm=True": lambda: SpikeAdaptiveLR(interval="step", grad_norm=True),
    "Lightning SpikeDetection": lambda: SpikeDetection(),
}


def cost_table(repeats: int, steps: int = 512) -> str:
    """Per configuration: median step time, and the time inside the callback's hooks per step (all, and without
    the base hooks of :mod:`lr_callbacks.core` that write and log every contributor's LR) as a share of a bare
    Lightning step."""
    names = list(COST_CONFIGS)
    step_times: dict[str, list[float]] = {name: [] for name in names}
    hook_times: dict[str, list[float]] = {name: [] for name in names}
    own_times: dict[str, list[float]] = {name: [] for name in names}
    with quiet():
        for _ in range(repeats):
            for name, make in COST_CONFIGS.items():
                step, hook, core = _cost_fit(make, steps)
                step_times[name].append(step)
                hook_times[name].append(hook)
                own_times[name].append(hook - core)
    bare = statistics.median(step_times["bare Lightning"])
    head = f"{'callback':<46}{'step us':>9}{'hooks us':>10}{'hooks/bare':>12}{'w/o core hooks':>16}"
    lines = [head, "-" * len(head)]
    for name in names:
        step = statistics.median(step_times[name])
        if COST_CONFIGS[name] is None:
            lines.append(f"{name:<46}{step * 1e6:>9.1f}")
            continue
        hook, own = statistics.median(hook_times[name]), statistics.median(own_times[name])
        lines.append(
            f"{name:<46}{step * 1e6:>9.1f}{hook * 1e6:>10.2f}{hook / bare * 100:>11.2f}%{own / bare * 100:>15.2f}%"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- tuning


def tune(seeds: tuple[int, ...] = DEV_SEEDS) -> str:
    """Replay the z-score detector over the development runs' per-step losses and gradient norms.

    Batch-injected traces are the clean run with the injected steps' values put in (as if each had been
    skipped); LR-injected traces are taken as they ran. For each setting: alarms on clean runs and injections
    missed, per task.
    """
    traces = _dev_traces(seeds)
    lines = [f"{'grad_norm':>9}{'ema':>6}{'warmup':>7}{'z':>5}  alarms (clean)        missed (injected)"]
    for use_norm, ema, warmup, z in itertools.product((False, True), (0.95, 0.98), (50,), (5.0, 6.0, 8.0, 10.0)):
        alarms: dict[str, int] = {name: 0 for name in TASKS}
        missed: dict[str, int] = {name: 0 for name in TASKS}
        for (task, injection, _), (losses, norms, starts) in traces.items():
            flags = _replay(losses, norms if use_norm else None, z, ema, warmup)
            if injection == "clean":
                alarms[task] += len(flags)
            reach = 6 if injection == "lr" else 1
            missed[task] += sum(not any(s <= f < s + reach for f in flags) for s in starts)
        lines.append(f"{use_norm!s:>9}{ema:>6}{warmup:>7}{z:>5g}  {alarms}  {missed}")
    return "\n".join(lines)


def _replay(losses: list[float], norms: list[float] | None, z: float, ema: float, warmup: int) -> list[int]:
    loss_detector = ZScoreDetector(z, 1.1, ema, warmup)
    norm_detector = ZScoreDetector(z, 1.1, ema, warmup)
    flags = []
    for i, loss in enumerate(losses):
        spike = loss_detector.check(loss)
        if norms is not None:
            spike = norm_detector.check(norms[i]) or spike
        if spike:
            flags.append(i)
    return flags


def _dev_traces(seeds: tuple[int, ...]) -> dict[tuple[str, str, int], tuple[list[float], list[float], list[int]]]:
    class Trace(Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.norms: list[float] = []
            self._loss = math.nan

        def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
            self._loss = float(loss)

        def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
            self.losses.append(self._loss)
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self.norms.append(float(torch.nn.utils.get_total_norm(grads)))

    raw: dict[tuple[str, str, int], Trace] = {}
    for (name, task), seed in itertools.product(TASKS.items(), seeds):
        for injection in ("clean", *task.injections):
            trace = Trace()
            run_ours(task, injection, seed, lambda trace=trace: trace)
            raw[name, injection, seed] = trace
    out = {}
    for (name, injection, seed), trace in raw.items():
        starts = _starts(TASKS[name], injection)
        losses, norms = list(trace.losses), list(trace.norms)
        if injection == "batch":
            clean = raw[name, "clean", seed]
            losses, norms = list(clean.losses), list(clean.norms)
            for s in starts:
                losses[s], norms[s] = trace.losses[s], trace.norms[s]
        out[name, injection, seed] = (losses, norms, starts)
    return out


# ----------------------------------------------------------------------------------------------- entry points


def run(args: argparse.Namespace) -> None:
    """Print the cost table, then the injected-spike table."""
    repeats = max(1, int(getattr(args, "repeats", 5)))
    with one_thread():
        print(f"cost: time inside the callback's hooks (Linear 8->1, SGD, batch 32, 512 steps, median of {repeats})")
        print(cost_table(repeats), flush=True)
        print(f"\ninjected spikes: report seeds {REPORT_SEEDS} (defaults tuned on seeds {DEV_SEEDS})")
        with quiet():
            print(spike_table(TASKS, REPORT_SEEDS), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tune", action="store_true", help="replay the development seeds over detector settings")
    parser.add_argument("--repeats", type=int, default=5)
    cli = parser.parse_args()
    with one_thread(), quiet():
        if cli.tune:
            print(tune())
        else:
            run(cli)

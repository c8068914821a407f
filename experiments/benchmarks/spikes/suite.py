"""``lr-benchmark spikes``: SpikeAdaptiveLR on injected spikes beside the tools people use, and its per-step cost.

**Injected spikes** (tasks and injections in :mod:`experiments.benchmarks.spikes.tasks`). Every configuration
trains each task on the report seeds, clean and with each injection, through a real ``Trainer.fit``:

- ``none``: no intervention;
- ``clip``: Lightning's ``gradient_clip_val``, at 2x the median gradient norm of a clean run on the first
  development seed;
- ``lightning``: Lightning's ``SpikeDetection`` with the restart-and-skip workflow it is made for: at a spike
  the run raises, and is restarted from the last checkpoint (``every_n_train_steps=50``) with the listed
  batches left out;
- ``ours ...``: :class:`lr_callbacks.SpikeAdaptiveLR`, the seed's epoch rule, the step-level default (the tail
  detector), each reaction alone or combined, and the earlier z-score detector with the default reactions.

Per configuration: the final held-out loss divided by the same configuration's clean run (median over seeds,
and the worst), the optimizer updates whose work was discarded (dropped, undone, or redone after a restart),
the injected spikes detected out of those injected, and the alarms on clean runs.

**Cost**: the time spent inside each callback's own hooks during a real fit, timed as ``lr-benchmark schedules``
times it (each overridden hook wrapped by :class:`~experiments.benchmarks.schedules.HookTimer`: net of the timer's
own cost, a preempted call counted at 10x its hook's median), per optimizer step and as a share of a bare
Lightning step; Linear 8->1, SGD, batch 32, 512 steps, medians of interleaved repeats.

The step-level defaults (``SpikeAdaptiveLR.STEP_DEFAULTS`` and ``DETECTOR_DEFAULTS``) were chosen on
:data:`DEV_SEEDS` of these tasks (``python -m experiments.benchmarks.spikes.suite --tune`` replays those runs over the
detectors' settings and prints, per task, how far the clean runs' steps and the injected ones lie from the tail
detector's bar); the tables report :data:`REPORT_SEEDS`, which no choice was made on.
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
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, SpikeDetection

from experiments.benchmarks.schedules import HookTimer
from experiments.benchmarks.spikes.tasks import (
    TASKS,
    RunResult,
    SpikeTask,
    quiet,
    run_lightning_restart,
    run_ours,
)
from experiments.benchmarks.timing import BARE_TRAINER, Batches, StepClock, TinyLinear, one_thread
from lr_callbacks import LRContributor, SpikeAdaptiveLR
from lr_callbacks.spike.detectors import SpikeDetector, TailDetector, ZScoreDetector

#: Seeds the defaults were chosen on: 0-2 for the settings, 3-9 to check the design before the report seeds were run.
DEV_SEEDS = tuple(range(10))
#: Seeds of the reported tables (the first round's report seeds, 10-12, were seen while choosing and are not used).
REPORT_SEEDS = (20, 21, 22)


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
    "ours: z-score detector (rollback)": _ours(interval="step", detector="zscore"),
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
        if not clip:
            clip.append(clip_value(task))
        return run_ours(task, injection, seed, lambda: None, gradient_clip_val=clip[0])

    def ours(make: Callable[[], Callback | None]) -> Callable[[str, int], RunResult]:
        return lambda inj, seed: run_ours(task, inj, seed, make)

    out: dict[str, Callable[[str, int], RunResult]] = {
        "none": lambda inj, seed: run_ours(task, inj, seed, lambda: None),
        "clip (2x median grad norm)": clipped,
        "lightning SpikeDetection + restart": lambda inj, seed: run_lightning_restart(task, inj, seed),
    }
    for name, make in OURS.items():
        out[name] = ours(make)
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
    from experiments.benchmarks.spikes.tasks import injected_steps

    return injected_steps(task, injection)


# ----------------------------------------------------------------------------------------------- the cost


def _cost_fit(
    make: Callable[[], Callback] | None, steps: int, own_ns: float, core_hooks: bool = False
) -> tuple[float, float]:
    """(median step seconds, seconds per step inside the callback's hooks).

    The hook time is :class:`HookTimer`'s, net of ``own_ns`` (the timer's cost per call), as ``lr-benchmark
    schedules`` takes it. With ``core_hooks`` it is instead the time in the shared base hooks of
    :mod:`lr_callbacks.core` that the callback's hooks call (timed in runs of their own: their timers would
    count in the callback's).
    """
    torch.manual_seed(0)
    batches = [(torch.randn(32, 8), torch.randn(32, 1)) for _ in range(steps)]
    clock = StepClock()
    callbacks: list[Callback] = [clock]
    timer = HookTimer()
    if make is not None:
        callback = make()
        if not core_hooks:
            timer.attach(callback)
        callbacks.append(callback)
    with tempfile.TemporaryDirectory() as root, _timed_core_hook(core_hooks) as core:
        trainer = pl.Trainer(
            max_epochs=1,
            **BARE_TRAINER,
            default_root_dir=root,
            callbacks=callbacks,
        )
        trainer.fit(TinyLinear(), Batches(batches))
    if core_hooks:
        return clock.median_step(), core[0] / steps
    return clock.median_step(), max(timer.ns - timer.calls * own_ns, 0) / 1e9 / steps


_CORE_HOOKS = ("on_train_epoch_start", "on_train_batch_start", "on_before_optimizer_step")


@contextmanager
def _timed_core_hook(active: bool = True) -> Iterator[list[float]]:
    """Time the per-step hooks of :class:`lr_callbacks.core.LRContributor` (writing and logging the LRs of every
    contributor, shared by all of them), which the callback's own hooks call first."""
    total = [0.0]
    if not active:
        yield total
        return
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
    "  ... detector='zscore'": lambda: SpikeAdaptiveLR(interval="step", detector="zscore"),
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
    core_times: dict[str, list[float]] = {name: [] for name in names}
    own_ns = HookTimer.own_cost_ns()
    with quiet():
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order each repeat
                step, hook = _cost_fit(COST_CONFIGS[name], steps, own_ns)
                step_times[name].append(step)
                hook_times[name].append(hook)
                core_times[name].append(_cost_fit(COST_CONFIGS[name], steps, own_ns, core_hooks=True)[1])
    bare = statistics.median(step_times["bare Lightning"])
    head = f"{'callback':<46}{'step us':>9}{'hooks us':>10}{'hooks/bare':>12}{'w/o core hooks':>16}"
    lines = [head, "-" * len(head)]
    for name in names:
        step = statistics.median(step_times[name])
        if COST_CONFIGS[name] is None:
            lines.append(f"{name:<46}{step * 1e6:>9.1f}")
            continue
        hook = statistics.median(hook_times[name])
        own = hook - statistics.median(core_times[name])
        lines.append(
            f"{name:<46}{step * 1e6:>9.1f}{hook * 1e6:>10.2f}{hook / bare * 100:>11.2f}%{own / bare * 100:>15.2f}%"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- tuning


def tune(seeds: tuple[int, ...] = DEV_SEEDS) -> str:
    """Replay the step detectors over the development runs' per-step losses, then show where the default one's
    decisions fall on each task.

    Batch-injected traces are the clean run with the injected steps' values put in (as if each had been
    skipped); LR-injected traces are taken as they ran. For each setting: alarms on clean runs and injections
    missed, per task (an LR injection counts as found when flagged within 6 steps of its start).
    """
    traces = _dev_traces(seeds)
    lines = [f"development seeds {seeds}", f"{'detector':<44}  alarms (clean)                  missed (injected)"]
    settings: list[tuple[str, Callable[[], SpikeDetector]]] = [
        (f"zscore z={z:g}", partial(ZScoreDetector, z, 1.1, 0.95, 50)) for z in (5.0, 6.0, 8.0)
    ]
    for tail, persist, z in itertools.product((2.0, 2.5, 3.0), (1.0, 1.5, 2.0), (2.0, 3.0, 4.0)):
        name = f"tail tail={tail:g} persist={persist:g} z={z:g}"
        settings.append((name, partial(TailDetector, tail=tail, z=z, persist=persist)))
    for name, make in settings:
        alarms: dict[str, int] = dict.fromkeys(TASKS, 0)
        missed: dict[str, int] = dict.fromkeys(TASKS, 0)
        for (task, injection, _), (losses, _norms, starts) in traces.items():
            flags = _replay(losses, make)
            if injection == "clean":
                alarms[task] += len(flags)
            reach = 6 if injection == "lr" else 1
            missed[task] += sum(not any(s <= f < s + reach for f in flags) for s in starts)
        lines.append(f"{name:<44}  {alarms}  {missed}")
    lines += ["", separation(traces)]
    return "\n".join(lines)


def _replay(losses: list[float], make: Callable[[], SpikeDetector]) -> list[int]:
    detector = make()
    return [i for i, loss in enumerate(losses) if detector.check(loss)]


def separation(traces: dict[tuple[str, str, int], tuple[list[float], list[float], list[int]]]) -> str:
    """Per task, how far steps lie from the default tail detector's bar, ``r = log(x / level) / bar`` (a single step
    is a spike above ``tail``), and its sustained-rise CUSUM (a spike above ``persist``): the largest on each clean
    run, at the injected batches the smallest, over each LR injection's reach the largest. The last column gives
    the worst seed: the largest of the clean runs' values, the smallest of the injected ones'."""
    default = TailDetector()
    rows: dict[tuple[str, str], list[float]] = {}
    for (task, injection, _), (losses, _norms, starts) in traces.items():
        detector = TailDetector()
        ratios, sums = [], []
        for loss in losses:
            r = _excess_ratio(detector, loss)
            ratios.append(r)
            sums.append(max(0.0, detector.cusum + min(r, detector.CAP) - detector.KAPPA) if r else 0.0)
            detector.check(loss)
        if injection == "clean":
            rows.setdefault((task, "clean: r"), []).append(max(ratios))
            rows.setdefault((task, "clean: CUSUM"), []).append(max(sums))
        elif injection == "batch":
            rows.setdefault((task, "injected batch: r"), []).append(min(ratios[s] for s in starts))
        else:
            reach = [k for s in starts for k in range(s, s + 6)]
            rows.setdefault((task, "LR injection: r"), []).append(max(ratios[k] for k in reach))
            rows.setdefault((task, "LR injection: CUSUM"), []).append(max(sums[k] for k in reach))
    head = f"separation (default tail detector: a spike when r > {default.tail:g} or CUSUM > {default.persist:g})"
    out = [head, f"{'task':<10}{'quantity':<22}{'worst seed':>11}  per seed"]
    for (task, what), values in rows.items():
        worst = max(values) if what.startswith("clean") else min(values)
        out.append(f"{task:<10}{what:<22}{worst:>11.2f}  {' '.join(f'{v:.2f}' for v in values)}")
    return "\n".join(out)


def _excess_ratio(detector: TailDetector, x: float) -> float:
    """The ``r`` the tail detector's next check will see for ``x`` (0 before its warmup ends)."""
    if detector.count < detector.warmup or not 0 < x < math.inf:
        return 0.0
    bar = max(detector.z * detector.scale, detector.record)
    excess = math.log(x) - detector.mean
    return excess / bar if bar > 0 else (math.inf if excess > 0 else 0.0)


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
            run_ours(task, injection, seed, lambda: trace)  # called at once, inside run_ours
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

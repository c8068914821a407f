"""Per-step cost of the LR callbacks, timed inside real ``Trainer.fit`` runs.

The model is the held-out one: Linear 8->1, MSE, SGD, batch 32, in-memory batches, 8 epochs. Every
configuration runs once per repeat, interleaved with the others, and the figures are medians:

- **hooks**: every hook our callbacks override is wrapped with a timer for the whole fit (fit start,
  epoch and batch hooks alike); the total, net of the timer's own cost, divided by the optimizer steps,
  is the time spent in our code per step. Its share is taken of a bare Lightning step. On a shared
  machine another process may preempt a hook call for milliseconds; a call longer than ten times its
  hook's median call is counted at ten times the median.
- **whole step**: the median time between consecutive ``on_train_batch_start`` calls, against a run with
  the same number of empty callbacks (Lightning's dispatch to each callback costs a few percent per
  callback on this tiny model, and that cost is not ours). Whole-step ratios carry the machine's
  step-to-step noise; the hook time is the figure to read.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from experiments.benchmarks.timing import BARE_TRAINER, Batches, StepClock, TinyLinear, one_thread
from lr_callbacks import (
    CosineAnnealing,
    CosineWarmRestarts,
    CyclicLR,
    ExponentialDecay,
    OneCycle,
    ReduceOnPlateau,
    SignAlternation,
    SpikeAdaptiveLR,
    StepDecay,
    Warmup,
)

BATCH_SIZE = 32
EPOCHS = 8


class HookTimer:
    """Wraps every hook a callback overrides (as an instance attribute, which Lightning calls) with a timer."""

    CLIP = 10  # a call over CLIP x its hook's median call is counted at that: a preemption, not our code

    def __init__(self) -> None:
        self.durations: dict[str, list[int]] = {}

    def _wrap(self, hook: Callable[..., Any], name: str = "hook") -> Callable[..., Any]:
        clock = time.perf_counter_ns
        durations = self.durations.setdefault(name, [])

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return hook(*args, **kwargs)
            finally:
                durations.append(clock() - start)

        return timed

    @property
    def ns(self) -> float:
        """Nanoseconds in the hooks, each call clipped at ``CLIP`` x the median call of its hook."""
        total: float = 0  # a median of an even number of calls can fall between two integers
        for durations in self.durations.values():
            if not durations:
                continue  # a hook the fit never called (e.g. on_save_checkpoint without checkpoints)
            cap = self.CLIP * statistics.median(durations)
            total += sum(min(d, cap) for d in durations)
        return total

    @property
    def calls(self) -> int:
        return sum(len(d) for d in self.durations.values())

    def attach(self, callback: Callback) -> list[str]:
        """Wrap ``callback``'s overridden hooks; return their names."""
        names = [
            name
            for name in dir(Callback)
            if (name.startswith("on_") or name in ("setup", "teardown"))
            and getattr(type(callback), name) is not getattr(Callback, name)
        ]
        for name in names:
            setattr(callback, name, self._wrap(getattr(callback, name), name))
        return names

    @staticmethod
    def own_cost_ns(calls: int = 200_000) -> float:
        """The timer's cost per call, measured on an empty hook (median of 5)."""
        samples = []
        for _ in range(5):
            timer = HookTimer()
            noop = timer._wrap(lambda *args: None)
            start = time.perf_counter_ns()
            for _ in range(calls):
                noop(None, None)
            total = time.perf_counter_ns() - start
            samples.append(min(sum(timer.durations["hook"]), total) / calls)
        return statistics.median(samples)


def _empty(n: int) -> Callable[[int], list[Callback]]:
    return lambda steps: [Callback() for _ in range(n)]


# name -> (our callbacks for a run of `steps` optimizer steps, or None for a baseline; baseline to compare with)
CONFIGS: dict[str, tuple[Callable[[int], list[Callback]], bool]] = {
    "bare Lightning": (lambda steps: [], False),
    "1 empty callback": (_empty(1), False),
    "4 empty callbacks": (_empty(4), False),
    "1 empty callback, logging": (_empty(1), False),
    "torch StepLR (interval=step)": (lambda steps: [], False),
    "StepDecay": (lambda steps: [StepDecay(50, 0.9, interval="step")], True),
    "ExponentialDecay": (lambda steps: [ExponentialDecay(gamma=0.999, interval="step")], True),
    "CosineAnnealing": (lambda steps: [CosineAnnealing(T_max=steps, interval="step")], True),
    "CosineWarmRestarts": (lambda steps: [CosineWarmRestarts(T_0=1, T_mult=2, interval="step")], True),
    "CyclicLR": (lambda steps: [CyclicLR(1e-3, 0.1, step_size_up=25, interval="step")], True),
    "OneCycle": (lambda steps: [OneCycle(0.1, interval="step")], True),
    "ReduceOnPlateau": (lambda steps: [ReduceOnPlateau("loss", patience=5, interval="step")], True),
    "Warmup": (lambda steps: [Warmup(steps // 4)], True),
    "SignAlternation": (lambda steps: [SignAlternation()], True),
    "SpikeAdaptiveLR": (lambda steps: [SpikeAdaptiveLR()], True),
    "Cosine+Warmup+Spike+Sign": (
        lambda steps: [
            CosineAnnealing(T_max=steps, interval="step"),
            Warmup(steps // 4),
            SpikeAdaptiveLR(),
            SignAlternation(),
        ],
        True,
    ),
}
SCHEDULES = [name for name, (_, ours) in CONFIGS.items() if ours]
# ReduceOnPlateau reads a metric that the module logs each step (self.log), which costs Lightning a step's
# fraction of its own; its whole step is compared with an empty callback that logs the same.
LOGGING = ("ReduceOnPlateau", "1 empty callback, logging")


def _fit(name: str, steps: int, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, dict[str, HookTimer]]:
    """One run: the median whole-step seconds, and the hook timer of each of our callbacks (by class name)."""
    make, ours = CONFIGS[name]
    callbacks = make(steps)
    timers = {type(cb).__name__: HookTimer() for cb in callbacks} if ours else {}
    for callback in callbacks if ours else []:
        timers[type(callback).__name__].attach(callback)
    clock = StepClock()
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        **BARE_TRAINER,
        callbacks=[clock, *callbacks],
    )
    module = TinyLinear(torch_scheduler=name.startswith("torch"), log_loss=name in LOGGING)
    trainer.fit(module, Batches(batches))
    return clock.median_step(), timers


def measure(steps: int = 512, repeats: int = 9) -> dict[str, dict[str, float]]:
    """Median figures per configuration; configurations are interleaved within each repeat."""
    per_epoch = max(steps // EPOCHS, 1)
    n_steps = per_epoch * EPOCHS
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(BATCH_SIZE, 8, generator=generator), torch.randn(BATCH_SIZE, 1, generator=generator))
               for _ in range(per_epoch)]  # fmt: skip
    own_ns = HookTimer.own_cost_ns()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    names = list(CONFIGS)
    with one_thread():
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order each repeat
                step, timers = _fit(name, n_steps, batches)
                figures = {"step": step}
                for cls, timer in timers.items():  # seconds per optimizer step, net of the timer's own cost
                    figures[cls] = max(timer.ns - timer.calls * own_ns, 0) / n_steps / 1e9
                figures["hooks"] = sum(v for k, v in figures.items() if k != "step")
                runs[name].append(figures)
    medians = {name: {key: statistics.median(f[key] for f in v) for key in v[0]} for name, v in runs.items()}
    return medians | {"_meta": {"steps": n_steps, "repeats": repeats, "timer_ns": own_ns}}


def _baseline(name: str) -> str:
    n = len(CONFIGS[name][0](8))
    if name in LOGGING:
        return "1 empty callback, logging"
    return "bare Lightning" if n == 0 else f"{n} empty callback{'s' if n > 1 else ''}"


def run(args: argparse.Namespace) -> None:
    warnings.filterwarnings("ignore", module="lightning")
    for logger_name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(logger_name).setLevel(logging.ERROR)
    res = measure(steps=args.steps, repeats=args.repeats)
    meta = res.pop("_meta")
    bare = res["bare Lightning"]["step"]
    print(
        f"Linear 8->1, SGD, batch {BATCH_SIZE}, {meta['steps']:.0f} steps ({EPOCHS} epochs), "
        f"{meta['repeats']:.0f} interleaved repeats, medians;\ntimer cost {meta['timer_ns']:.0f} ns per hook call, "
        f"subtracted; calls over {HookTimer.CLIP}x their hook's median counted at {HookTimer.CLIP}x"
    )
    header = (
        f"{'configuration':<30}{'step us':>9}{'vs empty':>10}  {'compared with':<26}{'hooks us':>9}{'hooks/bare':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, figures in res.items():
        baseline = _baseline(name) if CONFIGS[name][1] else "bare Lightning"
        ratio = figures["step"] / res[baseline]["step"]
        row = f"{name:<30}{figures['step'] * 1e6:9.1f}{ratio:10.3f}  {baseline:<26}"
        if CONFIGS[name][1]:
            hooks = figures["hooks"]
            row += f"{hooks * 1e6:9.2f}{hooks / bare * 100:10.2f}%"
        print(row)
        parts = [k for k in figures if k not in ("step", "hooks")]
        if len(parts) > 1:
            for part in parts:
                share = figures[part] / bare * 100
                print(f"{'  of which ' + part:<30}{'':>9}{'':>10}  {'':<26}{figures[part] * 1e6:9.2f}{share:10.2f}%")
    print(
        "'hooks us': time inside our callbacks' hooks per optimizer step; 'hooks/bare': its share of a bare "
        "Lightning step.\n'vs empty': whole-step time over a run with the same number of empty callbacks "
        "(noisy at the few-percent level)."
    )

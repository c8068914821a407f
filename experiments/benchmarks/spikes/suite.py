"""``lr-benchmark spikes``: step-level spike guarding on tasks it was tuned on and on tasks it never saw.

The tasks, injections and definitions are in :mod:`experiments.benchmarks.spikes.zoo` (fixed before any tuning);
the runs in :mod:`experiments.benchmarks.spikes.runner`. Every configuration trains each task of a half on
:data:`~experiments.benchmarks.spikes.zoo.SEEDS`, clean and in each injected scenario:

- ``none``: no intervention;
- ``clip``: Lightning's ``gradient_clip_val`` at 2x the median gradient norm of a clean run (seed 0);
- ``Lightning SpikeDetection + restart``: Lightning's callback with the restart-and-skip workflow it is made for (at
  a spike the run raises and restarts from the last checkpoint, every 50 steps, without the listed batches);
- ``ZClip``: the ``zclip`` package's adaptive gradient clipping (its defaults, no fixed norm cap); skipped with a
  line saying so when the package is missing (``pip install lr-callbacks[benchmarks]``);
- ``OLMo skip``: the update is dropped when the loss exceeds the mean + 6 standard deviations of the last 128 steps;
- ``ours``: :class:`lr_callbacks.SpikeGuard`, by detector and reaction.

Columns: real spikes detected by size (3-5x, 5-20x, above 20x), false alarms, the final held-out loss against the
clean unguarded run (median over runs and the worst task), the tasks within 1.05x, the runs worse than the
unguarded one by more than the task's noise, updates lost per run, and the time in our hooks per step as a share of
the rest of the step (median over runs, both measured within each run). Definitions: the ``zoo`` module's docstring.

Then the per-step cost of the guard on the smallest model (Linear 8->1), as ``lr-benchmark schedules`` times it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, SpikeDetection

from experiments.benchmarks.schedules import HookTimer
from experiments.benchmarks.spikes import zoo
from experiments.benchmarks.spikes.runner import Config, Run, quiet, zclip_callback
from experiments.benchmarks.spikes.runner import run as run_once
from experiments.benchmarks.timing import BARE_TRAINER, Batches, StepClock, TinyLinear, one_thread
from lr_callbacks import SpikeAdaptiveLR, SpikeGuard
from lr_callbacks.spike import Backoff, TailDetector, ZScoreDetector

# ----------------------------------------------------------------------------------------------- configurations

DEFAULT = "ours: SpikeGuard() (median, skip + rollback + record)"
UNGUARDED = "none"

#: our rows: name -> factory
OURS: dict[str, Callable[[], SpikeGuard]] = {
    DEFAULT: SpikeGuard,
    "ours: median, skip": lambda: SpikeGuard(reactions="skip"),
    "ours: median, rollback + record": lambda: SpikeGuard(reactions=("rollback", "record")),
    "ours: median, rollback + backoff": lambda: SpikeGuard(
        reactions=("rollback", "backoff"), backoff=Backoff(recovery_patience=50)
    ),
    "ours: previous default (tail detector, rollback + record)": lambda: SpikeGuard(
        TailDetector(), reactions=("rollback", "record")
    ),
    "ours: z-score detector (skip + rollback + record)": lambda: SpikeGuard(ZScoreDetector()),
}


def configurations(task: zoo.SpikeTask) -> dict[str, Callable[[], Config]]:
    """Every row for one task (the clip norm is measured when a clip run first needs it)."""
    out: dict[str, Callable[[], Config]] = {
        UNGUARDED: lambda: ("none", None),
        "clip (2x median grad norm)": lambda: ("clip", clip_value(task)),
        "Lightning SpikeDetection + restart": lambda: ("lightning", None),
        "ZClip (zclip package)": lambda: ("zclip", None),
        "OLMo skip (mean + 6 sd of 128)": lambda: ("olmo", None),
    }
    for name, make in OURS.items():
        out[name] = lambda make=make: ("guard", make)  # type: ignore[misc]
    return out


def clip_value(task: zoo.SpikeTask) -> float:
    """2x the median gradient norm of a clean run on seed 0."""
    norms = run_once(task, 0, "clean", ("norms", None)).trace
    return round(2.0 * statistics.median(norms), 6)


# ----------------------------------------------------------------------------------------------- scoring


@dataclass
class Score:
    """One configuration over the runs of a half."""

    found: dict[str, list[int]] = field(default_factory=lambda: {name: [0, 0] for name, _, _ in zoo.SIZES})
    alarms: int = 0
    ratios: dict[str, list[float]] = field(default_factory=dict)  # task -> every run's ratio
    worse: list[str] = field(default_factory=list)  # runs worse than the unguarded one beyond noise
    lost: list[int] = field(default_factory=list)
    hooks: list[float] = field(default_factory=list)  # hook time / the rest of the step, per run
    hook_us: list[float] = field(default_factory=list)

    def add(self, task: str, result: Run, ratio: float, unguarded: float, noise: float, label: str) -> None:
        spikes = zoo.real_spikes(result.trace)
        flags = result.flags
        for t, hit in zoo.detected(spikes, flags).items():
            counts = self.found[zoo.size_class(spikes[t])]
            counts[0] += hit
            counts[1] += 1
        self.alarms += len(zoo.false_alarms(spikes, flags, _index_reaches(result)))
        self.ratios.setdefault(task, []).append(ratio)
        if not zoo.no_worse(ratio, unguarded, noise):
            self.worse.append(f"{label} {ratio:.3f} vs {unguarded:.3f}")
        self.lost.append(result.lost)
        if result.hook_s is not None and result.step_s:
            self.hooks.append(result.hook_s / max(result.step_s - result.hook_s, 1e-12))
            self.hook_us.append(result.hook_s * 1e6)

    def worst(self) -> tuple[float, str]:
        task = max(self.ratios, key=lambda k: max(self.ratios[k]))
        return max(self.ratios[task]), task


def _index_reaches(result: Run) -> list[range]:
    """The injections' reaches as trace indices (they differ from steps after a restart)."""
    steps = result.steps or list(range(len(result.trace)))
    out = []
    for start, stop in result.reaches:
        indices = [i for i, s in enumerate(steps) if start <= s < stop]
        out.append(range(min(indices), max(indices) + 1) if indices else range(0))
    return out


def score_half(
    tasks: tuple[str, ...], names: list[str] | None = None, seeds: tuple[int, ...] = zoo.SEEDS
) -> tuple[dict[str, Score], dict[str, float]]:
    """Every configuration (or those of ``names``) on the tasks, and each task's noise (the largest over seeds)."""
    scores: dict[str, Score] = {}
    noise: dict[str, float] = {}
    for name in tasks:
        task = zoo.TASKS[name]
        configs = configurations(task)
        chosen = [n for n in configs if names is None or n in names]
        for seed in seeds:
            clean = run_once(task, seed, "clean", ("none", None))
            skipped = run_once(task, seed, "clean", ("skip-noise", None))
            task_noise = abs(zoo.final_ratio(skipped.final, clean.final, clean.initial) - 1.0)
            noise[name] = max(noise.get(name, 0.0), task_noise)
            unguarded = {sc: run_once(task, seed, sc, ("none", None)) for sc in zoo.SCENARIOS}
            for config_name in chosen:
                config = configs[config_name]()
                if config[0] == "zclip" and zclip_callback() is None:
                    continue
                score = scores.setdefault(config_name, Score())
                for scenario in zoo.SCENARIOS:
                    result = run_once(task, seed, scenario, config)
                    ratio = zoo.final_ratio(result.final, clean.final, clean.initial)
                    base = zoo.final_ratio(unguarded[scenario].final, clean.final, clean.initial)
                    score.add(name, result, ratio, base, task_noise, f"{name}/{seed}/{scenario}")
    return scores, noise


# ----------------------------------------------------------------------------------------------- tables


def table(scores: dict[str, Score]) -> str:
    head = (
        f"{'configuration':<48}{'3-5x':>8}{'5-20x':>8}{'>20x':>8}{'false':>7}{'median':>8}{'worst':>8}"
        f"  {'worst task':<28}{'<=1.05':>7}{'worse':>6}{'lost':>7}{'hooks':>8}"
    )
    lines = [head, "-" * len(head)]
    for name, s in scores.items():
        detects = name not in (UNGUARDED,) and not name.startswith("clip")
        found = [f"{k}/{n}" if detects else f"-/{n}" for k, n in s.found.values()]
        ratios = [r for rs in s.ratios.values() for r in rs]
        worst, task = s.worst()
        within = sum(max(rs) <= 1.05 for rs in s.ratios.values())
        hooks = f"{statistics.median(s.hooks) * 100:.2f}%" if s.hooks else "-"
        alarms = str(s.alarms) if detects else "-"
        lines.append(
            f"{name:<48}{found[0]:>8}{found[1]:>8}{found[2]:>8}{alarms:>7}{_r(statistics.median(ratios)):>8}"
            f"{_r(worst):>8}  {task:<28}{within:>4}/{len(s.ratios):<2}{len(s.worse):>6}"
            f"{statistics.fmean(s.lost):>7.1f}{hooks:>8}"
        )
    return "\n".join(lines)


def task_table(scores: dict[str, Score], noise: dict[str, float], name: str = DEFAULT) -> str:
    """Per task, for one configuration: its worst ratio, the unguarded worst, the noise, whether the bar is met."""
    ours, none = scores[name], scores[UNGUARDED]
    head = f"{'task':<32}{'worst':>8}{'unguarded':>11}{'noise':>8}  {'within 1.05x':<13}"
    lines = [f"per task: {name}", head, "-" * len(head)]
    for task, ratios in ours.ratios.items():
        worst = max(ratios)
        lines.append(
            f"{task:<32}{_r(worst):>8}{_r(max(none.ratios[task])):>11}{noise[task]:>8.3f}  "
            f"{'yes' if worst <= 1.05 else 'NO':<13}"
        )
    if ours.worse:
        lines.append("worse than unguarded beyond noise: " + "; ".join(ours.worse))
    return "\n".join(lines)


def _r(x: float) -> str:
    return "inf" if not math.isfinite(x) else (f"{x:.3f}" if x < 100 else f"{x:.3g}")


# ----------------------------------------------------------------------------------------------- the cost


def _cost_fit(make: Callable[[], Callback] | None, steps: int, own_ns: float) -> tuple[float, float]:
    """(median step seconds, seconds per step inside the callback's hooks, net of the timer's own cost)."""
    torch.manual_seed(0)
    batches = [(torch.randn(32, 8), torch.randn(32, 1)) for _ in range(steps)]
    clock = StepClock()
    callbacks: list[Callback] = [clock]
    timer = HookTimer()
    if make is not None:
        callback = make()
        timer.attach(callback)
        callbacks.append(callback)
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(max_epochs=1, **BARE_TRAINER, default_root_dir=root, callbacks=callbacks)
        trainer.fit(TinyLinear(), Batches(batches))
    return clock.median_step(), max(timer.ns - timer.calls * own_ns, 0) / 1e9 / steps


COST_CONFIGS: dict[str, Callable[[], Callback] | None] = {
    "bare Lightning": None,
    "SpikeAdaptiveLR() (seed epoch rule)": lambda: SpikeAdaptiveLR(),
    "SpikeGuard() (median, skip + rollback + record)": lambda: SpikeGuard(),
    "  ... reactions='skip'": lambda: SpikeGuard(reactions="skip"),
    "  ... TailDetector()": lambda: SpikeGuard(TailDetector()),
    "  ... ZScoreDetector()": lambda: SpikeGuard(ZScoreDetector()),
    "  ... grad_detector=MedianDetector()": lambda: SpikeGuard(grad_detector=_median()),
    "Lightning SpikeDetection": lambda: SpikeDetection(),
}


def _median() -> Any:
    from lr_callbacks.spike import MedianDetector

    return MedianDetector()


def cost_table(repeats: int, steps: int = 512) -> str:
    """Per configuration: median step time, and the time inside the callback's hooks per step as a share of a bare
    Lightning step (interleaved repeats, medians)."""
    names = list(COST_CONFIGS)
    step_times: dict[str, list[float]] = {name: [] for name in names}
    hook_times: dict[str, list[float]] = {name: [] for name in names}
    own_ns = HookTimer.own_cost_ns()
    with quiet():
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order each repeat
                step, hook = _cost_fit(COST_CONFIGS[name], steps, own_ns)
                step_times[name].append(step)
                hook_times[name].append(hook)
    bare = statistics.median(step_times["bare Lightning"])
    head = f"{'callback':<46}{'step us':>9}{'hooks us':>10}{'hooks/bare':>12}"
    lines = [head, "-" * len(head)]
    for name in names:
        step = statistics.median(step_times[name])
        if COST_CONFIGS[name] is None:
            lines.append(f"{name:<46}{step * 1e6:>9.1f}")
            continue
        hook = statistics.median(hook_times[name])
        lines.append(f"{name:<46}{step * 1e6:>9.1f}{hook * 1e6:>10.2f}{hook / bare * 100:>11.2f}%")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- entry points


HALVES = {"dev": ("development half (settings tuned here)", zoo.DEV),
          "eval": ("evaluation half (never tuned on)", zoo.EVAL)}  # fmt: skip


def halves(which: tuple[str, ...] = ("dev", "eval"), names: list[str] | None = None) -> str:
    """The development table, then the evaluation table, each with the default's per-task view."""
    out = []
    if zclip_callback() is None:
        out.append(
            "ZClip: the zclip package is not installed; its row is left out (pip install lr-callbacks[benchmarks])"
        )
    for half in which:
        label, tasks = HALVES[half]
        scores, noise = score_half(tasks, names)
        out += [f"\n{label}: {', '.join(tasks)}; seeds {zoo.SEEDS}; scenarios {zoo.SCENARIOS}", table(scores)]
        if DEFAULT in scores and UNGUARDED in scores:
            out.append(task_table(scores, noise))
    return "\n".join(out)


def run(args: argparse.Namespace) -> None:
    """``lr-benchmark spikes``: the cost table, then the development and the evaluation tables."""
    repeats = max(1, int(getattr(args, "repeats", 5)))
    with one_thread():
        print(f"cost: time inside the callback's hooks (Linear 8->1, SGD, batch 32, 512 steps, median of {repeats})")
        print(cost_table(repeats), flush=True)
        print(halves(), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--half", choices=["dev", "eval", "both"], default="both")
    cli = parser.parse_args()
    with one_thread():
        print(halves(("dev", "eval") if cli.half == "both" else (cli.half,)))

"""Wall time of :func:`lr_callbacks.preview` over 100k training steps (no trainer is built).

Three configurations, two param groups each: one schedule; warmup + cosine annealing + sign alternation
(three contributors moved every step); and ReduceOnPlateau checked every step from a scripted metric.
Each runs ``--repeats`` times; the median is printed, with the time per step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from lightning.pytorch.callbacks import Callback

from lr_callbacks import CosineAnnealing, ReduceOnPlateau, SignAlternation, Warmup, preview

STEPS = 100_000
STEPS_PER_EPOCH = 1_000
BASE_LRS = [0.1, 0.01]

#: name -> (callbacks, extra arguments of preview)
CONFIGURATIONS: dict[str, Callable[[], tuple[list[Callback], dict[str, Any]]]] = {
    "CosineAnnealing(interval='step')": lambda: ([CosineAnnealing(T_max=STEPS, interval="step")], {}),
    "Warmup + CosineAnnealing(step) + SignAlternation": lambda: (
        [Warmup(duration=2_000), CosineAnnealing(T_max=STEPS, interval="step"), SignAlternation(period=10)],
        {},
    ),
    "ReduceOnPlateau(interval='step'), scripted metric": lambda: (
        [ReduceOnPlateau("loss", patience=1_000, interval="step")],
        {"metrics": [1.0 / (1 + k // 5_000) for k in range(STEPS)]},
    ),
}


def time_preview(make: Callable[[], tuple[list[Callback], dict[str, Any]]], repeats: int) -> float:
    """Median wall time, in seconds, of a preview of :data:`STEPS` steps."""
    times = []
    for _ in range(repeats):
        callbacks, kwargs = make()
        start = time.perf_counter()
        epochs = STEPS // STEPS_PER_EPOCH
        result = preview(callbacks, epochs=epochs, steps_per_epoch=STEPS_PER_EPOCH, base_lrs=BASE_LRS, **kwargs)
        times.append(time.perf_counter() - start)
        if result.steps != STEPS:  # a shorter preview would make the time per step meaningless
            raise RuntimeError(f"the preview ran {result.steps} steps, not {STEPS}")
    return statistics.median(times)


def run(args: argparse.Namespace) -> None:
    """Print the median time of each configuration."""
    repeats = max(1, int(getattr(args, "repeats", 3)))
    print(f"preview of {STEPS} training steps, {len(BASE_LRS)} param groups (median of {repeats}):")
    print(f"{'callbacks':<52} {'seconds':>8} {'us/step':>8}")
    for name, make in CONFIGURATIONS.items():
        seconds = time_preview(make, repeats)
        print(f"{name:<52} {seconds:>8.3f} {seconds / STEPS * 1e6:>8.1f}", flush=True)


if __name__ == "__main__":
    run(argparse.Namespace(repeats=3))

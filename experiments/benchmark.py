"""``lr-benchmark``: speed and cost figures, printed as ratios measured within one run (medians)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

#: suite name -> what it measures; the suite is the module ``experiments.benchmarks.<name>`` with ``run(args)``
SUITES = {
    "schedules": "time in the LR callbacks' hooks per step, and whole-step ratios against empty callbacks",
    "finder": "LR finder cost and quality vs Lightning's LearningRateFinder",
    "harness": "housing-task throughput vs bare Lightning and plain PyTorch; index slicing vs DataLoader",
    "spikes": "SpikeGuard on 16 tasks (development and evaluation halves) vs clipping, Lightning's SpikeDetection, "
    "ZClip and an OLMo-style skip; its per-step cost",
    "preview": "wall time of lr_callbacks.preview over 100k training steps",
}


#: fewest ``--steps``: the per-step timings leave out the first 10 steps as warm-up
MIN_STEPS = 20


def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``; anything else is refused with argparse's message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> None:
    """Console entry point: ``lr-benchmark [SUITE ...] [--repeats N] [--steps N]``; a bad argument exits with 2."""
    parser = argparse.ArgumentParser(prog="lr-benchmark", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {list(SUITES)}; default: all")
    parser.add_argument("--repeats", type=at_least(1), default=5, help="repeats per measurement; medians are reported")
    parser.add_argument(
        "--steps", type=at_least(MIN_STEPS), default=300, help=f"optimizer steps per timed run (>= {MIN_STEPS})"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.suites) - set(SUITES) - {"all"})
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; choose from {list(SUITES)} or 'all'")
    chosen = list(SUITES) if not args.suites or "all" in args.suites else args.suites
    for name in chosen:
        print(f"\n== {name}: {SUITES[name]} ==", flush=True)
        importlib.import_module(f"experiments.benchmarks.{name}").run(args)


if __name__ == "__main__":
    main()

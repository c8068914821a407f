"""``lr-benchmark``: speed and cost figures, printed as ratios measured within one run (medians)."""

from __future__ import annotations

import argparse
import importlib

SUITES = {
    "schedules": "per-step overhead of each schedule callback vs a bare Lightning step and a torch scheduler",
    "finder": "LR finder cost and quality vs Lightning's LearningRateFinder",
    "harness": "housing-task throughput vs bare Lightning and plain PyTorch; index slicing vs DataLoader",
    "spikes": "SpikeAdaptiveLR on injected spikes vs clipping and Lightning's SpikeDetection; its per-step cost",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lr-benchmark", description=__doc__)
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"any of {list(SUITES)}; default: all")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement; medians are reported")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per timed run")
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

"""``lr-benchmark finder``: the finder's quality against grid references, in and out of sample."""

from experiments.benchmarks.finder.suite import run

__all__ = ["run"]

"""``lr-benchmark spikes``: spike handling on injected and natural spikes, against the anchors."""

from experiments.benchmarks.spikes.suite import run

__all__ = ["run"]

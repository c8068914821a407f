"""Spike handling: the callbacks, the detectors that decide what a spike is, and the reactions to one.

- :class:`SpikeAdaptiveLR`: the seed's epoch rule (back off the LR after an epoch whose loss spiked).
- :class:`SpikeGuard`: step-level detection with a detector object, and the reactions skip, backoff, rollback
  and record.
"""

from lr_callbacks.spike.adaptive import SpikeAdaptiveLR
from lr_callbacks.spike.detectors import MedianDetector, RatioDetector, SpikeDetector, TailDetector, ZScoreDetector
from lr_callbacks.spike.guard import SpikeGuard
from lr_callbacks.spike.reactions import Backoff

__all__ = [
    "Backoff",
    "MedianDetector",
    "RatioDetector",
    "SpikeAdaptiveLR",
    "SpikeDetector",
    "SpikeGuard",
    "TailDetector",
    "ZScoreDetector",
]

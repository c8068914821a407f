"""Spike handling: the callback, the detectors that decide what a spike is, and the reactions to one."""

from lr_callbacks.spike.adaptive import SpikeAdaptiveLR
from lr_callbacks.spike.detectors import RatioDetector, SpikeDetector, TailDetector, ZScoreDetector

__all__ = ["RatioDetector", "SpikeAdaptiveLR", "SpikeDetector", "TailDetector", "ZScoreDetector"]

"""Modifiers: factors multiplied onto the scheduled LR (a warmup ramp, a sign)."""

from lr_callbacks.modifiers.sign import SignAlternation
from lr_callbacks.modifiers.warmup import Warmup

__all__ = ["SignAlternation", "Warmup"]

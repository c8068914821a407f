"""Lightning callbacks for learning-rate control.

Every callback follows one rule (see :mod:`lr_callbacks.core`)::

    lr_g = scheduled_g * prod(active modifier factors)
"""

from lr_callbacks.core import LRContributor, Modifier, Schedule, TimeModifier
from lr_callbacks.finder.callback import LRFinder, LRFinderResult
from lr_callbacks.finder.suggestions import CenteredMin, Curvature, MinDiv10, Race, Steepest, Valley
from lr_callbacks.lr_preview import LRPreview, preview
from lr_callbacks.modifiers.sign import SignAlternation
from lr_callbacks.modifiers.warmup import Warmup
from lr_callbacks.schedules.callbacks import (
    CosineAnnealing,
    CosineWarmRestarts,
    CyclicLR,
    ExponentialDecay,
    OneCycle,
    StepDecay,
    WarmupStableDecay,
)
from lr_callbacks.schedules.plateau import ReduceOnPlateau
from lr_callbacks.spike.adaptive import SpikeAdaptiveLR
from lr_callbacks.spike.guard import SpikeGuard

__all__ = [
    "CenteredMin",
    "CosineAnnealing",
    "CosineWarmRestarts",
    "Curvature",
    "CyclicLR",
    "ExponentialDecay",
    "LRContributor",
    "LRFinder",
    "LRFinderResult",
    "LRPreview",
    "MinDiv10",
    "Modifier",
    "OneCycle",
    "Race",
    "ReduceOnPlateau",
    "Schedule",
    "SignAlternation",
    "SpikeAdaptiveLR",
    "SpikeGuard",
    "Steepest",
    "StepDecay",
    "TimeModifier",
    "Valley",
    "Warmup",
    "WarmupStableDecay",
    "preview",
]

"""The LR range test: the callback, its suggestion methods, its curve, the trial steps and the exact snapshot."""

from lr_callbacks.finder.callback import LRFinder, LRFinderResult
from lr_callbacks.finder.suggestions import (
    CenteredMin,
    Curvature,
    CurveMethod,
    MinDiv10,
    Race,
    Steepest,
    SuggestionMethod,
    Valley,
)

__all__ = [
    "CenteredMin",
    "Curvature",
    "CurveMethod",
    "LRFinder",
    "LRFinderResult",
    "MinDiv10",
    "Race",
    "Steepest",
    "SuggestionMethod",
    "Valley",
]

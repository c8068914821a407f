"""The LR range test: the callback, its curve and suggestions, the trial steps and the exact snapshot."""

from lr_callbacks.finder.callback import LRFinder, LRFinderResult

__all__ = ["LRFinder", "LRFinderResult"]

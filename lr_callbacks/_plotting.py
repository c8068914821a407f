"""The figure a ``plot`` method draws on: the given axes' own figure, or a new one (matplotlib is optional)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning_utilities.core.imports import RequirementCache

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MATPLOTLIB_AVAILABLE = RequirementCache("matplotlib")


def figure_and_axes(ax: Axes | None, figsize: tuple[float, float], caller: str) -> tuple[Figure, Axes]:
    """``ax`` and the figure that holds it, or a new figure of ``figsize`` and its axes.

    Raises:
        ModuleNotFoundError: If matplotlib is not installed (``caller`` names the method in the message).
    """
    if not MATPLOTLIB_AVAILABLE:
        raise ModuleNotFoundError(f"`{caller}` needs matplotlib: `pip install matplotlib`.")
    from matplotlib.figure import Figure

    if ax is None:
        figure = Figure(figsize=figsize)
        return figure, figure.subplots()
    root = ax.get_figure(root=True)
    if not isinstance(root, Figure):
        raise ValueError(f"`ax` must belong to a matplotlib figure, got axes of {root!r}.")
    return root, ax

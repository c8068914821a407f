"""Matplotlib figures of a run (headless backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def trajectory_contour(paths: Mapping[str, Sequence[Sequence[float]]], a: float = 1.0, b: float = 10.0) -> Figure:
    """Contour plot of ``a·x² + b·y²`` with one trajectory per optimizer.

    Args:
        paths: ``{name: [(x, y), ...]}``.
        a: curvature along x.
        b: curvature along y.
    """
    fig, ax = plt.subplots(figsize=(8, 6))
    pts = np.concatenate([np.asarray(p, dtype=float) for p in paths.values()])
    finite = pts[np.isfinite(pts).all(axis=1)]
    lim = np.maximum(np.abs(finite).max(axis=0) * 1.2, 1.0) if len(finite) else np.array([6.0, 5.0])
    xs, ys = np.meshgrid(np.linspace(-lim[0], lim[0], 200), np.linspace(-lim[1], lim[1], 200))
    ax.contour(xs, ys, a * xs**2 + b * ys**2, levels=20, cmap="viridis", alpha=0.5)
    for name, path in paths.items():
        arr = np.asarray(path, dtype=float)
        ax.plot(arr[:, 0], arr[:, 1], "o-", markersize=3, label=name)
    ax.scatter([0], [0], marker="*", s=200, c="gold", edgecolor="black", zorder=5)
    ax.set(xlabel="x", ylabel="y", title=f"Optimizer trajectories on f(x, y) = {a:g}x² + {b:g}y²")
    ax.legend()
    fig.tight_layout()
    return fig


def curves_figure(history: Mapping[str, Sequence[float]], keys: Sequence[str], title: str) -> Figure | None:
    """Per-epoch curves of the given history keys (log scale when all are positive); ``None`` if none exist."""
    present = [k for k in keys if k in history and len(history[k])]
    if not present:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    positive = True
    for key in present:
        values = np.asarray(history[key], dtype=float)
        positive &= bool(np.all(values[np.isfinite(values)] > 0))
        ax.plot(np.arange(len(values)), values, label=key)
    if positive:
        ax.set_yscale("log")
    ax.set(xlabel="epoch", title=title)
    ax.legend()
    fig.tight_layout()
    return fig

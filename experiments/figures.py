"""Matplotlib figures of runs and studies (headless backend), readable at any scale.

A run that explodes must not flatten the others, and one that stops being finite must not just vanish:

- :func:`choose_yscale` picks a linear axis when the values stay within a decade, a log axis when positive
  values span decades, and a symmetric-log axis when signed values do;
- :func:`plot_series` draws one curve, with markers where lines would hide the data (a single point, or a
  sign that flips every epoch), and marks the point where the curve stops being finite as "diverged";
- :func:`bar_chart` writes each bar's value on it and marks a non-finite value as "diverged";
- :func:`trajectory_contour` keeps the view on the paths that stay near their start and says where the
  others leave it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import SymmetricalLogLocator

#: values whose magnitudes stay within this ratio share a linear axis
LINEAR_SPAN = 10.0
#: a series whose sign flips more often than this is drawn as points (lines would fill the band between)
MAX_SIGN_FLIPS = 20
#: a trajectory that gets this many times farther from the optimum than its start leaves the view
ESCAPE = 3.0
DIVERGED = "diverged"


def choose_yscale(values: Iterable[float]) -> tuple[str, dict[str, float]]:
    """The y scale (and its ``set_yscale`` keywords) that keeps every finite value readable.

    >>> choose_yscale([0.74, 0.76])
    ('linear', {})
    >>> choose_yscale([0.74, 6e14])
    ('log', {})
    >>> choose_yscale([0.3, -2e14, float("nan")])
    ('symlog', {'linthresh': 0.1})
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    magnitudes = [abs(v) for v in finite if v != 0]
    if not magnitudes or max(magnitudes) <= LINEAR_SPAN * min(magnitudes):
        return "linear", {}
    if all(v > 0 for v in finite):
        return "log", {}
    # linear within the decade below the smallest magnitude, so that the ticks at ±linthresh sit a decade from 0
    return "symlog", {"linthresh": 10.0 ** math.floor(math.log10(min(magnitudes)))}


def set_yscale(ax: Axes, values: Iterable[float]) -> str:
    """Applies :func:`choose_yscale` to ``ax`` (at most 9 decade ticks on a symlog axis); returns the scale's name."""
    scale, kwargs = choose_yscale(values)
    ax.set_yscale(scale, **kwargs)
    if scale == "symlog":
        locator = SymmetricalLogLocator(linthresh=kwargs["linthresh"], base=10)
        locator.set_params(numticks=9)
        ax.yaxis.set_major_locator(locator)
    return scale


def sign_flips(values: Iterable[float]) -> int:
    """How often consecutive finite values change sign (zeros skipped)."""
    signs = [math.copysign(1.0, v) for v in values if math.isfinite(v) and v != 0]
    return sum(a != b for a, b in zip(signs, signs[1:]))


def first_nonfinite(values: Iterable[float]) -> int | None:
    """Index of the first NaN or infinite value, or ``None``."""
    return next((i for i, v in enumerate(values) if not math.isfinite(v)), None)


def mark_diverged(ax: Axes, x: float, color: Any, text: str = DIVERGED) -> None:
    """An ✕ at the top of ``ax`` above ``x``, labelled ``text``: the curve has no finite value from there on."""
    where = ax.get_xaxis_transform()  # x in data, y in axes fraction
    ax.plot([x], [0.96], marker="X", ms=10, color=color, mec="black", transform=where, clip_on=False, zorder=6)
    ax.annotate(text, (x, 0.96), xycoords=where, xytext=(6, -4), textcoords="offset points", color=color,
                fontsize=8, ha="left", va="top", fontweight="bold")  # fmt: skip


def plot_series(
    ax: Axes,
    values: Sequence[float] | np.ndarray,
    x: Sequence[float] | np.ndarray | None = None,
    label: str | None = None,
    **style: Any,
) -> Line2D:
    """Plots one curve so that it stays visible.

    A curve of at most three points gets markers, one whose sign flips more than :data:`MAX_SIGN_FLIPS`
    times is drawn as points, and the first non-finite value is marked "diverged" (see :func:`mark_diverged`).

    Args:
        ax: the axes.
        values: the y values (NaN/inf allowed).
        x: the x values; default ``0, 1, ...``.
        label: legend label.
        style: more ``ax.plot`` keywords.
    """
    y = np.asarray(values, dtype=float)
    xs = np.arange(len(y)) if x is None else np.asarray(x, dtype=float)
    if len(y) <= 3:
        style.setdefault("marker", "o")
    if sign_flips(y) > MAX_SIGN_FLIPS:
        style.setdefault("linestyle", "none")
        style.setdefault("marker", ".")
        style.setdefault("markersize", 2)
    (line,) = ax.plot(xs, y, label=label, **style)
    bad = first_nonfinite(y)
    if bad is not None:
        mark_diverged(ax, xs[bad], line.get_color(), f"{DIVERGED} at {xs[bad]:g}")
    return line


def annotate_bar(ax: Axes, x: float, value: float, text: str) -> None:
    """Writes ``text`` at the end of the bar ``x`` of height ``value``."""
    up = value >= 0
    ax.annotate(text, (x, value), xytext=(0, 3 if up else -3), textcoords="offset points", ha="center",
                va="bottom" if up else "top", fontsize=8)  # fmt: skip


def bar_chart(
    ax: Axes,
    names: Sequence[str],
    values: Sequence[float],
    colors: Sequence[Any] | None = None,
    fmt: Callable[[float], str] = lambda v: f"{v:.4g}",
    reference: tuple[float, str] | None = None,
) -> str:
    """Bars with their values written on them, on the scale :func:`choose_yscale` picks.

    A non-finite value gets no bar but a "diverged" mark. On a linear axis of positive values the axis is
    zoomed onto the values, so that differences in the third digit stay visible.

    Args:
        ax: the axes.
        names: one label per bar.
        values: the heights.
        colors: bar colours.
        fmt: how a value is written on its bar.
        reference: ``(value, label)`` of a dashed horizontal reference line.

    Returns:
        The y scale used.
    """
    heights = [float(v) if v is not None and math.isfinite(v) else math.nan for v in values]
    ref = [reference[0]] if reference else []
    scale = set_yscale(ax, heights + ref)
    xs = np.arange(len(names))
    ax.bar(xs, [0.0 if math.isnan(h) else h for h in heights], color=colors, edgecolor="black")
    ax.set_xticks(xs, names)
    for x, h in zip(xs.tolist(), heights):
        if math.isnan(h):
            mark_diverged(ax, x, "red")
        else:
            annotate_bar(ax, x, h, fmt(h))
    if reference:
        ax.axhline(reference[0], color="black", ls="--", lw=1, label=reference[1])
    finite = [h for h in heights if not math.isnan(h)] + ref
    if not finite:
        return scale
    low, high = min(finite), max(finite)
    if scale == "linear" and low > 0:
        pad = max(0.15 * (high - low), 0.01 * high)
        ax.set_ylim(low - pad, high + 2 * pad)
    elif scale == "log":
        ax.set_ylim(low / 2, high * 8)  # room for the labels
    elif scale == "symlog":  # a decade beyond the extremes on either side of zero, for the labels
        linthresh = choose_yscale(finite)[1]["linthresh"]
        ax.set_ylim(10 * low if low < 0 else -linthresh, 10 * high if high > 0 else linthresh)
    return scale


def trajectory_contour(paths: Mapping[str, Sequence[Sequence[float]]], a: float = 1.0, b: float = 10.0) -> Figure:
    """Contour plot of ``a·x² + b·y²`` with one trajectory per optimizer.

    The view holds the starts and every path that stays within :data:`ESCAPE` times the farthest start
    coordinate; a path that goes farther (or stops being finite) widens the view to that bound, is drawn up
    to where it leaves the view, is marked there, and its legend entry says how far it went.

    Args:
        paths: ``{name: [(x, y), ...]}``.
        a: curvature along x.
        b: curvature along y.
    """
    fig, ax = plt.subplots(figsize=(8, 6))
    arrays = {name: np.asarray(path, dtype=float).reshape(-1, 2) for name, path in paths.items()}
    starts = np.array([arr[0] for arr in arrays.values() if len(arr)] or [[5.0, 4.0]])
    reach = ESCAPE * max(float(np.abs(starts).max()), 1.0)
    escaped = {n: arr for n, arr in arrays.items() if not (np.isfinite(arr).all() and np.abs(arr).max() <= reach)}
    kept = [arr for n, arr in arrays.items() if n not in escaped] + [starts]
    lim = np.maximum(np.abs(np.concatenate(kept)).max(axis=0) * 1.2, 1.0)
    if escaped:
        lim = np.maximum(lim, reach)
    xs, ys = np.meshgrid(np.linspace(-lim[0], lim[0], 200), np.linspace(-lim[1], lim[1], 200))
    ax.contour(xs, ys, a * xs**2 + b * ys**2, levels=20, cmap="viridis", alpha=0.5)
    for name, arr in arrays.items():
        final = a * arr[-1, 0] ** 2 + b * arr[-1, 1] ** 2 if len(arr) else math.nan
        label = f"{name} (final f = {final:.3g})"
        if name in escaped:
            inside = (np.abs(arr) <= lim).all(axis=1) & np.isfinite(arr).all(axis=1)
            leave = int(np.argmin(inside)) if not inside.all() else len(arr)
            peak = np.abs(arr[np.isfinite(arr).all(axis=1)]).max(initial=0.0)
            label = f"{name} ({DIVERGED}: leaves the view at step {leave}, max |x|, |y| = {peak:.2g})"
            (line,) = ax.plot(arr[:leave, 0], arr[:leave, 1], "o-", markersize=3, label=label)
            if leave:
                last = arr[leave - 1]
                right = last[0] <= 0  # the label goes towards the middle of the view
                ax.plot(*last, marker="X", ms=11, color=line.get_color(), mec="black", zorder=6)
                ax.annotate(f"{name}: {DIVERGED} from step {leave}", last, xytext=(8 if right else -8, 8),
                            textcoords="offset points", ha="left" if right else "right", color=line.get_color(),
                            fontsize=8, fontweight="bold")  # fmt: skip
        else:
            ax.plot(arr[:, 0], arr[:, 1], "o-", markersize=3, label=label)
    ax.scatter([0], [0], marker="*", s=200, c="gold", edgecolor="black", zorder=5)
    ax.set(xlim=(-lim[0], lim[0]), ylim=(-lim[1], lim[1]), xlabel="x", ylabel="y",
           title=f"Optimizer trajectories on f(x, y) = {a:g}x² + {b:g}y²")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves_figure(history: Mapping[str, Sequence[float]], keys: Sequence[str], title: str) -> Figure | None:
    """Per-epoch curves of the given history keys, each labelled with its last finite value; ``None`` if none exist.

    The y scale comes from :func:`choose_yscale` over all curves; see :func:`plot_series` for how single
    points, sign-alternating series and diverged curves are drawn.
    """
    present = [k for k in keys if k in history and len(history[k])]
    if not present:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in present:
        values = [float(v) if v is not None else math.nan for v in history[key]]
        last = next((v for v in reversed(values) if math.isfinite(v)), math.nan)
        plot_series(ax, values, label=f"{key} (last {last:.4g})")
    set_yscale(ax, [float(v) for k in present for v in history[k] if v is not None])
    ax.set(xlabel="epoch", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

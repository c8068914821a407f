"""Figures stay readable at any scale: log/symlog axes across decades, values on bars, diverged runs marked."""

from __future__ import annotations

import doctest
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments import figures
from experiments.figures import bar_chart, choose_yscale, curves_figure, plot_series, trajectory_contour
from experiments.studies import Context
from experiments.studies.housing import OLS_RMSE, HousingStudy
from experiments.studies.runner import Run, RunResult
from experiments.studies.tutorial import _mark_off_scale


def texts(ax: Any) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_module_examples() -> None:
    assert doctest.testmod(figures).failed == 0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.7417, 0.746, 0.7445, 0.7434], ("linear", {})),
        ([0.7417, 0.746, 6.1e14], ("log", {})),
        ([0.01, -0.01, 0.01], ("linear", {})),
        ([0.1, -1e-5, 0.0], ("symlog", {"linthresh": 1e-5})),
        ([0.3, 0.3, -2.0e13, -2.0e14, math.nan], ("symlog", {"linthresh": 0.1})),
        ([-0.02, 5.0], ("symlog", {"linthresh": 0.01})),
        ([math.nan, math.inf], ("linear", {})),
        ([], ("linear", {})),
    ],
)
def test_the_scale_is_linear_within_a_decade_and_logarithmic_across(values: list[float], expected: tuple) -> None:
    assert choose_yscale(values) == expected


def test_a_series_that_stops_being_finite_is_marked_diverged() -> None:
    fig, ax = plt.subplots()
    line = plot_series(ax, [1.0, 10.0, 1e30, math.inf, math.nan], label="loss")
    assert texts(ax) == ["diverged at 3"]
    marker = ax.lines[-1]  # the ✕ drawn after the curve
    assert marker is not line
    assert marker.get_marker() == "X"
    assert list(marker.get_xdata()) == [3.0]
    plt.close(fig)


def test_a_sign_flipping_series_is_drawn_as_points_and_a_short_one_with_markers() -> None:
    fig, ax = plt.subplots()
    flips = plot_series(ax, [0.01 * (-1) ** t for t in range(100)])
    assert flips.get_linestyle() == "None"
    assert flips.get_marker() == "."
    smooth = plot_series(ax, np.linspace(1.0, 0.1, 100))
    assert smooth.get_linestyle() == "-"
    assert smooth.get_marker() == "None"
    single = plot_series(ax, [3.0e16])
    assert single.get_marker() == "o"
    assert texts(ax) == []
    plt.close(fig)


def test_bars_spanning_decades_go_log_and_carry_their_values() -> None:
    fig, ax = plt.subplots()
    names = ["fixed", "step", "halve", "sqrt"]
    scale = bar_chart(ax, names, [0.7417, 0.746, 0.7445, 6.1e14], fmt=lambda v: f"{v:.4g}", reference=(0.7456, "OLS"))
    assert scale == "log"
    assert ax.get_yscale() == "log"
    assert texts(ax) == ["0.7417", "0.746", "0.7445", "6.1e+14"]
    low, high = ax.get_ylim()
    assert low < 0.7417
    assert high > 6.1e14
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    plt.close(fig)


def test_bars_within_a_decade_are_zoomed_so_small_differences_show() -> None:
    fig, ax = plt.subplots()
    assert bar_chart(ax, ["a", "b"], [0.7417, 0.7608]) == "linear"
    low, high = ax.get_ylim()
    assert 0.7 < low < 0.7417
    assert 0.7608 < high < 0.8
    plt.close(fig)


def test_a_non_finite_bar_is_marked_diverged_and_signed_values_go_symlog() -> None:
    fig, ax = plt.subplots()
    assert bar_chart(ax, ["a", "b", "c"], [0.31, -2.0e14, math.nan], fmt=lambda v: f"{v:.3g}") == "symlog"
    assert texts(ax) == ["0.31", "-2e+14", "diverged"]
    assert [p.get_height() for p in ax.patches] == [0.31, -2.0e14, 0.0]
    assert ax.get_ylim() == pytest.approx((-2.0e15, 3.1))  # a decade of room for the labels on both sides
    assert len(ax.yaxis.get_majorticklocs()) <= 12  # every other decade (Matplotlib's default: 20 ticks)
    plt.close(fig)


def test_a_diverging_trajectory_leaves_the_view_marked_and_the_others_stay_readable() -> None:
    steady = [(5.0 * 0.9**t, 4.0 * 0.5**t) for t in range(30)]
    exploding = [(5.0 * 0.9**t, 4.0 * (-2.0) ** t) for t in range(30)]
    fig = trajectory_contour({"SGD": steady, "too fast": exploding, "nan": [(5.0, 4.0), (math.nan, math.nan)]})
    ax = fig.axes[0]
    # the view widens to ESCAPE x the farthest start coordinate (3 x 5), not to the exploding path's 2e9
    assert ax.get_xlim() == pytest.approx((-15.0, 15.0))
    assert ax.get_ylim() == pytest.approx((-15.0, 15.0))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == f"SGD (final f = {(5 * 0.9**29) ** 2 + 10 * (4 * 0.5**29) ** 2:.3g})"
    # 4·(−2)^t leaves |y| <= 15 at t = 2 and peaks at 4·2^29
    assert labels[1] == f"too fast (diverged: leaves the view at step 2, max |x|, |y| = {4 * 2.0**29:.2g})"
    assert labels[2] == "nan (diverged: leaves the view at step 1, max |x|, |y| = 5)"
    assert texts(ax) == ["too fast: diverged from step 2", "nan: diverged from step 1"]
    plt.close(fig)


def test_trajectories_that_stay_near_their_start_keep_a_tight_view() -> None:
    fig = trajectory_contour({"SGD": [(5.0, 4.0), (4.5, 0.0)], "Momentum": [(5.0, 4.0), (-3.0, 3.2)]})
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((-6.0, 6.0))
    assert ax.get_ylim() == pytest.approx((-4.8, 4.8))
    assert texts(ax) == []
    plt.close(fig)


def test_run_curves_label_their_last_value_and_mark_divergence() -> None:
    fig = curves_figure({"train/loss": [5.0, 1e12, math.nan], "val/loss": [4.0]}, ["train/loss", "val/loss"], "loss")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train/loss (last 1e+12)", "val/loss (last 4)"]
    assert texts(ax) == ["diverged at 2"]
    plt.close(fig)
    assert curves_figure({"lr": []}, ["lr"], "lr") is None


def test_housing_four_panel_keeps_every_bar_readable_when_one_run_explodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick profile's sqrt run ends at RMSE ~6e14: the other bars must stay readable."""
    study = HousingStudy(
        {"epochs": 12, "step_size": 3, "window": 3, "seeds": [42]}, Context(out_dir=tmp_path, log=lambda m: None)
    )
    final = {
        "fixed LR 0.01": 0.7417,
        "step decay": 0.746,
        "spike-adaptive (halve)": 0.7445,
        "spike-adaptive (sqrt)": 6.1e14,
    }
    losses = {"fixed LR 0.01": [0.9, 0.6, 0.5], "step decay": [0.9, 0.6, 0.55],
              "spike-adaptive (halve)": [2e4, 1e12, 4e15], "spike-adaptive (sqrt)": [2e4, 1e12, math.inf]}  # fmt: skip
    rows = {
        name: [
            RunResult(
                Run(name, []), tmp_path, {"test/rmse": rmse}, {"train/loss": losses[name], "lr": [0.1, 0.05, 0.05]}
            )
        ]
        for name, rmse in final.items()
    }
    captured: list[Any] = []
    original = study.figure
    monkeypatch.setattr(
        study, "figure", lambda fig, name, caption: (captured.append(fig), original(fig, name, caption))[1]
    )
    saved = study._figure(rows, window=3)
    assert (tmp_path / saved.path).stat().st_size > 10_000
    loss_ax, _, rmse_ax, reduction_ax = captured[0].axes
    assert rmse_ax.get_yscale() == "log"
    assert texts(rmse_ax) == ["0.7417", "0.746", "0.7445", "6.100e+14"]
    assert rmse_ax.get_title() == "Test RMSE (log scale)"
    assert [line.get_ydata()[0] for line in rmse_ax.lines] == [OLS_RMSE]
    assert reduction_ax.get_yscale() == "symlog"
    assert texts(reduction_ax) == ["0.444", "0.389", "-2.00e+11", "diverged"]
    assert texts(loss_ax) == ["diverged at 2"]


def test_the_finder_figure_says_where_and_how_far_the_loss_leaves_its_clipped_range() -> None:
    fig, ax = plt.subplots()
    lrs = [1e-3, 1e-2, 1e-1, 1.0]
    _mark_off_scale(ax, lrs, [3.0, 2.0, 40.0, 900.0], top=16.0)
    assert texts(ax) == ["loss off the scale from lr 0.1: up to 900"]
    _mark_off_scale(ax, lrs, [3.0, 2.0, 1.0, 1.5], top=16.0)
    assert len(ax.texts) == 1
    plt.close(fig)

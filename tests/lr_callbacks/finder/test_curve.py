"""The finder's curve and suggestions as pure functions, on constructed curves whose answer is known."""

from __future__ import annotations

import math

import pytest

from lr_callbacks.finder.curve import (
    BUDGET_EXPONENT,
    CENTERED_DIVISOR,
    RACE_SPACING,
    RACE_TOP,
    budget_factor,
    centered_min_index,
    choose_race,
    divergence_index,
    fastai_valley,
    lowest_wins,
    probe_score,
    race_candidates,
    race_diverged,
    race_score,
    smooth,
    steepest_index,
    suggest,
    sweep_lrs,
    valley_index,
)

INF = math.inf


def lrs_for(n: int) -> list[float]:
    return sweep_lrs(1e-6, 1.0, n)


# ----------------------------------------------------------------------------------------------- sweep and EMA
def test_sweep_lrs_are_geometric_or_linear_with_both_ends() -> None:
    lrs = sweep_lrs(1e-7, 10.0, 100)
    assert lrs[0] == pytest.approx(1e-7)
    assert lrs[-1] == pytest.approx(10.0)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios)) == pytest.approx(1e8 ** (1 / 99))
    assert sweep_lrs(0.0, 1.0, 5, "linear") == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_smooth_is_the_bias_corrected_ema() -> None:
    beta, losses = 0.9, [3.0, 1.0, 2.0]
    avg, expected = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        expected.append(avg / (1 - beta ** (i + 1)))
    assert smooth(losses, beta) == pytest.approx(expected)
    assert smooth([5.0, 5.0, 5.0], 0.98) == pytest.approx([5.0, 5.0, 5.0])  # a constant stays constant
    assert smooth(losses, 0.0) == losses


# ----------------------------------------------------------------------------------------------- curve methods
def test_centered_min_finds_the_minimum_of_the_averaged_curve_not_a_single_dip() -> None:
    # A single low point at 3 inside a high stretch, and a broad valley around 12.
    curve = [5.0] * 20
    curve[3] = 0.0
    for i, v in zip(range(10, 15), [3.0, 2.0, 1.0, 2.0, 3.0]):
        curve[i] = v
    assert centered_min_index(curve, 2) == 12
    assert centered_min_index(curve, 0) == 3  # without averaging, the dip wins
    lrs = lrs_for(20)
    lr, idx = suggest("centered_min", lrs, curve, curve)
    # 6% of 20 points rounds to 1, and at least 2 are used on each side.
    assert idx == 12
    assert lr == pytest.approx(lrs[12] / CENTERED_DIVISOR)


def test_steepest_is_the_steepest_fall_of_the_5_point_average() -> None:
    curve = [10.0 - 0.1 * i for i in range(12)]
    curve = [c - (5.0 if i >= 6 else 0.0) for i, c in enumerate(curve)]  # a cliff between 5 and 6
    assert steepest_index(curve) in (5, 6)
    lrs = lrs_for(12)
    lr, idx = suggest("steepest", lrs, curve, curve)
    assert idx in (5, 6)
    assert lr == lrs[idx]
    assert steepest_index([1.0, 2.0, 3.0, 4.0]) is None  # shorter than the window


def test_min_div10_is_a_tenth_of_the_smoothed_minimum() -> None:
    lrs = lrs_for(6)
    smoothed = [5.0, 4.0, 1.0, 2.0, 3.0, 9.0]
    lr, idx = suggest("min_div10", lrs, [0.0] * 6, smoothed)
    assert idx == 2
    assert lr == pytest.approx(lrs[2] / 10)


def reference_valley(losses: list[float]) -> int:
    """fastai's valley transcribed line by line (fastai/callback/schedule.py)."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def test_valley_is_fastais_on_hand_checked_curves() -> None:
    # Strictly falling for 10 points: lds[9] = 10, max_start = 9 - 10 = -1 (fastai's off-by-one is kept),
    # sections = 10 / 3 -> -1 + 3 + 1 = 3.
    assert fastai_valley([10.0 - i for i in range(10)]) == 3
    # A rise in the middle does not break the longest descending subsequence 9 8 7 6 5 4 (ends at 6, length 6):
    # max_start = 0, sections = 2 -> 0 + 2 + 1.
    curve = [9.0, 8.0, 7.0, 20.0, 6.0, 5.0, 4.0, 30.0]
    assert fastai_valley(curve) == reference_valley(curve) == 3


@pytest.mark.parametrize("seed", range(5))
def test_valley_matches_the_transcription_on_random_curves(seed: int) -> None:
    import random

    rng = random.Random(seed)
    curve = [rng.random() + (0.0 if i < 30 else (i - 30) * 0.3) for i in range(60)]
    assert fastai_valley(curve) == reference_valley(curve)


def test_valley_suggestion_trims_like_lr_find() -> None:
    # num_steps=100 -> [10:-5]; a descent from 10 to 40 in the trimmed part.
    smoothed = [5.0] * 10 + [5.0 - 0.1 * i for i in range(31)] + [9.0] * 9
    lrs = lrs_for(len(smoothed))
    idx = valley_index(lrs, smoothed, 100)
    trimmed = smoothed[10:-5]
    assert idx == 10 + fastai_valley(trimmed)
    lr, at = suggest("valley", lrs, smoothed, smoothed, num_steps=100)
    assert at == idx
    assert lr == lrs[idx]
    assert valley_index(lrs[:12], smoothed[:12], 100) is None  # nothing left after trimming


def test_points_after_a_non_finite_loss_are_ignored() -> None:
    lrs = lrs_for(8)
    losses = [5.0, 4.0, 3.0, 2.0, INF, 0.0, 0.0, 0.0]
    lr, idx = suggest("min_div10", lrs, losses, losses)
    assert idx == 3
    assert suggest("min_div10", lrs[:1], losses[:1], losses[:1]) is None


def test_unknown_curve_method_names_the_argument() -> None:
    with pytest.raises(ValueError, match="`method`"):
        suggest("race", [1.0, 2.0], [1.0, 1.0], [1.0, 1.0])


# ----------------------------------------------------------------------------------------------- the race method
def test_divergence_index_is_lag_free_and_ignores_single_spikes() -> None:
    rising = [1.0] * 20 + [2.0, 3.0, 5.0, 9.0, 17.0, 33.0]
    # Centred medians of 5 at 20, 21, 22: 1, 2, 5; the first above 4 x the lowest (1) is at 22, where the raw
    # loss is 3. The EMA of the sweep (beta 0.98) crosses 4 x its minimum only at the last point, 25.
    assert divergence_index(rising) == 22
    assert next(i for i, v in enumerate(smooth(rising, 0.98)) if v > 4.0) == 25
    spiky = [1.0] * 10 + [50.0] + [1.0] * 10
    assert divergence_index(spiky) is None
    assert divergence_index([1.0, 1.0, INF]) == 2


def test_divergence_is_searched_only_a_decade_below_the_stop() -> None:
    lrs = [10.0 ** (k - 6) for k in range(7)]  # 1e-6 .. 1: one point per decade
    losses = [1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0]
    assert divergence_index(losses) == 4
    assert divergence_index(losses, lrs=lrs) == 5  # 0.1 is the first point within a decade of the last LR
    assert divergence_index([1.0, 9.0, 1.0, 1.0, 1.0, 1.0, 1.0], lrs=lrs) is None


def test_race_candidates_race_score_and_divergence() -> None:
    cands = race_candidates(8.0, 3)
    assert cands == pytest.approx([8.0 * RACE_TOP, 8.0 * RACE_TOP / RACE_SPACING, 8.0 * RACE_TOP / RACE_SPACING**2])
    assert race_score([4.0, 3.0, 2.0, 1.0]) == 1.5  # mean of the second half
    assert race_score([4.0, 3.0, 2.0]) == 2.0  # int(3 * 0.5) = 1 point
    assert race_score([]) == INF
    assert race_score([1.0, INF]) == INF
    assert race_score([1.0], diverged=True) == INF
    assert not race_diverged([1.0, 30.0, 1.0, 1.0, 1.0, 1.0])  # one heavy batch
    assert not race_diverged([1.0] * 7 + [9.0])  # ...also when it is the latest
    assert race_diverged([1.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    assert not race_diverged([1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0])
    assert race_diverged([1.0, math.nan])


def test_choose_race_prefers_the_largest_near_tie_and_lowest_wins_flags_the_boundary() -> None:
    cands = [0.8, 0.4, 0.2, 0.1]
    assert choose_race(cands, [INF, 2.0, 1.0, 1.5]) == 2
    assert choose_race(cands, [INF, 1.015, 1.0, 1.5]) == 1  # within 2%: the larger LR
    assert choose_race(cands, [INF, 1.03, 1.0, 1.5]) == 2
    assert choose_race(cands, [INF] * 4) is None
    assert lowest_wins(cands, [3.0, 2.0, 1.5, 1.0])
    assert not lowest_wins(cands, [3.0, 1.0, 1.5, 2.0])
    assert not lowest_wins(cands, [INF] * 4)


def test_probe_score_is_the_mean_probe_loss_and_inf_when_it_cannot_be_trusted() -> None:
    assert probe_score([3.0, 1.0, 2.0, 6.0]) == 3.0
    assert probe_score([0.5]) == 0.5
    assert probe_score([1.0, 2.0], diverged=True) == INF
    assert probe_score([]) == INF
    assert probe_score([1.0, INF]) == INF
    assert probe_score([math.nan, 1.0]) == INF


def test_budget_factor_scales_the_winner_as_a_power_of_race_over_training_steps() -> None:
    assert BUDGET_EXPONENT == 0.4
    assert budget_factor(36, 36 * 2**5) == pytest.approx(0.25)  # 32 times the race: 2 ** (-5 * 0.4)
    assert budget_factor(36, 3600) == pytest.approx(0.01**0.4)
    assert budget_factor(36, 36) == 1.0
    assert budget_factor(36, 10) == 1.0
    assert budget_factor(36, 1000, exponent=1.0) == pytest.approx(0.036)
    factors = [budget_factor(36, t) for t in (50, 100, 500, 2000, 1e5)]
    assert factors == sorted(factors, reverse=True)
    assert factors[-1] < 0.1

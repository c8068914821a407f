"""Every suggestion method run inside LRFinder: it equals the pure function on the recorded curve, the race picks
the known winner on a quadratic and scores it on the batches after its own, the suggestion follows the training
budget, the curvature bound carries the momentum and Nesterov factors, and the finder stays within its step
budget."""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lr_callbacks import CosineAnnealing, Curvature, LRFinder, Race, SignAlternation
from lr_callbacks.curvature import sgd_stability_factor
from lr_callbacks.finder.callback import SCHEDULED_BUDGET_EXPONENT, SUGGESTIONS, UNBOUNDED_TRAIN_STEPS
from lr_callbacks.finder.curve import (
    BUDGET_EXPONENT,
    CURVE_METHODS,
    PROBE_BATCHES,
    budget_factor,
    choose_race,
    divergence_index,
    probe_score,
    race_candidates,
    race_diverged,
    race_score,
    starting_loss,
    suggest,
)
from tests.helpers.finder import TwoOptimizers
from tests.helpers.tiny import TinyRegression, loader, tiny_trainer


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def run_finder(model: pl.LightningModule, max_epochs: int = 1, **kwargs: Any) -> LRFinder:
    torch.manual_seed(0)
    finder = LRFinder(save_png=False, **kwargs)
    tiny_trainer([finder], max_epochs=max_epochs).fit(model, loader())
    assert finder.result is not None
    return finder


# ----------------------------------------------------------------------------------------------- callback = function
@pytest.mark.parametrize("method", CURVE_METHODS)
def test_curve_methods_in_the_callback_equal_the_pure_function(method: str) -> None:
    finder = run_finder(TinyRegression(base_lrs=(0.1,)), num_steps=40, max_lr=1.0, suggestion=method)
    r = finder.result
    expected = suggest(method, r.lrs, r.losses, r.smoothed_losses, num_steps=40)
    assert expected is not None
    assert (r.suggestion, r.suggestion_index) == pytest.approx(expected)
    assert r.race_lrs == []
    assert r.optimizer_steps == r.steps


def test_race_in_the_callback_equals_the_pure_functions() -> None:
    model = TinyRegression(base_lrs=(0.1,))
    finder = run_finder(
        model, max_epochs=20, num_steps=40, max_lr=10.0, suggestion=Race(budget_steps=120, candidates=4)
    )
    r = finder.result
    index = divergence_index(r.losses, 4.0, lrs=r.lrs)
    assert r.divergence_lr == (r.lrs[-1] if index is None else r.lrs[index])
    assert r.race_lrs[:4] == pytest.approx(race_candidates(r.divergence_lr, 4))
    assert r.race_steps == (120 - r.steps) // 4 - PROBE_BATCHES
    for losses, probed, score in zip(r.race_losses, r.race_probe_losses, r.race_scores):
        if race_diverged(losses):
            assert math.isinf(score)
            assert probed == []
        else:
            assert len(probed) == PROBE_BATCHES
            assert score == probe_score(probed)
    assert any(math.isfinite(score) for score in r.race_scores)
    winner = choose_race(r.race_lrs, r.race_scores, start=starting_loss(r.losses))
    assert winner is not None
    assert r.race_informative
    assert r.race_winner == r.race_lrs[winner]
    assert r.train_steps == 20 * 8 == model.trainer.estimated_stepping_batches  # found at step 0 of the fit
    assert r.budget_factor == budget_factor(r.race_steps, 160) < 1.0
    assert r.suggestion == pytest.approx(r.race_lrs[winner] * (r.race_steps / 160) ** 0.4)


def test_the_probe_scores_the_race_end_weights_on_the_batches_after_its_own() -> None:
    """Replayed in plain torch: each race trains on batches 0, 1, ... of the (unshuffled) loader from the initial
    weights; its probe losses are the end weights' losses on the next four batches, no step taken."""
    model = TinyRegression(base_lrs=(0.1,))
    initial = copy.deepcopy(model.layer)
    finder = run_finder(model, num_steps=20, max_lr=1.0, suggestion=Race(budget_steps=62, candidates=3))
    r = finder.result
    batches = list(loader())
    assert r.race_steps == 10  # not a whole number of epochs of 8 batches: the probe batches are 2, 3, 4, 5
    for lr, losses, probed in zip(r.race_lrs, r.race_losses, r.race_probe_losses):
        layer = copy.deepcopy(initial)
        optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
        for k in range(r.race_steps):
            x, y = batches[k % len(batches)]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(layer(x), y)
            assert loss.item() == pytest.approx(losses[k], rel=1e-5)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            after = [nn.functional.mse_loss(layer(x), y).item() for x, y in batches[2:6]]
        assert probed == pytest.approx(after, rel=1e-5)


def test_without_a_probe_or_under_manual_optimization_the_race_scores_its_training_losses() -> None:
    finder = run_finder(
        TinyRegression(base_lrs=(0.1,)), num_steps=30, max_lr=10.0, suggestion=Race(3, budget_steps=90, probe_batches=0)
    )
    r = finder.result
    assert r.race_steps == (90 - r.steps) // 3
    assert r.probe_forwards == 0
    assert r.cost_steps == r.optimizer_steps
    assert r.race_scores == [race_score(losses, race_diverged(losses)) for losses in r.race_losses]

    torch.manual_seed(0)
    model = TwoOptimizers()  # training_step steps the optimizers itself: no step-free probe exists
    finder = LRFinder(num_steps=30, max_lr=1.0, save_png=False, suggestion=Race(budget_steps=90, candidates=3))
    tiny_trainer([finder], max_epochs=1).fit(model, loader())
    r = finder.result
    assert r.probe_forwards == 0
    assert r.race_probe_losses == [[]] * len(r.race_lrs)
    assert r.race_steps == (90 - r.steps) // 3
    assert r.cost_steps == len(model.seen_lrs) - 8 <= 90
    assert r.race_scores == [race_score(losses, race_diverged(losses)) for losses in r.race_losses]


# ----------------------------------------------------------------------------------------------- the training budget
def test_the_budget_is_what_the_trainer_has_left_or_what_train_steps_says() -> None:
    race = Race(budget_steps=72, candidates=3)
    mid = run_finder(TinyRegression(), max_epochs=5, num_steps=12, max_lr=1.0, suggestion=race, run_at_start=False,
                     run_at_epoch=2)  # fmt: skip
    assert mid.result.train_steps == 5 * 8 - 2 * 8  # two epochs of 8 steps are done
    race = Race(budget_steps=72, candidates=3, train_steps=5000)
    given = run_finder(TinyRegression(), num_steps=12, max_lr=1.0, suggestion=race)
    r = given.result
    assert r.train_steps == 5000
    assert r.suggestion == pytest.approx(r.race_winner * (r.race_steps / 5000) ** 0.4)


def test_an_unbounded_trainer_warns_and_assumes_the_longest_tuned_budget() -> None:
    class StopAtTrainStart(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            trainer.should_stop = True

    torch.manual_seed(0)
    finder = LRFinder(num_steps=12, max_lr=1.0, save_png=False, suggestion=Race(budget_steps=72, candidates=3))
    with pytest.warns(UserWarning, match="budget is unbounded"):
        tiny_trainer([finder, StopAtTrainStart()], max_epochs=-1).fit(TinyRegression(), loader())
    r = finder.result
    assert UNBOUNDED_TRAIN_STEPS == 2000
    assert r.train_steps == 2000
    assert r.suggestion == pytest.approx(r.race_winner * (r.race_steps / 2000) ** 0.4)


# ----------------------------------------------------------------------------------------------- the race, known answer
class Quadratic(pl.LightningModule):
    """``loss = a * w**2 / 2`` for a scalar ``w`` (the batch is ignored): SGD at LR ``c`` multiplies ``w`` by
    ``1 - c a`` per step, so every race's losses are known in closed form."""

    def __init__(self, a: float, w0: float = 1.0) -> None:
        super().__init__()
        self.a = a
        self.w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return 0.5 * self.a * self.w**2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def closed_form_race(a: float, lr: float, steps: int, threshold: float = 4.0) -> list[float]:
    w, losses = 1.0, []
    for _ in range(steps):
        losses.append(0.5 * a * w * w)
        if race_diverged(losses, threshold):
            break
        w *= 1.0 - lr * a
    return losses


def test_the_race_picks_the_candidate_the_closed_form_says() -> None:
    a = 4.0  # the stable range is lr < 2 / a = 0.5; lr = 1 / a = 0.25 zeroes w in one step
    finder = run_finder(
        Quadratic(a), num_steps=60, min_lr=1e-4, max_lr=10.0, suggestion=Race(5, budget_steps=160, train_steps=1000)
    )
    r = finder.result
    assert r.diverged
    assert r.divergence_lr is not None
    assert 2.0 / a < r.divergence_lr < 10.0
    h = r.race_steps
    assert h == (160 - r.steps) // 5 - PROBE_BATCHES
    # The probe sees the weights after the race: loss a w_h^2 / 2 with w_h = (1 - lr a)^h, whatever the batch.
    expected_scores = [0.5 * a * (1.0 - lr * a) ** (2 * h) if lr < 2.0 / a else math.inf for lr in r.race_lrs]
    for lr, losses, probed, score, expected in zip(
        r.race_lrs, r.race_losses, r.race_probe_losses, r.race_scores, expected_scores
    ):
        if lr < 2.0 / a:  # stable: the callback's race is the closed form, step for step
            assert losses == pytest.approx(closed_form_race(a, lr, h), rel=1e-9, abs=1e-300)
            assert probed == pytest.approx([expected] * PROBE_BATCHES, rel=1e-9, abs=1e-300)
            assert score == pytest.approx(expected, rel=1e-9, abs=1e-300)
        else:
            assert math.isinf(score)
            assert race_diverged(losses)
    winner = choose_race(r.race_lrs, expected_scores)
    assert winner is not None
    assert r.suggestion == pytest.approx(r.race_lrs[winner] * (h / 1000) ** 0.4)
    # The winner is the stable candidate closest to 1 / a in contraction |1 - lr a|.
    stable = [lr for lr in r.race_lrs if lr < 2.0 / a]
    assert r.race_lrs[winner] == min(stable, key=lambda lr: abs(1.0 - lr * a))


def test_races_continue_below_while_the_smallest_candidate_wins_and_the_budget_lasts() -> None:
    # a = 4: stable below 0.5. The 12-step sweep never diverges before its last LR (10), so the candidates start
    # far too high: 3.54 and 1.25 diverge after 4 steps each, 0.44 is the only finite one and wins as the
    # smallest. The budget freed by the two diverged races (no probe for them) pays for one more candidate, 0.156,
    # which wins again (it contracts w by 0.375 per step, 0.44 by 0.77), but no full race of 16 steps and 4 probe
    # batches fits any more: 12 + 4 + 4 + 20 + 20 = 60 of 72.
    finder = run_finder(
        Quadratic(4.0), num_steps=12, min_lr=1e-4, max_lr=10.0, suggestion=Race(budget_steps=72, candidates=3)
    )
    r = finder.result
    assert r.divergence_lr == pytest.approx(10.0)
    assert r.race_steps == (72 - 12) // 3 - PROBE_BATCHES == 16
    assert r.race_lrs == pytest.approx([10.0 * 2**-1.5 / 2 ** (1.5 * j) for j in range(4)])
    assert [len(losses) for losses in r.race_losses] == [4, 4, 16, 16]
    assert [math.isinf(s) for s in r.race_scores] == [True, True, False, False]
    assert r.race_scores[3] < r.race_scores[2]
    assert r.probe_forwards == 2 * PROBE_BATCHES
    assert r.cost_steps == 60
    assert r.suggestion == pytest.approx(r.race_lrs[3])  # 8 training steps are fewer than a race: no budget factor


# ----------------------------------------------------------------------------------------------- curvature
def exact_curvature_bound(model: TinyRegression, factor: float, weight_decay: float = 0.0) -> float:
    """``2 * factor / (lambda_max + wd)`` of the MSE Hessian on the first batch of ``loader()``: ``2/n X^T X``."""
    x, _ = next(iter(loader()))
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    lam = float(torch.linalg.eigvalsh(2.0 / len(x) * design.T @ design).max())
    return 2.0 * factor / (lam + weight_decay)


def curvature_run(**optimizer_kwargs: Any) -> tuple[TinyRegression, LRFinder]:
    torch.manual_seed(0)
    model = TinyRegression(base_lrs=(0.1,), **optimizer_kwargs)
    return model, run_finder(model, num_steps=10, max_lr=1e-2, suggestion=Curvature(scale=0.5))


def test_the_curvature_probe_estimates_lambda_max_from_below() -> None:
    """20 power iterations: within 3% of the exact top eigenvalue, and never above it (the bound is optimistic)."""
    model, finder = curvature_run()
    exact = exact_curvature_bound(model, 1.0)
    r = finder.result
    assert exact <= r.curvature_lr <= 1.03 * exact
    assert r.hessian_vector_products == 20


@pytest.mark.parametrize(
    ("kwargs", "factor"),
    [
        ({"momentum": 0.9}, 1.9),
        ({"momentum": 0.9, "dampening": 0.5}, 3.8),
        ({"momentum": 0.9, "nesterov": True}, 1.9 / 2.8),
        ({"momentum": 0.5, "weight_decay": 0.3}, 1.5),
    ],
)
def test_curvature_inside_the_finder_carries_the_sgd_factor(kwargs: dict, factor: float) -> None:
    _, plain = curvature_run()
    lam = 2.0 / plain.result.curvature_lr  # the same batch and start vector: the same estimate of lambda_max
    model, finder = curvature_run(**kwargs)
    r = finder.result
    expected = 2.0 * factor / (lam + kwargs.get("weight_decay", 0.0))
    assert r.curvature_lr == pytest.approx(expected, rel=1e-12)
    assert r.suggestion == pytest.approx(0.5 * expected, rel=1e-12)
    assert model.trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(0.5 * expected, rel=1e-12)
    assert factor == pytest.approx(
        sgd_stability_factor(kwargs.get("momentum", 0.0), kwargs.get("dampening", 0.0), kwargs.get("nesterov", False))
    )


def test_curvature_for_adam_is_the_plain_bound_with_a_warning() -> None:
    torch.manual_seed(0)
    model = TinyRegression(base_lrs=(0.1,), optimizer=torch.optim.Adam)
    with pytest.warns(UserWarning, match="curvature bound holds for"):
        finder = run_finder(model, num_steps=10, max_lr=1e-2, suggestion="curvature")
    _, plain = curvature_run()
    assert finder.result.curvature_lr == pytest.approx(plain.result.curvature_lr, rel=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_sgd_factor_is_torchs_stability_edge(nesterov: bool) -> None:
    """torch's SGD on ``f = lambda x^2 / 2`` converges just below ``2 * factor / lambda`` and diverges just above."""
    lam, beta = 3.0, 0.9
    edge = 2.0 * sgd_stability_factor(beta, nesterov=nesterov) / lam

    def final_abs(lr: float) -> float:
        x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([x], lr=lr, momentum=beta, nesterov=nesterov)
        for _ in range(3000):
            opt.zero_grad()
            (0.5 * lam * x**2).sum().backward()
            opt.step()
        return float(x.abs())

    assert final_abs(0.98 * edge) < 1e-3
    assert final_abs(1.02 * edge) > 1e3


# ----------------------------------------------------------------------------------------------- budget
@pytest.mark.parametrize(("budget", "candidates"), [(60, 2), (70, 5), (300, 5)])
def test_the_finder_never_exceeds_its_step_budget(budget: int, candidates: int) -> None:
    model = TinyRegression(base_lrs=(0.1,))
    calls = model.step_losses  # one entry per training_step call
    finder = LRFinder(
        num_steps=40, max_lr=10.0, save_png=False, suggestion=Race(budget_steps=budget, candidates=candidates)
    )
    after_finder: list[int] = []

    class CountAtTrainStart(pl.Callback):  # runs after the finder's on_train_start
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            after_finder.append(len(calls))

    torch.manual_seed(0)
    tiny_trainer([finder, CountAtTrainStart()], max_epochs=1).fit(model, loader())
    r = finder.result
    assert r is not None
    assert r.cost_steps == after_finder[0] <= budget  # every training_step call: steps and probe batches
    assert r.probe_forwards == PROBE_BATCHES * sum(1 for p in r.race_probe_losses if p) > 0
    assert len(r.race_lrs) >= candidates


def test_every_method_is_listed_and_the_default_is_the_race() -> None:
    assert ("race", *CURVE_METHODS, "curvature") == SUGGESTIONS
    assert LRFinder().suggestion == Race()


# ----------------------------------------------------------------------------------------------- races and schedules
class LRAtStep(TinyRegression):
    """Records the LR of the first group at every ``training_step`` call (trial steps included)."""

    def __init__(self) -> None:
        super().__init__(base_lrs=(0.1,))
        self.lrs_seen: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.lrs_seen.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return super().training_step(batch, batch_idx)


def race_lrs_seen(model: LRAtStep, finder: LRFinder, race: int) -> list[float]:
    r = finder.result
    assert r is not None
    start = r.steps + sum(len(losses) for losses in r.race_losses[:race])
    return model.lrs_seen[start : start + len(r.race_losses[race])]


@pytest.mark.parametrize("follow", [True, False])
def test_a_race_runs_the_trainers_schedule_compressed_to_its_length(follow: bool) -> None:
    """Beside ``CosineAnnealing(T_max=T)`` over a run of T = 40 steps, race step k of h runs at
    ``candidate * (1 + cos(pi * floor(k * T / h) / T)) / 2``; with ``follow_schedule=False`` at the candidate."""
    model = LRAtStep()
    total = 5 * 8
    race = Race(candidates=3, budget_steps=12 + 3 * 10, probe_batches=0, follow_schedule=follow)
    finder = LRFinder(num_steps=12, max_lr=1.0, save_png=False, apply=False, suggestion=race)
    torch.manual_seed(0)
    tiny_trainer([finder, CosineAnnealing(T_max=total, interval="step")], max_epochs=5).fit(model, loader())
    r = finder.result
    assert r is not None
    assert r.followed_schedule is follow
    h = r.race_steps
    for i, candidate in enumerate(r.race_lrs):
        seen = race_lrs_seen(model, finder, i)
        factors = [(1 + math.cos(math.pi * (k * total // h) / total)) / 2 if follow else 1.0 for k in range(len(seen))]
        assert seen == pytest.approx([candidate * f for f in factors], rel=1e-12)
    assert r.budget_factor == pytest.approx((h / total) ** (SCHEDULED_BUDGET_EXPONENT if follow else BUDGET_EXPONENT))


def test_a_race_beside_sign_alternation_or_no_schedule_runs_at_a_constant_lr() -> None:
    """A negative factor (sign alternation) is not compressed into a race; nor is anything without a schedule."""
    for callbacks in ([SignAlternation(period=2, interval="step")], []):
        model = LRAtStep()
        race = Race(candidates=3, budget_steps=42, probe_batches=0)
        finder = LRFinder(num_steps=12, max_lr=1.0, save_png=False, apply=False, suggestion=race)
        torch.manual_seed(0)
        tiny_trainer([finder, *callbacks], max_epochs=2).fit(model, loader())
        assert finder.result is not None
        assert not finder.result.followed_schedule
        assert race_lrs_seen(model, finder, 0) == [finder.result.race_lrs[0]] * finder.result.race_steps


def test_a_race_that_learned_nothing_lets_the_smallest_candidate_win() -> None:
    """No race brings its score 10% below the starting loss: the largest tied candidate would be a guess, and a
    too-large LR costs more than a too-small one, so the smallest finite candidate wins."""
    lrs, scores = [0.4, 0.2, 0.1, 0.05], [math.inf, 0.95, 0.97, 0.99]
    assert choose_race(lrs, scores) == 1
    assert choose_race(lrs, scores, start=1.0) == 3
    assert choose_race(lrs, scores, start=1.2) == 1  # 0.95 is more than 10% below 1.2: informative
    assert choose_race(lrs, [math.inf] * 4, start=1.0) is None
    assert starting_loss([1.0, 3.0, math.nan, 2.0, 2.0, 9.0]) == 2.0


def test_a_full_batch_run_keeps_the_race_winner() -> None:
    """One optimizer step per epoch sees the whole data set: no gradient noise, no noise floor, no budget factor."""
    model = TinyRegression(base_lrs=(0.1,))
    torch.manual_seed(0)
    finder = LRFinder(num_steps=12, max_lr=1.0, save_png=False, suggestion=Race(candidates=3, budget_steps=42))
    tiny_trainer([finder], max_epochs=100).fit(model, loader(n=64, batch_size=64))
    r = finder.result
    assert r is not None
    assert r.train_steps == 100
    assert r.budget_factor == 1.0
    assert r.suggestion == r.race_winner

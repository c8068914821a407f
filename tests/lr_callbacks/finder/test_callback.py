"""LRFinder: exact restoration (sweep and races), mid-training runs, group ratios, schedules, logging, arguments."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

import lr_callbacks
from lr_callbacks import Curvature, LRFinder, Race, StepDecay, Valley
from lr_callbacks.finder.curve import smooth, sweep_lrs
from tests.helpers.finder import Probe, TwoOptimizers, assert_identical, bn_regression, shuffled_loader
from tests.helpers.tiny import LRRecorder, TinyRegression, loader, regression_data, tiny_trainer


# ----------------------------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no logger the PNG goes to the trainer's root dir, the working directory by default."""
    monkeypatch.chdir(tmp_path)


# ----------------------------------------------------------------------------------------------- restoration
@pytest.mark.parametrize(
    ("optimizer", "kwargs"),
    [(torch.optim.SGD, {"momentum": 0.9}), (torch.optim.Adam, {}), (torch.optim.AdamW, {"weight_decay": 0.1})],
)
@pytest.mark.parametrize("fail_in", [None, "sweep", "race", "probe"])
def test_everything_is_restored_bit_for_bit(optimizer: Any, kwargs: dict, fail_in: str | None) -> None:
    model = bn_regression(optimizer, **kwargs)
    finder = LRFinder(
        num_steps=20, max_lr=1.0, apply=False, run_at_start=False, suggestion=Race(budget_steps=60, candidates=3)
    )
    # The sweep makes 20 calls of training_step, then the first race 9 (+ 4 probe batches): call 25 is a race step.
    probe = Probe(finder, epoch=1, fail_at={None: None, "sweep": 4, "race": 25, "probe": "probe"}[fail_in])
    tiny_trainer([probe], max_epochs=2).fit(model, shuffled_loader())

    assert probe.before is not None
    assert probe.after is not None
    assert probe.before["optimizers"][0]["state"], "the optimizer had state before the sweep"
    assert_identical(probe.before, probe.after)
    if fail_in is None:
        assert probe.error is None
        assert finder.result is not None
        assert finder.result.steps == 20
        assert finder.result.race_steps == 9
        assert len(finder.result.race_lrs) >= 3
        assert finder.result.cost_steps <= 60
        assert finder.result.probe_forwards == 4 * sum(1 for p in finder.result.race_probe_losses if p)
    else:
        assert isinstance(probe.error, RuntimeError)
        assert "injected" in str(probe.error)
        assert finder.result is None
        assert model.failed_with_grad is (fail_in != "probe")  # a probe runs without gradients, a step with them


def test_every_race_starts_from_the_snapshot_on_the_same_batches() -> None:
    """The first loss of each race is the loss of the snapshot's weights on the first batch: bit for bit the
    sweep's first loss, with shuffled batches and dropout (data position and RNG restored)."""
    model = bn_regression(torch.optim.Adam)
    finder = LRFinder(
        num_steps=20, max_lr=1.0, apply=False, run_at_start=False, suggestion=Race(budget_steps=80, candidates=4)
    )
    probe = Probe(finder, epoch=1)
    tiny_trainer([probe], max_epochs=2).fit(model, shuffled_loader())
    result = finder.result
    assert result is not None
    assert len(result.race_losses) >= 4
    assert all(race[0] == result.losses[0] for race in result.race_losses)
    assert len({race[1] for race in result.race_losses if len(race) > 1}) > 1  # ...and then the LRs differ


@pytest.mark.parametrize("where", ["start", "epoch1"])
def test_a_finder_that_applies_nothing_is_invisible_to_training(where: str) -> None:
    """Same data order, same RNG, same weights at the end as a run without the finder."""

    def run(with_finder: bool) -> tuple[list[torch.Tensor], list[float]]:
        torch.manual_seed(0)
        model = TinyRegression(base_lrs=(0.05,), momentum=0.9)
        finder = LRFinder(
            num_steps=15, apply=False, run_at_start=where == "start", run_at_epoch=1 if where == "epoch1" else None
        )
        tiny_trainer([finder] if with_finder else [], max_epochs=3).fit(model, shuffled_loader())
        losses = model.step_losses
        if with_finder:  # drop the sweep's and the races' steps (before epoch 0 or before epoch 1)
            assert finder.result is not None
            assert finder.result.epoch == (0 if where == "start" else 1)
            assert finder.result.race_lrs, "the default suggestion races"
            first = 0 if where == "start" else 8
            losses = losses[:first] + losses[first + finder.result.cost_steps :]  # steps and probe batches
        return [p.detach().clone() for p in model.parameters()], losses

    params, losses = run(True)
    ref_params, ref_losses = run(False)
    assert losses == ref_losses
    assert all(torch.equal(p, q) for p, q in zip(params, ref_params))


def test_a_loader_with_its_own_generator_keeps_its_order() -> None:
    """A DataLoader drawing its order from its own ``generator``: the finder's trials draw from it too, and restore
    it, so every race sees the sweep's first batch and the epoch after the finder has the order it would have had."""

    def run(with_finder: bool) -> tuple[list[float], LRFinder]:
        torch.manual_seed(0)
        model = TinyRegression(base_lrs=(0.05,))
        data = DataLoader(regression_data(64), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(7))
        finder = LRFinder(num_steps=15, max_lr=1.0, apply=False, suggestion=Race(budget_steps=45, candidates=3))
        tiny_trainer([finder] if with_finder else [], max_epochs=2).fit(model, data)
        return model.step_losses, finder

    losses, finder = run(True)
    reference, _ = run(False)
    result = finder.result
    assert result is not None
    assert all(race[0] == result.losses[0] for race in result.race_losses)
    assert losses[result.cost_steps :] == reference


# ----------------------------------------------------------------------------------------------- the curve
def test_mid_training_sweep_records_a_full_curve_with_fresh_bias_correction() -> None:
    torch.manual_seed(0)
    model = TinyRegression(base_lrs=(0.05,))
    finder = LRFinder(min_lr=1e-6, max_lr=1e-2, num_steps=30, run_at_start=False, run_at_epoch=2, apply=False)
    tiny_trainer([finder], max_epochs=3).fit(model, loader())
    result = finder.result
    assert result is not None
    assert result.epoch == 2
    assert result.steps == 30
    assert not result.diverged
    assert result.lrs == pytest.approx(sweep_lrs(1e-6, 1e-2, 30))
    # The i-th smoothed value is corrected by 1 - beta**(i+1), counting from the sweep's own first step.
    assert result.smoothed_losses == pytest.approx(smooth(result.losses, 0.98))
    assert result.smoothed_losses[0] == pytest.approx(result.losses[0])


def test_sweep_stops_on_divergence() -> None:
    torch.manual_seed(0)
    finder = LRFinder(min_lr=1e-4, max_lr=1e3, num_steps=60, apply=False)
    tiny_trainer([finder], max_epochs=1).fit(TinyRegression(base_lrs=(0.05,)), loader())
    result = finder.result
    assert result is not None
    assert result.diverged
    assert 5 < result.steps < 60
    last, best = result.smoothed_losses[-1], min(result.smoothed_losses[:-1])
    assert not math.isfinite(last) or last > 4.0 * best
    assert all(s <= 4.0 * min(result.smoothed_losses[: i + 1]) for i, s in enumerate(result.smoothed_losses[:-1]))


# ----------------------------------------------------------------------------------------------- applying it
class GroupLRs(TinyRegression):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.seen_lrs = getattr(self, "seen_lrs", [])
        self.seen_lrs.append([g["lr"] for g in self.optimizers().param_groups])
        return super().training_step(batch, batch_idx)


def test_group_ratios_are_kept_and_the_suggestion_is_the_base_of_a_schedule() -> None:
    torch.manual_seed(0)
    model = GroupLRs(base_lrs=(0.1, 0.05))
    finder = LRFinder(num_steps=40, max_lr=1.0, suggestion="min_div10")
    recorder = LRRecorder()
    tiny_trainer([finder, StepDecay(step_size=1, gamma=0.5), recorder], max_epochs=2).fit(model, loader())

    sweep = model.seen_lrs[: finder.result.steps]
    assert all(a == pytest.approx(2.0 * b) for a, b in sweep)
    assert [a for a, _ in sweep] == pytest.approx(finder.result.lrs)
    assert not finder.result.race_lrs  # a curve method runs no race
    s = finder.result.suggestion
    assert s is not None
    optimizer = model.trainer.optimizers[0]
    assert [g["initial_lr"] for g in optimizer.param_groups] == pytest.approx([s, s / 2])
    assert recorder.lrs[0] == pytest.approx([s, s / 2])  # epoch 0 of StepDecay: the base
    assert recorder.lrs[8] == pytest.approx([s / 2, s / 4])  # epoch 1: decayed from the suggestion


class WithLambdaLR(TinyRegression):
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5**epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def test_races_keep_the_group_ratios_too() -> None:
    torch.manual_seed(0)
    model = GroupLRs(base_lrs=(0.1, 0.05))
    finder = LRFinder(num_steps=20, max_lr=1.0, suggestion=Race(budget_steps=60, candidates=3))
    tiny_trainer([finder], max_epochs=1).fit(model, loader())
    result = finder.result
    races = model.seen_lrs[result.steps : result.cost_steps]  # race steps, then each race's probe batches
    assert len(races) == result.cost_steps - result.steps > 0
    assert all(a == pytest.approx(2.0 * b) for a, b in races)
    expected = [
        lr
        for lr, losses, probed in zip(result.race_lrs, result.race_losses, result.race_probe_losses)
        for _ in losses + probed
    ]
    assert [a for a, _ in races] == pytest.approx(expected)
    assert result.suggestion is not None
    assert [g["initial_lr"] for g in model.trainer.optimizers[0].param_groups] == pytest.approx(
        [result.suggestion, result.suggestion / 2]
    )


def test_a_torch_lambda_scheduler_does_not_overwrite_the_suggestion() -> None:
    torch.manual_seed(0)
    finder = LRFinder(num_steps=30, max_lr=1.0, suggestion="min_div10")
    recorder = LRRecorder()
    tiny_trainer([finder, recorder], max_epochs=3).fit(WithLambdaLR(), loader())
    s = finder.result.suggestion
    assert s is not None
    assert s != pytest.approx(0.05)
    assert [lrs[0] for lrs in recorder.lrs[::8]] == pytest.approx([s, s / 2, s / 4])


def test_several_optimizers_are_swept_together_and_restored() -> None:
    torch.manual_seed(0)
    model = TwoOptimizers()
    model.fail_at = None  # the probe arms this attribute; this module never fails
    finder = LRFinder(num_steps=25, max_lr=1.0, suggestion="min_div10", run_at_start=False)
    probe = Probe(finder, epoch=1)
    tiny_trainer([probe], max_epochs=2).fit(model, loader())
    assert_identical(probe.before["module"], probe.after["module"])
    assert_identical([o["state"] for o in probe.before["optimizers"]], [o["state"] for o in probe.after["optimizers"]])
    sweep = model.seen_lrs[8 : 8 + finder.result.steps]
    assert all(a == pytest.approx(10.0 * b) for a, b in sweep)
    s = finder.result.suggestion
    opt_a, opt_b = model.trainer.optimizers
    assert (opt_a.param_groups[0]["initial_lr"], opt_b.param_groups[0]["initial_lr"]) == pytest.approx((s, s / 10))


class Accumulating(TinyRegression):
    def __init__(self) -> None:
        super().__init__(base_lrs=(0.05,))
        self.clip_calls = 0

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        self.clip_calls += 1
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)


def test_accumulation_and_clipping_follow_the_trainer() -> None:
    torch.manual_seed(0)
    model = Accumulating()
    finder = LRFinder(num_steps=10, max_lr=1e-2, apply=False, suggestion="min_div10")
    tiny_trainer([finder], max_epochs=1, accumulate_grad_batches=2, gradient_clip_val=0.5).fit(model, loader())
    assert finder.result.steps == 10
    assert len(model.step_losses) == 2 * 10 + 8  # two batches per sweep step, then the real epoch
    assert finder.result.losses[0] == pytest.approx(sum(model.step_losses[:2]) / 2)
    assert model.clip_calls == 10 + 4  # once per optimizer step: sweep + epoch (8 batches / 2)


def test_the_suggestion_is_broadcast_from_rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = TinyRegression(base_lrs=(0.05,))
    trainer = tiny_trainer([], max_epochs=1)
    reduced: list[float] = []

    def reduce(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dtype == torch.float64:  # the finder's losses
            reduced.append(float(value))
        return value

    monkeypatch.setattr(trainer.strategy, "reduce", reduce)
    monkeypatch.setattr(trainer.strategy, "broadcast", lambda obj, src=0: 0.0123 if isinstance(obj, float) else obj)
    finder = LRFinder(num_steps=12, max_lr=1e-2)
    trainer.callbacks.append(finder)
    trainer.fit(model, loader())
    # Every sweep and race step's loss, and every probe loss, is averaged over ranks.
    assert finder.result.steps == 12
    assert finder.result.probe_forwards > 0
    assert len(reduced) == finder.result.cost_steps > finder.result.optimizer_steps > 12
    assert finder.result.suggestion == 0.0123
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(0.0123)


def test_resuming_from_a_checkpoint_skips_the_sweep(tmp_path: Any) -> None:
    torch.manual_seed(0)
    finder = LRFinder(num_steps=12, max_lr=1e-2)
    trainer = tiny_trainer([finder], max_epochs=1)
    trainer.fit(TinyRegression(), loader())
    trainer.save_checkpoint(tmp_path / "last.ckpt")

    resumed = LRFinder(num_steps=12, max_lr=1e-2)
    calls: list[int] = []
    resumed.find = lambda *a: calls.append(1)  # type: ignore[method-assign]
    tiny_trainer([resumed], max_epochs=2).fit(TinyRegression(), loader(), ckpt_path=tmp_path / "last.ckpt")
    assert calls == []
    assert resumed.result is not None
    assert resumed.result.suggestion == finder.result.suggestion


# ----------------------------------------------------------------------------------------------- outputs
def test_png_tensorboard_figure_and_scalars(tmp_path: Any) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    finder = LRFinder(num_steps=20, max_lr=1.0)
    logger = TensorBoardLogger(tmp_path, name="run")
    tiny_trainer([finder], max_epochs=1, logger=logger).fit(TinyRegression(), loader())
    logger.experiment.flush()
    assert (tmp_path / "run" / "version_0" / "lr_finder.png").stat().st_size > 1000
    events = EventAccumulator(str(tmp_path / "run" / "version_0"), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert "lr_finder" in events.Tags()["images"]
    losses = events.Scalars("lr_finder/loss")
    assert [e.value for e in losses] == pytest.approx(finder.result.losses)
    assert events.Scalars("lr_finder/suggestion")[0].value == pytest.approx(finder.result.suggestion)
    assert [e.value for e in events.Scalars("lr_finder/race_lr")] == pytest.approx(finder.result.race_lrs)
    scores = [e.value for e in events.Scalars("lr_finder/race_score")]
    assert scores == pytest.approx(finder.result.race_scores)
    assert events.Scalars("lr_finder/optimizer_steps")[0].value == finder.result.optimizer_steps
    assert events.Scalars("lr_finder/cost_steps")[0].value == finder.result.cost_steps > finder.result.optimizer_steps


def test_no_logger_saves_the_png_to_save_dir_and_plot_returns_a_figure(tmp_path: Any) -> None:
    from matplotlib.figure import Figure

    torch.manual_seed(0)
    finder = LRFinder(num_steps=20, max_lr=1.0, save_dir=tmp_path)
    tiny_trainer([finder], max_epochs=1).fit(TinyRegression(), loader())
    assert (tmp_path / "lr_finder.png").exists()
    figure = finder.plot()
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.lines) == 4
    assert list(ax.lines[2].get_xdata()) == pytest.approx(finder.result.race_lrs)


def test_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    finder = LRFinder(num_steps=12, max_lr=1e-2, save_dir=None, run_at_epoch=[1])
    tiny_trainer([finder], max_epochs=2).fit(TinyRegression(), loader())
    assert [r.epoch for r in finder.results] == [0, 1]
    other = LRFinder(num_steps=12, max_lr=1e-2)
    other.load_state_dict(finder.state_dict())
    assert other.result == finder.result
    assert other._done_epochs == [0, 1]
    assert finder.state_key == other.state_key
    assert "num_steps" in finder.state_key


# ----------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"min_lr": 1.0, "max_lr": 1.0}, "min_lr"),
        ({"min_lr": 0.0}, "min_lr"),
        ({"num_steps": 1}, "num_steps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"mode": "cosine"}, "mode"),
        ({"suggestion": "magic"}, "suggestion"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"smoothing": -0.1}, "smoothing"),
        ({"diverge_threshold": 1.0}, "diverge_threshold"),
        ({"run_at_epoch": -1}, "run_at_epoch"),
        ({"suggestion": Race(budget_steps=129)}, "budget_steps"),  # 100 sweep steps + 5 races of 2 steps, 4 probes
        ({"suggestion": Race(probe_batches=0, budget_steps=109)}, "budget_steps"),
        ({"suggestion": "valley", "budget_steps": 300}, "budget_steps"),  # an argument of another method
        ({"suggestion": "curvature", "race_candidates": 3}, "race_candidates"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        LRFinder(**kwargs)


def test_linear_mode_may_start_at_zero() -> None:
    assert LRFinder(min_lr=0.0, max_lr=1.0, mode="linear").min_lr == 0.0


def test_a_curve_method_needs_no_race_budget() -> None:
    assert LRFinder(num_steps=2, suggestion=Valley()).suggestion == Valley()


@pytest.mark.parametrize(
    ("make", "kwargs", "name"),
    [
        (Race, {"candidates": 1}, "candidates"),
        (Race, {"probe_batches": -1}, "probe_batches"),
        (Race, {"probe_batches": 1.5}, "probe_batches"),
        (Race, {"train_steps": 0}, "train_steps"),
        (Race, {"train_steps": 10.5}, "train_steps"),
        (Race, {"budget_steps": 0}, "budget_steps"),
        (Curvature, {"scale": 0.0}, "scale"),
    ],
)
def test_bad_method_arguments_raise_naming_the_argument(make: Any, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        make(**kwargs)


def test_the_old_arguments_still_work_with_a_future_warning() -> None:
    with pytest.warns(FutureWarning, match=r"suggestion=Race\(candidates=3, budget_steps=200"):
        finder = LRFinder(budget_steps=200, race_candidates=3, train_steps=50)
    assert finder.suggestion == Race(candidates=3, budget_steps=200, train_steps=50)
    with pytest.warns(FutureWarning, match=r"suggestion=Curvature\(scale=0.25\)"):
        assert LRFinder(suggestion="curvature", curvature_scale=0.25).suggestion == Curvature(0.25)


def test_old_arguments_are_refused_beside_a_method_object_and_unknown_ones_are_a_type_error() -> None:
    with pytest.raises(ValueError, match="beside a suggestion object"):
        LRFinder(suggestion=Race(), budget_steps=200)
    with pytest.raises(TypeError, match="budget_step"):
        LRFinder(budget_step=200)


@pytest.mark.parametrize("name", ["race", "centered_min", "steepest", "valley", "min_div10", "curvature"])
def test_a_name_is_the_method_with_its_defaults(name: str) -> None:
    method = LRFinder(suggestion=name).suggestion
    assert method.name == name
    assert method == type(method)()
    assert eval(repr(method), vars(lr_callbacks)) == method  # noqa: S307  (our own repr, evaluated back)

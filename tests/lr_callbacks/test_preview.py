"""``preview`` foresees, step for step and to the bit, the LRs a real ``Trainer`` run steps with.

Each test fits the tiny models with some callbacks, records the LR of every group at every optimizer step,
and compares it with ``preview`` of the same callbacks (fresh instances, made the same way).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lr_callbacks import (
    CosineAnnealing,
    CosineWarmRestarts,
    LRFinder,
    OneCycle,
    ReduceOnPlateau,
    SignAlternation,
    SpikeAdaptiveLR,
    SpikeGuard,
    StepDecay,
    Warmup,
    preview,
)
from lr_callbacks.spike import Backoff, TailDetector
from tests.helpers.lr_cases import CASE_IDS, CASES, Case, PerOptimizerLRs
from tests.helpers.spike import Scripted
from tests.helpers.tiny import LRRecorder, TinyRegression, loader, tiny_trainer
from tests.helpers.tiny_manual import D_LRS, G_LR, TinyGAN

BASES = (0.1, -0.02)  # two param groups, one of them negative: every group scales from its own base
BATCHES, EPOCHS = 8, 3


def _fit(callbacks: list[Callback], module: pl.LightningModule | None = None, **kwargs: Any) -> LRRecorder:
    torch.manual_seed(0)
    recorder = LRRecorder()
    trainer = tiny_trainer([*callbacks, recorder], **{"max_epochs": EPOCHS, **kwargs})
    trainer.fit(module or TinyRegression(BASES), loader(n=8 * BATCHES))
    return recorder


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_preview_is_the_run_for_every_schedule_and_modifier(case: Case, interval: str) -> None:
    recorder = _fit([case.make(interval)])
    foreseen = preview([case.make(interval)], epochs=EPOCHS, steps_per_epoch=BATCHES, base_lrs=BASES)
    assert len(recorder.lrs) == EPOCHS * BATCHES
    assert [row[0] for row in foreseen.lrs] == recorder.lrs
    assert foreseen.unforeseen == []


def _composition(schedule_interval: str, sign_interval: str) -> list[Callback]:
    return [
        SignAlternation(period=2, negative_scale=0.5, interval=sign_interval),
        CosineAnnealing(T_max=20 if schedule_interval == "step" else EPOCHS, eta_min=1e-3, interval=schedule_interval),
        Warmup(duration=5, start_factor=0.1),
    ]


@pytest.mark.parametrize(
    ("schedule_interval", "sign_interval"), [("epoch", "epoch"), ("step", "step"), ("epoch", "step")]
)
def test_preview_is_the_run_for_warmup_cosine_and_sign_alternation(schedule_interval: str, sign_interval: str) -> None:
    recorder = _fit(_composition(schedule_interval, sign_interval))
    foreseen = preview(
        _composition(schedule_interval, sign_interval), epochs=EPOCHS, steps_per_epoch=BATCHES, base_lrs=BASES
    )
    assert [row[0] for row in foreseen.lrs] == recorder.lrs
    # warmup ramps, the sign flips, the cosine anneals: the comparison is not of a flat line
    first = foreseen.series(0, 0)
    assert first[0] == pytest.approx(0.01)
    assert min(first) < 0 < max(first)


def _restarts_and_warmup() -> list[Callback]:
    return [CosineWarmRestarts(T_0=1, T_mult=2, interval="step"), Warmup(duration=4, start_factor=0.25)]


def test_preview_counts_accumulation_windows_as_steps() -> None:
    """8 batches per epoch, accumulating 3: 3 optimizer steps per epoch, the last window short; SGDR's
    fractional epoch moves by thirds."""
    recorder = _fit(_restarts_and_warmup(), accumulate_grad_batches=3)
    foreseen = preview(
        _restarts_and_warmup(), epochs=EPOCHS, batches_per_epoch=BATCHES, accumulate_grad_batches=3, base_lrs=BASES
    )
    assert foreseen.steps_per_epoch == 3
    assert [row[0] for row in foreseen.lrs] == recorder.lrs


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_one_cycle_learns_its_length_as_from_the_trainer(interval: str) -> None:
    """``total_steps=None``: the trainer's estimated stepping batches (cut by ``max_steps``) or ``max_epochs``."""
    recorder = _fit([OneCycle(max_lr=0.5, pct_start=0.4, interval=interval)], max_epochs=4, max_steps=27)
    foreseen = preview([OneCycle(max_lr=0.5, pct_start=0.4, interval=interval)], epochs=4, steps_per_epoch=BATCHES,
                       max_steps=27, base_lrs=BASES)  # fmt: skip
    assert foreseen.steps == 27
    assert [row[0] for row in foreseen.lrs] == recorder.lrs


def test_preview_of_two_optimizers_is_the_run_per_optimizer_and_group() -> None:
    """Manual optimization, a generator and a discriminator (two groups) stepping once each per batch."""
    torch.manual_seed(0)
    recorder = PerOptimizerLRs()
    callbacks = _composition("step", "epoch")
    trainer = tiny_trainer([*callbacks, recorder], max_epochs=EPOCHS)
    trainer.fit(TinyGAN(), loader(n=8 * BATCHES))
    foreseen = preview(
        _composition("step", "epoch"), epochs=EPOCHS, steps_per_epoch=BATCHES, base_lrs=[[G_LR], list(D_LRS)]
    )
    assert [row[0] for row in foreseen.lrs] == recorder.lrs[0]
    assert [row[1] for row in foreseen.lrs] == recorder.lrs[1]


class MetricRecorder(Callback):
    """The value of ``monitor`` that ReduceOnPlateau's check reads, at each check."""

    def __init__(self, monitor: str, interval: str) -> None:
        self.monitor, self.interval = monitor, interval
        self.values: list[float] = []
        self._last_step = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "epoch":
            self.values.append(float(trainer.callback_metrics[self.monitor]))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.interval == "step" and trainer.global_step != self._last_step:
            self._last_step = trainer.global_step
            self.values.append(float(trainer.callback_metrics[self.monitor]))


def _plateau(interval: str) -> list[Callback]:
    # mode="max" on a falling loss: no check improves, so the LR drops after every `patience + 1` checks,
    # down to each group's floor.
    return [
        ReduceOnPlateau("train_loss", mode="max", factor=0.5, patience=0 if interval == "epoch" else 3,
                        min_lr=[0.01, 0.004], interval=interval),
        Warmup(duration=20, start_factor=0.5),  # still ramping at the first reductions
    ]  # fmt: skip


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_plateau_with_the_metric_the_run_logged_is_the_run(interval: str) -> None:
    metric = MetricRecorder("train_loss", interval)
    recorder = _fit([*_plateau(interval), metric], max_epochs=5)
    assert len(metric.values) == (5 if interval == "epoch" else 5 * BATCHES)
    foreseen = preview(
        _plateau(interval), epochs=5, steps_per_epoch=BATCHES, base_lrs=BASES, metrics={"train_loss": metric.values}
    )
    assert [row[0] for row in foreseen.lrs] == recorder.lrs
    assert foreseen.unforeseen == []
    assert foreseen.series(0, 0)[-1] <= BASES[0] * 0.5**2  # reduced twice at least


def test_plateau_reduces_as_torch_would_on_a_scripted_metric() -> None:
    """The decision is ReduceOnPlateau's own: torch's ReduceLROnPlateau on the same values agrees."""
    values = [1.0, 0.9, 0.9, 0.9, 0.95, 0.5, 0.6, 0.6, 0.6, 0.6]
    foreseen = preview([ReduceOnPlateau("val", patience=1, factor=0.5, cooldown=1)], epochs=10, steps_per_epoch=2,
                       base_lrs=0.1, metrics=values)  # fmt: skip
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1, factor=0.5, cooldown=1)
    expected = []
    for value in values:
        expected += [optimizer.param_groups[0]["lr"]] * 2
        scheduler.step(value)
    assert foreseen.series() == expected
    assert min(expected) < 0.1


def test_preview_leaves_the_callbacks_as_they_were() -> None:
    plateau, warmup = ReduceOnPlateau("val", patience=0), Warmup(duration=4)
    preview([plateau, warmup], epochs=4, steps_per_epoch=1, base_lrs=0.1, metrics=[1.0, 1.0, 1.0, 1.0])
    assert plateau.scales == []
    assert plateau.num_bad == 0
    assert warmup._t == 0.0


def test_without_its_metric_a_plateau_is_held_flat_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"ReduceOnPlateau\(monitor='val_loss'\) cannot be foreseen without its "
                                         r"metric: pass `metrics` with 4 value\(s\), one per epoch"):  # fmt: skip
        foreseen = preview([ReduceOnPlateau("val_loss", patience=0)], epochs=4, steps_per_epoch=2, base_lrs=0.1)
    assert foreseen.series() == [0.1] * 8
    assert len(foreseen.unforeseen) == 1


class LossRecorder(Callback):
    """The values SpikeAdaptiveLR's checks read: each epoch's mean training-step loss, and each step's loss."""

    def __init__(self) -> None:
        self.epochs: list[float] = []
        self.steps: list[float] = []
        self._sum, self._count = 0.0, 0

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self.steps.append(loss.item())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        self._sum += float(outputs["loss"])
        self._count += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(self._sum / self._count)
        self._sum, self._count = 0.0, 0


def _spike_run(callbacks: list[Callback], script: list[float], per_step: bool) -> tuple[LRRecorder, LossRecorder]:
    """A real fit of a training loss multiplied by ``script`` (per epoch or per step), with its LRs and losses."""
    torch.manual_seed(0)
    lrs, losses = LRRecorder(), LossRecorder()
    epochs = len(script) // BATCHES if per_step else len(script)
    trainer = tiny_trainer([*callbacks, losses, lrs], max_epochs=epochs)
    trainer.fit(Scripted(script, mode="scale", per_step=per_step, base_lrs=BASES), loader(n=8 * BATCHES))
    return lrs, losses


def _seed_rule_composition() -> list[Callback]:
    return [Warmup(duration=5, start_factor=0.1), SpikeAdaptiveLR(recovery_patience=2), CosineAnnealing(T_max=6)]


def test_spike_adaptive_with_the_runs_own_epoch_losses_is_the_run() -> None:
    """The seed's epoch rule (with recovery), under warmup and cosine: the preview fed the per-epoch mean losses the
    run produced steps with the run's LRs."""
    recorder, losses = _spike_run(_seed_rule_composition(), [1.0, 3.0, 1.0, 1.0, 4.0, 1.0], per_step=False)
    foreseen = preview(_seed_rule_composition(), epochs=6, steps_per_epoch=BATCHES, base_lrs=BASES,
                       metrics={"loss": losses.epochs})  # fmt: skip
    assert [row[0] for row in foreseen.lrs] == recorder.lrs
    assert foreseen.unforeseen == []
    # The spike scale moved the LR: the comparison is not of warmup and cosine alone.
    without = preview(_seed_rule_composition()[::2], epochs=6, steps_per_epoch=BATCHES, base_lrs=BASES)
    assert foreseen.series() != without.series()


def test_spike_adaptive_epoch_rule_with_rollback_holds_its_baseline_as_the_run_does() -> None:
    """With rollback the seed rule keeps comparing with the last good epoch's loss: 1.0, then 2.0 and 2.1 are both
    spikes against 1.0 (and 2.1 against 2.0 would not be)."""
    torch.manual_seed(0)
    lrs, losses = LRRecorder(), LossRecorder()
    tiny_trainer([SpikeAdaptiveLR(rollback=True), losses, lrs], max_epochs=4).fit(
        Scripted([1.0, 2.0, 2.1, 2.1], base_lrs=BASES), loader(n=8 * BATCHES)
    )
    foreseen = preview([SpikeAdaptiveLR(rollback=True)], epochs=4, steps_per_epoch=BATCHES, base_lrs=BASES,
                       metrics=losses.epochs)  # fmt: skip
    assert [row[0] for row in foreseen.lrs] == lrs.lrs
    assert foreseen.series()[::BATCHES] == [0.1, 0.1, 0.05, 0.025]


def test_spike_adaptive_at_step_level_with_the_runs_own_losses_is_the_run() -> None:
    """The step default's detector with rollback and backoff: its decisions depend on the losses alone, so the
    per-step losses the run saw give its LRs, though the rollbacks changed the weights they came from."""

    def callbacks() -> list[Callback]:
        return [
            SpikeGuard(TailDetector(warmup=5), reactions=("rollback", "backoff"), backoff=Backoff(recovery_patience=4))
        ]

    script = [1e3 if step in (12, 30) else 1.0 for step in range(6 * BATCHES)]
    recorder, losses = _spike_run(callbacks(), script, per_step=True)
    foreseen = preview(callbacks(), epochs=6, steps_per_epoch=BATCHES, base_lrs=BASES, metrics=losses.steps)
    assert [row[0] for row in foreseen.lrs] == recorder.lrs
    assert {row[0][0] for row in foreseen.lrs} == {BASES[0], BASES[0] / 2}  # backed off, and recovered


def test_the_finder_and_a_gradient_norm_watcher_are_not_foreseen_and_say_so() -> None:
    """The finder's suggestion is unknown before fit; a spike detector that also reads gradient norms depends on
    the weights. Both are held where they start."""
    with pytest.warns(UserWarning, match="cannot be foreseen") as caught:
        foreseen = preview([SpikeGuard(grad_detector=TailDetector()), LRFinder(), StepDecay(1, 0.5)], epochs=3,
                           steps_per_epoch=1, base_lrs=0.1, metrics=[1.0, 50.0, 90.0])  # fmt: skip
    messages = sorted(str(w.message) for w in caught)
    assert messages[0].startswith("LRFinder cannot be foreseen: at fit start it replaces the base LRs")
    assert messages[1].startswith("SpikeGuard(monitor=None) cannot be foreseen: it also watches the gradient norm")
    assert sorted(foreseen.unforeseen) == messages
    assert foreseen.series() == [0.1, 0.05, 0.025]  # the schedule alone


def test_spike_adaptive_without_its_metric_is_held_flat_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"SpikeAdaptiveLR\(monitor='loss'\) cannot be foreseen without its metric: "
                                         r"pass `metrics` with 3 value\(s\), one per epoch"):  # fmt: skip
        foreseen = preview([SpikeAdaptiveLR()], epochs=3, steps_per_epoch=2, base_lrs=0.1)
    assert foreseen.series() == [0.1] * 6


def test_two_schedules_are_refused_as_the_trainer_refuses_them() -> None:
    with pytest.raises(
        MisconfigurationException, match=r"At most one schedule callback .* \['StepDecay', 'CosineAnnealing'\]"
    ):
        preview([StepDecay(2), CosineAnnealing(5)], epochs=2, steps_per_epoch=2, base_lrs=0.1)


def test_callbacks_that_do_not_set_the_lr_are_ignored() -> None:
    foreseen = preview([LearningRateMonitor(), StepDecay(1, 0.5)], epochs=2, steps_per_epoch=1, base_lrs=[0.2, 0.4])
    assert foreseen.lrs == [[[0.2, 0.4]], [[0.1, 0.2]]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "`epochs` must be an integer >= 1, got 0."),
        ({"steps_per_epoch": None}, "Give exactly one of `steps_per_epoch` and `batches_per_epoch`"),
        ({"batches_per_epoch": 4}, "Give exactly one of `steps_per_epoch` and `batches_per_epoch`"),
        ({"steps_per_epoch": 2.5}, "`steps_per_epoch` must be an integer >= 1, got 2.5."),
        ({"accumulate_grad_batches": 2}, "`accumulate_grad_batches` applies to `batches_per_epoch`"),
        ({"steps_per_epoch": None, "batches_per_epoch": 4, "accumulate_grad_batches": 0},
         "`accumulate_grad_batches` must be an integer >= 1, got 0."),
        ({"max_steps": 0}, "`max_steps` must be -1 (no limit) or >= 1, got 0."),
        ({"base_lrs": "0.1"}, "`base_lrs` must be a finite number, a sequence of them (one per param group)"),
        ({"base_lrs": [[0.1], []]}, "`base_lrs` must be a finite number"),
        ({"base_lrs": [0.1, float("nan")]}, "`base_lrs` must be a finite number"),
        ({"metrics": [1.0]},
         "`metrics` gives 1 value(s) for ReduceOnPlateau(monitor='val'), which checks once per epoch: 2 needed."),
        ({"metrics": {"val": 3.0}}, "`metrics` must give a sequence of numbers for 'val', got 3.0."),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_naming_the_argument(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 3, "base_lrs": 0.1, "metrics": [1.0, 1.0]}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        preview([ReduceOnPlateau("val")], **arguments)


def test_plot_writes_a_png_and_a_tensorboard_figure(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    foreseen = preview(_composition("step", "epoch"), epochs=EPOCHS, steps_per_epoch=BATCHES, base_lrs=BASES)
    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    figure = foreseen.plot(tmp_path / "lr.png", logger=logger)
    logger.experiment.flush()
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ax, *_) = figure.axes
    assert [line.get_label() for line in ax.get_lines()] == ["group 0", "group 1"]
    assert list(ax.get_lines()[1].get_ydata()) == foreseen.series(0, 1)
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["lr_preview"]


def test_plot_refuses_a_logger_that_takes_no_figure(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    foreseen = preview([StepDecay(1)], epochs=1, steps_per_epoch=1, base_lrs=0.1)
    with pytest.raises(ValueError, match="`logger` must be a TensorBoard logger .* got CSVLogger"):
        foreseen.plot(logger=CSVLogger(tmp_path))


def test_preview_runs_without_matplotlib_and_plot_says_what_is_missing() -> None:
    """The library imports and previews without matplotlib (and without the CLI's jsonargparse)."""
    code = textwrap.dedent(
        """
        import importlib.abc, importlib.metadata, sys
        ABSENT = ("matplotlib", "jsonargparse")
        class Absent(importlib.abc.MetaPathFinder):
            # Neither importable nor in the installed metadata, as if left uninstalled.
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ABSENT:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Absent())
        def hide(lookup):
            def wrapped(name, *args, **kwargs):
                if name in ABSENT:
                    raise importlib.metadata.PackageNotFoundError(name)
                return lookup(name, *args, **kwargs)
            return wrapped
        importlib.metadata.distribution = hide(importlib.metadata.distribution)
        importlib.metadata.version = hide(importlib.metadata.version)
        from lr_callbacks import StepDecay, preview
        foreseen = preview([StepDecay(1, 0.5)], epochs=2, steps_per_epoch=1, base_lrs=0.1)
        print(foreseen.series())
        try:
            foreseen.plot()
        except ModuleNotFoundError as err:
            print(err)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ABSENT))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[0.1, 0.05]",
        "`LRPreview.plot` needs matplotlib: `pip install matplotlib`.",
        "[]",
    ]

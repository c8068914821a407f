"""SpikeGuard's arguments (each refusal, each combination), its identity, its state, a user's own detector, and the
deprecated ``SpikeAdaptiveLR(interval="step", ...)`` that builds one."""

from __future__ import annotations

import itertools
import math
import re
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from lr_callbacks import SpikeAdaptiveLR, SpikeGuard
from lr_callbacks.spike import Backoff, MedianDetector, RatioDetector, SpikeDetector, TailDetector, ZScoreDetector
from tests.helpers.spike import Scripted, StepProbe, identical
from tests.helpers.tiny import loader, tiny_trainer

STEPS = 24
SPIKE_AT = 15


def script(spikes: tuple[int, ...] = (SPIKE_AT,), factor: float = 1e3) -> list[float]:
    return [factor if s in spikes else 1.0 for s in range(STEPS)]


def run(guard: pl.Callback, values: list[float], **trainer_kwargs: Any) -> tuple[StepProbe, pl.Trainer]:
    torch.manual_seed(0)
    model = Scripted(values, mode="scale", per_step=True, base_lrs=(0.05,), momentum=0.9)
    probe = StepProbe()
    trainer = tiny_trainer([guard, probe], max_epochs=STEPS // 2, **trainer_kwargs)
    trainer.fit(model, loader(n=16, batch_size=8))
    return probe, trainer


# --- every argument's refusal ------------------------------------------------------------------------------


class NotADetector:
    def check(self, x: float) -> bool:
        return False


@pytest.mark.parametrize(
    ("kwargs", "name", "allowed"),
    [
        ({"detector": "tail"}, "detector", "TailDetector(), ZScoreDetector() or RatioDetector()"),
        ({"detector": TailDetector}, "detector", "check(x), state_dict() and load_state_dict(state)"),
        ({"detector": NotADetector()}, "detector", "check(x), state_dict() and load_state_dict(state)"),
        ({"grad_detector": 3.0}, "grad_detector", "TailDetector(), ZScoreDetector() or RatioDetector()"),
        ({"reactions": "restart"}, "reactions", "['backoff', 'skip', 'rollback', 'record']"),
        ({"reactions": ("skip", "undo")}, "reactions", "['backoff', 'skip', 'rollback', 'record']"),
        ({"reactions": 3}, "reactions", "['backoff', 'skip', 'rollback', 'record'] or a sequence of them"),
        ({"reactions": "backoff", "backoff": "halve"}, "backoff", "None or a Backoff(...) policy"),
        ({"backoff": Backoff()}, "backoff", "the 'backoff' reaction, which is off"),
        ({"snapshot_every": 0}, "snapshot_every", "an integer >= 1"),
        ({"snapshot_every": 1.5}, "snapshot_every", "an integer >= 1"),
        ({"reactions": "skip", "snapshot_every": 5}, "snapshot_every", "the 'rollback' reaction, which is off"),
        ({"record_path": ""}, "record_path", "None or a file or folder path"),
        ({"reactions": "skip", "record_path": "x.json"}, "record_path", "the 'record' reaction, which is off"),
        ({"nan_policy": "zero"}, "nan_policy", "['spike', 'ignore', 'raise']"),
        ({"sync_every": 0}, "sync_every", "an integer >= 1"),
        ({"sync_every": 2.5}, "sync_every", "an integer >= 1"),
        ({"monitor": ""}, "monitor", "None or the name of a logged metric"),
        ({"monitor": 3}, "monitor", "None or the name of a logged metric"),
    ],
)
def test_each_bad_argument_is_refused_naming_it_and_what_is_allowed(
    kwargs: dict[str, Any], name: str, allowed: str
) -> None:
    with pytest.raises(ValueError, match=rf"^`{name}` .*{re.escape(allowed)}"):
        SpikeGuard(**kwargs)


def test_one_detector_object_cannot_watch_both_the_loss_and_the_gradient_norm() -> None:
    detector = TailDetector()
    with pytest.raises(ValueError, match="^`grad_detector` must be a detector object of its own"):
        SpikeGuard(detector, grad_detector=detector)


@pytest.mark.parametrize(
    ("kwargs", "name", "allowed"),
    [
        ({"decay": "cube"}, "decay", "['halve', 'sqrt'] or a float in (0, 1)"),
        ({"decay": 1.0}, "decay", "['halve', 'sqrt'] or a float in (0, 1)"),
        ({"decay": True}, "decay", "['halve', 'sqrt'] or a float in (0, 1)"),
        ({"min_lr": -1.0}, "min_lr", "a finite number >= 0"),
        ({"recovery_patience": 0}, "recovery_patience", "an integer >= 1"),
        ({"recovery_factor": 1.0}, "recovery_factor", "a finite number > 1"),
    ],
)
def test_each_bad_backoff_argument_is_refused(kwargs: dict[str, Any], name: str, allowed: str) -> None:
    with pytest.raises(ValueError, match=rf"^`{name}` must be .*{re.escape(allowed)}"):
        Backoff(**kwargs)


REACTION_ARGUMENTS = {"backoff": ("backoff", Backoff(decay="sqrt")), "rollback": ("snapshot_every", 5),
                      "record": ("record_path", "spikes.json")}  # fmt: skip


@pytest.mark.parametrize(
    "reactions", [r for n in range(5) for r in itertools.combinations(SpikeGuard.REACTIONS, n)], ids=str
)
def test_every_combination_it_accepts_is_one_where_every_argument_applies(reactions: tuple[str, ...]) -> None:
    """An argument that belongs to a reaction is taken exactly when that reaction is on; the others always are."""
    for reaction, (argument, value) in REACTION_ARGUMENTS.items():
        if reaction in reactions:
            guard = SpikeGuard(reactions=reactions, **{argument: value})
            assert getattr(guard, argument) == value
        else:
            with pytest.raises(ValueError, match=f"^`{argument}` .* which is off"):
                SpikeGuard(reactions=reactions, **{argument: value})
    guard = SpikeGuard(ZScoreDetector(), reactions=reactions, nan_policy="ignore", sync_every=3, monitor="m",
                       grad_detector=RatioDetector())  # fmt: skip
    assert guard.reactions == reactions
    assert (guard.backoff is not None) == ("backoff" in reactions)  # the default policy when on
    assert (guard.snapshot_every == SpikeGuard.SNAPSHOT_EVERY) == ("rollback" in reactions)


# --- identity ------------------------------------------------------------------------------------------------


VARIANTS = [
    {"detector": ZScoreDetector()},
    {"detector": TailDetector(tail=3.0)},
    {"detector": TailDetector(warmup=20)},
    {"reactions": "skip"},
    {"reactions": ("record", "rollback")},
    {"reactions": ("rollback", "record", "backoff")},
    {"reactions": ("rollback", "record", "backoff"), "backoff": Backoff(decay="sqrt")},
    {"snapshot_every": 5},
    {"record_path": "elsewhere.json"},
    {"nan_policy": "ignore"},
    {"sync_every": 4},
    {"monitor": "loss"},
    {"grad_detector": TailDetector()},
]


def test_every_argument_tells_two_guards_apart() -> None:
    keys = [SpikeGuard().state_key] + [SpikeGuard(**kwargs).state_key for kwargs in VARIANTS]
    assert len(set(keys)) == len(keys)
    assert SpikeGuard().state_key == SpikeGuard(MedianDetector(), snapshot_every=SpikeGuard.SNAPSHOT_EVERY).state_key


def test_a_trainer_holds_two_guards_that_differ_only_in_their_detector() -> None:
    median, zscore = SpikeGuard(reactions=()), SpikeGuard(ZScoreDetector(warmup=5), reactions=())
    torch.manual_seed(0)
    model = Scripted(script(), mode="replace", per_step=True, base_lrs=(0.05,))  # a scripted loss: no damage
    tiny_trainer([median, zscore], max_epochs=STEPS // 2).fit(model, loader(n=16, batch_size=8))
    assert median.spikes == zscore.spikes == [SPIKE_AT]
    assert median.state_key != zscore.state_key


class Threshold:
    """A user's own detector, not a SpikeDetector: a spike is a value above a fixed level (no repr of its own)."""

    def __init__(self, level: float) -> None:
        self.level = level
        self.seen = 0

    def check(self, x: float) -> bool:
        self.seen += 1
        return not x <= self.level

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = state["seen"]


def test_a_users_own_detector_works_and_is_identified_by_its_class(tmp_path: Path) -> None:
    guard = SpikeGuard(Threshold(level=50.0), reactions=("skip",))
    probe, _ = run(guard, script(factor=1e5), default_root_dir=str(tmp_path))
    assert guard.spikes == [SPIKE_AT]
    assert identical(probe.after[SPIKE_AT], probe.before[SPIKE_AT])
    assert guard.detector.seen == STEPS
    # Python's default repr holds a memory address; the state key holds the class instead, the same in every run.
    assert guard.state_key == SpikeGuard(Threshold(level=1.0), reactions=("skip",)).state_key
    assert f"{__name__}.Threshold" in guard.state_key
    assert "0x" not in guard.state_key


def test_a_users_detector_without_a_device_path_is_read_on_the_host() -> None:
    guard = SpikeGuard(Threshold(level=50.0), reactions=("skip",), sync_every=4)
    run(guard, script(factor=1e5))
    assert not guard._on_device
    assert guard.spikes == [SPIKE_AT]


# --- state ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: SpikeGuard(TailDetector(warmup=5), reactions=("rollback", "backoff", "record"),
                           backoff=Backoff(recovery_patience=3), snapshot_every=2),
        lambda: SpikeGuard(ZScoreDetector(warmup=5), reactions="skip", grad_detector=TailDetector(warmup=5)),
        lambda: SpikeGuard(RatioDetector(threshold=50.0, ema=0.5), reactions="backoff"),
    ],
    ids=["tail-rollback-backoff-record", "zscore-skip-grad", "ratio-backoff"],
)  # fmt: skip
def test_state_round_trip(make: Any, tmp_path: Path) -> None:
    guard = make()
    run(guard, script((9, SPIKE_AT)), default_root_dir=str(tmp_path))
    assert guard.spikes == [9, SPIKE_AT]
    fresh = make()
    fresh.load_state_dict(guard.state_dict())
    assert _plain(fresh.state_dict()) == _plain(guard.state_dict())
    assert fresh.detector.state_dict() == guard.detector.state_dict()
    assert (fresh.spikes, fresh.events, fresh.steps_lost, fresh.scales, fresh.calm) == (
        guard.spikes, guard.events, guard.steps_lost, guard.scales, guard.calm,
    )  # fmt: skip
    assert fresh.state_key == guard.state_key
    if guard.snapshot is not None:
        assert fresh.snapshot is not None
        assert fresh.snapshot.step == guard.snapshot.step
        assert all(torch.equal(fresh.snapshot.model[k], v) for k, v in guard.snapshot.model.items())


def _plain(state: Any) -> Any:
    """A state dict with tensors as lists, so two can be compared with ``==``."""
    if isinstance(state, dict):
        return {k: _plain(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [_plain(v) for v in state]
    return state.tolist() if isinstance(state, torch.Tensor) else state


def test_a_param_group_added_mid_fit_starts_at_scale_one() -> None:
    """A group added after a backoff (as BackboneFinetuning adds one) gets spike scale 1, the others keep theirs; a
    spike after that backs off both, the new one from the LR it was added with."""
    guard = SpikeGuard(reactions=("skip", "backoff"))

    class AddGroup(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
            if trainer.global_step == SPIKE_AT + 2:
                extra = torch.nn.Parameter(torch.zeros(1))
                trainer.optimizers[0].add_param_group({"params": [extra], "lr": 0.2})

    torch.manual_seed(0)
    model = Scripted(script((SPIKE_AT, SPIKE_AT + 5)), mode="scale", per_step=True, base_lrs=(0.05,))
    probe = StepProbe()
    tiny_trainer([guard, AddGroup(), probe], max_epochs=STEPS // 2).fit(model, loader(n=16, batch_size=8))
    assert guard.spikes == [SPIKE_AT, SPIKE_AT + 5]
    assert guard.scales == [[0.25, 0.5]]
    assert probe.lrs[SPIKE_AT + 2] == [0.025, 0.2]
    assert probe.lrs[-1] == [0.0125, 0.1]


# --- the deprecated step level of SpikeAdaptiveLR ---------------------------------------------------------------


DEPRECATED = [
    ({}, "SpikeGuard(detector=TailDetector(), reactions=('rollback', 'record'))"),
    ({"reactions": "skip", "warmup": 5}, "SpikeGuard(detector=TailDetector(warmup=5), reactions='skip')"),
    ({"detector": "zscore", "z_threshold": 5.0, "snapshot_every": 4},
     "SpikeGuard(detector=ZScoreDetector(z=5.0), reactions=('rollback', 'record'), snapshot_every=4)"),
    ({"detector": "ratio", "ema": 0.8, "threshold": 1.2, "reactions": "backoff", "recovery_patience": 3},
     "SpikeGuard(detector=RatioDetector(threshold=1.2, ema=0.8), reactions='backoff', backoff=Backoff(decay='halve', "
     "min_lr=1e-06, recovery_patience=3, recovery_factor=2.0))"),
    ({"grad_norm": True, "reactions": ("skip", "record"), "record_path": "s.json", "nan_policy": "ignore"},
     "SpikeGuard(detector=TailDetector(), reactions=('skip', 'record'), record_path='s.json', nan_policy='ignore', "
     "grad_detector=TailDetector())"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "written"), DEPRECATED, ids=[t for _, t in DEPRECATED])
def test_step_interval_of_spike_adaptive_lr_warns_with_the_guard_to_write(kwargs: dict[str, Any], written: str) -> None:
    with pytest.warns(FutureWarning, match=r"SpikeAdaptiveLR\(interval='step', \.\.\.\) is deprecated") as caught:
        old = SpikeAdaptiveLR(interval="step", **kwargs)
    (message,) = [str(w.message) for w in caught]
    assert f"write {written} instead" in message
    namespace = {"SpikeGuard": SpikeGuard, "TailDetector": TailDetector, "ZScoreDetector": ZScoreDetector,
                 "RatioDetector": RatioDetector, "Backoff": Backoff}  # fmt: skip
    new = eval(written, namespace)  # noqa: S307 - the text of the warning, checked to build the same guard
    assert repr(old.detector) == repr(new.detector)
    assert repr(old.grad_detector) == repr(new.grad_detector)
    assert old.reactions == new.reactions
    assert (old.nan_policy, old.monitor, old.sync_every) == (new.nan_policy, new.monitor, new.sync_every)


def test_the_deprecated_step_interval_behaves_as_the_guard_it_names() -> None:
    with pytest.warns(FutureWarning):
        old = SpikeAdaptiveLR(interval="step", reactions=("rollback", "backoff"), warmup=5, snapshot_every=2)
    new = SpikeGuard(TailDetector(warmup=5), reactions=("rollback", "backoff"), snapshot_every=2)
    probe_old, _ = run(old, script((9, SPIKE_AT)))
    probe_new, _ = run(new, script((9, SPIKE_AT)))
    assert old.spikes == new.spikes
    assert len(old.spikes) == 2
    assert old.steps_lost == new.steps_lost > 0
    assert probe_old.lrs == probe_new.lrs
    assert all(identical(a, b) for a, b in zip(probe_old.after, probe_new.after))


def test_the_epoch_rule_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SpikeAdaptiveLR(rollback=True, ema=0.5)


def test_nan_is_a_spike_and_never_trains() -> None:
    values = script()
    values[SPIKE_AT] = math.nan
    guard = SpikeGuard(TailDetector(warmup=5), reactions="skip")
    probe, _ = run(guard, values)
    assert guard.spikes == [SPIKE_AT]
    assert identical(probe.after[SPIKE_AT], probe.before[SPIKE_AT])
    assert all(torch.isfinite(v).all() for v in probe.after[-1]["model"].values())


def test_the_default_detector_is_the_median_detector() -> None:
    assert repr(SpikeGuard().detector) == repr(MedianDetector())
    assert isinstance(SpikeGuard().detector, SpikeDetector)


# --- the default ---------------------------------------------------------------------------------------------


class LRShock(pl.Callback):
    """A 1000x LR on the update of step ``SPIKE_AT - 1``: the loss spikes from step ``SPIKE_AT`` on."""

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * (1000.0 if trainer.global_step == SPIKE_AT - 1 else 1.0)


def test_the_default_skips_a_lone_spike_and_writes_it_down(tmp_path: Path) -> None:
    guard = SpikeGuard()
    probe, _ = run(guard, script(factor=1e4), default_root_dir=str(tmp_path))
    assert guard.spikes == [SPIKE_AT]
    assert guard.steps_lost == 1
    assert guard.events[0]["reactions"] == ["skip"]
    assert identical(probe.after[SPIKE_AT], probe.before[SPIKE_AT])
    assert (tmp_path / "skip_batches.json").read_text() == "[\n    1\n]"  # epoch 7, batch 1


def test_the_default_rolls_back_a_spike_that_follows_a_skipped_one(tmp_path: Path) -> None:
    """A too-high LR breaks the weights with the update of step 14: step 15 spikes and is skipped, step 16 spikes
    too and rolls back to the copy from before step 0 of the last 20 (here: the start), undoing step 14's update."""
    guard = SpikeGuard()
    probe = StepProbe()
    torch.manual_seed(0)
    model = Scripted([1.0] * STEPS, mode="scale", per_step=True, base_lrs=(0.05,), momentum=0.9)
    trainer = tiny_trainer([LRShock(), guard, probe], max_epochs=STEPS // 2, default_root_dir=str(tmp_path))
    trainer.fit(model, loader(n=16, batch_size=8))
    assert guard.spikes[:2] == [SPIKE_AT, SPIKE_AT + 1]
    assert [e["reactions"] for e in guard.events[:2]] == [["skip"], ["rollback"]]
    assert identical(probe.after[SPIKE_AT + 1], probe.before[0])  # the only copy: steps 0..16 undone
    assert guard.steps_lost >= 1 + SPIKE_AT + 2  # (the restored weights' loss may spike again: skipped then)
    assert not guard._on_device

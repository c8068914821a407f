"""The LR rule's guarantees: base LRs, conflicts, negative bases, logging, checkpoint resume, bad arguments."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lr_callbacks import (
    CosineAnnealing,
    CosineWarmRestarts,
    CyclicLR,
    ExponentialDecay,
    Modifier,
    OneCycle,
    ReduceOnPlateau,
    Schedule,
    SignAlternation,
    StepDecay,
    Warmup,
    WarmupStableDecay,
)
from lr_callbacks.core import LRPlan, compute_lrs
from tests.helpers.tiny import LRRecorder, TinyRegression, loader, tiny_trainer


def _fit(callbacks: list, base_lrs: tuple = (0.1, 0.03), **kwargs: Any) -> tuple[LRRecorder, TinyRegression]:
    torch.manual_seed(0)
    recorder = LRRecorder()
    model = TinyRegression(base_lrs=base_lrs)
    tiny_trainer([*callbacks, recorder], **kwargs).fit(model, loader())
    return recorder, model


def test_each_group_scaled_from_its_own_base_and_kept_as_initial_lr() -> None:
    recorder, model = _fit([StepDecay(1, 0.5)])
    assert recorder.lrs[0] == [0.1, 0.03]
    assert recorder.lrs[-1] == [0.1 * 0.25, 0.03 * 0.25]
    groups = model.trainer.optimizers[0].param_groups
    assert [g["initial_lr"] for g in groups] == [0.1, 0.03]


def test_two_schedules_on_one_optimizer_is_an_error() -> None:
    with pytest.raises(MisconfigurationException, match="At most one schedule"):
        _fit([StepDecay(2), CosineAnnealing(T_max=5)])


class _WithTorchScheduler(TinyRegression):
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 2)}


def test_schedule_beside_a_torch_scheduler_is_an_error() -> None:
    trainer = tiny_trainer([StepDecay(2)])
    with pytest.raises(MisconfigurationException, match=r"torch LR scheduler\(s\) \['StepLR'\]"):
        trainer.fit(_WithTorchScheduler(), loader())


NEGATABLE = [
    lambda: StepDecay(2, 0.5, interval="step"),
    lambda: ExponentialDecay(gamma=0.9),
    lambda: CosineAnnealing(T_max=20, interval="step"),
    lambda: CosineWarmRestarts(T_0=1, T_mult=2, interval="step"),
    lambda: OneCycle(max_lr=None),
]


@pytest.mark.parametrize("make", NEGATABLE)
def test_negative_base_lr_keeps_its_sign(make: Any) -> None:
    positive, _ = _fit([make()], base_lrs=(0.1, 0.03))
    negative, _ = _fit([make()], base_lrs=(-0.1, -0.03))
    assert negative.lrs == [[-lr for lr in row] for row in positive.lrs]
    assert all(lr <= 0 for row in negative.lrs for lr in row)


def test_lr_is_logged_with_lightning_names(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, name="run")
    recorder, _ = _fit([StepDecay(8, 0.5, interval="step")], logger=logger, log_every_n_steps=1)
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("lr-SGD/pg1")]
    assert len(rows) == len(recorder.lrs)
    assert [float(r["lr-SGD/pg1"]) for r in rows] == [row[0] for row in recorder.lrs]
    assert [float(r["lr-SGD/pg2"]) for r in rows] == [row[1] for row in recorder.lrs]


RESUMABLE = [
    lambda: StepDecay(3, 0.5, interval="step"),
    lambda: ExponentialDecay(k=0.1),
    lambda: CosineWarmRestarts(T_0=1, T_mult=2, interval="step"),
    lambda: CyclicLR(1e-3, 0.1, step_size_up=5),
    lambda: OneCycle(max_lr=0.2),
    lambda: ReduceOnPlateau("train_loss_epoch", mode="max", factor=0.5, patience=0),
]


@pytest.mark.parametrize("make", RESUMABLE)
def test_resume_from_mid_training_checkpoint_continues_identically(make: Any, tmp_path: Path) -> None:
    checkpoints = ModelCheckpoint(tmp_path, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    full, full_model = _fit([make(), checkpoints], max_epochs=4, enable_checkpointing=True)

    torch.manual_seed(0)
    recorder = LRRecorder()
    model = TinyRegression(base_lrs=(0.1, 0.03))
    trainer = tiny_trainer([make(), recorder], max_epochs=4)
    trainer.fit(model, loader(), ckpt_path=tmp_path / "epoch=1.ckpt")

    assert recorder.lrs == full.lrs[len(full.lrs) - len(recorder.lrs) :]
    assert len(recorder.lrs) == 16
    for a, b in zip(model.parameters(), full_model.parameters()):
        assert torch.equal(a, b)


def test_plateau_state_round_trips() -> None:
    callback = ReduceOnPlateau("loss", patience=0)
    for value in (3.0, 2.0, 2.5):
        callback.observe(value)
    clone = ReduceOnPlateau("loss", patience=0)
    clone.load_state_dict(callback.state_dict())
    assert clone.state_dict() == callback.state_dict()
    assert (
        clone.state_key
        == callback.state_key
        == "ReduceOnPlateau{'monitor': 'loss', 'mode': 'min', 'interval': 'epoch'}"
    )


def test_plateau_missing_metric_names_what_is_logged() -> None:
    with pytest.raises(MisconfigurationException, match=r"monitor='nope'.*train_loss_epoch"):
        _fit([ReduceOnPlateau("nope")])


BAD_ARGS = [
    (StepDecay, {"step_size": 0}, "step_size"),
    (StepDecay, {"step_size": 2.5}, "step_size"),
    (StepDecay, {"step_size": 2, "gamma": 0}, "gamma"),
    (StepDecay, {"step_size": 2, "interval": "batch"}, "interval"),
    (ExponentialDecay, {}, "exactly one of `gamma` and `k`"),
    (ExponentialDecay, {"gamma": 0.9, "k": 0.1}, "exactly one of `gamma` and `k`"),
    (ExponentialDecay, {"gamma": -0.5}, "gamma"),
    (ExponentialDecay, {"k": -1.0}, "k"),
    (CosineAnnealing, {"T_max": 0}, "T_max"),
    (CosineAnnealing, {"T_max": 10, "eta_min": float("nan")}, "eta_min"),
    (CosineWarmRestarts, {"T_0": 0}, "T_0"),
    (CosineWarmRestarts, {"T_0": 10, "T_mult": 0.5}, "T_mult"),
    (CyclicLR, {"base_lr": 0.1, "max_lr": 0.01, "step_size_up": 5}, "max_lr"),
    (CyclicLR, {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 0}, "step_size_up"),
    (CyclicLR, {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 5, "mode": "sawtooth"}, "mode"),
    (CyclicLR, {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 5, "gamma": 1.5}, "gamma"),
    (CyclicLR, {"base_lr": [0.01, 0.02], "max_lr": [0.1], "step_size_up": 5}, "max_lr"),
    (OneCycle, {"max_lr": 0.1, "pct_start": 1.0}, "pct_start"),
    (OneCycle, {"max_lr": 0.1, "anneal_strategy": "cosine"}, "anneal_strategy"),
    (OneCycle, {"max_lr": 0.1, "total_steps": 1}, "total_steps"),
    (OneCycle, {"max_lr": 0.1, "div_factor": 0}, "div_factor"),
    (ReduceOnPlateau, {"monitor": "val_loss", "mode": "minimum"}, "mode"),
    (ReduceOnPlateau, {"monitor": "val_loss", "factor": 1.0}, "factor"),
    (ReduceOnPlateau, {"monitor": "val_loss", "patience": -1}, "patience"),
    (ReduceOnPlateau, {"monitor": "val_loss", "threshold_mode": "pct"}, "threshold_mode"),
    (ReduceOnPlateau, {"monitor": "val_loss", "min_lr": -1e-3}, "min_lr"),
    (ReduceOnPlateau, {"monitor": ""}, "monitor"),
    (WarmupStableDecay, {"warmup_steps": -1, "decay_steps": 5}, "warmup_steps"),
    (WarmupStableDecay, {"warmup_steps": 2, "decay_steps": 0}, "decay_steps"),
    (WarmupStableDecay, {"warmup_steps": 2, "decay_steps": 5, "start_factor": 1.5}, "start_factor"),
    (WarmupStableDecay, {"warmup_steps": 2, "decay_steps": 5, "shape": "sqrt"}, "shape"),
    (WarmupStableDecay, {"warmup_steps": 2, "decay_steps": 5, "total_steps": 6}, "`warmup_steps` \\+ `decay_steps`"),
]


@pytest.mark.parametrize(("cls", "kwargs", "name"), BAD_ARGS)
def test_bad_arguments_name_the_argument(cls: type, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name if " " in name else f"`{name}`"):
        cls(**kwargs)


def test_bad_choice_lists_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"`mode` must be one of \['triangular', 'triangular2', 'exp_range'\]"):
        CyclicLR(0.01, 0.1, 5, mode="sawtooth")


def test_warmup_stable_decay_refuses_a_run_shorter_than_its_phases() -> None:
    """total_steps=None: the run (4 epochs of 8 steps) is too short for 20 + 20 steps."""
    with pytest.raises(MisconfigurationException, match=r"`warmup_steps` \+ `decay_steps` = 20 \+ 20 .* 32 steps"):
        _fit([WarmupStableDecay(20, 20)], max_epochs=4)


def test_one_cycle_needs_a_finite_length() -> None:
    with pytest.raises(MisconfigurationException, match="total_steps.*`max_time` \\(or a Timer\\) alone"):
        _fit([OneCycle(0.1)], max_epochs=-1, max_steps=-1, max_time={"seconds": 1})


def test_library_imports_with_only_torch_and_lightning() -> None:
    blocked = ["hydra", "omegaconf", "tensorboard", "sklearn"]
    code = textwrap.dedent(
        f"""
        import importlib.abc, importlib.machinery, sys
        class Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            # Packages that are found but cannot be imported, as if left uninstalled.
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {blocked!r}:
                    return importlib.machinery.ModuleSpec(name, self)
            def create_module(self, spec):
                raise ImportError("not installed: " + spec.name)
            def exec_module(self, module):
                pass
        sys.meta_path.insert(0, Absent())
        import lr_callbacks
        print(sorted(lr_callbacks.__all__))
        print(sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    names, imported = out.stdout.strip().splitlines()
    assert "StepDecay" in names
    assert imported == "[]"


class _Stream(torch.utils.data.IterableDataset):
    """Batches of unknown count: Lightning sees an infinite epoch length."""

    def __iter__(self) -> Any:
        data = loader()
        return iter(data)


def test_fractional_epochs_need_a_known_epoch_length() -> None:
    trainer = tiny_trainer([CosineWarmRestarts(T_0=1, interval="step")], max_steps=3)
    with pytest.raises(MisconfigurationException, match="interval='epoch'"):
        trainer.fit(TinyRegression(), torch.utils.data.DataLoader(_Stream(), batch_size=None))


# --- the rule as a pure function, and one write per step -----------------------------------------------------


def _replay(callbacks: list, n_steps: int, steps_per_epoch: int, bases: tuple) -> list[list[float]]:
    """The LRs of a run from ``compute_lrs`` alone: each contributor moved to its ``t`` of each step."""
    schedule = next((c for c in callbacks if isinstance(c, Schedule)), None)
    modifiers = [c for c in callbacks if isinstance(c, Modifier)]
    rows = []
    for k in range(n_steps):
        for c in callbacks:
            c.set_time(c.time_of_step(k, steps_per_epoch))
        (row,) = compute_lrs([list(bases)], schedule, modifiers)
        rows.append(row)
    return rows


REPLAYS = {
    "cosine-warmup-sign": lambda: [
        CosineAnnealing(T_max=40),
        Warmup(6, start_factor=0.3),
        SignAlternation(interval="step", period=5, negative_scale=0.3),
    ],
    "sgdr-step-sign-epoch": lambda: [
        CosineWarmRestarts(T_0=1, T_mult=2, interval="step"),
        SignAlternation(negative_scale=0.7),
    ],
    "onecycle-warmup-epoch": lambda: [
        OneCycle(max_lr=[0.3, 0.1], total_steps=30),
        Warmup(2, start_factor=0.5, interval="epoch", shape="cosine"),
    ],
    "modifiers-only": lambda: [Warmup(5, start_factor=0.1), SignAlternation(period=2)],
}


@pytest.mark.parametrize("accumulate", [1, 3])
@pytest.mark.parametrize("case", list(REPLAYS))
def test_compute_lrs_replays_a_trainer_run_to_the_bit(case: str, accumulate: int) -> None:
    recorder, _ = _fit(REPLAYS[case](), base_lrs=(0.1, 0.03), max_epochs=4, accumulate_grad_batches=accumulate)
    steps_per_epoch = -(-8 // accumulate)
    assert recorder.lrs == _replay(REPLAYS[case](), len(recorder.lrs), steps_per_epoch, (0.1, 0.03))


def test_compute_lrs_is_independent_of_the_modifier_order() -> None:
    warmup, sign = Warmup(7, start_factor=0.1), SignAlternation(negative_scale=0.3)
    for c in (warmup, sign):
        c.set_time(3.0)
    bases = [[0.1, 0.03], [0.7]]
    assert compute_lrs(bases, None, [warmup, sign]) == compute_lrs(bases, None, [sign, warmup])
    assert compute_lrs(bases, None, [warmup, sign])[1][0] == pytest.approx(0.7 * (0.1 + 0.9 * 3 / 7) * -0.3)


def test_the_lr_is_written_once_per_step_whatever_the_number_of_contributors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four contributors, three of them on the step clock: one write per training step, plus one at each epoch
    start (for observers of the epoch's first LR)."""
    writes = []
    original = LRPlan.write
    monkeypatch.setattr(LRPlan, "write", lambda plan, optimizers: writes.append(1) or original(plan, optimizers))
    callbacks = [
        CosineAnnealing(T_max=40, interval="step"),
        Warmup(5),
        SignAlternation(interval="step"),
        SignAlternation(period=2),
    ]
    recorder, _ = _fit(callbacks, max_epochs=3, accumulate_grad_batches=2)
    assert len(recorder.lrs) == 12  # 3 epochs x 4 optimizer steps
    assert len(writes) == 12 + 3


def test_a_fitted_callback_pickles_without_the_trainer_plan() -> None:
    import pickle

    callback = CosineAnnealing(T_max=10, interval="step")
    _fit([callback, Warmup(3)])
    assert callback._plan is not None
    clone = pickle.loads(pickle.dumps(callback))  # noqa: S301 - round-trips a pickle this test just made
    assert clone._plan is None
    assert clone._t == callback._t
    recorder, _ = _fit([clone])
    assert recorder.lrs == _fit([CosineAnnealing(T_max=10, interval="step")])[0].lrs


def test_repr_and_state_key_come_from_the_identity_arguments() -> None:
    """Every public callback names its identity arguments once (``IDENTITY``): each is a constructor argument kept
    as an attribute of that name, and ``repr`` evaluates back to an equal callback."""
    import inspect

    import lr_callbacks
    import lr_callbacks.spike

    examples = {
        "StepDecay": {"step_size": 3}, "CosineAnnealing": {"T_max": 5}, "CosineWarmRestarts": {"T_0": 2},
        "CyclicLR": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 2}, "OneCycle": {"max_lr": 0.1},
        "ExponentialDecay": {"gamma": 0.9}, "ReduceOnPlateau": {"monitor": "loss"},
        "WarmupStableDecay": {"warmup_steps": 2, "decay_steps": 3}, "Warmup": {"duration": 4},
    }  # fmt: skip
    checked = 0
    for name in lr_callbacks.__all__:
        cls = getattr(lr_callbacks, name)
        if name in ("LRContributor", "Modifier", "Schedule", "TimeModifier"):
            continue  # the base classes
        if not (inspect.isclass(cls) and issubclass(cls, Callback) and getattr(cls, "IDENTITY", None)):
            continue  # not a callback (LRFinderResult, preview, LRPreview, the finder's suggestion methods)
        params = inspect.signature(cls).parameters
        assert set(cls.IDENTITY) <= set(params), (name, set(cls.IDENTITY) - set(params))
        callback = cls(**examples.get(name, {}))
        text = repr(callback)
        assert text == f"{name}(" + ", ".join(f"{k}={getattr(callback, k)!r}" for k in cls.IDENTITY) + ")"
        namespace = {**vars(lr_callbacks.spike), **vars(lr_callbacks)}  # a guard's repr shows its detector's
        again = eval(text, namespace)  # noqa: S307  (our own repr, evaluated back)
        assert again.state_key == callback.state_key
        assert callback.state_key == f"{name}{dict(callback._identity())!r}"
        checked += 1
    methods = ("CenteredMin", "Curvature", "MinDiv10", "Race", "Steepest", "Valley")  # the finder's suggestion methods
    assert checked == len(lr_callbacks.__all__) - 7 - len(methods)  # 4 base classes, LRFinderResult, preview, LRPreview


def test_state_keys_are_those_of_earlier_versions() -> None:
    """Checkpoints written before the identity was declared once still find their callbacks' state."""
    assert StepDecay(3).state_key == "StepDecay{'step_size': 3, 'gamma': 0.1, 'interval': 'epoch'}"
    assert Warmup(4).state_key == "Warmup{'duration': 4, 'start_factor': 0.0, 'interval': 'step', 'shape': 'linear'}"
    assert (
        SignAlternation().state_key
        == "SignAlternation{'pattern': 'alternate', 'period': 1, 'negative_scale': 1.0, 'interval': 'epoch'}"
    )


def test_warmup_stable_decay_holds_eta_min_after_total_steps() -> None:
    recorder, _ = _fit([WarmupStableDecay(1, 2, total_steps=4, eta_min=1e-3, interval="step")], max_epochs=2)
    n = len(recorder.lrs)
    assert n > 4
    assert recorder.lrs[4:] == [[1e-3, 1e-3]] * (n - 4)
    # warmup at t=0, the base at t=1 and t=2 (the decay starts at 4 - 2), half-way down at t=3
    halfway = [1e-3 + (0.1 - 1e-3) / 2, 1e-3 + (0.03 - 1e-3) / 2]
    assert recorder.lrs[:4] == [[0.0, 0.0], [0.1, 0.03], [0.1, 0.03], halfway]

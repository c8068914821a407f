"""SpikeAdaptiveLR: the seed's spike rule exactly, on scripted losses and on California Housing, plus extensions."""

from __future__ import annotations

import copy
import csv
import math
import os
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lr_callbacks import SpikeAdaptiveLR, SpikeGuard
from lr_callbacks.spike import RatioDetector
from tests.helpers.paths import SHARED_DATA
from tests.helpers.spike import Scripted
from tests.helpers.tiny import LRRecorder, loader, tiny_trainer

BATCHES = 2  # per epoch in the scripted runs: 16 samples, batch 8


# --- helpers ---------------------------------------------------------------------------------------------


def seed_reference(losses: Sequence[float], lr0: float, threshold: float, shrink: float, floor: float) -> list[float]:
    """The LR in force during each epoch under the seed's rule, written out independently.

    The LR of epoch 0 and 1 is ``lr0``; after epoch t >= 1 the loss ratio against epoch t-1 decides the
    LR of epoch t+1: a ratio above ``threshold`` (with a positive previous loss) shrinks it, down to ``floor``.
    """
    lr = lr0
    per_epoch = [lr0]
    for t in range(1, len(losses)):
        per_epoch.append(lr)
        previous, current = losses[t - 1], losses[t]
        ratio = current / previous if previous > 0 else 1.0
        if ratio > threshold:
            lr = max(lr * shrink, floor)
    return per_epoch


def epoch_lrs(recorder: LRRecorder, steps_per_epoch: int = BATCHES) -> list[list[float]]:
    """The LRs at each epoch's first optimizer step (they are constant within an epoch)."""
    rows = recorder.lrs[::steps_per_epoch]
    for k, row in enumerate(recorder.lrs):
        assert row == rows[k // steps_per_epoch], "the LR changed inside an epoch"
    return rows


def run_scripted(
    script: Sequence[float], callback: SpikeAdaptiveLR, base_lrs: Sequence[float] = (0.1,), **kwargs: Any
) -> tuple[LRRecorder, Scripted]:
    torch.manual_seed(0)
    model_kw = {k: kwargs.pop(k) for k in ("mode", "per_step", "log_as", "optimizer") if k in kwargs}
    model = Scripted(script, base_lrs=base_lrs, **model_kw)
    recorder = LRRecorder()
    epochs = kwargs.pop("max_epochs", len(script))
    trainer = tiny_trainer([callback, recorder], max_epochs=epochs, **kwargs)
    trainer.fit(model, loader(n=16, batch_size=8))
    return recorder, model


# Losses chosen to hit every branch: a spike, a ratio exactly at the threshold (not a spike), a zero
# and a negative previous loss (no spike), a run of spikes into the floor.
LOSSES = [1.0, 1.5, 1.65, 1.2, 0.0, 3.0, -1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 9.0]


# --- seed parity -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decay", "shrink"), [("halve", 0.5), ("sqrt", math.sqrt(0.5)), (0.3, 0.3)], ids=["halve", "sqrt", "float"]
)
@pytest.mark.parametrize("lr0", [0.1, 1.2e-5], ids=["lr0.1", "lr1.2e-5-floor"])
def test_seed_parity_scripted_losses(decay: str | float, shrink: float, lr0: float) -> None:
    recorder, _ = run_scripted(LOSSES, SpikeAdaptiveLR(threshold=1.1, decay=decay, min_lr=1e-6), base_lrs=(lr0,))
    got = [row[0] for row in epoch_lrs(recorder)]
    want = seed_reference(LOSSES, lr0, 1.1, shrink, 1e-6)
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    if decay == "halve" and lr0 == 0.1:
        assert got == want  # halving is exact in binary: the same floats, not just close ones
    if lr0 < 1e-4:
        assert got[-1] == pytest.approx(1e-6, rel=1e-12)  # the floor was reached


def test_seed_parity_per_group_floor() -> None:
    """Two groups with their own base LR each follow the seed's rule, floored at min_lr on their own."""
    recorder, _ = run_scripted(LOSSES, SpikeAdaptiveLR(min_lr=1e-6), base_lrs=(0.1, 3e-6))
    rows = epoch_lrs(recorder)
    for g, lr0 in enumerate((0.1, 3e-6)):
        assert [r[g] for r in rows] == pytest.approx(seed_reference(LOSSES, lr0, 1.1, 0.5, 1e-6), rel=1e-12)
    assert rows[-1][1] == pytest.approx(1e-6, rel=1e-12)


def test_negative_base_lr_keeps_its_sign_and_floor_on_magnitude() -> None:
    recorder, _ = run_scripted(LOSSES, SpikeAdaptiveLR(min_lr=1e-6), base_lrs=(-1.2e-5,))
    got = [row[0] for row in epoch_lrs(recorder)]
    want = [-v for v in seed_reference(LOSSES, 1.2e-5, 1.1, 0.5, 1e-6)]
    assert got == pytest.approx(want, rel=1e-12)


def test_spike_never_raises_lr_below_min_lr() -> None:
    """Where the seed's ``max(lr * decay, min_lr)`` would lift a tiny LR up to min_lr, we leave it alone."""
    recorder, _ = run_scripted([1.0, 2.0, 4.0], SpikeAdaptiveLR(min_lr=1e-6), base_lrs=(1e-7,))
    assert [row[0] for row in epoch_lrs(recorder)] == [1e-7, 1e-7, 1e-7]


# --- California Housing, the seed's setting ----------------------------------------------------------------


def _housing_home() -> str:
    return os.environ.get("SCIKIT_LEARN_DATA", str(SHARED_DATA))


@pytest.fixture(scope="module")
def housing() -> tuple[torch.Tensor, torch.Tensor]:
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    try:
        data = datasets.fetch_california_housing(data_home=_housing_home(), download_if_missing=False)
    except OSError as err:
        pytest.skip(f"California Housing is not available offline: {err}")
    x_train, _, y_train, _ = train_test_split(data.data, data.target, test_size=0.2, random_state=42)
    x_train = StandardScaler().fit(x_train).transform(x_train)
    return torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train, dtype=torch.float32).unsqueeze(1)


class HousingLinear(pl.LightningModule):
    """The seed's model: one linear layer, MSE, plain SGD at 0.1. Records every step loss."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 1)
        self.step_losses: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.step_losses.append(loss.item())
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_housing_run_reduces_lr_exactly_on_spike_epochs(housing: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = housing
    epochs = 7  # LR 0.1 diverges at first: spikes after epochs 1-5, a calm epoch 6 once the LR is 1/32 of it
    pl.seed_everything(42, verbose=False)
    model = HousingLinear()
    data = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(42))
    spike, recorder = SpikeAdaptiveLR(threshold=1.1), LRRecorder()
    tiny_trainer([spike, recorder], max_epochs=epochs).fit(model, data)

    n = len(data)
    means = [sum(model.step_losses[e * n : (e + 1) * n]) / n for e in range(epochs)]
    spiked = [t for t in range(1, epochs) if means[t] / means[t - 1] > 1.1]
    lrs = [row[0] for row in epoch_lrs(recorder, n)]
    reduced = [t for t in range(epochs - 1) if lrs[t + 1] < lrs[t]]
    # The spike found after epoch t lowers the LR of epoch t+1, by half, and nothing else does.
    assert spiked, (means, spiked)
    assert len(spiked) < epochs - 1, (means, spiked)
    assert reduced == spiked
    assert spike.spikes == spiked
    assert lrs == [0.1 * 0.5 ** sum(s < t for s in spiked) for t in range(epochs)]


# --- extensions --------------------------------------------------------------------------------------------


def test_recovery_grows_scale_back_after_calm_epochs() -> None:
    script = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    recorder, _ = run_scripted(script, SpikeAdaptiveLR(recovery_patience=2, recovery_factor=2.0))
    # Spikes after epochs 1 and 2 (scale 1/4), then every two calm epochs double it, capped at 1.
    want = [0.1, 0.1, 0.05, 0.025, 0.025, 0.05, 0.05, 0.1, 0.1]
    assert [row[0] for row in epoch_lrs(recorder)] == pytest.approx(want, rel=1e-15)


def test_recovery_is_off_by_default() -> None:
    recorder, _ = run_scripted([1.0, 2.0, 2.0, 2.0, 2.0, 2.0], SpikeAdaptiveLR())
    assert [row[0] for row in epoch_lrs(recorder)] == [0.1, 0.1, 0.05, 0.05, 0.05, 0.05]


def ema_reference(losses: Sequence[float], lr0: float, threshold: float, beta: float) -> list[float]:
    """LR of each step: step s's loss against an EMA of the earlier ones; the result holds from step s+1."""
    lr, baseline, out = lr0, None, []
    for value in losses:
        out.append(lr)
        if baseline is not None and baseline > 0 and value / baseline > threshold:
            lr *= 0.5
        baseline = value if baseline is None else beta * baseline + (1 - beta) * value
    return out


def test_step_interval_with_ema_baseline() -> None:
    steps = [1.0, 1.0, 1.05, 1.3, 1.2, 1.1, 1.4, 0.9, 0.8, 1.0, 0.9, 1.5]
    spike = SpikeGuard(RatioDetector(ema=0.8), reactions="backoff")
    recorder, _ = run_scripted(steps, spike, per_step=True, max_epochs=len(steps) // BATCHES)
    got = [row[0] for row in recorder.lrs]
    assert got == pytest.approx(ema_reference(steps, 0.1, 1.1, 0.8), rel=1e-15)
    assert spike.spikes == [3, 4, 6, 11]
    # The EMA remembers the calm past: 1.2 right after the 1.3 spike is still high against it, while
    # 1.0 after a dip to 0.8 is not. Against the previous step alone (ema=0) it is the other way round.
    previous_only = ema_reference(steps, 0.1, 1.1, 0.0)
    assert [s for s in range(1, len(steps)) if previous_only[s] < previous_only[s - 1]] == [4, 7, 10]


def test_step_interval_counts_optimizer_steps_under_accumulation() -> None:
    steps = [1.0, 1.5, 1.5, 2.0]
    spike = SpikeGuard(RatioDetector(), reactions="backoff")
    recorder, _ = run_scripted(steps, spike, per_step=True, max_epochs=4, accumulate_grad_batches=2)
    # One optimizer step per epoch (2 batches, accumulate 2): one check per step, on the unscaled loss.
    assert [row[0] for row in recorder.lrs] == [0.1, 0.1, 0.05, 0.05]
    assert spike.spikes == [1, 3]
    assert spike.baseline == 2.0


def test_epoch_mean_under_gradient_accumulation_is_the_mean_training_loss() -> None:
    spike = SpikeAdaptiveLR()
    recorder, _ = run_scripted([1.0, 1.5, 1.5, 2.0], spike, accumulate_grad_batches=2)
    # Lightning hands back each loss divided by 2; the epoch value is still the script's.
    assert spike.baseline == 2.0
    assert spike.spikes == [1, 3]
    assert [row[0] for row in recorder.lrs] == [0.1, 0.1, 0.05, 0.05]


def test_nan_counts_as_spike_and_never_reaches_the_lr() -> None:
    script = [1.0, 1.0, float("nan"), 1.05, 1.1, float("inf"), 1.0]
    spike = SpikeAdaptiveLR()
    recorder, _ = run_scripted(script, spike)
    lrs = [row[0] for row in epoch_lrs(recorder)]
    assert all(math.isfinite(lr) for lr in lrs)
    # NaN after epoch 2 and inf after 5 are spikes; the baseline stays finite (1.05 is compared with 1.0).
    assert spike.spikes == [2, 5]
    assert lrs == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]
    assert spike.baseline == 1.0


def test_nan_policy_ignore_and_raise() -> None:
    script = [1.0, float("nan"), 1.05, 2.0]
    spike = SpikeAdaptiveLR(nan_policy="ignore")
    recorder, _ = run_scripted(script, spike)
    assert [row[0] for row in epoch_lrs(recorder)] == [0.1, 0.1, 0.1, 0.1]
    assert spike.spikes == [3]
    with pytest.raises(RuntimeError, match="not finite|nan"):
        run_scripted(script, SpikeAdaptiveLR(nan_policy="raise"))


class StateProbe(Callback):
    """Deep copies of the weights and optimizer state at every epoch end, or (``at_last_batch``) after the last
    batch of every epoch: before any callback's epoch-end hook (LR callbacks run first among a trainer's)."""

    def __init__(self, at_last_batch: bool = False) -> None:
        self.states: list[dict[str, Any]] = []
        self.at_last_batch = at_last_batch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.at_last_batch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._take(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.at_last_batch:
            self._take(trainer, pl_module)

    def _take(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        opt = trainer.optimizers[0]
        self.states.append(
            {
                "model": copy.deepcopy(pl_module.state_dict()),
                "opt": [copy.deepcopy(opt.state[p]) for g in opt.param_groups for p in g["params"]],
            }
        )


def _identical(a: dict[str, Any], b: dict[str, Any]) -> bool:
    same_model = a["model"].keys() == b["model"].keys() and all(
        torch.equal(a["model"][k], b["model"][k]) for k in a["model"]
    )
    same_opt = len(a["opt"]) == len(b["opt"]) and all(
        sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa) for sa, sb in zip(a["opt"], b["opt"])
    )
    return same_model and same_opt


def test_rollback_restores_pre_spike_weights_and_optimizer_state_bit_identical() -> None:
    script = [1.0, 1.0, 1.0, 8.0, 1.0, 1.0]
    before, after = StateProbe(at_last_batch=True), StateProbe()
    spike = SpikeAdaptiveLR(rollback=True)
    torch.manual_seed(0)
    model = Scripted(script, mode="scale", base_lrs=(0.05,), optimizer=torch.optim.Adam)
    recorder = LRRecorder()
    tiny_trainer([before, spike, after, recorder], max_epochs=len(script)).fit(model, loader(n=16, batch_size=8))
    assert spike.spikes == [3]
    # At the end of epoch 3 the weights and Adam's moments and step counts are those of the end of epoch 2.
    assert _identical(after.states[3], before.states[2])
    assert not _identical(before.states[3], before.states[2])
    for e in (0, 1, 2, 4, 5):
        assert _identical(after.states[e], before.states[e])
    # The restored state's own loss stays the baseline; the LR halves from epoch 4.
    assert [row[0] for row in epoch_lrs(recorder)] == [0.05, 0.05, 0.05, 0.05, 0.025, 0.025]


def test_rollback_recovers_from_nan_weights() -> None:
    script = [1.0, 1.0, float("nan"), 1.0, 1.0]
    spike = SpikeAdaptiveLR(rollback=True)
    torch.manual_seed(0)
    model = Scripted(script, mode="scale", base_lrs=(0.05,))
    probe = StateProbe()
    tiny_trainer([spike, probe], max_epochs=len(script)).fit(model, loader(n=16, batch_size=8))
    assert spike.spikes == [2]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert _identical({**probe.states[2], "opt": []}, {**probe.states[1], "opt": []})
    assert math.isfinite(spike.baseline)
    assert spike.scales == [[0.5]]


# --- monitor, logging, arguments ---------------------------------------------------------------------------


def test_monitor_reads_a_logged_metric() -> None:
    script = [1.0, 1.5, 1.5, 2.0]
    recorder, _ = run_scripted(script, SpikeAdaptiveLR(monitor="score"), log_as="score")
    assert [row[0] for row in epoch_lrs(recorder)] == [0.1, 0.1, 0.05, 0.05]
    with pytest.raises(MisconfigurationException, match="score"):
        run_scripted(script, SpikeAdaptiveLR(monitor="score"))


def test_logs_scale_events_and_loss(tmp_path: Path) -> None:
    script = [1.0, 1.5, 1.5, 2.0]
    logger = CSVLogger(tmp_path, name="", version="")
    run_scripted(script, SpikeAdaptiveLR(rollback=True), base_lrs=(0.1, 0.2), logger=logger, log_every_n_steps=1)
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("spike_detected")]
    # The scripted losses ignore the weights: after each rollback the baseline stays 1.0, so all three spike.
    assert [float(r["spike_detected"]) for r in rows] == [0, 1, 1, 1]
    assert [float(r["spike_rollback"]) for r in rows] == [0, 1, 1, 1]
    assert [float(r["spike_loss"]) for r in rows] == script
    assert [float(r["spike_scale-SGD/pg1"]) for r in rows] == [1.0, 0.5, 0.25, 0.125]
    assert [float(r["spike_scale-SGD/pg2"]) for r in rows] == [1.0, 0.5, 0.25, 0.125]


def test_works_without_a_logger() -> None:
    recorder, _ = run_scripted([1.0, 2.0, 2.0], SpikeAdaptiveLR(), logger=False)
    assert [row[0] for row in epoch_lrs(recorder)] == [0.1, 0.1, 0.05]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": 0.5}, "threshold"),
        ({"min_lr": -1e-6}, "min_lr"),
        ({"decay": "cube"}, "decay"),
        ({"decay": 1.0}, "decay"),
        ({"decay": 0.0}, "decay"),
        ({"interval": "batch"}, "interval"),
        ({"ema": 1.0}, "ema"),
        ({"recovery_patience": 0}, "recovery_patience"),
        ({"recovery_factor": 1.0}, "recovery_factor"),
        ({"rollback": "yes"}, "rollback"),
        ({"nan_policy": "zero"}, "nan_policy"),
        ({"monitor": ""}, "monitor"),
        # the deprecated step-level arguments: refused at epoch level, where they never applied
        ({"detector": "zscore"}, "detector"),
        ({"z_threshold": 3.0}, "z_threshold"),
        ({"warmup": 5}, "warmup"),
        ({"tail": 2.0}, "tail"),
        ({"reactions": ("skip",)}, "reactions"),
        ({"reactions": "record"}, "reactions"),
        ({"grad_norm": True}, "grad_norm"),
        ({"record_path": "x.json"}, "record_path"),
        ({"sync_every": 2}, "sync_every"),
        ({"snapshot_every": 2}, "snapshot_every"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        SpikeAdaptiveLR(**kwargs)


def test_decay_error_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"\['halve', 'sqrt'"):
        SpikeAdaptiveLR(decay="cube")


def test_state_dict_round_trip() -> None:
    spike = SpikeAdaptiveLR(recovery_patience=3)
    run_scripted([1.0, 2.0, 2.0], spike)
    fresh = SpikeAdaptiveLR(recovery_patience=3)
    fresh.load_state_dict(spike.state_dict())
    assert fresh.state_dict() == spike.state_dict()
    assert fresh.scales == [[0.5]]
    assert fresh.baseline == 2.0
    assert fresh.calm == 1
    assert fresh.spikes == [1]
    assert fresh.state_key == spike.state_key
    # every argument tells two instances apart
    others = [SpikeAdaptiveLR(recovery_patience=5), SpikeAdaptiveLR(threshold=1.2), SpikeAdaptiveLR(rollback=True),
              SpikeAdaptiveLR(recovery_patience=3, ema=0.5), SpikeAdaptiveLR(recovery_patience=3, min_lr=0.0),
              SpikeAdaptiveLR(recovery_patience=3, nan_policy="ignore"), SpikeAdaptiveLR(recovery_patience=3,
              recovery_factor=3.0), SpikeAdaptiveLR(recovery_patience=3, decay="sqrt"),
              SpikeAdaptiveLR(recovery_patience=3, monitor="val")]  # fmt: skip
    assert len({spike.state_key, *(o.state_key for o in others)}) == len(others) + 1
    empty = SpikeAdaptiveLR()
    empty.load_state_dict({})
    assert empty.scales is None
    assert empty.baseline is None


# --- choices typed for LightningCLI ---------------------------------------------------------------------------


def _literals(hint: Any) -> list[tuple[Any, ...]]:
    """The value tuples of every ``Literal`` inside a type hint (unions and sequences opened)."""
    if typing.get_origin(hint) is typing.Literal:
        return [typing.get_args(hint)]
    return [lit for arg in typing.get_args(hint) for lit in _literals(arg)]


CHOICES = [
    ("interval", SpikeAdaptiveLR.INTERVALS, "`interval` must be one of ['epoch', 'step'], got 'nope'."),
    ("nan_policy", SpikeAdaptiveLR.NAN_POLICIES,
     "`nan_policy` must be one of ['spike', 'ignore', 'raise'], got 'nope'."),
    ("decay", tuple(SpikeAdaptiveLR.DECAYS),
     "`decay` must be one of ['halve', 'sqrt'] or a float in (0, 1), got 'nope'."),
]  # fmt: skip


@pytest.mark.parametrize(("argument", "allowed", "message"), CHOICES, ids=[c[0] for c in CHOICES])
def test_choice_hints_are_the_allowed_values_of_the_runtime_check(argument: str, allowed: tuple, message: str) -> None:
    """Each choice is a ``Literal`` in the signature, and the class constant the runtime check uses is that
    ``Literal``'s values."""
    hint = typing.get_type_hints(SpikeAdaptiveLR.__init__)[argument]
    assert set(_literals(hint)) == {allowed}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SpikeAdaptiveLR(**{argument: "nope"})


def test_lightning_cli_parses_the_choices_and_refuses_others_by_name() -> None:
    from jsonargparse import ArgumentError, ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SpikeAdaptiveLR, "spike")
    args = ["--spike.decay=0.3", "--spike.nan_policy=ignore", "--spike.ema=0.5", "--spike.rollback=true",
            "--spike.recovery_patience=4"]  # fmt: skip
    spike = parser.instantiate(parser.parse_args(args)).spike
    assert (spike.decay_factor, spike.nan_policy, spike.ema, spike.rollback, spike.recovery_patience) == (
        0.3, "ignore", 0.5, True, 4,
    )  # fmt: skip
    assert spike.reactions == ("backoff", "rollback")
    assert parser.parse_args(["--spike.decay=sqrt"]).spike.decay == "sqrt"
    for key, value in [("decay", "cube"), ("nan_policy", "zero"), ("interval", "batch")]:
        with pytest.raises(ArgumentError, match=f'Parser key "spike.{key}"'):
            parser.parse_args([f"--spike.{key}={value}"])
    with pytest.raises(ArgumentError, match="detector"):  # the step-level arguments are SpikeGuard's
        parser.parse_args(["--spike.detector=tail"])

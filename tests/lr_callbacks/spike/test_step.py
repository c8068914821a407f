"""SpikeAdaptiveLR at step level: detectors, each reaction, the record file, logging, the device path, manual
optimization and bf16 mixed precision."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn

from lr_callbacks import SpikeAdaptiveLR, SpikeGuard
from lr_callbacks.spike import Backoff
from lr_callbacks.spike.detectors import RatioDetector, TailDetector, ZScoreDetector
from tests.helpers.spike import Scripted, StepProbe, identical
from tests.helpers.tiny import TinyRegression, loader, tiny_trainer

STEPS = 24  # 12 epochs of 2 batches (16 samples, batch 8)
SPIKE_AT = 15


def script(spike_at: int | tuple[int, ...] = SPIKE_AT, factor: float = 1e3, n: int = STEPS) -> list[float]:
    """Per-step loss multipliers: 1, except ``factor`` at the spiking steps."""
    spikes = (spike_at,) if isinstance(spike_at, int) else spike_at
    return [factor if s in spikes else 1.0 for s in range(n)]


def run(
    callback: SpikeAdaptiveLR | SpikeGuard,
    values: list[float],
    optimizer: Any = torch.optim.SGD,
    mode: str = "scale",
    probe: StepProbe | None = None,
    **trainer_kwargs: Any,
) -> tuple[StepProbe, Scripted, pl.Trainer]:
    torch.manual_seed(0)
    opt_kwargs = {"momentum": 0.9} if optimizer is torch.optim.SGD else {}
    if optimizer is torch.optim.AdamW:
        opt_kwargs = {"weight_decay": 0.1}
    model = Scripted(values, mode=mode, per_step=True, base_lrs=(0.05,), optimizer=optimizer, **opt_kwargs)
    probe = probe or StepProbe()
    epochs = trainer_kwargs.pop("max_epochs", len(values) // 2)
    trainer = tiny_trainer([callback, probe], max_epochs=epochs, **trainer_kwargs)
    trainer.fit(model, loader(n=16, batch_size=8))
    return probe, model, trainer


# --- detectors -------------------------------------------------------------------------------------------


def zscore_reference(values: list[float], z: float, threshold: float, ema: float, warmup: int) -> list[int]:
    """The z-score rule written out on its own: flags of each value against the EMA mean/variance so far."""
    flags, mean, var, seen = [], None, 0.0, 0
    for i, x in enumerate(values):
        if not math.isfinite(x):
            flags.append(i)
            continue
        if mean is None:
            mean, seen = x, 1
            continue
        bound = mean + z * var**0.5
        if seen >= warmup and x > bound and x - mean > (threshold - 1) * abs(mean):
            flags.append(i)
        learned = min(x, bound) if seen >= warmup else x
        delta = learned - mean
        mean, var = mean + (1 - ema) * delta, ema * (var + (1 - ema) * delta**2)
        seen += 1
    return flags


def noisy_losses(n: int = 400, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    values = [2.0 * math.exp(-i / 80) + 0.5 + 0.05 * rng.gauss(0, 1) for i in range(n)]
    for i in (120, 121, 250):
        values[i] *= 20
    values[300] = float("nan")
    values[330] = float("inf")
    return values


def test_zscore_detector_follows_the_written_out_rule() -> None:
    values = noisy_losses()
    detector = ZScoreDetector(z=6.0, threshold=1.1, ema=0.95, warmup=50)
    flags = [i for i, x in enumerate(values) if detector.check(x)]
    want = zscore_reference(values, 6.0, 1.1, 0.95, 50)
    assert flags == want
    assert flags == [120, 121, 250, 300, 330]  # the injected spikes, and nothing of the noise


def test_zscore_accepts_a_lasting_level_change_but_not_a_lone_spike() -> None:
    detector = ZScoreDetector(z=6.0, threshold=1.1, ema=0.95, warmup=20)
    rng = random.Random(1)
    base = [1.0 + 0.02 * rng.gauss(0, 1) for _ in range(100)]
    flags = [i for i, x in enumerate(base + [3.0 * v for v in base]) if detector.check(x)]
    # The jump to 3x is flagged at first; the winsorised statistics then move to the new level.
    assert flags[0] == 100
    assert len(flags) < 30
    assert flags == list(range(100, 100 + len(flags)))


def tail_reference(values: list[float], tail: float = 2.5, z: float = 3.0, persist: float = 1.5, guard: float = 1e4,
                   threshold: float = 1.1, ema: float = 0.95, warmup: int = 50) -> tuple[list[int], float]:  # fmt: skip
    """The tail rule written out on its own, in log space: flags against the record of calm excesses so far, and
    the record at the end."""
    flags, level, spread, record, held, cusum, seen = [], None, 0.0, 0.0, 0.0, 0.0, 0
    for i, x in enumerate(values):
        if not math.isfinite(x):
            flags.append(i)
            continue
        if x <= 0:
            continue
        y = math.log(x)
        if level is None:
            level, seen = y, 1
            continue
        excess = y - level
        if seen >= warmup:
            bar = max(z * spread, record)
            ratio = excess / bar if bar > 0 else (math.inf if excess > 0 else 0.0)
            grown = max(0.0, cusum + min(ratio, 1.5) - 0.5)
            if excess > math.log(threshold) and (ratio > tail or grown > persist or excess > math.log(guard)):
                flags.append(i)
                cusum = held = 0.0
            else:
                cusum = grown
                if ratio > 1:
                    held = max(held, excess)
                else:
                    record = max(record, excess)
                    if grown == 0:
                        record, held = max(record, held), 0.0
            excess = min(excess, bar)
        level += (1 - ema) * excess
        spread = ema * spread + (1 - ema) * abs(excess)
        seen += 1
    return flags, record


def test_tail_detector_follows_the_written_out_rule() -> None:
    values = noisy_losses()
    for kwargs in ({}, {"tail": 2.0, "z": 2.0, "persist": 1.0, "warmup": 20}):
        detector = TailDetector(**kwargs)
        flags = [i for i, x in enumerate(values) if detector.check(x)]
        want, record = tail_reference(values, **kwargs)
        assert flags == want
        assert detector.record == pytest.approx(record, rel=1e-12)
        assert record > 0
    detector = TailDetector()
    assert [i for i, x in enumerate(values) if detector.check(x)] == [120, 121, 250, 300, 330]


def calm_noise(n: int = 600, seed: int = 2) -> list[float]:
    rng = random.Random(seed)
    return [math.exp(0.05 * rng.gauss(0, 1)) for _ in range(n)]


def test_tail_detector_learns_the_tasks_own_tail() -> None:
    """Calm extremes that grow step by step (1.2x ... 3.5x) raise the bar with them and are never flagged; the same
    3.5x after calm noise only is a spike; and after that history a 30x one still is."""
    grown = calm_noise()
    for at, ratio in zip((100, 200, 300, 400, 500), (1.2, 1.4, 1.8, 2.5, 3.5)):
        grown[at] *= ratio
    learned = TailDetector()
    assert [i for i, x in enumerate(grown) if learned.check(x)] == []
    assert math.exp(learned.record) > 3
    fresh = TailDetector()
    assert [i for i, x in enumerate([*calm_noise(), 3.5]) if fresh.check(x)] == [600]
    assert learned.check(30.0)


def test_tail_detector_flags_a_sustained_rise_that_no_single_step_would() -> None:
    detector = TailDetector()
    for x in calm_noise():
        detector.check(x)
    level = math.exp(detector.mean)
    assert not detector.check(1.3 * level)
    assert detector.suspect
    assert detector.check(1.3 * level)  # twice in a row: a rise
    for x in calm_noise(40, seed=3):
        assert not detector.check(x)
    assert not detector.check(1.3 * level)
    assert detector.suspect
    for x in calm_noise(40, seed=4):
        assert not detector.check(x)
        assert not detector.suspect


def test_tail_detector_guard_flags_what_a_heavy_tail_would_hide() -> None:
    """Calm extremes growing to 1000x the level make the bar ~e^17; a 20000x loss is still a spike, by the guard."""
    values = calm_noise(1000)
    for at, ratio in zip(range(100, 1000, 100), (1.2, 1.4, 1.8, 2.5, 3.5, 8.0, 30.0, 200.0, 1000.0)):
        values[at] *= ratio
    guarded, unguarded = TailDetector(), TailDetector(guard=1e9)
    assert (
        [i for i, x in enumerate(values) if guarded.check(x)]
        == []
        == [i for i, x in enumerate(values) if unguarded.check(x)]
    )
    assert guarded.check(2e4)
    assert not unguarded.check(2e4)


def test_tail_detector_on_values_without_a_logarithm() -> None:
    detector = TailDetector(warmup=5)
    for x in calm_noise(20):
        detector.check(x)
    state = detector.state_dict()
    assert [detector.check(x) for x in (0.0, -3.0)] == [False, False]
    assert detector.state_dict() == state
    assert [detector.check(x) for x in (math.nan, math.inf, -math.inf)] == [True, True, True]
    assert detector.state_dict() == state  # none of them was learned


def test_ratio_detector_is_the_seed_rule_with_hold() -> None:
    detector = RatioDetector(threshold=1.1)
    assert [detector.check(x) for x in (1.0, 1.2, 1.25, 0.0, 5.0, -1.0, 2.0)] == [
        False,
        True,
        False,
        False,
        False,
        False,
        False,
    ]
    detector.check(3.0)  # a spike against 2.0
    detector.hold()
    assert detector.baseline == 2.0


@pytest.mark.parametrize("kind", ["zscore", "ratio", "ratio-ema", "tail"])
def test_device_statistics_equal_host_statistics_bitwise(kind: str) -> None:
    def make() -> Any:
        if kind == "zscore":
            return ZScoreDetector(z=3.0, threshold=1.1, ema=0.9, warmup=10)
        if kind == "tail":
            return TailDetector(warmup=10)
        return RatioDetector(threshold=1.1, ema=0.5 if kind == "ratio-ema" else 0.0)

    host, device = make(), make()
    losses = noisy_losses(seed=3)
    losses[5] *= 30  # inside the z-score warmup: not a decision yet
    losses[380] = losses[381] = 1.5 * losses[379]  # a short rise: suspect, then a spike by persistence
    losses[200], losses[201] = 0.0, -1.0  # no logarithm: neither spikes nor learned by the tail detector
    values = torch.tensor(losses, dtype=torch.float32)  # losses as a model returns them
    host_flags, device_flags, host_suspects, device_suspects = [], [], [], []
    for x in values:
        host_flags.append(host.check(float(x)))
        host_suspects.append(host.suspect)
        device_flags.append(bool(device.check_tensor(x)))
        flag = device.suspect_tensor()
        device_suspects.append(False if flag is None else bool(flag))
    assert host_flags == device_flags
    assert sum(host_flags) >= 3
    assert host_suspects == device_suspects
    assert kind != "tail" or host_flags[381] and host_suspects[380]
    if kind == "tail":  # torch's and Python's log may differ in the last bit
        assert device.state_dict() == pytest.approx(host.state_dict(), rel=1e-12, abs=1e-15)
    else:
        assert host.state_dict() == device.state_dict()  # floats compared exactly


# --- skip ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer", [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW], ids=["sgd-momentum", "adam", "adamw-wd"]
)
def test_skip_leaves_weights_and_optimizer_state_bit_identical(optimizer: Any) -> None:
    spike = SpikeGuard(TailDetector(warmup=5), reactions="skip")
    probe, _, _ = run(spike, script(), optimizer=optimizer)
    assert spike.spikes == [SPIKE_AT]
    assert spike.steps_lost == 1
    assert identical(probe.after[SPIKE_AT], probe.before[SPIKE_AT])
    for s in (SPIKE_AT - 1, SPIKE_AT + 1):  # the steps around it do train
        assert not identical(probe.after[s], probe.before[s])
    # Momentum buffers, Adam moments and step counts exist and were left alone.
    state = probe.after[SPIKE_AT]["opt"][0]
    assert state
    assert all(isinstance(v, torch.Tensor) for v in state.values())


# --- rollback ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("every", "back_to", "lost"), [(1, SPIKE_AT - 1, 2), (4, 12, 4)])
def test_rollback_restores_the_copy_before_the_last_refresh(every: int, back_to: int, lost: int) -> None:
    spike = SpikeGuard(TailDetector(warmup=5), reactions="rollback", snapshot_every=every)
    probe, _, _ = run(spike, script(), optimizer=torch.optim.Adam)
    assert spike.spikes == [SPIKE_AT]
    # Weights, Adam moments and step counts after the spiking step are those from before step `back_to`.
    assert identical(probe.after[SPIKE_AT], probe.before[back_to])
    assert spike.steps_lost == lost
    assert spike.events[0]["reactions"] == ["rollback"]


class LRShock(pl.Callback):
    """A 1000x LR on the update of step ``SPIKE_AT - 1``."""

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * (1000.0 if trainer.global_step == SPIKE_AT - 1 else 1.0)


DETECTORS = {"zscore": ZScoreDetector, "tail": TailDetector}
PATHS = {"fast": {}, "host": {"nan_policy": "ignore"}, "device": {"sync_every": 4}}  # the ways a step is decided


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("detector", "flagged"), [("zscore", SPIKE_AT), ("tail", SPIKE_AT + 1)])
def test_rollback_undoes_a_too_high_lr_step(detector: str, flagged: int, path: str) -> None:
    """A 1000x LR on step 14 breaks the weights and the loss of step 15 jumps; rollback goes back to before 14.

    On this toy, whose loss falls 40x in 15 steps, the tail detector's running level lags: step 15 lies above
    its record without being a spike, and step 16 (as broken) is one. Step 15, a suspect, did not refresh the
    rollback copy, so the rollback still lands before the shock: on the host's fast and full paths, and on the
    device path (exercised on the CPU), which selects the copy without reading the decision back.
    """
    spike = SpikeGuard(DETECTORS[detector](warmup=5), reactions="rollback", snapshot_every=1, **PATHS[path])
    probe = StepProbe()
    torch.manual_seed(0)
    model = TinyRegression(base_lrs=(0.05,))
    tiny_trainer([LRShock(), spike, probe], max_epochs=12).fit(model, loader(n=16, batch_size=8))
    assert spike._fast == (path == "fast")
    assert spike._on_device == (path == "device")
    assert spike.spikes == [flagged]
    assert spike.steps_lost == flagged + 1 - (SPIKE_AT - 1)
    assert identical(probe.after[flagged], probe.before[SPIKE_AT - 1])
    losses = model.step_losses
    assert losses[SPIKE_AT] > 100 * losses[SPIKE_AT - 1]
    assert losses[flagged + 1] < 2 * losses[SPIKE_AT - 1]


# --- backoff at step level -----------------------------------------------------------------------------------


def test_step_backoff_applies_from_the_next_step_and_recovers() -> None:
    spike = SpikeGuard(TailDetector(warmup=5), reactions="backoff", backoff=Backoff(recovery_patience=3))
    probe, _, _ = run(spike, script(), mode="replace")  # a scripted loss: the update of step 15 does no harm
    lrs = [row[0] for row in probe.lrs]
    want = [0.05] * (SPIKE_AT + 1) + [0.025] * 3 + [0.05] * (STEPS - SPIKE_AT - 4)
    assert lrs == want


# --- record ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reactions", "accumulate", "batches", "listed"),
    [
        ("skip", 1, [1], [1]),  # step 15 is epoch 7, batch 1
        ("rollback", 1, [1], [0, 1]),  # rollback also undid batch 0's step, as Lightning's file lists b-1, b
        ("skip", 2, [0, 1], [0, 1]),  # one step per epoch: both micro-batches of the window
    ],
)
def test_record_writes_lightning_skip_file(
    tmp_path: Path, reactions: str, accumulate: int, batches: list[int], listed: list[int]
) -> None:
    values = script(SPIKE_AT if accumulate == 1 else 9, n=STEPS if accumulate == 1 else 12)
    every = 1 if reactions == "rollback" else None
    spike = SpikeGuard(TailDetector(warmup=5), reactions=(reactions, "record"), snapshot_every=every)
    run(spike, values, default_root_dir=str(tmp_path), accumulate_grad_batches=accumulate, max_epochs=12)
    path = tmp_path / "skip_batches.json"
    # Lightning's SpikeDetection writes json.dump(list_of_batch_indices, f, indent=4).
    assert path.read_text() == json.dumps(listed, indent=4)
    steps = json.loads((tmp_path / "skip_batches_steps.json").read_text())
    t = SPIKE_AT if accumulate == 1 else 9
    epoch = t // (2 // accumulate)
    assert [(e["step"], e["epoch"], e["batches"], e["reactions"]) for e in steps] == [(t, epoch, batches, [reactions])]
    assert steps[0]["value"] > 100


def test_default_step_configuration(tmp_path: Path) -> None:
    """The previous step-level default (`SpikeAdaptiveLR(interval="step")`): the tail detector after 50 steps,
    rollback, record. 8 batches per epoch (a 2-batch toy's loss swings 5x from one batch to the other)."""
    values = script(75, factor=1e5, n=96)
    spike = SpikeGuard(TailDetector(), reactions=("rollback", "record"))
    torch.manual_seed(0)
    model = Scripted(values, mode="scale", per_step=True, base_lrs=(0.05,), momentum=0.9)
    probe = StepProbe()
    tiny_trainer([spike, probe], max_epochs=12, default_root_dir=str(tmp_path)).fit(model, loader(n=64, batch_size=8))
    assert spike.spikes == [75]
    # The copy is refreshed before every 20th calm step: step 75 spiked, so it goes back to before step 60.
    assert identical(probe.after[75], probe.before[60])
    assert spike.steps_lost == 16
    # Step 75 is epoch 9's batch 3; rollback adds the step before it (batch 2), as Lightning does.
    assert json.loads((tmp_path / "skip_batches.json").read_text()) == [2, 3]


# --- logging -----------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The number of training batches.*log_every_n_steps")
def test_reactions_appear_in_tensorboard_as_event_marks(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="", version="")
    spike = SpikeGuard(TailDetector(warmup=5), reactions=("skip", "backoff"))
    run(spike, script(), logger=logger, log_every_n_steps=4)
    logger.finalize("success")
    events = EventAccumulator(logger.log_dir).Reload()
    detected = {e.step: e.value for e in events.Scalars("spike_detected")}
    skipped = {e.step: e.value for e in events.Scalars("spike_skip")}
    scale = {e.step: e.value for e in events.Scalars("spike_scale-SGD")}
    assert {s for s, v in detected.items() if v == 1.0} == {SPIKE_AT}
    assert {s for s, v in skipped.items() if v == 1.0} == {SPIKE_AT}
    assert {3, 7, 11, 15, 19, 23} <= set(detected)  # the resting line at self.log's cadence, (step + 1) % 4 == 0
    assert scale[SPIKE_AT] == 0.5
    assert scale[11] == 1.0  # before the spike


# --- the device path (decisions kept as tensors), exercised on the CPU -----------------------------------------


@pytest.mark.parametrize("reactions", [("skip",), ("rollback",)])
def test_device_path_matches_host_path_bitwise(reactions: tuple[str, ...]) -> None:
    values = script((9, SPIKE_AT))
    every = 2 if "rollback" in reactions else None
    host = SpikeGuard(TailDetector(warmup=5), reactions=reactions, snapshot_every=every)
    device = SpikeGuard(TailDetector(warmup=5), reactions=reactions, snapshot_every=every, sync_every=4)
    probe_h, model_h, _ = run(host, values, optimizer=torch.optim.SGD)
    probe_d, model_d, _ = run(device, values, optimizer=torch.optim.SGD)
    assert device._on_device
    assert not host._on_device
    assert host.spikes == device.spikes == [9, SPIKE_AT]
    assert host.steps_lost == device.steps_lost
    assert host.events == device.events
    assert all(identical(a, b) for a, b in zip(probe_h.after, probe_d.after))


def test_device_path_backs_off_at_the_read_back() -> None:
    spike = SpikeGuard(TailDetector(warmup=5), reactions="backoff", sync_every=4)
    probe = StepProbe()
    model = Scripted(script(9), per_step=True, base_lrs=(0.05,))
    tiny_trainer([spike, probe], max_epochs=3).fit(model, loader(n=64, batch_size=8))  # 8 steps per epoch
    # Decisions are read back after steps 3, 7, 11, ... and at epoch ends: the spike of step 9 halves the LR
    # from step 12 on (on the host path it would be from step 10).
    assert [row[0] for row in probe.lrs] == [0.05] * 12 + [0.025] * 12
    assert spike.spikes == [9]


def test_device_path_reads_nothing_back_between_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between read-backs the hooks never turn a tensor into a Python value (a host sync on a GPU)."""
    spike = SpikeGuard(TailDetector(warmup=5), reactions="rollback", sync_every=8, snapshot_every=2)
    reads: list[str] = []
    guarded = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")
    originals = {name: getattr(torch.Tensor, name) for name in guarded}

    def guard(hook: Any) -> Any:
        def wrapped(trainer: pl.Trainer, *args: Any) -> Any:
            syncing = hook.__name__ == "on_train_batch_end" and (spike._step + 1) % 8 == 0
            if not syncing:
                for name in guarded:
                    monkeypatch.setattr(
                        torch.Tensor, name, lambda *a, _n=name, **k: reads.append(_n) or originals[_n](*a, **k)
                    )
            try:
                return hook(trainer, *args)
            finally:
                for name in guarded:
                    monkeypatch.setattr(torch.Tensor, name, originals[name])

        return wrapped

    for name in ("on_before_backward", "on_before_optimizer_step", "on_train_batch_end", "on_train_batch_start"):
        setattr(spike, name, guard(getattr(spike, name)))
    run(spike, script(), optimizer=torch.optim.SGD)
    assert reads == []
    assert spike.spikes == [SPIKE_AT]  # caught up at the read-back


# --- training modes -----------------------------------------------------------------------------------------


class ManualScripted(Scripted):
    """Manual optimization: one optimizer stepped inside training_step, the loss returned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        loss = super().training_step(batch, batch_idx)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return loss.detach()


def test_manual_optimization_reads_the_returned_loss_and_rolls_back() -> None:
    # The z-score rule: the toy's steeply falling loss makes the tail detector's level lag (one step late).
    spike = SpikeGuard(ZScoreDetector(warmup=5), reactions=("rollback", "backoff"), snapshot_every=1)
    probe = StepProbe()
    torch.manual_seed(0)
    model = ManualScripted(script(), mode="scale", per_step=True, base_lrs=(0.05,))
    tiny_trainer([spike, probe], max_epochs=12).fit(model, loader(n=16, batch_size=8))
    assert spike.spikes == [SPIKE_AT]
    # Checked after the batch: the spiking batch's own update is undone (the copy is from after step 14).
    assert identical(probe.after[SPIKE_AT], probe.before[SPIKE_AT])
    assert [row[0] for row in probe.lrs] == [0.05] * (SPIKE_AT + 1) + [0.025] * (STEPS - SPIKE_AT - 1)


def test_manual_optimization_epoch_rule_reads_the_returned_loss() -> None:
    spike = SpikeAdaptiveLR()
    probe = StepProbe()
    model = ManualScripted([1.0, 1.5, 1.5, 2.0], mode="replace", base_lrs=(0.1,))
    tiny_trainer([spike, probe], max_epochs=4).fit(model, loader(n=16, batch_size=8))
    assert spike.spikes == [1, 3]
    assert spike.baseline == 2.0
    assert [row[0] for row in probe.lrs] == [0.1] * 4 + [0.05] * 4


def test_manual_optimization_refuses_skip() -> None:
    torch.manual_seed(0)
    model = ManualScripted(script(), mode="scale", per_step=True)
    with pytest.raises(MisconfigurationException, match="skip"):
        tiny_trainer([SpikeGuard(reactions="skip")], max_epochs=1).fit(model, loader(n=16, batch_size=8))


def test_manual_optimization_with_monitor() -> None:
    spike = SpikeGuard(RatioDetector(), reactions="backoff", monitor="score")
    probe = StepProbe()
    values = [1.0, 1.0, 1.5, 1.5, 1.5, 2.0]
    model = ManualScripted(values, mode="replace", per_step=True, log_as="score", base_lrs=(0.05,))
    tiny_trainer([spike, probe], max_epochs=3).fit(model, loader(n=16, batch_size=8))
    assert spike.spikes == [2, 5]
    assert [row[0] for row in probe.lrs] == [0.05, 0.05, 0.05, 0.025, 0.025, 0.025]


class TwoOptimizers(TinyRegression):
    """GAN-style: two optimizers (weight, bias), each stepped once per batch under manual optimization."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values
        self.automatic_optimization = False

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        first, second = self.optimizers()
        loss = 0.0 * nn.functional.mse_loss(self(x), y) + self.values[self.trainer.global_step // 2]
        for opt in (first, second):
            opt.zero_grad()
        self.manual_backward(loss)
        first.step()
        second.step()
        return loss.detach()

    def configure_optimizers(self) -> Any:
        return [torch.optim.SGD([self.layer.weight], lr=0.1), torch.optim.Adam([self.layer.bias], lr=0.01)]


def test_two_optimizers_share_the_decision() -> None:
    spike = SpikeGuard(TailDetector(warmup=5), reactions="backoff")
    probe = StepProbe()
    torch.manual_seed(0)
    tiny_trainer([spike, probe], max_epochs=12).fit(TwoOptimizers(script()), loader(n=16, batch_size=8))
    # t counts training steps (batches), as `interval="step"` does under manual optimization, while
    # global_step counts both optimizers' steps: batch 15 (optimizer steps 30 and 31) spiked.
    assert spike.spikes == [SPIKE_AT]
    assert spike.events[0]["step"] == SPIKE_AT
    assert probe.lrs[2 * (SPIKE_AT + 1)] == [0.05, 0.005]
    assert probe.lrs[2 * SPIKE_AT] == [0.1, 0.01]


def test_monitor_at_step_level_reads_this_steps_logged_value() -> None:
    spike = SpikeGuard(TailDetector(warmup=5), reactions="skip", monitor="score")
    values = script()
    torch.manual_seed(0)
    model = Scripted(values, mode="scale", per_step=True, log_as="score", base_lrs=(0.05,))
    probe = StepProbe()
    tiny_trainer([spike, probe], max_epochs=12).fit(model, loader(n=16, batch_size=8))
    assert spike.spikes == [SPIKE_AT]
    assert identical(probe.after[SPIKE_AT], probe.before[SPIKE_AT])


# --- bf16 mixed precision on the CPU ----------------------------------------------------------------------


def test_bf16_mixed_skip_and_rollback() -> None:
    for reactions, back_to in (("skip", SPIKE_AT), ("rollback", SPIKE_AT - 1)):
        every = 1 if reactions == "rollback" else None
        spike = SpikeGuard(TailDetector(warmup=5), reactions=reactions, snapshot_every=every)
        probe, _, _ = run(spike, script(), optimizer=torch.optim.Adam, precision="bf16-mixed")
        assert spike.spikes == [SPIKE_AT]
        assert identical(probe.after[SPIKE_AT], probe.before[back_to])


def test_bf16_mixed_epoch_rule() -> None:
    spike = SpikeAdaptiveLR()
    probe = StepProbe()
    torch.manual_seed(0)
    model = Scripted([1.0, 1.5, 1.5, 2.0], base_lrs=(0.1,))
    tiny_trainer([spike, probe], max_epochs=4, precision="bf16-mixed").fit(model, loader(n=16, batch_size=8))
    assert [row[0] for row in probe.lrs] == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]

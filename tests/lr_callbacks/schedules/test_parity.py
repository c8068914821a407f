"""Every schedule callback, driven by a real Trainer, sets exactly the LRs of torch's reference scheduler."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_sched

from lr_callbacks import (
    CosineAnnealing,
    CosineWarmRestarts,
    CyclicLR,
    ExponentialDecay,
    OneCycle,
    ReduceOnPlateau,
    StepDecay,
    WarmupStableDecay,
)
from lr_callbacks.schedules import functions as schedules
from tests.helpers.lr_cases import torch_lrs
from tests.helpers.tiny import LRRecorder, TinyRegression, loader, tiny_trainer

BASE_LRS = (0.1, 0.03)
BATCHES = 8  # per epoch: 64 samples, batch 8
EPOCHS = 4
REL = 1e-12


def _reference(make: Callable[[torch.optim.Optimizer], Any], n_steps: int, t_of_step: Callable[[int], float]) -> list:
    """LRs of a torch scheduler at each optimizer step, stepped to each step's time ``t``."""
    return torch_lrs(make, BASE_LRS, [t_of_step(k) for k in range(n_steps)])


def _run(callback: Any, accumulate: int = 1) -> list[list[float]]:
    torch.manual_seed(0)
    recorder = LRRecorder()
    trainer = tiny_trainer([callback, recorder], max_epochs=EPOCHS, accumulate_grad_batches=accumulate)
    trainer.fit(TinyRegression(base_lrs=BASE_LRS), loader())
    return recorder.lrs


def _assert_close(got: list[list[float]], want: list[list[float]]) -> None:
    assert len(got) == len(want)
    for k, (g_row, w_row) in enumerate(zip(got, want)):
        for g, w in zip(g_row, w_row):
            assert g == pytest.approx(w, rel=REL, abs=1e-15), f"step {k}: {g_row} != {w_row}"


def _wsd_lengths(interval: str) -> tuple[int, int]:
    """WarmupStableDecay's (warmup, decay) in a run of 4 epochs of 8 steps."""
    return (1, 2) if interval == "epoch" else (6, 12)


def _torch_wsd(optimizer: torch.optim.Optimizer, total: int, shape: str) -> Any:
    """Warmup-stable-decay from torch's own schedulers: ``SequentialLR`` of ``LinearLR``, ``ConstantLR`` and the
    decay (``CosineAnnealingLR``, or ``LambdaLR`` for the linear and 1-sqrt shapes), ``start_factor=0.1`` and
    ``eta_min=1e-3``."""
    warmup, decay = _wsd_lengths("epoch" if total == EPOCHS else "step")
    bases = [g["lr"] for g in optimizer.param_groups]
    if shape == "cosine":
        last = torch_sched.CosineAnnealingLR(optimizer, T_max=decay, eta_min=1e-3)
    else:
        fraction = (lambda k: 1 - k / decay) if shape == "linear" else (lambda k: 1 - math.sqrt(k / decay))
        last = torch_sched.LambdaLR(optimizer, [lambda k, b=b: (1e-3 + (b - 1e-3) * fraction(k)) / b for b in bases])
    for group, base in zip(optimizer.param_groups, bases):
        group["lr"] = base
    ramp = torch_sched.LinearLR(optimizer, start_factor=0.1, total_iters=warmup)
    hold = torch_sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return torch_sched.SequentialLR(optimizer, [ramp, hold, last], milestones=[warmup, total - decay])


CASES = [
    # (id, our callback factory, torch scheduler factory, intervals)
    ("step-s2-g0.5", lambda i: StepDecay(2, 0.5, interval=i), lambda o, n: torch_sched.StepLR(o, 2, 0.5)),
    ("step-s5-g0.1", lambda i: StepDecay(5, interval=i), lambda o, n: torch_sched.StepLR(o, 5, 0.1)),
    ("exp-gamma", lambda i: ExponentialDecay(gamma=0.9, interval=i), lambda o, n: torch_sched.ExponentialLR(o, 0.9)),
    (
        "exp-k",
        lambda i: ExponentialDecay(k=0.05, interval=i),
        lambda o, n: torch_sched.ExponentialLR(o, math.exp(-0.05)),
    ),
    (
        "cos-tmax",
        lambda i: CosineAnnealing(T_max=32, eta_min=1e-3, interval=i),
        lambda o, n: torch_sched.CosineAnnealingLR(o, T_max=32, eta_min=1e-3),
    ),
    ("cos-zero", lambda i: CosineAnnealing(T_max=40, interval=i), lambda o, n: torch_sched.CosineAnnealingLR(o, 40)),
    (
        "sgdr-t2-m2",
        lambda i: CosineWarmRestarts(T_0=2, T_mult=2, eta_min=1e-4, interval=i),
        lambda o, n: torch_sched.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2, eta_min=1e-4),
    ),
    (
        "sgdr-t3-m1",
        lambda i: CosineWarmRestarts(T_0=3, interval=i),
        lambda o, n: torch_sched.CosineAnnealingWarmRestarts(o, T_0=3),
    ),
    (
        "cyclic-tri",
        lambda i: CyclicLR(1e-3, 0.1, step_size_up=3, interval=i),
        lambda o, n: torch_sched.CyclicLR(o, 1e-3, 0.1, step_size_up=3, cycle_momentum=False),
    ),
    (
        "cyclic-tri2-groups",
        lambda i: CyclicLR([1e-3, 1e-4], [0.1, 0.02], step_size_up=2, step_size_down=3, mode="triangular2", interval=i),
        lambda o, n: torch_sched.CyclicLR(
            o, [1e-3, 1e-4], [0.1, 0.02], step_size_up=2, step_size_down=3, mode="triangular2", cycle_momentum=False
        ),
    ),
    (
        "cyclic-exp",
        lambda i: CyclicLR(1e-3, 0.1, step_size_up=4, mode="exp_range", gamma=0.97, interval=i),
        lambda o, n: torch_sched.CyclicLR(
            o, 1e-3, 0.1, step_size_up=4, mode="exp_range", gamma=0.97, cycle_momentum=False
        ),
    ),
    (
        "onecycle-cos",
        lambda i: OneCycle(max_lr=[0.2, 0.05], interval=i),
        lambda o, n: torch_sched.OneCycleLR(o, max_lr=[0.2, 0.05], total_steps=n, cycle_momentum=False),
    ),
    (
        "onecycle-lin-3phase",
        lambda i: OneCycle(0.2, total_steps=40, pct_start=0.25, anneal_strategy="linear", three_phase=True, interval=i),
        lambda o, n: torch_sched.OneCycleLR(
            o, 0.2, total_steps=40, pct_start=0.25, anneal_strategy="linear", three_phase=True, cycle_momentum=False
        ),
    ),
    *(
        (
            f"wsd-{shape}",
            lambda i, shape=shape: WarmupStableDecay(
                *_wsd_lengths(i), start_factor=0.1, eta_min=1e-3, shape=shape, interval=i
            ),
            lambda o, n, shape=shape: _torch_wsd(o, n, shape),
        )
        for shape in ("linear", "cosine", "1-sqrt")
    ),
]


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize(("ours", "theirs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_schedule_matches_torch(ours: Callable, theirs: Callable, interval: str) -> None:
    got = _run(ours(interval))
    n_steps = len(got)
    assert n_steps == EPOCHS * BATCHES
    if interval == "step":
        if isinstance(ours(interval), CosineWarmRestarts):
            t_of_step = lambda k: k // BATCHES + (k % BATCHES) / BATCHES
        else:
            t_of_step = float
        total = n_steps
    else:
        t_of_step = lambda k: float(k // BATCHES)
        total = EPOCHS
    want = _reference(lambda o: theirs(o, total), n_steps, t_of_step)
    _assert_close(got, want)


def test_step_interval_counts_optimizer_steps_under_accumulation() -> None:
    got = _run(StepDecay(3, 0.5, interval="step"), accumulate=2)
    assert len(got) == EPOCHS * BATCHES // 2
    want = _reference(lambda o: torch_sched.StepLR(o, 3, 0.5), len(got), float)
    _assert_close(got, want)


def test_warm_restarts_fractional_epochs_under_accumulation() -> None:
    got = _run(CosineWarmRestarts(T_0=1, T_mult=2, interval="step"), accumulate=2)
    steps_per_epoch = BATCHES // 2
    want = _reference(
        lambda o: torch_sched.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=2),
        len(got),
        lambda k: k // steps_per_epoch + (k % steps_per_epoch) / steps_per_epoch,
    )
    _assert_close(got, want)


def test_cosine_holds_eta_min_after_t_max() -> None:
    got = _run(CosineAnnealing(T_max=2, eta_min=1e-3))
    assert list(got[2 * BATCHES :]) == [[1e-3, 1e-3]] * (2 * BATCHES)


# --- SGDR: exact restarts --------------------------------------------------------------------------------

SGDR_EPOCHS = 1200  # past the fourth restart of T_0=1, T_mult=10 (epoch 1111)


def _chained_warm_restarts(T_0: int, T_mult: int, eta_min: float, n: int, base: float = 0.1) -> list[float]:
    """torch's default path: ``CosineAnnealingWarmRestarts.step()`` once per epoch, LR read before each step."""
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=base)
    scheduler = torch_sched.CosineAnnealingWarmRestarts(optimizer, T_0=T_0, T_mult=T_mult, eta_min=eta_min)
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("T_mult", [1, 2, 3, 5, 10])
@pytest.mark.parametrize(("T_0", "eta_min"), [(1, 0.0), (2, 1e-3), (3, 0.0), (7, 1e-4)])
def test_warm_restarts_equal_torch_chained_step_to_the_bit(T_0: int, T_mult: int, eta_min: float) -> None:
    want = _chained_warm_restarts(T_0, T_mult, eta_min, SGDR_EPOCHS)
    got = [schedules.cosine_warm_restarts(float(e), 0.1, T_0, T_mult, eta_min) for e in range(SGDR_EPOCHS)]
    mismatches = [(e, g, w) for e, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not mismatches, f"first mismatches (epoch, ours, torch): {mismatches[:3]}"


@pytest.mark.parametrize(
    ("T_0", "T_mult", "epoch", "period"),
    [(1, 3, 121, 243), (1, 10, 111, 1000), (1, 10, 1111, 10000), (2, 3, 80, 162), (1, 5, 781, 3125)],
)
def test_warm_restart_epochs_restart_at_the_base_lr(T_0: int, T_mult: int, epoch: int, period: int) -> None:
    """A floating-point logarithm put some of these restarts one period late (LR ``eta_min`` at the restart)."""
    assert schedules.warm_restart_position(float(epoch), T_0, T_mult) == (0.0, period)
    assert schedules.cosine_warm_restarts(float(epoch), 0.1, T_0, T_mult, eta_min=1e-3) == 0.1
    assert schedules.cosine_warm_restarts(epoch - 0.5, 0.1, T_0, T_mult, eta_min=1e-3) < 0.01


def _boundaries(T_0: int, T_mult: int, up_to: int) -> set[int]:
    starts, start, length = set(), 0, T_0
    while start <= up_to:
        starts.add(start)
        start, length = start + length, length * T_mult
    return starts


@pytest.mark.parametrize("T_mult", [1, 2, 3, 5, 10])
@pytest.mark.parametrize(("T_0", "steps_per_epoch"), [(1, 3), (2, 7), (5, 4)])
def test_warm_restarts_fractional_epochs_equal_torch_step_epoch(T_0: int, T_mult: int, steps_per_epoch: int) -> None:
    """``interval="step"``: t = epoch + i / n, against torch's ``step(epoch + i / n)``, away from restarts
    (torch's own ``step(epoch)`` uses the floating-point logarithm, which misplaces some exact restarts)."""
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=0.1)
    scheduler = torch_sched.CosineAnnealingWarmRestarts(optimizer, T_0=T_0, T_mult=T_mult, eta_min=1e-4)
    restarts = _boundaries(T_0, T_mult, 500)
    compared = 0
    for k in range(500 * steps_per_epoch):
        epoch, i = divmod(k, steps_per_epoch)
        if i == 0 and epoch in restarts:
            continue
        t = epoch + i / steps_per_epoch
        scheduler.step(t)
        assert schedules.cosine_warm_restarts(t, 0.1, T_0, T_mult, 1e-4) == optimizer.param_groups[0]["lr"], t
        compared += 1
    assert compared > 499 * steps_per_epoch - len(restarts)


@pytest.mark.parametrize(("T_0", "T_mult", "epochs"), [(1, 3, 124), (1, 10, 113)])
def test_trainer_restarts_where_torch_chained_step_does(T_0: int, T_mult: int, epochs: int) -> None:
    """A Trainer run past the restarts at epochs 121 (T_mult=3) and 111 (T_mult=10), one step per epoch."""
    torch.manual_seed(0)
    recorder = LRRecorder()
    callback = CosineWarmRestarts(T_0=T_0, T_mult=T_mult, eta_min=1e-3)
    trainer = tiny_trainer([callback, recorder], max_epochs=epochs)
    trainer.fit(TinyRegression(base_lrs=(0.1,)), loader(n=8, batch_size=8))
    assert [row[0] for row in recorder.lrs] == _chained_warm_restarts(T_0, T_mult, 1e-3, epochs)


class _PlateauMetric(TinyRegression):
    """Logs a scripted metric so plateaus, improvements and cooldowns all happen in a short run."""

    SCRIPT = [5.0, 4.0, 4.0, 3.99999, 4.5, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]

    def __init__(self) -> None:
        super().__init__(base_lrs=BASE_LRS)
        self.calls = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.log("scripted", self.SCRIPT[self.calls % len(self.SCRIPT)], on_step=True, on_epoch=False)
        self.log("scripted_epoch", self.SCRIPT[self.current_epoch % len(self.SCRIPT)], on_step=False, on_epoch=True)
        self.calls += 1
        return loss


PLATEAU_KWARGS = [
    {"factor": 0.5, "patience": 1},
    {"factor": 0.1, "patience": 0, "cooldown": 2, "min_lr": [1e-3, 1e-4]},
    {"mode": "max", "factor": 0.5, "patience": 2, "threshold": 0.1, "threshold_mode": "abs"},
]


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize("kwargs", PLATEAU_KWARGS)
def test_reduce_on_plateau_matches_torch(kwargs: dict, interval: str) -> None:
    monitor = "scripted" if interval == "step" else "scripted_epoch"
    epochs = 12 if interval == "epoch" else 2
    torch.manual_seed(0)
    recorder = LRRecorder()
    trainer = tiny_trainer([ReduceOnPlateau(monitor, interval=interval, **kwargs), recorder], max_epochs=epochs)
    trainer.fit(_PlateauMetric(), loader())
    got = recorder.lrs

    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASE_LRS]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS)])
    reference = torch_sched.ReduceLROnPlateau(optimizer, **kwargs)
    want = []
    script = _PlateauMetric.SCRIPT
    for k in range(len(got)):
        want.append([g["lr"] for g in optimizer.param_groups])
        if interval == "step":
            reference.step(script[k % len(script)])
        elif (k + 1) % BATCHES == 0:
            reference.step(script[(k // BATCHES) % len(script)])
    _assert_close(got, want)
    assert got[-1] != got[0], "the script must trigger at least one reduction"

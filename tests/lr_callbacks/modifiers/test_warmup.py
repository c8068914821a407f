"""Warmup: torch LinearLR parity, the start_factor=0 first step, cosine shape, composition with a schedule."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.lr_scheduler import LinearLR

from lr_callbacks import CosineAnnealing, Warmup
from tests.helpers.tiny import LRRecorder, TinyRegression, loader, tiny_trainer

BASE_LRS = (0.1, 0.03)
BATCHES = 8


def _linear_lr_reference(start_factor: float, duration: int, n: int) -> tuple[list[list[float]], list[list[float]]]:
    """torch's LinearLR at t = 0..n-1: (stepped LRs, LRs of its closed form)."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASE_LRS]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS)])
    scheduler = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=duration)
    stepped, closed = [], []
    for _ in range(n):
        stepped.append([g["lr"] for g in optimizer.param_groups])
        closed.append(scheduler._get_closed_form_lr())
        optimizer.step()
        scheduler.step()
    return stepped, closed


def _run(callbacks: list[Any], epochs: int = 3, **kwargs: Any) -> LRRecorder:
    torch.manual_seed(0)
    recorder = LRRecorder()
    tiny_trainer([*callbacks, recorder], max_epochs=epochs, **kwargs).fit(TinyRegression(base_lrs=BASE_LRS), loader())
    return recorder


@pytest.mark.parametrize("start_factor", [0.1, 0.25, 1 / 3, 0.9])
@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_linear_matches_torch_linear_lr(start_factor: float, interval: str) -> None:
    duration = 11 if interval == "step" else 2
    recorder = _run([Warmup(duration, start_factor=start_factor, interval=interval)], epochs=3)
    n = 3 * BATCHES if interval == "step" else 3
    stepped, closed = _linear_lr_reference(start_factor, duration, n)
    got = recorder.lrs if interval == "step" else recorder.lrs[::BATCHES]
    assert got == closed  # torch's closed form, to the bit
    for row, want in zip(got, stepped):
        assert row == pytest.approx(want, rel=1e-12)


def test_start_factor_zero_first_step_is_a_no_op() -> None:
    torch.manual_seed(0)
    model = TinyRegression(base_lrs=BASE_LRS)
    before = [p.detach().clone() for p in model.parameters()]
    recorder = LRRecorder()
    tiny_trainer([Warmup(4), recorder], max_steps=1).fit(model, loader())
    assert recorder.lrs == [[0.0, 0.0]]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # The ramp reaches the base LR at t = duration: 0, 1/4, 1/2, 3/4, 1, 1, ...
    lrs = _run([Warmup(4)], epochs=1).lrs
    assert [row[0] for row in lrs[:6]] == [0.0, 0.025, 0.05, 0.07500000000000001, 0.1, 0.1]


def test_cosine_shape() -> None:
    warmup = Warmup(10, start_factor=0.2, shape="cosine")
    factors = [warmup.factor(t) for t in range(15)]
    assert factors[0] == 0.2
    assert factors[5] == pytest.approx(0.6, rel=1e-15)
    assert factors[10:] == [1.0] * 5
    assert all(a < b for a, b in zip(factors[:10], factors[1:11]))
    assert factors[1] == pytest.approx(0.2 + 0.8 * (1 - math.cos(math.pi / 10)) / 2, rel=1e-15)
    lrs = _run([Warmup(10, start_factor=0.2, shape="cosine")], epochs=2).lrs
    assert [row[1] for row in lrs] == pytest.approx([0.03 * f for f in factors] + [0.03], rel=1e-15)


def test_steps_are_optimizer_steps_under_accumulation() -> None:
    recorder = _run([Warmup(6, start_factor=0.4)], epochs=2, accumulate_grad_batches=2)
    assert len(recorder.lrs) == 8  # 2 epochs x 4 optimizer steps
    assert [row[0] for row in recorder.lrs] == pytest.approx([0.1 * (0.4 + 0.1 * k) for k in range(6)] + [0.1] * 2)


def test_multiplies_a_schedule_underneath() -> None:
    recorder = _run([Warmup(5, start_factor=0.5), CosineAnnealing(T_max=20, interval="step")], epochs=2)
    for t, row in enumerate(recorder.lrs):
        for base, lr in zip(BASE_LRS, row):
            cosine = 0.5 * base * (1 + math.cos(math.pi * t / 20))
            assert lr == pytest.approx(cosine * min(1.0, 0.5 + 0.5 * t / 5), rel=1e-12)


def test_logs_its_factor(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(tmp_path, name="", version="")
    _run([Warmup(4, start_factor=0.2)], epochs=1, logger=logger, log_every_n_steps=2)
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("warmup_factor")]
    got = [(int(r["step"]), float(r["warmup_factor"])) for r in rows]
    # self.log's cadence: before step k when (k + 1) % log_every_n_steps == 0
    assert got == [(1, pytest.approx(0.4)), (3, 0.8), (5, 1.0), (7, 1.0)]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"duration": 0}, "duration"),
        ({"duration": 2.5}, "duration"),
        ({"duration": 5, "start_factor": -0.1}, "start_factor"),
        ({"duration": 5, "start_factor": 1.5}, "start_factor"),
        ({"duration": 5, "shape": "exp"}, "shape"),
        ({"duration": 5, "interval": "batch"}, "interval"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        Warmup(**kwargs)


def test_shape_error_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"\['linear', 'cosine'\]"):
        Warmup(5, shape="exp")


def test_state_key_and_stateless_state_dict() -> None:
    assert Warmup(5).state_key != Warmup(6).state_key
    assert Warmup(5).state_key == Warmup(5).state_key
    assert Warmup(5).state_dict() == {}

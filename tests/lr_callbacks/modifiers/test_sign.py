"""SignAlternation: the factor pattern, negative LRs in torch optimizers, and the seed's y=2x contraction."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lr_callbacks import SignAlternation
from tests.helpers.tiny import LRRecorder, TinyRegression, loader, tiny_trainer

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "sgd-momentum": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.0),
    "adamw-decay": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.01),
}


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        ({}, [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]),
        ({"period": 2}, [1.0, 1.0, -1.0, -1.0, 1.0, 1.0]),
        ({"period": 3, "negative_scale": 0.5}, [1.0, 1.0, 1.0, -0.5, -0.5, -0.5]),
        ({"pattern": "positive", "negative_scale": 0.5}, [1.0] * 6),
        ({"pattern": "negative", "negative_scale": 0.5}, [-0.5] * 6),
    ],
)
def test_factor_pattern(kwargs: dict[str, Any], want: list[float]) -> None:
    sign = SignAlternation(**kwargs)
    assert [sign.factor(t) for t in range(6)] == want


def test_epoch_interval_sets_signed_lr_per_group() -> None:
    recorder = LRRecorder()
    tiny_trainer([SignAlternation(period=2, negative_scale=0.5), recorder], max_epochs=5).fit(
        TinyRegression(base_lrs=(0.1, 0.03)), loader()
    )
    per_epoch = recorder.lrs[::8]
    assert per_epoch == [[0.1, 0.03], [0.1, 0.03], [-0.05, -0.015], [-0.05, -0.015], [0.1, 0.03]]
    assert all(row == per_epoch[k // 8] for k, row in enumerate(recorder.lrs))


def test_step_interval_counts_optimizer_steps_under_accumulation() -> None:
    recorder = LRRecorder()
    tiny_trainer([SignAlternation(interval="step"), recorder], max_epochs=2, accumulate_grad_batches=2).fit(
        TinyRegression(base_lrs=(0.1,)), loader()
    )
    # 8 batches per epoch, accumulate 2: 4 optimizer steps per epoch, alternating across the epoch boundary.
    assert [row[0] for row in recorder.lrs] == [0.1, -0.1] * 4


# --- negative LRs in torch optimizers ---------------------------------------------------------------------


def _one_step(make: Callable[..., torch.optim.Optimizer], lr: float, steps: int = 3) -> tuple[torch.Tensor, float]:
    """Take ``steps`` steps on a fixed quadratic with ``lr`` written into the param group; return the
    total displacement and the loss change."""
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(5, dtype=torch.float64))
    target = torch.randn(5, dtype=torch.float64)
    optimizer = make([p], abs(lr))  # the constructor refuses lr < 0 ...
    optimizer.param_groups[0]["lr"] = lr  # ... but the step uses what the group holds
    start = p.detach().clone()
    loss0 = ((p - target) ** 2).sum().item()
    for _ in range(steps):
        optimizer.zero_grad()
        ((p - target) ** 2).sum().backward()
        optimizer.step()
    return p.detach() - start, ((p - target) ** 2).sum().item() - loss0


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_constructor_refuses_negative_lr(name: str) -> None:
    with pytest.raises(ValueError, match="(?i)learning rate"):
        OPTIMIZERS[name]([nn.Parameter(torch.zeros(1))], -0.1)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_negative_lr_in_param_group_steps_the_other_way(name: str) -> None:
    down, loss_down = _one_step(OPTIMIZERS[name], 0.01)
    up, loss_up = _one_step(OPTIMIZERS[name], -0.01)
    # From the same point, the first step is the exact mirror image; later ones go on climbing.
    first_down, _ = _one_step(OPTIMIZERS[name], 0.01, steps=1)
    first_up, _ = _one_step(OPTIMIZERS[name], -0.01, steps=1)
    torch.testing.assert_close(first_up, -first_down, rtol=1e-12, atol=1e-15)
    assert loss_down < 0 < loss_up
    assert torch.dot(up, down) < 0


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_negative_pattern_ascends_the_loss_in_a_trainer(name: str) -> None:
    class Tiny(TinyRegression):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return OPTIMIZERS[name](self.parameters(), 0.01)

    torch.manual_seed(0)
    up, down = Tiny(), Tiny()
    down.load_state_dict(up.state_dict())
    for model, pattern in ((up, "negative"), (down, "positive")):
        recorder = LRRecorder()
        tiny_trainer([SignAlternation(pattern=pattern), recorder], max_epochs=2).fit(model, loader())
        assert {row[0] for row in recorder.lrs} == {-0.01 if pattern == "negative" else 0.01}
    # Mean step loss of the last epoch against the first: up for the negative run, down for the positive.
    n = 8
    assert sum(up.step_losses[n:]) > sum(up.step_losses[:n])
    assert sum(down.step_losses[n:]) < sum(down.step_losses[:n])


# --- the seed's y = 2x: alternating +eta/-eta contracts the error by (1 - eta^2 h^2) per pair ----------------


class OneWeight(pl.LightningModule):
    """``y = w x``, no bias, MSE; full-batch SGD; records ``w`` at every epoch end."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.lr = lr
        self.ws: list[float] = [0.0]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return ((self.w * x - y) ** 2).mean()

    def on_train_epoch_end(self) -> None:
        self.ws.append(self.w.item())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.w], lr=self.lr)


def test_alternation_contracts_error_by_one_minus_eta2_h2_per_pair() -> None:
    x = torch.linspace(-1.0, 2.0, 16, dtype=torch.float64)
    h = 2 * float((x**2).mean())  # curvature of the MSE in w
    eta = 0.3 / h
    model = OneWeight(eta)
    data = DataLoader(TensorDataset(x, 2 * x), batch_size=len(x))
    tiny_trainer([SignAlternation()], max_epochs=12, precision="64-true").fit(model, data)

    errors = [w - 2.0 for w in model.ws]
    per_epoch = [errors[k + 1] / errors[k] for k in range(12)]
    per_pair = [errors[k + 2] / errors[k] for k in range(0, 12, 2)]
    # +eta epochs shrink the error by (1 - eta h), -eta epochs grow it by (1 + eta h).
    assert per_epoch == pytest.approx([1 - eta * h, 1 + eta * h] * 6, abs=1e-12)
    assert per_pair == pytest.approx([1 - eta**2 * h**2] * 6, abs=1e-6)
    assert max(abs(r - (1 - 0.09)) for r in per_pair) < 1e-12
    assert abs(errors[-1]) < abs(errors[0])


# --- logging, arguments, state -----------------------------------------------------------------------------


def test_logs_its_sign(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, name="", version="")
    trainer = tiny_trainer([SignAlternation(negative_scale=0.5)], max_epochs=4, logger=logger, log_every_n_steps=1)
    trainer.fit(TinyRegression(), loader())
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("lr_sign")]
    assert [(int(r["step"]), float(r["lr_sign"])) for r in rows] == [(0, 1.0), (8, -0.5), (16, 1.0), (24, -0.5)]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"pattern": "zigzag"}, "pattern"),
        ({"period": 0}, "period"),
        ({"period": 1.5}, "period"),
        ({"negative_scale": 0.0}, "negative_scale"),
        ({"negative_scale": -1.0}, "negative_scale"),
        ({"interval": "batch"}, "interval"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        SignAlternation(**kwargs)


def test_pattern_error_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"\['alternate', 'positive', 'negative'\]"):
        SignAlternation(pattern="zigzag")


def test_state_key_and_stateless_state_dict() -> None:
    a, b = SignAlternation(period=2), SignAlternation(period=3)
    assert a.state_key != b.state_key
    assert a.state_key == SignAlternation(period=2).state_key
    assert a.state_dict() == {}
    a.load_state_dict({})

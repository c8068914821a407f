"""Lightning's ``LearningRateMonitor`` test cases, with our callbacks in place of the torch schedulers.

Source: Lightning, ``tests/tests_pytorch/callbacks/test_lr_monitor.py``, read at commit 035863d. Each test below is
named after the Lightning test it ports: the same module shape, optimizers, trainer arguments and expected values
(tag names, numbers of logged values, LR lists), with our schedule callback where the Lightning test returns a torch
scheduler from ``configure_optimizers``, and a real ``LearningRateMonitor`` beside it where the Lightning test has
one. Beyond Lightning's own assertions on the monitor, each port checks what our callbacks add: every LR logged
(by the monitor or by us) is the LR that step used, the logger receives each LR once per step the monitor logs
(not a second time from us), and our callbacks alone log under the same tags and at the monitor's cadence.

Ported: test_lr_monitor_single_lr, test_lr_monitor_single_lr_with_momentum (SGD, Adam; OneCycle for OneCycleLR),
test_log_momentum_no_momentum_optimizer, test_lr_monitor_no_logger, test_lr_monitor_multi_lrs (step, epoch),
test_lr_monitor_param_groups (a two-group Adam module of our own in place of Lightning's ClassificationModel, which
needs scikit-learn), test_lr_monitor_custom_pg_name, test_lr_monitor_duplicate_custom_pg_names,
test_multiple_optimizers_basefinetuning and test_lr_monitor_update_callback_metrics.

In test_multiple_optimizers_basefinetuning the torch schedulers drive SGD and Adam but not AdamW; a schedule
callback drives every optimizer, so the port subclasses StepDecay to leave the third optimizer at its base LR (a
schedule sees ``optimizer_idx``, docs/custom-schedules.md). Lightning's finetuning callback picks its optimizers with
``isinstance(optimizer, Adam)``, which AdamW also passes since torch made it an Adam subclass; the port compares
types exactly, as the test's expected tags (a single ``lr-AdamW``) assume.

Left out, and why: the test_lr_monitor_no_lr_scheduler_* cases and
test_log_momentum_no_momentum_optimizer_no_lr_scheduler and test_lr_monitor_multiple_param_groups_no_lr_scheduler
have no scheduler, so nothing of ours to put in place; test_lr_monitor_custom_name names the torch scheduler's
config dict (``{"scheduler": ..., "name": ...}``), which a callback replaces and has no counterpart for.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import BackboneFinetuning, Callback, EarlyStopping, LearningRateMonitor
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import optim

from lr_callbacks import OneCycle, StepDecay
from tests.helpers.memory_logger import MemoryLogger
from tests.helpers.tiny import tiny_trainer

REL = 1e-12

# Lightning's tests keep the default log_every_n_steps=50 with epochs of a few batches, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than the logging interval")


def lr_entries(logger: MemoryLogger) -> list[tuple[int, dict[str, float]]]:
    """The logger's calls that carry LRs (``lr-...`` tags, without the monitor's momentum and weight decay)."""
    out = []
    for step, metrics in logger.calls:
        lrs = {
            k: v for k, v in metrics.items() if k.startswith("lr-") and not k.endswith(("-momentum", "-weight_decay"))
        }
        if lrs:
            assert step is not None
            out.append((step, lrs))
    return out


def lightning_tags(optimizers: Sequence[optim.Optimizer]) -> list[list[str]]:
    """``LearningRateMonitor``'s tag for each param group of optimizers without a torch scheduler: ``lr-<class>``,
    ``-<n>`` on the n-th repeat of a class, then ``/pgN`` (or the group's name) with several groups, or ``/<name>``
    for a single named group."""
    seen: Counter[type] = Counter()
    tags = []
    for optimizer in optimizers:
        seen[type(optimizer)] += 1
        base = f"lr-{type(optimizer).__name__}" + (f"-{seen[type(optimizer)] - 1}" if seen[type(optimizer)] > 1 else "")
        groups = optimizer.param_groups
        if len(groups) > 1:
            tags.append([f"{base}/{g.get('name', f'pg{k + 1}')}" for k, g in enumerate(groups)])
        else:
            tags.append([f"{base}/{groups[0]['name']}" if groups[0].get("name") else base])
    return tags


class UsedLRs(Callback):
    """The LR each param group stepped with, by training step (the step Lightning logs at) and Lightning tag."""

    def __init__(self) -> None:
        self.by_step: dict[int, dict[str, float]] = {}

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        i = next(k for k, o in enumerate(trainer.optimizers) if o is optimizer)
        tags = lightning_tags(trainer.optimizers)[i]
        self.by_step.setdefault(step, {}).update({t: float(g["lr"]) for t, g in zip(tags, optimizer.param_groups)})


@dataclass
class Run:
    trainer: pl.Trainer
    logger: MemoryLogger | None
    used: UsedLRs
    monitor: LearningRateMonitor | None


def run(
    module: pl.LightningModule,
    callbacks: Sequence[Callback],
    monitor: LearningRateMonitor | None = None,
    logger: bool = True,
    **trainer_kwargs: Any,
) -> Run:
    """Fit ``module`` with ``callbacks`` (and ``monitor`` after them) under a memory logger."""
    used = UsedLRs()
    memory = MemoryLogger() if logger else None
    trainer = tiny_trainer(
        [*callbacks, *([monitor] if monitor else []), used], logger=memory if logger else False, **trainer_kwargs
    )
    trainer.fit(module)
    return Run(trainer, memory, used, monitor)


def assert_logged_lrs_were_used(result: Run) -> None:
    """Every LR logged, by anyone, is the LR its group used in the step it was logged at."""
    assert result.logger is not None
    entries = lr_entries(result.logger)
    assert entries
    for step, lrs in entries:
        for tag, value in lrs.items():
            assert value == pytest.approx(result.used.by_step[step][tag], rel=REL), (step, tag)


def assert_each_lr_logged_once_per_monitor_record(result: Run) -> None:
    """The logger gets each tag as often as the monitor recorded it: ours do not log a second copy beside it."""
    assert result.logger is not None
    assert result.monitor is not None
    counts = Counter(tag for _, lrs in lr_entries(result.logger) for tag in lrs)
    assert dict(counts) == {tag: len(values) for tag, values in result.monitor.lrs.items()}


# --- the modules of Lightning's tests, with the optimizers alone -------------------------------------------------


class SGDModel(BoringModel):
    """BoringModel's SGD (LR 0.1), whose StepLR(step_size=1) becomes StepDecay(1)."""

    def configure_optimizers(self) -> optim.Optimizer:
        return optim.SGD(self.parameters(), lr=0.1)


class MomentumModel(BoringModel):
    """test_lr_monitor_single_lr_with_momentum's optimizer (LR 1e-2, momentum 0.9 or betas (0.9, 0.999))."""

    def __init__(self, opt: str) -> None:
        super().__init__()
        self.opt = opt

    def configure_optimizers(self) -> optim.Optimizer:
        kwargs: dict[str, Any] = {"momentum": 0.9} if self.opt == "SGD" else {"betas": (0.9, 0.999)}
        return getattr(optim, self.opt)(self.parameters(), lr=1e-2, **kwargs)


class ASGDModel(BoringModel):
    def configure_optimizers(self) -> optim.Optimizer:
        return optim.ASGD(self.parameters(), lr=1e-2)


class TwoAdams(BoringModel):
    """test_lr_monitor_multi_lrs' module: manual optimization, two Adams (LR 1e-2) stepping once each per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> None:
        for opt in self.optimizers():
            loss = self.loss(self.step(batch))
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    def configure_optimizers(self) -> list[optim.Optimizer]:
        return [optim.Adam(self.parameters(), lr=1e-2), optim.Adam(self.parameters(), lr=1e-2)]


class TwoGroupAdam(BoringModel):
    """Two Adam param groups, the first at a tenth of the second's LR (``self.lr * 0.1`` and ``self.lr``)."""

    lr = 0.01

    def configure_optimizers(self) -> optim.Optimizer:
        return optim.Adam(
            [{"params": [self.layer.weight], "lr": self.lr * 0.1}, {"params": [self.layer.bias], "lr": self.lr}]
        )


class NamedGroup(BoringModel):
    """test_lr_monitor_custom_pg_name's single SGD group named ``linear``; with ``duplicate``, two groups of that
    name (test_lr_monitor_duplicate_custom_pg_names)."""

    def __init__(self, duplicate: bool = False) -> None:
        super().__init__()
        self.duplicate = duplicate
        self.linear_a = torch.nn.Linear(32, 16)
        self.linear_b = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_b(self.linear_a(x)) if self.duplicate else self.layer(x)

    def configure_optimizers(self) -> optim.Optimizer:
        if self.duplicate:
            groups = [
                {"params": list(self.linear_a.parameters()), "name": "linear"},
                {"params": list(self.linear_b.parameters()), "name": "linear"},
            ]
        else:
            groups = [{"params": list(self.layer.parameters()), "name": "linear"}]
        return optim.SGD(groups, lr=0.1)


class LayerSGD(BoringModel):
    """test_lr_monitor_update_callback_metrics' SGD over ``self.layer`` (LR 0.1)."""

    def configure_optimizers(self) -> optim.Optimizer:
        return optim.SGD(self.layer.parameters(), lr=0.1)


# --- tag names, values and duplicates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NamingCase:
    module: Callable[[], pl.LightningModule]
    callbacks: Callable[[], list[Callback]]
    trainer: dict[str, Any]
    tags: list[str]
    monitor: dict[str, Any] | None = None


NAMING_CASES: dict[str, NamingCase] = {
    "test_lr_monitor_single_lr": NamingCase(
        SGDModel,
        lambda: [StepDecay(1)],
        {"max_epochs": 2, "limit_val_batches": 0.1, "limit_train_batches": 0.5},
        ["lr-SGD"],
    ),
    "test_lr_monitor_param_groups": NamingCase(
        TwoGroupAdam,
        lambda: [StepDecay(1, gamma=0.1)],
        {"max_epochs": 2, "limit_val_batches": 0.1, "limit_train_batches": 0.5},
        ["lr-Adam/pg1", "lr-Adam/pg2"],
    ),
    "test_lr_monitor_custom_pg_name": NamingCase(
        NamedGroup,
        lambda: [StepDecay(1)],
        {"max_epochs": 2, "limit_val_batches": 2, "limit_train_batches": 2},
        ["lr-SGD/linear"],
    ),
    **{
        f"test_lr_monitor_multi_lrs[{interval}]": NamingCase(
            TwoAdams,
            lambda: [StepDecay(1, gamma=0.1)],
            {"max_epochs": 2, "log_every_n_steps": 2, "limit_train_batches": 7, "limit_val_batches": 0.1},
            ["lr-Adam", "lr-Adam-1"],
            {"logging_interval": interval},
        )
        for interval in ("step", "epoch")
    },
}


@functools.cache
def _monitored(case_id: str) -> Run:
    case = NAMING_CASES[case_id]
    torch.manual_seed(0)
    monitor = LearningRateMonitor(**(case.monitor or {}))
    return run(case.module(), case.callbacks(), monitor, **case.trainer)


@pytest.mark.parametrize("case_id", list(NAMING_CASES))
def test_monitor_tags_and_values(case_id: str) -> None:
    """Lightning's assertions on the monitor's tags, and every LR logged is the LR that step used."""
    result = _monitored(case_id)
    assert result.monitor is not None
    assert result.monitor.lrs, "No learning rates logged"
    assert list(result.monitor.lrs) == NAMING_CASES[case_id].tags
    assert_logged_lrs_were_used(result)


@pytest.mark.parametrize("case_id", list(NAMING_CASES))
def test_logger_gets_each_lr_once_beside_the_monitor(case_id: str) -> None:
    assert_each_lr_logged_once_per_monitor_record(_monitored(case_id))


@pytest.mark.parametrize("case_id", list(NAMING_CASES))
def test_our_logs_alone_use_lightning_tags(case_id: str) -> None:
    """Without a monitor, our callbacks log under the tags Lightning's test expects from the monitor."""
    case = NAMING_CASES[case_id]
    torch.manual_seed(0)
    result = run(case.module(), case.callbacks(), **{**case.trainer, "log_every_n_steps": 1, "limit_train_batches": 2})
    assert result.logger is not None
    entries = lr_entries(result.logger)
    assert entries
    assert all(sorted(lrs) == sorted(case.tags) for _, lrs in entries)
    assert_logged_lrs_were_used(result)


def test_lr_monitor_single_lr() -> None:
    """Momentum and weight decay are not logged by default; one tag for the one scheduled optimizer."""
    monitor = _monitored("test_lr_monitor_single_lr").monitor
    assert monitor is not None
    assert all(v is None for v in monitor.last_momentum_values.values()), "Momentum should not be logged by default"
    assert all(v is None for v in monitor.last_weight_decay_values.values()), "Weight decay should not be logged"
    assert len(monitor.lrs) == 1


@pytest.mark.parametrize("logging_interval", ["step", "epoch"])
def test_lr_monitor_multi_lrs(logging_interval: str) -> None:
    """Lightning's counts: ``global_step // 2 // log_every_n_steps`` values per tag with ``"step"`` (two optimizers
    step per batch), ``max_epochs`` with ``"epoch"``; the values are torch's StepLR(1, 0.1) ones at those steps."""
    result = _monitored(f"test_lr_monitor_multi_lrs[{logging_interval}]")
    assert result.monitor is not None
    trainer = result.trainer
    if logging_interval == "step":
        expected_number_logged = trainer.global_step // 2 // 2
        values = [1e-2] * 3 + [1e-3] * 4  # steps 1, 3, 5 of epoch 0; 7, 9, 11, 13 of epoch 1
    else:
        expected_number_logged = trainer.max_epochs
        values = [1e-2, 1e-3]
    assert expected_number_logged == len(values)
    for lrs in result.monitor.lrs.values():
        assert lrs == pytest.approx(values, rel=REL)


# --- logging cadence of our callbacks alone ----------------------------------------------------------------------

CADENCE_CASES = {
    # Lightning test: (module, StepDecay's gamma, trainer arguments, Lightning's count of "step"-interval logs)
    "test_lr_monitor_multi_lrs": (
        TwoAdams,
        0.1,
        {"max_epochs": 2, "log_every_n_steps": 2, "limit_train_batches": 7, "limit_val_batches": 0.1},
        lambda trainer: trainer.global_step // 2 // trainer.log_every_n_steps,  # two optimizers step per batch
    ),
    "test_lr_monitor_single_lr": (
        SGDModel,
        0.1,
        {"max_epochs": 2, "limit_val_batches": 0.1, "limit_train_batches": 0.5},  # log_every_n_steps: 50
        lambda trainer: trainer.global_step // trainer.log_every_n_steps,
    ),
}


@pytest.mark.parametrize("interval", ["step", "epoch"])
@pytest.mark.parametrize("case_id", list(CADENCE_CASES))
def test_our_logs_alone_follow_the_monitor_cadence(case_id: str, interval: str) -> None:
    """Without a monitor, our schedule logs where ``LearningRateMonitor()`` logs the torch scheduler it replaces: a
    step-interval one before each step ``s`` with ``(s + 1) % log_every_n_steps == 0``, an epoch-interval one at
    each epoch's first step; Lightning's test counts these as ``global_step // 2 // log_every_n_steps`` (two
    optimizers) and ``max_epochs``."""
    module, gamma, trainer_kwargs, step_count = CADENCE_CASES[case_id]
    torch.manual_seed(0)
    result = run(module(), [StepDecay(1, gamma=gamma, interval=interval)], **trainer_kwargs)
    trainer = result.trainer
    steps = sorted(result.used.by_step)
    if interval == "step":
        expected = [s for s in steps if (s + 1) % trainer.log_every_n_steps == 0]
        assert len(expected) == step_count(trainer)
    else:
        per_epoch = len(steps) // trainer.max_epochs
        expected = [e * per_epoch for e in range(trainer.max_epochs)]
        assert len(expected) == trainer.max_epochs
    assert result.logger is not None
    entries = lr_entries(result.logger)
    assert [step for step, _ in entries] == expected
    assert_logged_lrs_were_used(result)


# --- momentum, weight decay, no logger, duplicate names ----------------------------------------------------------


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_lr_monitor_single_lr_with_momentum(opt: str) -> None:
    torch.manual_seed(0)
    monitor = LearningRateMonitor(log_momentum=True, log_weight_decay=True)
    result = run(
        MomentumModel(opt),
        [OneCycle(max_lr=1e-2, total_steps=10_000)],
        monitor,
        max_epochs=2,
        limit_val_batches=2,
        limit_train_batches=5,
        log_every_n_steps=1,
    )
    assert all(v is not None for v in monitor.last_momentum_values.values()), "Expected momentum to be logged"
    assert len(monitor.last_momentum_values) == len(result.trainer.optimizers)
    assert all(k == f"lr-{opt}-momentum" for k in monitor.last_momentum_values)
    assert all(v is not None for v in monitor.last_weight_decay_values.values()), "Expected weight decay to be logged"
    assert len(monitor.last_weight_decay_values) == len(result.trainer.optimizers)
    assert all(k == f"lr-{opt}-weight_decay" for k in monitor.last_weight_decay_values)
    assert_logged_lrs_were_used(result)


def test_log_momentum_no_momentum_optimizer() -> None:
    torch.manual_seed(0)
    monitor = LearningRateMonitor(log_momentum=True)
    with pytest.warns(RuntimeWarning, match="optimizers do not have momentum."):
        result = run(
            ASGDModel(),
            [StepDecay(1)],
            monitor,
            max_epochs=1,
            limit_val_batches=2,
            limit_train_batches=5,
            log_every_n_steps=1,
        )
    assert all(v == 0 for v in monitor.last_momentum_values.values()), "Expected momentum to be logged"
    assert len(monitor.last_momentum_values) == len(result.trainer.optimizers)
    assert all(k == "lr-ASGD-momentum" for k in monitor.last_momentum_values)


def test_lr_monitor_no_logger() -> None:
    """The monitor refuses a trainer without a logger, beside our callbacks too; ours alone fit without one."""
    torch.manual_seed(0)
    with pytest.raises(MisconfigurationException, match="`Trainer` that has no logger"):
        run(SGDModel(), [StepDecay(1)], LearningRateMonitor(), logger=False, max_epochs=1)
    result = run(SGDModel(), [StepDecay(1)], logger=False, max_epochs=2, limit_train_batches=2)
    used = [lrs["lr-SGD"] for _, lrs in sorted(result.used.by_step.items())]
    assert used == pytest.approx([0.1, 0.1, 0.01, 0.01], rel=REL)


def test_lr_monitor_duplicate_custom_pg_names() -> None:
    torch.manual_seed(0)
    with pytest.raises(
        MisconfigurationException, match="A single `Optimizer` cannot have multiple parameter groups with identical"
    ):
        run(
            NamedGroup(duplicate=True),
            [StepDecay(1)],
            LearningRateMonitor(),
            max_epochs=2,
            limit_val_batches=2,
            limit_train_batches=2,
        )


def test_lr_monitor_update_callback_metrics() -> None:
    """EarlyStopping on the monitor's ``lr-SGD`` stops after epoch 3, when the LR falls below 0.02."""
    torch.manual_seed(0)
    monitor = LearningRateMonitor()
    early_stopping = EarlyStopping(monitor="lr-SGD", mode="min", stopping_threshold=0.02, check_on_train_epoch_end=True)
    result = run(
        LayerSGD(),
        [StepDecay(1, gamma=0.5), early_stopping],
        monitor,
        max_epochs=5,
        limit_val_batches=0,
        limit_train_batches=2,
    )
    trainer = result.trainer
    assert "lr-SGD" in trainer.callback_metrics
    assert monitor.lrs["lr-SGD"] == [0.1, 0.05, 0.025, 0.0125]
    assert min(monitor.lrs["lr-SGD"][:3]) > 0.02
    assert len(monitor.lrs["lr-SGD"][3:]) == 1
    assert min(monitor.lrs["lr-SGD"][3:]) < 0.02
    assert trainer.current_epoch - 1 == 3
    assert early_stopping.stopped_epoch == 3


# --- BackboneFinetuning adding param groups to two of three optimizers -------------------------------------------


class FinetuningModel(BoringModel):
    """test_multiple_optimizers_basefinetuning's module: a backbone and a head, SGD, Adam and AdamW (LR 0.1) over
    the parameters trainable at fit start, each stepped once per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.backbone = torch.nn.Sequential(
            torch.nn.Linear(32, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 32), torch.nn.ReLU(True)
        )
        self.layer = torch.nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.backbone(x))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        for opt in self.optimizers():
            loss = self.step(batch)
            self.manual_backward(loss)
            opt.step()
            opt.zero_grad()

    def configure_optimizers(self) -> list[optim.Optimizer]:
        parameters = [p for p in self.parameters() if p.requires_grad]
        return [optim.SGD(parameters, lr=0.1), optim.Adam(parameters, lr=0.1), optim.AdamW(parameters, lr=0.1)]


class Finetuning(BackboneFinetuning):
    """Freezes all but ``backbone[2]``; adds ``backbone[0]`` to SGD at epoch 1, ``layer`` to Adam at epoch 2 and
    ``backbone[1]`` to Adam at epoch 3, each at LR 0.1."""

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(pl_module.backbone[0])
        self.freeze(pl_module.backbone[1])
        self.freeze(pl_module.layer)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: optim.Optimizer) -> None:
        kind = type(optimizer)
        if epoch == 1 and kind is optim.SGD:
            self.unfreeze_and_add_param_group(pl_module.backbone[0], optimizer, lr=0.1)
        if epoch == 2 and kind is optim.Adam:
            self.unfreeze_and_add_param_group(pl_module.layer, optimizer, lr=0.1)
        if epoch == 3 and kind is optim.Adam:
            assert len(optimizer.param_groups) == 2
            self.unfreeze_and_add_param_group(pl_module.backbone[1], optimizer, lr=0.1)
            assert len(optimizer.param_groups) == 3


class HalvingFirstTwo(StepDecay):
    """StepDecay(1, 0.5) on the first two optimizers (SGD, Adam); the third (AdamW) keeps its base LR."""

    def scheduled_lr(self, base_lr: float, optimizer_idx: int, group_idx: int, n_groups: int) -> float:
        return base_lr if optimizer_idx == 2 else super().scheduled_lr(base_lr, optimizer_idx, group_idx, n_groups)


class TagsAtEpochStart(Callback):
    """Lightning's ``Check``: the number of param groups and the monitor's tags at each epoch start."""

    def __init__(self, monitor: LearningRateMonitor) -> None:
        self.monitor = monitor
        self.seen: list[tuple[int, list[str]]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen.append((sum(len(o.param_groups) for o in trainer.optimizers), list(self.monitor.lrs)))


FINETUNING_ORDERS = {
    "ours-first": lambda ours, finetuning: [ours, finetuning],
    "finetuning-first": lambda ours, finetuning: [finetuning, ours],
}


@functools.cache
def _finetuning_run(order: str) -> tuple[Run, LearningRateMonitor, TagsAtEpochStart]:
    """Lightning's callbacks ``[finetuning, monitor, check]``, with our schedule first or after the finetuning."""
    torch.manual_seed(0)
    monitor = LearningRateMonitor()
    check = TagsAtEpochStart(monitor)
    callbacks = FINETUNING_ORDERS[order](HalvingFirstTwo(1, gamma=0.5), Finetuning())
    result = run(
        FinetuningModel(), [*callbacks, monitor, check], max_epochs=5, limit_val_batches=0, limit_train_batches=2
    )
    return result, monitor, check


@pytest.mark.parametrize("order", list(FINETUNING_ORDERS))
def test_multiple_optimizers_basefinetuning_tags(order: str) -> None:
    """Lightning's ``Check``: param groups and the monitor's tags as BackboneFinetuning adds groups."""
    _, _, check = _finetuning_run(order)
    tail = ["lr-AdamW", "lr-SGD/pg1", "lr-SGD/pg2", "lr-Adam/pg1", "lr-Adam/pg2"]
    assert [groups for groups, _ in check.seen] == [3, 4, 5, 6, 6]
    assert check.seen[1][1] == ["lr-Adam", "lr-AdamW", "lr-SGD/pg1", "lr-SGD/pg2"]
    assert check.seen[2][1] == tail
    assert check.seen[3][1] == check.seen[4][1] == [*tail, "lr-Adam/pg3"]


@pytest.mark.parametrize("order", list(FINETUNING_ORDERS))
def test_multiple_optimizers_basefinetuning(order: str) -> None:
    """Lightning's expected LR lists: each added group starts at 0.1 and halves from there."""
    result, monitor, _ = _finetuning_run(order)
    expected = {
        "lr-AdamW": [0.1, 0.1, 0.1, 0.1, 0.1],
        "lr-SGD/pg1": [0.1, 0.05, 0.025, 0.0125, 0.00625],
        "lr-SGD/pg2": [0.1, 0.05, 0.025, 0.0125],
        "lr-Adam/pg1": [0.1, 0.05, 0.025, 0.0125, 0.00625],
        "lr-Adam/pg2": [0.1, 0.05, 0.025],
        "lr-Adam/pg3": [0.1, 0.05],
    }
    got = {tag: monitor.lrs.get(tag) for tag in expected}
    assert got == {tag: pytest.approx(lrs, rel=REL) for tag, lrs in expected.items()}
    assert_logged_lrs_were_used(result)

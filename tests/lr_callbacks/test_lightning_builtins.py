"""Our callbacks beside Lightning's built-in callbacks: the compatibility matrix of ``docs/compatibility.md``.

Each cell is one test. It either runs the same trainer twice, once with our callback and once with the
corresponding torch scheduler returned from ``configure_optimizers``, in both orders of the callback list, and
compares the LR of every param group at every optimizer step (``"torch"``); or checks that the fit is refused at
its start with an error that names the built-in (``"refused"``); or, where torch's scheduler fails or does
something of its own, checks the documented behaviour (``"documented"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import (
    BackboneFinetuning,
    BatchSizeFinder,
    Callback,
    EarlyStopping,
    GradientAccumulationScheduler,
    LearningRateFinder,
    LearningRateMonitor,
    ModelCheckpoint,
    StochasticWeightAveraging,
    Timer,
)
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.optim import lr_scheduler as torch_sched
from torch.utils.data import DataLoader

from lr_callbacks import (
    CosineAnnealing,
    CosineWarmRestarts,
    CyclicLR,
    ExponentialDecay,
    LRFinder,
    OneCycle,
    Race,
    ReduceOnPlateau,
    SignAlternation,
    SpikeAdaptiveLR,
    SpikeGuard,
    StepDecay,
    Warmup,
    WarmupStableDecay,
)
from lr_callbacks.core import run_length
from tests.helpers.memory_logger import MemoryLogger
from tests.helpers.paths import REPO_ROOT
from tests.helpers.tiny import regression_data

EPOCHS, BATCH, N = 4, 8, 64  # 8 optimizer steps per epoch
TorchFactory = Callable[[torch.optim.Optimizer, int], Any]


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files a fit writes to the working directory (the guard's restart record) go to a temporary one."""
    monkeypatch.chdir(tmp_path)


class Net(pl.LightningModule):
    """A backbone and a head (for BackboneFinetuning), ``lr`` and ``batch_size`` attributes (for the tuner), and
    optionally a torch scheduler of ``interval`` returned from ``configure_optimizers``."""

    def __init__(self, make: TorchFactory | None = None, interval: str = "epoch", total: int = EPOCHS * 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone, self.head = nn.Linear(3, 4), nn.Linear(4, 1)
        self.lr, self.batch_size = 0.1, BATCH
        self.make, self.interval, self.total = make, interval, total

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.head(torch.relu(self.backbone(x))), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def train_dataloader(self) -> DataLoader:
        return DataLoader(regression_data(N), batch_size=self.batch_size)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=self.lr)
        if self.make is None:
            return optimizer
        scheduler = {"scheduler": self.make(optimizer, self.total), "interval": self.interval, "monitor": "train_loss"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class Recorder(Callback):
    """The LR of every param group at every optimizer step."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.lrs.append([g["lr"] for g in optimizer.param_groups])


class StopAfter(Callback):
    """Stops the fit at the end of epoch ``epochs - 1``, as an interruption would (the run is planned longer)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epochs - 1:
            trainer.should_stop = True


def fit(module: Net, callbacks: list[Callback], **kwargs: Any) -> tuple[list[list[float]], pl.Trainer]:
    recorder = Recorder()
    options: dict[str, Any] = {
        "max_epochs": EPOCHS, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
        "enable_model_summary": False, "num_sanity_val_steps": 0, "deterministic": True,
    }  # fmt: skip
    options.update(kwargs)
    ckpt_path = options.pop("ckpt_path", None)
    if any(isinstance(cb, LearningRateMonitor) for cb in callbacks):
        options["logger"] = MemoryLogger()
    torch.manual_seed(0)
    trainer = pl.Trainer(callbacks=[*callbacks, recorder], **options)
    trainer.fit(module, ckpt_path=ckpt_path)
    return recorder.lrs, trainer


@dataclass(frozen=True)
class Ours:
    """One of our callbacks and its torch counterpart (``None``: the constant LR of an optimizer alone)."""

    make: Callable[[], Callback]
    torch: TorchFactory | None
    interval: str


def _wsd(optimizer: torch.optim.Optimizer, total: int) -> Any:
    def factor(k: int) -> float:
        return (0.5 + 0.5 * k / 2) if k < 2 else 1.0 if k < total - 4 else max(0.0, (total - k) / 4)

    return torch_sched.LambdaLR(optimizer, factor)


OURS: dict[str, Ours] = {
    "StepDecay": Ours(lambda: StepDecay(1, 0.5), lambda o, n: torch_sched.StepLR(o, 1, 0.5), "epoch"),
    "ExponentialDecay": Ours(lambda: ExponentialDecay(0.7), lambda o, n: torch_sched.ExponentialLR(o, 0.7), "epoch"),
    "CosineAnnealing": Ours(
        lambda: CosineAnnealing(T_max=40, interval="step"),
        lambda o, n: torch_sched.CosineAnnealingLR(o, 40),
        "step",
    ),
    "CosineWarmRestarts": Ours(
        lambda: CosineWarmRestarts(T_0=3), lambda o, n: torch_sched.CosineAnnealingWarmRestarts(o, 3), "epoch"
    ),
    "CyclicLR": Ours(
        lambda: CyclicLR(0.01, 0.1, 3),
        lambda o, n: torch_sched.CyclicLR(o, 0.01, 0.1, 3, cycle_momentum=False),
        "step",
    ),
    "OneCycle": Ours(
        lambda: OneCycle(max_lr=0.2),
        lambda o, n: torch_sched.OneCycleLR(o, 0.2, total_steps=n, cycle_momentum=False),
        "step",
    ),
    "ReduceOnPlateau": Ours(
        lambda: ReduceOnPlateau("train_loss", factor=0.5, patience=0, threshold=0.2),
        lambda o, n: torch_sched.ReduceLROnPlateau(o, factor=0.5, patience=0, threshold=0.2),
        "epoch",
    ),
    "WarmupStableDecay": Ours(lambda: WarmupStableDecay(2, 4, start_factor=0.5), _wsd, "step"),
    "Warmup": Ours(
        lambda: Warmup(5, start_factor=0.2), lambda o, n: torch_sched.LinearLR(o, 0.2, total_iters=5), "step"
    ),
    "SignAlternation": Ours(
        lambda: SignAlternation(), lambda o, n: torch_sched.LambdaLR(o, lambda e: -1.0 if e % 2 else 1.0), "epoch"
    ),
    # calm regression: no spike, so the LR is the optimizer's own throughout (the guard's rollback copies aside)
    "SpikeAdaptiveLR": Ours(lambda: SpikeAdaptiveLR(), None, "epoch"),
    "SpikeGuard": Ours(lambda: SpikeGuard(), None, "step"),
    "LRFinder": Ours(
        lambda: LRFinder(num_steps=20, max_lr=1.0, suggestion=Race(budget_steps=40, candidates=3)), None, "epoch"
    ),
}


# --- the built-ins, and how each of ours stands beside it ------------------------------------------------------


def _backbone() -> Callback:
    return BackboneFinetuning(unfreeze_backbone_at_epoch=1, lambda_func=lambda e: 1.5, backbone_initial_ratio_lr=0.5)


BUILTINS: dict[str, Callable[[], Callback]] = {
    "BackboneFinetuning": _backbone,
    "StochasticWeightAveraging": lambda: StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=2, annealing_epochs=1),
    "GradientAccumulationScheduler": lambda: GradientAccumulationScheduler({0: 1, 2: 4}),
    "LearningRateMonitor": lambda: LearningRateMonitor(logging_interval="step"),
    "LearningRateFinder": lambda: LearningRateFinder(min_lr=1e-4, max_lr=1.0, num_training_steps=20),
    "BatchSizeFinder": lambda: BatchSizeFinder(mode="power", init_val=4, max_trials=2, steps_per_trial=1),
    "EarlyStopping": lambda: EarlyStopping("train_loss", patience=0, min_delta=10.0),
    "ModelCheckpoint resume": lambda: ModelCheckpoint(save_top_k=-1, every_n_epochs=1),
    "Timer": lambda: Timer(duration={"minutes": 10}),
}

#: cells refused at fit start, and the words of the message
REFUSED: dict[tuple[str, str], str] = {
    **{("StochasticWeightAveraging", name): "StochasticWeightAveraging anneals the LR itself" for name in OURS},
    ("BackboneFinetuning", "CyclicLR"): "BackboneFinetuning adds param groups during the fit, and CyclicLR",
    ("BackboneFinetuning", "OneCycle"): "Use `max_lr=None`",
}
del REFUSED[("StochasticWeightAveraging", "LRFinder")]  # the finder sets the base before SWA's phase starts

#: cells where torch's scheduler fails or follows no rule of its own, with the reason; checked as documented
DOCUMENTED: dict[tuple[str, str], str] = {
    ("BackboneFinetuning", "CosineWarmRestarts"): "torch's restart step indexes base_lrs: it fails on an added group",
    ("BackboneFinetuning", "WarmupStableDecay"): "torch's LambdaLR indexes base_lrs: it fails on an added group",
    ("BackboneFinetuning", "SignAlternation"): "torch's LambdaLR indexes base_lrs: it fails on an added group",
    ("LearningRateFinder", "CosineWarmRestarts"): "torch's closed form restarts from the pre-tuner LR",
    ("LearningRateFinder", "CyclicLR"): "torch's CyclicLR sets absolute bounds: the suggestion is dropped",
    ("LearningRateFinder", "OneCycle"): "torch's OneCycleLR keeps the pre-tuner max_lr: the suggestion is dropped",
    ("LearningRateFinder", "WarmupStableDecay"): "torch's LambdaLR keeps the pre-tuner base_lrs",
    ("LearningRateFinder", "SignAlternation"): "torch's LambdaLR keeps the pre-tuner base_lrs",
    ("LearningRateFinder", "CosineAnnealing"): "torch's restart-free cosine still starts from base_lrs at step 1",
    (
        "LearningRateFinder",
        "Warmup",
    ): "torch's LinearLR loses its first factor to the tuner's write, and climbs past it",
    **{(builtin, "LRFinder"): "LRFinder has no torch counterpart" for builtin in BUILTINS},
}
for key in REFUSED:
    DOCUMENTED.pop(key, None)

CELLS = [(builtin, name) for builtin in BUILTINS for name in OURS]


def _kind(builtin: str, name: str) -> str:
    if (builtin, name) in REFUSED:
        return "refused"
    return "documented" if (builtin, name) in DOCUMENTED else "torch"


def _trainer_kwargs(builtin: str) -> dict[str, Any]:
    return {"max_epochs": -1, "max_time": {"minutes": 10}, "max_steps": EPOCHS * 8} if builtin == "Timer" else {}


def _run(
    builtin: str, name: str, ours_first: bool, root: Path, torch_total: int | None = None
) -> tuple[list[list[float]], pl.Trainer, list[Callback]]:
    """Fit with the built-in and our callback ``name``; with ``torch_total``, with its torch counterpart instead,
    over a run of that many optimizer steps."""
    spec = OURS[name]

    def callbacks() -> list[Callback]:
        other = [BUILTINS[builtin]()]
        if torch_total is not None:
            return other
        return [spec.make(), *other] if ours_first else [*other, spec.make()]

    def module() -> Net:
        return Net() if torch_total is None else Net(spec.torch, spec.interval, torch_total)

    kwargs = {"max_epochs": -1, "max_time": {"minutes": 10}, "max_steps": EPOCHS * 8} if builtin == "Timer" else {}
    if builtin != "ModelCheckpoint resume":
        first = callbacks()
        lrs, trainer = fit(module(), first, **kwargs)
        return lrs, trainer, first
    # a run stopped after two epochs, then resumed from their checkpoint to the end, with fresh callbacks
    lrs, _ = fit(module(), [*callbacks(), StopAfter(2)], enable_checkpointing=True, default_root_dir=root)
    (checkpoint,) = sorted(root.rglob("epoch=1*.ckpt"))
    second = callbacks()
    more, trainer = fit(module(), second, enable_checkpointing=True, default_root_dir=root, ckpt_path=str(checkpoint))
    return lrs + more, trainer, second


def _close(got: list[list[float]], want: list[list[float]]) -> None:
    assert len(got) == len(want), (len(got), len(want))
    for k, (a, b) in enumerate(zip(got, want)):
        assert len(a) == len(b), (k, a, b)
        for x, y in zip(a, b):
            assert x == pytest.approx(y, rel=1e-9, abs=1e-15), (k, got[max(0, k - 2) : k + 3], want[k - 2 : k + 3])


# --- the documented behaviour, where torch has none to compare with ------------------------------------------


def _finetuning_rebases(name: str, lrs: list[list[float]], callbacks: list[Callback], root: Path) -> None:
    """The first group follows the schedule as without BackboneFinetuning; the group it adds keeps the LR it is given
    at each epoch's start, and the schedule's changes within the epoch apply to it relative to that LR."""
    alone, _ = fit(Net(), [OURS[name].make()])
    assert [row[0] for row in lrs] == [row[0] for row in alone]
    for k in range(1, len(lrs)):
        if len(lrs[k - 1]) == 2 and k % 8:  # the backbone's group exists, and no epoch starts at step k
            (a0, b0), (a1, b1) = lrs[k - 1], lrs[k]
            assert b1 / b0 == pytest.approx(a1 / a0, rel=1e-12), k
    assert len(lrs[-1]) == 2


def _as_if_configured_with_the_suggestion(
    name: str, lrs: list[list[float]], callbacks: list[Callback], root: Path
) -> None:
    """Beside Lightning's tuner, the schedule runs as if the module had been configured with the suggested LR."""
    (tuner,) = [cb for cb in callbacks if isinstance(cb, LearningRateFinder)]
    suggestion = tuner.optimal_lr.suggestion()
    assert suggestion is not None
    module = Net()
    module.lr = suggestion
    want, _ = fit(module, [OURS[name].make()])
    _close(lrs, want)


def _finder_applies_its_suggestion(name: str, lrs: list[list[float]], callbacks: list[Callback], root: Path) -> None:
    """Our finder ran and its suggestion is the base LR of the run; what the built-in does to the LR then follows."""
    (finder,) = [cb for cb in callbacks if isinstance(cb, LRFinder)]
    builtin = next(type(cb).__name__ for cb in callbacks if not isinstance(cb, LRFinder))
    if builtin == "ModelCheckpoint":  # resumed: the finder ran in the first part, the checkpoint kept its base
        assert len({row[0] for row in lrs}) == 1
        return
    assert finder.result is not None
    assert finder.result.suggestion is not None
    suggestion = finder.result.suggestion
    if builtin == "StochasticWeightAveraging":  # SWALR anneals from the suggestion to swa_lrs in its phase
        assert lrs[0][0] == pytest.approx(suggestion)
        assert lrs[-1][0] == pytest.approx(0.01)
        return
    assert all(row[0] == pytest.approx(suggestion) for row in lrs)


CHECKS: dict[str, Callable[[str, list[list[float]], list[Callback], Path], None]] = {
    "BackboneFinetuning": _finetuning_rebases,
    "LearningRateFinder": _as_if_configured_with_the_suggestion,
}


@pytest.mark.parametrize(("builtin", "name"), CELLS, ids=[f"{b}-{n}" for b, n in CELLS])
def test_cell(builtin: str, name: str, tmp_path: Path) -> None:
    kind = _kind(builtin, name)
    if kind == "refused":
        with pytest.raises(MisconfigurationException, match=REFUSED[builtin, name]):
            _run(builtin, name, ours_first=True, root=tmp_path / "ours")
        return
    ours, trainer, callbacks = _run(builtin, name, ours_first=True, root=tmp_path / "ours")
    other_order, _, _ = _run(builtin, name, ours_first=False, root=tmp_path / "other")
    assert ours == other_order, "the result depends on the order of the callbacks"
    if kind == "documented":
        check = _finder_applies_its_suggestion if name == "LRFinder" else CHECKS[builtin]
        check(name, ours, callbacks, tmp_path)
        return
    # the length our schedules read from the trainer (GradientAccumulationScheduler's steps counted)
    total = int(run_length(trainer)[0])
    want, _, _ = _run(builtin, name, ours_first=True, root=tmp_path / "torch", torch_total=total)
    _close(ours, want)


@pytest.mark.parametrize("name", ["OneCycle", "WarmupStableDecay"])
def test_a_run_bounded_by_time_alone_refuses_a_schedule_sized_by_the_run(name: str) -> None:
    with pytest.raises(MisconfigurationException, match=r"`max_time` \(or a Timer\) alone has no length"):
        fit(Net(), [OURS[name].make(), Timer(duration={"minutes": 10})], max_epochs=-1)


def test_the_docs_matrix_is_this_one() -> None:
    """``docs/compatibility.md`` shows every cell with the kind its test checks."""
    page = (REPO_ROOT / "docs" / "compatibility.md").read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    shown = {line.split("|")[1].strip().strip("`"): [c.strip() for c in line.split("|")[2:-1]] for line in rows}
    words = {"torch": "= torch", "refused": "refused", "documented": "documented"}
    assert {name: shown.get(name) for name in OURS} == {
        name: [words[_kind(builtin, name)] for builtin in BUILTINS] for name in OURS
    }

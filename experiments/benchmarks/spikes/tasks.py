"""Tasks, injected spikes and the configurations compared by ``lr-benchmark spikes``.

Three tasks, each a seeded LightningModule on in-memory data:

- ``housing``: the seed's California Housing linear regression (its split and scaling, batch 32, plain SGD at
  the seed's fixed LR 0.01), two epochs. Injection: one batch's targets scaled by 100.
- ``mlp``: a ReLU MLP classifying 10 Gaussian classes in 20-D, SGD with momentum 0.9. Injection: one batch's
  inputs turned into outliers (noise of standard deviation 20 added, 20 times the data's).
- ``sequence``: a one-layer causal self-attention next-token model on sequences from a sparse random Markov
  chain, Adam. Injection: one batch's target tokens shuffled.

A second injection, ``lr``, raises the LR 30-fold for three steps (on ``mlp`` and ``sequence``; on ``housing``
it leaves no trace in the loss). Injections are tied to batches of the data
(epoch, batch index in the epoch), so a restart that skips a batch skips its injection too.

Every run trains a fresh module through a real ``Trainer.fit`` and reports the held-out loss, the injected
batches its detector flagged, its false alarms, and the optimizer updates whose work was discarded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.spike import TrainingSpikeException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, SpikeDetection
from torch import Tensor, nn
from typing_extensions import override

from lr_callbacks import Modifier, SpikeAdaptiveLR
from lr_callbacks.core import apply_lr

# ----------------------------------------------------------------------------------------------- data


class _EpochSampler:
    """Lightning calls ``sampler.set_epoch`` at each epoch start; the loader reads the epoch from here."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class InjectedBatches:
    """Index-sliced batches of in-memory tensors that corrupt, skip and resume by *original* batch index.

    Each epoch's order is a permutation drawn from ``seed + epoch``. ``corrupt`` maps ``(epoch, index)`` to a
    function applied to that batch; ``skip`` holds ``(epoch, index)`` pairs left out (a restart's skip list).
    ``yielded`` lists the original indices handed out so far this epoch: Lightning's ``batch_idx`` is a position
    in it. ``state_dict`` / ``load_state_dict`` make the loader resumable mid-epoch.
    """

    def __init__(
        self,
        tensors: tuple[Tensor, ...],
        batch_size: int,
        seed: int,
        corrupt: dict[tuple[int, int], Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]]] | None = None,
    ) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.seed = seed
        self.corrupt = corrupt or {}
        self.skip: set[tuple[int, int]] = set()
        self.sampler = _EpochSampler()
        self.batch_sampler = None
        self.yielded: list[int] = []
        self._resume: dict[str, Any] | None = None

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        epoch = self.sampler.epoch
        start = 0
        self.yielded = []
        if self._resume is not None and self._resume["epoch"] == epoch:
            start, self.yielded = self._resume["next"], list(self._resume["yielded"])
        self._resume = None
        order = torch.randperm(len(self.tensors[0]), generator=torch.Generator().manual_seed(self.seed + epoch))
        bs = self.batch_size
        for i in range(start, len(self)):
            if (epoch, i) in self.skip:
                continue
            self.yielded.append(i)
            self._next = i + 1
            batch = tuple(t[order[i * bs : (i + 1) * bs]] for t in self.tensors)
            fn = self.corrupt.get((epoch, i))
            yield fn(batch) if fn is not None else batch

    def original(self, batch_idx: int) -> int:
        """The original index of this epoch's ``batch_idx``-th batch."""
        return self.yielded[batch_idx]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.sampler.epoch, "next": getattr(self, "_next", 0), "yielded": list(self.yielded)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = dict(state)


# ----------------------------------------------------------------------------------------------- modules


class _TaskModule(pl.LightningModule):
    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr

    def loss(self, batch: tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self.loss(batch)


class LinearRegression(_TaskModule):
    def __init__(self, n_features: int, lr: float) -> None:
        super().__init__(lr)
        self.layer = nn.Linear(n_features, 1)

    def loss(self, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class MLPClassifier(_TaskModule):
    def __init__(self, n_features: int, n_classes: int, lr: float) -> None:
        super().__init__(lr)
        self.net = nn.Sequential(
            nn.Linear(n_features, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, n_classes)
        )

    def loss(self, batch: tuple[Tensor, ...]) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class NextToken(_TaskModule):
    """Embedding, one causal self-attention block with an MLP, and a next-token head."""

    def __init__(self, vocab: int, length: int, lr: float, dim: int = 32) -> None:
        super().__init__(lr)
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.randn(length, dim) * 0.1)
        self.attn = nn.MultiheadAttention(dim, num_heads=2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("mask", torch.triu(torch.full((length, length), float("-inf")), diagonal=1))

    def loss(self, batch: tuple[Tensor, ...]) -> Tensor:
        tokens, targets = batch
        h = self.embed(tokens) + self.position
        a, _ = self.attn(h, h, h, attn_mask=self.mask, need_weights=False)
        h = h + a
        h = h + self.mlp(h)
        logits = self.head(h)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


# ----------------------------------------------------------------------------------------------- tasks


@dataclass
class SpikeTask:
    """A task: its data (train, test), model, budget and the corruption its injected batches get."""

    name: str
    make_data: Callable[[], tuple[tuple[Tensor, ...], tuple[Tensor, ...]]]
    make_model: Callable[[], _TaskModule]
    batch_size: int
    epochs: int
    corrupt: Callable[[tuple[Tensor, ...], torch.Generator], tuple[Tensor, ...]]
    description: str
    injections: tuple[str, ...] = ("batch", "lr")
    _data: tuple[tuple[Tensor, ...], tuple[Tensor, ...]] | None = field(default=None, repr=False)

    def data(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        if self._data is None:
            self._data = self.make_data()
        return self._data

    def steps_per_epoch(self) -> int:
        return -(-len(self.data()[0][0]) // self.batch_size)

    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch()


def _housing_data() -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    from experiments.data.housing import HousingDataModule

    dm = HousingDataModule(batch_size=32)
    dm.setup()
    if dm.train_set is None or dm.test_set is None:
        raise RuntimeError("HousingDataModule.setup() left no training or test split")
    return dm.train_set, dm.test_set


def _gaussian_classes() -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    g = torch.Generator().manual_seed(1234)
    means = torch.randn(10, 20, generator=g) * 1.0
    labels = torch.randint(0, 10, (10240,), generator=g)
    x = means[labels] + torch.randn(10240, 20, generator=g)
    return (x[:8192], labels[:8192]), (x[8192:], labels[8192:])


def _markov_sequences(vocab: int = 16, length: int = 24) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    g = torch.Generator().manual_seed(4321)
    # Each token has two likely successors (probabilities 0.7 and 0.25) and a little uniform noise.
    transition = torch.full((vocab, vocab), 0.05 / vocab)
    for token in range(vocab):
        first, second = torch.randperm(vocab, generator=g)[:2].tolist()
        transition[token, first] += 0.7
        transition[token, second] += 0.25
    transition /= transition.sum(1, keepdim=True)
    n = 5120
    seqs = torch.empty(n, length + 1, dtype=torch.long)
    seqs[:, 0] = torch.randint(0, vocab, (n,), generator=g)
    for i in range(length):
        seqs[:, i + 1] = torch.multinomial(transition[seqs[:, i]], 1, generator=g).squeeze(1)
    inputs, targets = seqs[:, :-1], seqs[:, 1:]
    return (inputs[:4096], targets[:4096]), (inputs[4096:], targets[4096:])


def _scale_targets(batch: tuple[Tensor, ...], g: torch.Generator) -> tuple[Tensor, ...]:
    x, y = batch
    return x, y * 100.0


def _outlier_inputs(batch: tuple[Tensor, ...], g: torch.Generator) -> tuple[Tensor, ...]:
    x, y = batch
    return x + 20.0 * torch.randn(x.shape, generator=g), y


def _shuffle_targets(batch: tuple[Tensor, ...], g: torch.Generator) -> tuple[Tensor, ...]:
    tokens, targets = batch
    flat = targets.reshape(-1)
    return tokens, flat[torch.randperm(flat.numel(), generator=g)].reshape(targets.shape)


TASKS: dict[str, SpikeTask] = {
    "housing": SpikeTask(
        "housing",
        _housing_data,
        lambda: LinearRegression(8, lr=0.01),
        32,
        2,
        _scale_targets,
        "California Housing linear regression, SGD 0.01, batch 32 (seed 001's fixed-LR setting), 2 epochs",
        injections=("batch",),
    ),
    "mlp": SpikeTask(
        "mlp",
        _gaussian_classes,
        lambda: MLPClassifier(20, 10, lr=0.05),
        64,
        4,
        _outlier_inputs,
        "MLP classifier, 10 Gaussian classes in 20-D, SGD 0.05 + momentum 0.9, batch 64, 4 epochs",
    ),
    "sequence": SpikeTask(
        "sequence",
        _markov_sequences,
        lambda: NextToken(16, 24, lr=3e-3),
        32,
        3,
        _shuffle_targets,
        "next-token attention model, Markov sequences (vocab 16, length 24), Adam 3e-3, batch 32, 3 epochs",
    ),
}

INJECTIONS = ("clean", "batch", "lr")
INJECTED_FRACTIONS = (0.35, 0.6, 0.85)  # where the corrupted batches sit in the run
LR_FRACTION, LR_FACTOR, LR_STEPS = 0.5, 30.0, 3


def injected_steps(task: SpikeTask, injection: str) -> list[int]:
    """The optimizer steps (without skipped batches, the global step) at which injections start."""
    total = task.total_steps()
    if injection == "batch":
        return [int(f * total) for f in INJECTED_FRACTIONS]
    if injection == "lr":
        return [int(LR_FRACTION * total)]
    return []


class BatchLRSpike(Modifier):
    """An injected LR spike: the factor is ``factor`` while the batches listed by original index are trained."""

    def __init__(self, loader: InjectedBatches, batches: set[tuple[int, int]], factor: float) -> None:
        super().__init__("step")
        self.loader = loader
        self.batches = batches
        self.factor = factor
        self.active = False

    @override
    def lr_factor(self, optimizer_idx: int, group_idx: int) -> float:
        return self.factor if self.active else 1.0

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        active = (trainer.current_epoch, self.loader.original(batch_idx)) in self.batches
        if active != self.active:
            self.active = active
            apply_lr(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pass


# ----------------------------------------------------------------------------------------------- runs


@dataclass
class RunResult:
    final_loss: float
    detected: int  # injections flagged within a few steps of their start
    false_alarms: int  # flags not near any injection
    steps_lost: int  # optimizer updates computed and then dropped or redone
    restarts: int = 0


@contextmanager
def quiet() -> Iterator[None]:
    """Keep Lightning's progress messages and warnings for tiny in-memory data out of the tables."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _trainer(callbacks: list[Callback], epochs: int, root: str, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=root,
        callbacks=callbacks,
        **kwargs,
    )


def _setup(
    task: SpikeTask, injection: str, seed: int
) -> tuple[_TaskModule, InjectedBatches, list[Callback], list[int]]:
    (train, _), n = task.data(), task.steps_per_epoch()
    starts = injected_steps(task, injection)
    g = torch.Generator().manual_seed(10_000 + seed)
    corrupt: dict[tuple[int, int], Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]]] = {}

    def corrupt_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return task.corrupt(batch, g)  # every injected batch draws from the one generator

    if injection == "batch":
        for s in starts:
            corrupt[divmod(s, n)] = corrupt_batch
    loader = InjectedBatches(train, task.batch_size, seed=seed, corrupt=corrupt)
    extra: list[Callback] = []
    if injection == "lr":
        batches = {divmod(s + k, n) for s in starts for k in range(LR_STEPS)}
        extra.append(BatchLRSpike(loader, batches, LR_FACTOR))
    torch.manual_seed(seed)
    return task.make_model(), loader, extra, starts


def test_loss(task: SpikeTask, model: _TaskModule) -> float:
    _, test = task.data()
    model.eval()
    with torch.no_grad():
        loss = float(model.loss(test))
    model.train()
    return loss if math.isfinite(loss) else math.inf


def _score(flags: list[int], starts: list[int], injection: str) -> tuple[int, int]:
    """Injections flagged (a flag within the injection's reach) and flags outside every injection's reach."""
    reach = LR_STEPS + 3 if injection == "lr" else 1
    hit = {s for s in starts if any(s <= f < s + reach for f in flags)}
    false = [f for f in flags if not any(s <= f < s + reach + 5 for s in starts)]
    return len(hit), len(false)


def run_ours(
    task: SpikeTask, injection: str, seed: int, make: Callable[[], Callback | None], **trainer_kwargs: Any
) -> RunResult:
    """One run with our callback (or none, or only trainer options such as ``gradient_clip_val``)."""
    model, loader, extra, starts = _setup(task, injection, seed)
    callback = make()
    with tempfile.TemporaryDirectory() as root, quiet():
        callbacks = extra + ([callback] if callback is not None else [])
        _trainer(callbacks, task.epochs, root, **trainer_kwargs).fit(model, loader)
    flags = list(callback.spikes) if isinstance(callback, SpikeAdaptiveLR) else []
    n = task.steps_per_epoch()
    if isinstance(callback, SpikeAdaptiveLR) and callback.interval == "epoch":
        flags = [(t + 1) * n - 1 for t in flags]  # an epoch check flags the epoch's last step
        reach_ok = [s for s in starts if any(s // n == f // n for f in flags)]
        false = [f for f in flags if not any(s // n == f // n for s in starts)]
        return RunResult(test_loss(task, model), len(reach_ok), len(false), callback.steps_lost)
    detected, false = _score(flags, starts, injection)
    lost = callback.steps_lost if isinstance(callback, SpikeAdaptiveLR) else 0
    return RunResult(test_loss(task, model), detected, false, lost)


class _ResumableSpikeDetection(SpikeDetection):
    """Lightning's ``SpikeDetection``; its ``load_state_dict`` reads ``self.running``, which does not exist
    (Lightning 2.6), so a restart from a checkpoint that holds its state fails. The running mean is restored
    here as its own ``state_dict`` describes it."""

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.running_mean.load_state_dict(state.pop("running"))
        self.running_mean.base_metric.load_state_dict(state.pop("mean"))
        self.last_val = state["last_val"]
        self.bad_batches = list(state["bad_batches"])


def run_lightning_restart(
    task: SpikeTask, injection: str, seed: int, every: int = 50, max_restarts: int = 20
) -> RunResult:
    """Lightning's ``SpikeDetection`` with the restart-and-skip workflow it is meant for.

    The run raises at a spike and writes the batch indices to skip; it is then restarted from the last
    checkpoint (``ModelCheckpoint(every_n_train_steps=every)``) with those batches left out. Steps lost are
    the updates since that checkpoint, computed and then thrown away.
    """
    model, loader, extra, starts = _setup(task, injection, seed)
    flags: list[int] = []
    lost = restarts = 0
    n = task.steps_per_epoch()
    with tempfile.TemporaryDirectory() as root, quiet():
        ckpt_dir = os.path.join(root, "ckpt")
        skip_file = os.path.join(root, "skip_batches.json")
        ckpt_path = None
        while True:
            detector = _ResumableSpikeDetection(exclude_batches_path=skip_file)
            checkpoint = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=every, save_top_k=1)
            trainer = _trainer(extra + [detector, checkpoint], task.epochs, root)
            try:
                trainer.fit(model, loader, ckpt_path=ckpt_path)
                break
            except TrainingSpikeException:
                epoch = trainer.current_epoch
                flags.append(epoch * n + loader.yielded[-1])  # the spiking batch (its update already applied)
                with open(skip_file) as f:
                    listed = json.load(f)
                for b in listed[-2:]:
                    if 0 <= b < len(loader.yielded):
                        loader.skip.add((epoch, loader.original(b)))
                ckpt_path = checkpoint.best_model_path or None
                resumed_at = torch.load(ckpt_path, weights_only=False)["global_step"] if ckpt_path else 0
                lost += trainer.global_step - resumed_at
                restarts += 1
                if ckpt_path is None:
                    torch.manual_seed(seed)
                    model = task.make_model()
                if restarts > max_restarts:
                    break
    detected, false = _score(flags, starts, injection)
    return RunResult(test_loss(task, model), detected, false, lost, restarts)

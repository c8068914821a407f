"""``lr-preview``: the LR of every training step of an ``lr-train`` config, before training it.

It composes ``conf/train.yaml`` with the same overrides as ``lr-train``, builds the callbacks with Hydra's
``instantiate``, and hands them to :func:`lr_callbacks.preview`:

    lr-preview 'callbacks=[warmup,cosine_annealing]' trainer.max_epochs=50
    lr-preview experiment=housing_sgd trainer.max_epochs=4 'callbacks=[reduce_on_plateau]' --metric 1,0.9,0.9,0.9

The run's length comes from the composed config: epochs from ``trainer.max_epochs`` (cut by
``trainer.max_steps``), training batches per epoch from the data module (its train loader's length after
``trainer.limit_train_batches``, as one process sees it; ``--batches-per-epoch`` instead, e.g. for one
process's share under DDP), steps per epoch after ``trainer.accumulate_grad_batches``, and the base LR from
``optimizer.lr`` (``--base-lr`` instead). It writes the plot as a PNG (``--out``) and prints a short summary.
Data-driven callbacks (``ReduceOnPlateau``) follow the values of ``--metric``, one per check; without them
they are held flat, and the summary says so.
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from experiments.benchmark import at_least
from experiments.cli import BadArgument, refusing_bad_arguments
from experiments.instantiate import instantiate_callbacks
from experiments.train import CONFIG_MODULE
from lr_callbacks import LRPreview, preview

#: rows of the summary's table: evenly spaced steps, first and last included
SUMMARY_ROWS = 11


@dataclass
class RunLength:
    """What the preview reads from a composed config, and where each value came from."""

    epochs: int
    batches_per_epoch: int
    accumulate_grad_batches: int
    max_steps: int
    base_lr: float
    sources: dict[str, str] = field(default_factory=dict)


def compose_config(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, as ``lr-train`` composes it (``paths.output_dir`` set to ``output_dir``).

    Raises:
        hydra.errors.ConfigCompositionException: On an unknown key or config, or a value of the wrong type.
        hydra.errors.OverrideParseException: On an override Hydra cannot parse.
    """
    from hydra import compose, initialize_config_module

    if not any(o.split("=", 1)[0].lstrip("+~") == "paths.output_dir" for o in overrides):
        overrides = [*overrides, f"paths.output_dir={output_dir}"]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def run_length(cfg: DictConfig, batches_per_epoch: int | None = None, base_lr: float | None = None) -> RunLength:
    """The run's length and base LR from a composed ``train`` config, or from the explicit values given.

    Raises:
        BadArgument: If the config does not say, and no explicit value is given.
    """
    trainer = cfg.trainer
    epochs = trainer.get("max_epochs")
    if not isinstance(epochs, int) or epochs < 1:
        raise BadArgument(f"trainer.max_epochs must be an integer >= 1 for a preview, got {epochs!r}.")
    sources = {"epochs": "trainer.max_epochs"}
    if batches_per_epoch is None:
        batches_per_epoch = _train_batches(cfg)
        sources["batches"] = f"{cfg.data._target_.rsplit('.', 1)[-1]}'s train loader"
        if trainer.get("limit_train_batches") is not None:
            sources["batches"] += ", trainer.limit_train_batches"
    else:
        sources["batches"] = "--batches-per-epoch"
    if base_lr is None:
        lr = cfg.get("optimizer", {}).get("lr") if cfg.get("optimizer") else None
        if not isinstance(lr, (int, float)):
            raise BadArgument("The config has no optimizer.lr to take the base LR from; pass --base-lr.")
        base_lr, sources["base_lr"] = float(lr), "optimizer.lr"
    else:
        sources["base_lr"] = "--base-lr"
    return RunLength(
        epochs=epochs,
        batches_per_epoch=batches_per_epoch,
        accumulate_grad_batches=int(trainer.get("accumulate_grad_batches") or 1),
        max_steps=int(trainer.get("max_steps") if trainer.get("max_steps") is not None else -1),
        base_lr=base_lr,
        sources=sources,
    )


def _train_batches(cfg: DictConfig) -> int:
    """Batches per epoch of the data module's train loader, after ``trainer.limit_train_batches`` (on one process)."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    try:
        datamodule.setup("fit")
    except (FileNotFoundError, OSError) as err:
        raise BadArgument(f"{err} To preview without the data, pass --batches-per-epoch.") from err
    batches = len(datamodule.train_dataloader())
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, bool) or not (limit is None or isinstance(limit, (int, float))):
        raise BadArgument(f"trainer.limit_train_batches must be an int, a float or null, got {limit!r}.")
    if isinstance(limit, int):  # Lightning: an int caps the count, a float is a fraction of it
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = int(batches * limit)
    if batches < 1:
        raise BadArgument(f"The train loader has no batch to preview (trainer.limit_train_batches={limit!r}).")
    return batches


def parse_metrics(values: Sequence[str]) -> list[float] | dict[str, list[float]] | None:
    """``--metric`` values: ``V1,V2,...`` for every data-driven callback, or ``NAME=V1,V2,...`` per monitor.

    Raises:
        BadArgument: On a value that is not a number, or on a mix of named and unnamed values.

    >>> parse_metrics(["1,0.5"]), parse_metrics(["val_loss=1,0.5", "acc=0.2,0.3"]), parse_metrics([])
    ([1.0, 0.5], {'val_loss': [1.0, 0.5], 'acc': [0.2, 0.3]}, None)
    """
    named: dict[str, list[float]] = {}
    unnamed: list[float] | None = None
    for value in values:
        name, _, numbers = value.rpartition("=")
        try:
            parsed = [float(v) for v in numbers.split(",")]
        except ValueError:
            raise BadArgument(f"--metric takes [NAME=]V1,V2,... with numbers, got {value!r}.") from None
        if name:
            named[name] = parsed
        else:
            unnamed = parsed
    if named and unnamed is not None:
        raise BadArgument(
            "--metric: give either one unnamed sequence for every callback or NAME=... for each, not both."
        )
    return named or unnamed


def preview_config(
    cfg: DictConfig,
    batches_per_epoch: int | None = None,
    base_lr: float | None = None,
    metrics: Sequence[float] | dict[str, list[float]] | None = None,
) -> tuple[LRPreview, list[Callback], RunLength]:
    """The preview of a composed ``train`` config's callbacks (its first training phase).

    Raises:
        BadArgument: For a config that does not give the run's length or base LR, or a bad value.
        hydra.errors.InstantiationException: If a callback refuses its arguments.
    """
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    length = run_length(cfg, batches_per_epoch, base_lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the unforeseen ones are listed in the summary
        try:
            result = preview(
                callbacks,
                epochs=length.epochs,
                batches_per_epoch=length.batches_per_epoch,
                accumulate_grad_batches=length.accumulate_grad_batches,
                max_steps=length.max_steps,
                base_lrs=length.base_lr,
                metrics=metrics,
            )
        except ValueError as err:
            raise BadArgument(str(err)) from err
    return result, callbacks, length


def summary(result: LRPreview, callbacks: Sequence[Callback], length: RunLength) -> str:
    """A few lines: the callbacks, the run's length and where it came from, the LR at evenly spaced steps."""
    shown = [repr(cb) for cb in callbacks] or ["(none: the base LR throughout)"]
    lines = ["callbacks: " + ", ".join(shown)]
    src = length.sources
    batches = f"{length.batches_per_epoch} batches ({src['batches']})"
    if length.accumulate_grad_batches > 1:
        batches += f" / accumulate_grad_batches={length.accumulate_grad_batches}"
    cut = " (trainer.max_steps)" if result.steps < length.epochs * result.steps_per_epoch else ""
    lines.append(
        f"run: {length.epochs} epochs ({src['epochs']}) x {result.steps_per_epoch} steps per epoch [{batches}]"
        f" = {result.steps} training steps{cut}"
    )
    lines.append(f"base LR: {length.base_lr:g} ({src['base_lr']})")
    lrs = result.series()
    if result.steps <= 2 * SUMMARY_ROWS:
        rows = list(range(result.steps))
    else:
        rows = sorted({round(i * (result.steps - 1) / (SUMMARY_ROWS - 1)) for i in range(SUMMARY_ROWS)})
    lines.append(f"{'step':>10} {'epoch':>7}  lr")
    lines += [f"{k:>10} {k // result.steps_per_epoch:>7}  {lrs[k]:.6g}" for k in rows]
    peak = max(range(len(lrs)), key=lambda k: lrs[k])
    low = min(range(len(lrs)), key=lambda k: lrs[k])
    lines.append(f"highest {lrs[peak]:.6g} at step {peak}; lowest {lrs[low]:.6g} at step {low}; last {lrs[-1]:.6g}")
    lines += [f"note: {note}" for note in result.unforeseen]
    if any("without its metric" in note for note in result.unforeseen):
        lines.append("note: lr-preview takes the metric as --metric V1,V2,... (or --metric NAME=V1,V2,... per monitor)")
    return "\n".join(lines)


def write_figure(result: LRPreview, out: Path, tensorboard: Path | None = None) -> None:
    """The plot as a PNG at ``out``, on an axis that stays readable across decades; also into TensorBoard."""
    from experiments.figures import set_yscale

    logger = None
    if tensorboard is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = TensorBoardLogger(str(tensorboard), name="lr_preview")
    figure = result.plot()
    # A warmup from 0 would force a symmetric-log axis; the scale follows the LRs that move the weights.
    set_yscale(figure.axes[0], [lr for step in result.lrs for row in step for lr in row if lr != 0])
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    if logger is not None:
        logger.experiment.add_figure("lr_preview", figure, global_step=0)
        logger.experiment.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: ``lr-preview [OVERRIDE ...] [--out PNG] [--batches-per-epoch N] [--base-lr LR] ...``."""
    parser = argparse.ArgumentParser(
        prog="lr-preview", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides of conf/train.yaml (lr-train's)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("lr_preview.png"), help="the PNG to write (default: %(default)s)"
    )
    parser.add_argument(
        "--batches-per-epoch", type=at_least(1), help="training batches per epoch (default: the data's)"
    )
    parser.add_argument("--base-lr", type=float, help="base LR (default: optimizer.lr)")
    parser.add_argument("--metric", action="append", default=[], metavar="[NAME=]V1,V2,...",
                        help="values a data-driven callback checks, one per check (per epoch, or per step with "
                             "interval=step); NAME is its monitor; repeat for several")  # fmt: skip
    parser.add_argument(
        "--tensorboard", type=Path, metavar="DIR", help="also add the figure to a TensorBoard log in DIR"
    )
    args = parser.parse_intermixed_args(argv)
    if args.base_lr is not None and not math.isfinite(args.base_lr):
        parser.error(f"argument --base-lr: must be a finite number, got {args.base_lr}")
    with refusing_bad_arguments("lr-preview"):
        metrics = parse_metrics(args.metric)
        cfg = compose_config(args.overrides, args.out.resolve().parent)
        result, callbacks, length = preview_config(cfg, args.batches_per_epoch, args.base_lr, metrics)
    write_figure(result, args.out, args.tensorboard)
    print(summary(result, callbacks, length))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

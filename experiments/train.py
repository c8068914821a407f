"""Hydra entry point: ``train(cfg) -> (metrics, objects)`` and the ``lr-train`` console script.

Run it as ``lr-train task=xor data=xor optimizer=adam callbacks=[step_decay]`` or
``lr-train experiment=housing_gd``; add ``-m`` to sweep. Every run writes TensorBoard logs,
figures and ``metrics.json`` into ``paths.output_dir`` (the Hydra output dir by default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import hydra
import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from experiments import outputs
from experiments.cli import ConfigurationError
from experiments.instantiate import instantiate_callbacks, instantiate_loggers, instantiate_trainer
from experiments.schemas import register_configs

if TYPE_CHECKING:
    from experiments.tasks.base import BaseTask

#: The package that holds the configs: the repository's ``conf/``, installed as package data.
CONFIG_MODULE = "experiments.conf"
#: Where Hydra finds them (its ``pkg://`` search path), from a wheel or an editable install, from any cwd.
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
#: The same folder on disk: ``conf/`` of the checkout in an editable install, else the installed copy.
CONFIG_DIR = Path(str(files(CONFIG_MODULE)))

register_configs()


class _PhasedTask(Protocol):
    """A task that trains in phases (``adapt``), e.g. :class:`experiments.tasks.ContinualAutoencoderTask`."""

    def set_phase(self, phase: str, optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None: ...


def _floats(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalar tensors/numbers → floats, optionally prefixed."""
    out = {}
    for key, value in values.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)):
            out[f"{prefix}{key}"] = float(value)
    return out


def _run_phase(
    cfg: DictConfig,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    callbacks_cfg: DictConfig | None,
    version: str | None,
    **trainer_overrides: Any,
) -> tuple[pl.Trainer, dict[str, list[float]], list[Logger], list[Callback]]:
    """One ``Trainer.fit`` with its own callbacks and loggers; returns the fit's history too."""
    callbacks = instantiate_callbacks(callbacks_cfg)
    loggers = instantiate_loggers(cfg.get("logger"), version=version)
    trainer = instantiate_trainer(cfg.trainer, callbacks, loggers, **trainer_overrides)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path") if version != "adapt" else None)
    recorder = getattr(model, "recorder", None)
    return trainer, recorder.history() if recorder is not None else {}, loggers, callbacks


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Trains (and tests) the task of a composed config.

    With ``cfg.adapt`` set, training runs in two phases, each its own ``Trainer.fit``:
    ``pretrain`` with the top-level optimizer/callbacks/batch size, then ``adapt`` with
    ``cfg.adapt``'s. The task and data module must then offer ``set_phase``.

    Args:
        cfg: a config composed from ``conf/train.yaml`` (``paths.output_dir`` must resolve).

    Returns:
        ``metrics``: final scalars as floats: the trainer's callback metrics (prefixed
        ``pretrain/`` / ``adapt/`` in two-phase runs), the test metrics and the task's
        summary (e.g. ``convergence_epoch``, ``epochs_to_adapt``, ``forgetting``).
        ``objects``: ``cfg``, ``model``, ``datamodule``, ``trainer`` (the last phase's),
        ``trainers`` (per phase), ``callbacks``, ``loggers`` and ``history``
        (``{key: per-epoch list}``, also stored in ``metrics.json``).

    Raises:
        ValueError: if ``cfg.adapt`` is set but the task or data module has no phases.
    """
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    optimizer = instantiate(cfg.optimizer) if cfg.get("optimizer") else None
    model: BaseTask = instantiate(cfg.task, **({"optimizer": optimizer} if optimizer else {}))
    _check_optimizer(optimizer, model, "optimizer")
    if hasattr(model, "recorder"):
        model.recorder.record_steps = bool(cfg.get("record_step_lrs", True))

    adapt = cfg.get("adapt")
    if adapt and not (hasattr(model, "set_phase") and hasattr(datamodule, "set_phase")):
        raise ValueError(
            f"`adapt` needs a task and data module with phases (set_phase); got "
            f"{type(model).__name__} and {type(datamodule).__name__}. Set adapt=null."
        )
    phases = ["pretrain", "adapt"] if adapt else [None]
    phased_model = cast(_PhasedTask, model)  # only used with phases, where set_phase was checked above
    metrics: dict[str, float] = {}
    history: dict[str, list[float]] = {}
    trainers: dict[str, pl.Trainer] = {}
    all_loggers: list[Logger] = []
    all_callbacks: list[Callback] = []
    for phase in phases:
        overrides: dict[str, Any] = {}
        callbacks_cfg = cfg.get("callbacks")
        if phase == "adapt":
            adapt_optimizer = instantiate(adapt.optimizer) if adapt.get("optimizer") else None
            _check_optimizer(adapt_optimizer, model, "adapt.optimizer")
            phased_model.set_phase("adapt", optimizer=adapt_optimizer)
            datamodule.set_phase("adapt", batch_size=adapt.batch_size)
            callbacks_cfg = adapt.get("callbacks")
            overrides["max_epochs"] = adapt.max_epochs
        elif phase == "pretrain":
            phased_model.set_phase("pretrain")
            datamodule.set_phase("pretrain", batch_size=datamodule.batch_size)
        trainer, hist, loggers, callbacks = _run_phase(cfg, model, datamodule, callbacks_cfg, phase, **overrides)
        prefix = f"{phase}/" if phase else ""
        metrics.update(_floats(dict(trainer.callback_metrics), prefix))
        metrics[f"{prefix}epochs"] = float(trainer.current_epoch)
        metrics["world_size"] = float(trainer.world_size)
        history.update({f"{prefix}{k}": v for k, v in hist.items()})
        trainers[phase or "fit"] = trainer
        all_loggers += loggers
        all_callbacks += callbacks

    if cfg.get("run_test") and type(model).test_step is not pl.LightningModule.test_step:
        for result in trainer.test(model, datamodule=datamodule, verbose=False):
            metrics.update(_floats(result))
    metrics.update(model.summary_metrics())
    history.update(model.summary_history())

    if trainer.is_global_zero:
        _write_outputs(cfg, out_dir, metrics, history, model, all_loggers, trainer.global_step)
    objects = {
        "cfg": cfg,
        "model": model,
        "datamodule": datamodule,
        "trainer": trainer,
        "trainers": trainers,
        "callbacks": all_callbacks,
        "loggers": all_loggers,
        "history": history,
    }
    return metrics, objects


def _write_outputs(
    cfg: DictConfig,
    out_dir: Path,
    metrics: dict[str, float],
    history: dict[str, list[float]],
    model: pl.LightningModule,
    loggers: list[Logger],
    step: int,
) -> None:
    """metrics.json, hparams + final metrics, and figures (rank zero only)."""
    outputs.write_metrics_json(out_dir / "metrics.json", metrics, history)
    # a DictConfig becomes a dict with str keys; omegaconf's return type covers every kind of node and key
    # enum_to_str: a choice field (a Literal of the signature, an Enum in the schema) is logged as its string
    params = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    params.pop("hydra", None)
    outputs.log_hparams(loggers, params, metrics)
    figures = outputs.history_figures(history)
    figures.update(getattr(model, "figures", dict)())
    outputs.save_figures(figures, out_dir / "figures", loggers, step)


def _check_optimizer(factory: Callable[..., torch.optim.Optimizer] | None, model: pl.LightningModule, key: str) -> None:
    """Build the optimizer once on the model's parameters, so that a value torch refuses (``optimizer.lr=-1``) is
    reported before training, as its message alone, naming the config key. Optimizers allocate no state here."""
    if factory is None:
        return
    try:
        factory(model.parameters())
    except (ValueError, TypeError) as err:
        raise ConfigurationError(f"{key}: {err}") from err


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """``lr-train``: trains one config; returns ``cfg.optimized_metric`` for sweepers (or ``None``).

    A configuration Lightning refuses once training starts (e.g. two schedules on one optimizer) is
    reported like a config error, as its message alone.
    """
    try:
        metrics, _ = train(cfg)
    except MisconfigurationException as err:
        raise ConfigurationError(str(err)) from err
    key = cfg.get("optimized_metric")
    if not key:
        return None
    if key not in metrics:
        raise KeyError(f"`optimized_metric`={key!r} is not among the run's metrics: {sorted(metrics)}.")
    return metrics[key]


if __name__ == "__main__":
    main()

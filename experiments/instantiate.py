"""Builds callbacks, loggers and trainers from their config nodes."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig


def _objects(cfg: DictConfig | None, group: str, kind: type, **kwargs: Any) -> list[Any]:
    """Instantiates every ``_target_`` node of a keyed group (``{name: {_target_: ...}}``)."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"`{group}` config must be a mapping of name -> object config, got {type(cfg).__name__}.")
    out = []
    for name, node in cfg.items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ValueError(f"`{group}.{name!s}` must be an object config with a `_target_`, got {node!r}.")
        obj = instantiate(node, **kwargs)
        if not isinstance(obj, kind):
            raise TypeError(f"`{group}.{name!s}` built a {type(obj).__name__}, expected a {kind.__name__}.")
        out.append(obj)
    return out


def instantiate_callbacks(cfg: DictConfig | None, group: str = "callbacks") -> list[Callback]:
    """One Lightning callback per entry of ``cfg`` (e.g. ``callbacks: [step_decay, warmup]``)."""
    return _objects(cfg, group, Callback)


def instantiate_loggers(cfg: DictConfig | None, version: str | None = None) -> list[Logger]:
    """One Lightning logger per entry of ``cfg``; ``version`` overrides each logger's version (phases)."""
    kwargs = {} if version is None else {"version": version}
    return _objects(cfg, "logger", Logger, **kwargs)


def instantiate_trainer(
    cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger], **overrides: Any
) -> pl.Trainer:
    """The Trainer of ``cfg``; checkpointing is on exactly when a ``ModelCheckpoint`` is among the callbacks."""
    checkpointing = any(isinstance(cb, ModelCheckpoint) for cb in callbacks)
    return instantiate(
        cfg, callbacks=callbacks, logger=loggers or False, enable_checkpointing=checkpointing, **overrides
    )

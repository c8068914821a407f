"""Schemas of the configs, generated from the constructor signatures and registered in Hydra's ConfigStore.

Each schema is ``hydra_zen.builds(target, populate_full_signature=True)``: the target's constructor arguments,
their types and defaults, read from its signature; nothing is restated here. Each YAML file in ``conf/`` lists its
schema first in its defaults list (``callbacks/step_decay.yaml`` starts with ``- step_decay_schema``), so a
misspelled or unknown key fails when the config is composed, with Hydra naming the key. An argument typed
``Literal["epoch", "step"]`` becomes an Enum field, so a misspelled choice fails there too.

Every public callback of :mod:`lr_callbacks` gets a schema named after its class (``WarmupStableDecay`` ->
``warmup_stable_decay_schema``; :data:`RENAMED_CALLBACKS` lists the exceptions), and every optimizer of
:mod:`torch.optim` one named after its class in lower case (``adamw_schema``). Keyed groups (``callbacks``,
``logger``) hold ``{name: object}`` so several files can be selected at once (``callbacks: [step_decay, warmup]``);
their schemas are keyed the same way.
"""

from __future__ import annotations

import enum
import os
import re
import types
from collections import abc
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union, get_args, get_origin

import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import get_object
from hydra_zen import BuildsFn
from hydra_zen.typing import SupportedPrimitive
from lightning.pytorch.callbacks import Callback
from omegaconf import MISSING

import lr_callbacks


class Choice(str, enum.Enum):
    """A ``Literal`` of strings as an Enum, which OmegaConf checks when a config is composed.

    A member stands for its string: it compares, hashes, prints, formats and pickles as the plain value, so a
    callback built from a config holds what it would hold had it been given the string (same ``repr``, same
    ``state_key``, checkpoints without this class).
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __repr__(self) -> str:
        return repr(self.value)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return str, (str(self.value),)


_CHOICES: dict[tuple[str, ...], type[Choice]] = {}


def choice_enum(values: tuple[str, ...]) -> type[Choice]:
    """The Enum of a ``Literal[values]``, one per tuple of values; a module attribute, so that configs pickle."""
    if values not in _CHOICES:
        name = "Choice_" + "_".join(re.sub(r"\W", "_", v) for v in values)
        while name in globals():
            name += "_"
        members = {v: v for v in values}
        enum_cls = Choice(name, members, module=__name__, qualname=name)  # type: ignore[call-overload]
        globals()[name] = _CHOICES[values] = enum_cls
    return _CHOICES[values]


#: Union members that no YAML value can be: a tensor (torch's ``lr: float | Tensor``), a path object beside ``str``.
_UNWRITABLE = (torch.Tensor, os.PathLike)
#: target -> the ``_target_`` path it was asked for (``lr_callbacks.StepDecay``, not its defining module's path)
_PATHS: dict[Any, str] = {}


class SignatureBuilds(BuildsFn[SupportedPrimitive]):
    """``builds`` that keeps more of a signature's types than hydra-zen's default, and the ``_target_`` path as
    written. A ``Literal`` of strings becomes a :class:`Choice` Enum; ``X | None`` (PEP 604) is read as
    ``Optional[X]``; ``Sequence``/``Mapping`` are typed as the list/dict a YAML gives; and a union member no YAML
    value can be (``float | Tensor``, ``str | PathLike``) is dropped, so ``lr`` is a float and a path a string."""

    @classmethod
    def _sanitized_type(
        cls, type_: Any, *, primitive_only: bool = False, wrap_optional: bool = False, nested: bool = False
    ) -> Any:
        origin, args = get_origin(type_), get_args(type_)
        if origin is Literal and all(isinstance(v, str) for v in args) and not primitive_only:
            choices = choice_enum(args)
            return Optional[choices] if wrap_optional else choices  # noqa: UP045 (a runtime type for OmegaConf)
        if origin in (Union, types.UnionType):
            writable = tuple(a for a in args if not (isinstance(a, type) and issubclass(a, _UNWRITABLE)))
            type_ = Union[writable if any(a is not type(None) for a in writable) else args]  # noqa: UP007
        elif origin in (abc.Sequence, abc.MutableSequence):
            type_ = types.GenericAlias(list, args) if args else list
        elif origin in (abc.Mapping, abc.MutableMapping):
            type_ = types.GenericAlias(dict, args) if args else dict
        return super()._sanitized_type(type_, primitive_only=primitive_only, wrap_optional=wrap_optional, nested=nested)

    @classmethod
    def _get_obj_path(cls, target: Any) -> str:
        return _PATHS.get(target) or super()._get_obj_path(target)


def schema(path: str, *, partial: bool = False, exclude: tuple[str, ...] = ()) -> type:
    """The schema of ``path``'s constructor: every argument but ``exclude``, typed and defaulted by its signature.

    Args:
        path: The ``_target_`` (``lr_callbacks.StepDecay``).
        partial: Whether the YAML configures a partial (``_partial_: true``), as optimizers do.
        exclude: Arguments the code passes itself (an optimizer's ``params``, a task's ``optimizer``).
    """
    target = get_object(path)
    _PATHS[target] = path
    conf: type = SignatureBuilds.builds(
        target,
        populate_full_signature=True,
        zen_partial=partial or None,
        zen_exclude=exclude,
        zen_dataclass={"cls_name": f"{target.__name__}Conf", "module": __name__},
    )
    if conf.__name__ in globals():
        raise ValueError(f"Two schemas would be named {conf.__name__}; the second is for {path}.")
    globals()[conf.__name__] = conf  # importable by name, so that composed configs pickle (joblib, submitit)
    return conf


def config_name(class_name: str) -> str:
    """The config name of a class: ``WarmupStableDecay`` -> ``warmup_stable_decay``, ``LRFinder`` -> ``lr_finder``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name).lower()


#: config files named otherwise than their class (the names in use on command lines)
RENAMED_CALLBACKS = {"SpikeAdaptiveLR": "spike_adaptive"}


def callback_targets() -> dict[str, str]:
    """Config name -> ``_target_`` of every public callback: those of :mod:`lr_callbacks` (but the base classes of
    ``lr_callbacks.core``, which are for subclassing) and the Lightning callbacks the suite configures."""
    targets = {}
    for name in lr_callbacks.__all__:
        obj = getattr(lr_callbacks, name)
        if isinstance(obj, type) and issubclass(obj, Callback) and obj.__module__ != "lr_callbacks.core":
            targets[RENAMED_CALLBACKS.get(name, config_name(name))] = f"lr_callbacks.{name}"
    return targets | {
        "lr_monitor": "lightning.pytorch.callbacks.LearningRateMonitor",
        "model_checkpoint": "lightning.pytorch.callbacks.ModelCheckpoint",
    }


def optimizer_targets() -> dict[str, str]:
    """Config name -> ``_target_`` of every optimizer in :mod:`torch.optim` (``sgd``, ``adam``, ``adamw``, ...)."""
    return {
        name.lower(): f"torch.optim.{name}"
        for name in torch.optim.__all__
        if isinstance(obj := getattr(torch.optim, name), type)
        and issubclass(obj, torch.optim.Optimizer)
        and obj is not torch.optim.Optimizer
    }


#: file name in conf/task/ -> the task (tests check that every task of experiments.tasks is here)
TASK_TARGETS = {
    "regression": "experiments.tasks.LinearRegressionTask",
    "xor": "experiments.tasks.XORTask",
    "autoencoder": "experiments.tasks.ContinualAutoencoderTask",
    "trajectories": "experiments.tasks.TrajectoryTask",
}
#: file name in conf/data/ -> the data module (tests check that every data module of experiments.data is here)
DATA_TARGETS = {
    "linear": "experiments.data.LinearDataModule",
    "housing": "experiments.data.HousingDataModule",
    "xor": "experiments.data.XORDataModule",
    "gaussian_classes": "experiments.data.GaussianClassesDataModule",
    "steps": "experiments.data.StepsDataModule",
}
LOGGER_TARGETS = {
    "tensorboard": "lightning.pytorch.loggers.TensorBoardLogger",
    "csv": "lightning.pytorch.loggers.CSVLogger",
}
TRAINER_TARGET = "lightning.pytorch.Trainer"
#: file name in conf/spike_detector/ -> the detector: SpikeGuard's nested ``detector`` (and ``grad_detector``), which
#: callbacks/spike_guard.yaml takes from that group (``/spike_detector@spike_guard.detector: tail``)
DETECTOR_TARGETS = {
    "median": "lr_callbacks.spike.MedianDetector",
    "tail": "lr_callbacks.spike.TailDetector",
    "zscore": "lr_callbacks.spike.ZScoreDetector",
    "ratio": "lr_callbacks.spike.RatioDetector",
}
#: file name in conf/lr_suggestion/ -> the suggestion method: LRFinder's nested ``suggestion``, which
#: callbacks/lr_finder.yaml takes from that group (``/lr_suggestion@lr_finder.suggestion: valley``)
SUGGESTION_TARGETS = {
    "race": "lr_callbacks.Race",
    "curvature": "lr_callbacks.Curvature",
    "valley": "lr_callbacks.Valley",
    "steepest": "lr_callbacks.Steepest",
    "min_div10": "lr_callbacks.MinDiv10",
    "centered_min": "lr_callbacks.CenteredMin",
}

#: Arguments that ``train()`` passes itself, left out of the schemas.
OPTIMIZER_BOUND = ("params",)
TASK_BOUND = ("optimizer",)
TRAINER_BOUND = ("callbacks", "logger", "enable_checkpointing")

CALLBACK_SCHEMAS: dict[str, type] = {name: schema(path) for name, path in callback_targets().items()}
OPTIMIZER_SCHEMAS: dict[str, type] = {
    name: schema(path, partial=True, exclude=OPTIMIZER_BOUND) for name, path in optimizer_targets().items()
}
TASK_SCHEMAS: dict[str, type] = {name: schema(path, exclude=TASK_BOUND) for name, path in TASK_TARGETS.items()}
DATA_SCHEMAS: dict[str, type] = {name: schema(path) for name, path in DATA_TARGETS.items()}
LOGGER_SCHEMAS: dict[str, type] = {name: schema(path) for name, path in LOGGER_TARGETS.items()}
DETECTOR_SCHEMAS: dict[str, type] = {name: schema(path) for name, path in DETECTOR_TARGETS.items()}
SUGGESTION_SCHEMAS: dict[str, type] = {name: schema(path) for name, path in SUGGESTION_TARGETS.items()}
TrainerConf = schema(TRAINER_TARGET, exclude=TRAINER_BOUND)


@dataclass
class AdaptConf:
    """Second phase of a continual-learning run: its own optimizer, callbacks, batch size and length.

    Read by ``train()`` itself, not a constructor's arguments, hence the one schema written by hand.
    """

    max_epochs: int = MISSING
    batch_size: int | None = None
    optimizer: Any = None
    callbacks: Any = None


def register_configs() -> None:
    """Registers every schema as ``<group>/<name>_schema`` in the ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for group, table in (("callbacks", CALLBACK_SCHEMAS), ("logger", LOGGER_SCHEMAS)):
        for name, conf in table.items():
            cs.store(group=group, name=f"{name}_schema", node={name: conf})
    for group, table in (("optimizer", OPTIMIZER_SCHEMAS), ("task", TASK_SCHEMAS), ("data", DATA_SCHEMAS)):
        for name, conf in table.items():
            cs.store(group=group, name=f"{name}_schema", node=conf)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConf)
    for conf in DETECTOR_SCHEMAS.values():  # named after the class: tail_detector_schema, z_score_detector_schema
        cs.store(group="spike_detector", name=f"{config_name(conf.__name__.removesuffix('Conf'))}_schema", node=conf)
    for name, conf in SUGGESTION_SCHEMAS.items():
        cs.store(group="lr_suggestion", name=f"{name}_schema", node=conf)
    cs.store(group="adapt", name="adapt_schema", node=AdaptConf)

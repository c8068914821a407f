"""Every config in conf/ composes and instantiates; typos fail at compose time; schemas match constructors."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

from experiments import schemas
from experiments.instantiate import instantiate_callbacks, instantiate_loggers, instantiate_trainer
from experiments.train import CONFIG_DIR
from tests.helpers.harness import compose_cfg, ensure_housing_data


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_config_dir_is_the_repo_conf() -> None:
    assert (CONFIG_DIR / "train.yaml").is_file()
    assert set(_options("callbacks")) == set(schemas.CALLBACK_SCHEMAS)


@pytest.mark.parametrize("name", _options("callbacks"))
def test_each_callback_config_instantiates(name: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"callbacks=[{name}]"], tmp_path)
    assert list(cfg.callbacks) == [name]
    (callback,) = instantiate_callbacks(cfg.callbacks)
    assert isinstance(callback, Callback)
    assert type(callback).__name__ == cfg.callbacks[name]._target_.rsplit(".", 1)[-1]


def test_callbacks_compose_as_a_list(tmp_path: Path) -> None:
    cfg = compose_cfg(["callbacks=[step_decay,warmup,lr_monitor]"], tmp_path)
    built = instantiate_callbacks(cfg.callbacks)
    assert [type(c).__name__ for c in built] == ["StepDecay", "Warmup", "LearningRateMonitor"]
    assert built[0].step_size == cfg.callbacks.step_decay.step_size


@pytest.mark.parametrize("group", ["optimizer", "task", "data"])
def test_each_group_option_instantiates(group: str, tmp_path: Path) -> None:
    ensure_housing_data()
    for name in _options(group):
        cfg = compose_cfg([f"{group}={name}"], tmp_path)
        node = cfg[group]
        assert node._target_ == dataclasses.fields(_schema(group, name))[_field_index(_schema(group, name))].default
        if group == "optimizer":
            opt = instantiate(node)([torch.nn.Parameter(torch.zeros(1))])
            assert isinstance(opt, torch.optim.Optimizer)
            assert opt.param_groups[0]["lr"] == node.lr
        else:
            obj = instantiate(
                node,
                **({"optimizer": instantiate(cfg.optimizer)} if group == "task" and name != "trajectories" else {}),
            )
            assert isinstance(obj, pl.LightningModule if group == "task" else pl.LightningDataModule)


def _schema(group: str, name: str) -> type:
    table = {"optimizer": schemas.OPTIMIZER_SCHEMAS, "task": schemas.TASK_SCHEMAS, "data": schemas.DATA_SCHEMAS}[group]
    return table.get(name) or table["sgd"]  # optimizer/momentum is an SGD config


def _field_index(schema: type) -> int:
    return [f.name for f in dataclasses.fields(schema)].index("_target_")


@pytest.mark.parametrize("name", _options("trainer"))
def test_each_trainer_config_instantiates(name: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"trainer={name}"], tmp_path)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        assert cfg.trainer.devices == 1  # composes; instantiating needs a GPU
        return
    trainer = instantiate_trainer(cfg.trainer, [], instantiate_loggers(cfg.logger))
    assert isinstance(trainer, pl.Trainer)
    assert trainer.max_epochs == cfg.trainer.max_epochs
    if name == "ddp":
        assert type(trainer.strategy).__name__ == "DDPStrategy"
        assert trainer.num_devices == 2


@pytest.mark.parametrize("name", _options("logger"))
def test_each_logger_config_instantiates(name: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"logger=[{name}]"], tmp_path)
    (logger,) = instantiate_loggers(cfg.logger)
    assert Path(logger.save_dir) == tmp_path


@pytest.mark.parametrize("name", _options("experiment"))
def test_each_experiment_composes_and_instantiates(name: str, tmp_path: Path) -> None:
    ensure_housing_data()
    cfg = compose_cfg([f"experiment={name}"], tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    optimizer = instantiate(cfg.optimizer) if cfg.get("optimizer") else None
    model = instantiate(cfg.task, **({"optimizer": optimizer} if optimizer else {}))
    assert isinstance(model, pl.LightningModule)
    assert isinstance(instantiate(cfg.data), pl.LightningDataModule)
    assert all(isinstance(c, Callback) for c in instantiate_callbacks(cfg.get("callbacks")))
    if cfg.get("adapt"):
        assert all(isinstance(c, Callback) for c in instantiate_callbacks(cfg.adapt.get("callbacks")))
        assert cfg.adapt.max_epochs > 0


def test_adapt_phase_takes_its_own_optimizer_and_callbacks(tmp_path: Path) -> None:
    cfg = compose_cfg(
        [
            "experiment=autoencoder_continual",
            "optimizer@adapt.optimizer=adam",
            "callbacks@adapt.callbacks=[step_decay]",
        ],
        tmp_path,
    )
    assert cfg.adapt.optimizer._target_ == "torch.optim.Adam"
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert [type(c).__name__ for c in instantiate_callbacks(cfg.adapt.callbacks)] == ["StepDecay"]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("callbacks.step_decay.stepsize=3", "stepsize"),
        ("optimizer.momentun=0.9", "momentun"),
        ("task.hiden_dim=3", "hiden_dim"),
        ("data.batchsize=3", "batchsize"),
        ("trainer.max_epoch=3", "max_epoch"),
    ],
)
def test_cli_typo_fails_at_compose_naming_the_key(override: str, key: str, tmp_path: Path) -> None:
    extra = ["callbacks=[step_decay]"] if override.startswith("callbacks") else []
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg([*extra, override], tmp_path)
    assert key in str(err.value) + str(err.value.__cause__)


def test_yaml_typo_fails_at_compose_naming_the_key(tmp_path: Path) -> None:
    """A misspelled callback argument inside a config file is rejected by its schema."""
    conf = tmp_path / "conf"
    (conf / "callbacks").mkdir(parents=True)
    (conf / "callbacks" / "bad_step.yaml").write_text(
        "defaults:\n  - step_decay_schema\n  - _self_\nstep_decay:\n  _target_: lr_callbacks.StepDecay\n  step_sise: 3\n"
    )
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg([f"hydra.searchpath=[file://{conf}]", "callbacks=[bad_step]"], tmp_path)
    message = str(err.value) + str(err.value.__cause__)
    assert "step_sise" in message
    assert "StepDecayConf" in message


def test_missing_required_callback_argument_is_reported(tmp_path: Path) -> None:
    cfg = compose_cfg(["callbacks=[step_decay]", "callbacks.step_decay.step_size=???"], tmp_path)
    with pytest.raises(Exception, match="step_size"):
        instantiate_callbacks(cfg.callbacks)


def _ctor_params(target: str) -> dict[str, inspect.Parameter]:
    skip = {"self", "params", "optimizer", "callbacks", "logger", "enable_checkpointing"}
    sig = inspect.signature(get_class(target))
    return {
        n: p for n, p in sig.parameters.items() if n not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


ALL_SCHEMAS = {
    **{f"callbacks/{k}": v for k, v in schemas.CALLBACK_SCHEMAS.items()},
    **{f"optimizer/{k}": v for k, v in schemas.OPTIMIZER_SCHEMAS.items()},
    **{f"task/{k}": v for k, v in schemas.TASK_SCHEMAS.items()},
    **{f"data/{k}": v for k, v in schemas.DATA_SCHEMAS.items()},
    "trainer": schemas.TrainerConf,
    "logger/tensorboard": schemas.TensorBoardLoggerConf,
    "logger/csv": schemas.CSVLoggerConf,
}


@pytest.mark.parametrize("name", sorted(ALL_SCHEMAS))
def test_schema_fields_are_the_constructor_arguments(name: str) -> None:
    schema = ALL_SCHEMAS[name]
    fields = {f.name: f for f in dataclasses.fields(schema) if not f.name.startswith("_")}
    target = next(f.default for f in dataclasses.fields(schema) if f.name == "_target_")
    params = _ctor_params(target)
    assert set(fields) == set(params), (
        f"{name}: schema-only {set(fields) - set(params)}, ctor-only {set(params) - set(fields)}"
    )
    for key, param in params.items():
        default = fields[key].default
        if param.default is inspect.Parameter.empty:
            assert (
                default == "???"
                or isinstance(default, str)
                and default == OmegaConf.MISSING
                or default is dataclasses.MISSING
                or default == "???"
            )
        elif name.startswith(("callbacks/", "optimizer/", "task/", "data/")) and not isinstance(
            default, type(dataclasses.MISSING)
        ):
            if fields[key].default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                continue
            expected = list(param.default) if isinstance(param.default, tuple) else param.default
            got = list(default) if isinstance(default, tuple) else default
            assert got == expected or default == "???", f"{name}.{key}: schema default {default!r} != {param.default!r}"

"""Every config in conf/ composes and instantiates; typos fail at compose time; schemas and YAML defaults match
the constructors' signatures."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pickle
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import lightning.pytorch as pl
import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, get_object, instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import MISSING, OmegaConf

import lr_callbacks
from experiments import schemas
from experiments.instantiate import instantiate_callbacks, instantiate_loggers, instantiate_trainer
from experiments.train import CONFIG_DIR
from tests.helpers.harness import compose_cfg, ensure_housing_data


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_config_dir_is_the_repo_conf() -> None:
    assert (CONFIG_DIR / "train.yaml").is_file()
    assert set(_options("callbacks")) == set(schemas.CALLBACK_SCHEMAS)


def _public_callbacks() -> list[str]:
    """The callbacks a user can configure: every public Callback of lr_callbacks but the base classes of core."""
    return [
        name
        for name in lr_callbacks.__all__
        if isinstance(obj := getattr(lr_callbacks, name), type)
        and issubclass(obj, Callback)
        and obj.__module__ != "lr_callbacks.core"
    ]


def test_the_public_callbacks_are_found() -> None:
    assert {"StepDecay", "SpikeAdaptiveLR", "LRFinder", "WarmupStableDecay"} <= set(_public_callbacks())
    assert not {"LRContributor", "Schedule", "Modifier"} & set(_public_callbacks())


@pytest.mark.parametrize("name", _public_callbacks())
def test_every_public_callback_has_a_schema_and_a_yaml(name: str) -> None:
    """A callback added to lr_callbacks gets its schema by itself; its YAML is the one thing to write."""
    target = f"lr_callbacks.{name}"
    configs = [key for key, conf in schemas.CALLBACK_SCHEMAS.items() if conf._target_ == target]
    assert len(configs) == 1, f"{target} has {len(configs)} schemas in experiments.schemas.CALLBACK_SCHEMAS"
    (config,) = configs
    path = CONFIG_DIR / "callbacks" / f"{config}.yaml"
    assert path.is_file(), (
        f"{target} has no YAML in conf/callbacks/: add conf/callbacks/{config}.yaml with `defaults: "
        f"[{config}_schema, _self_]`, then `{config}:` holding `_target_: {target}` and every argument, commented"
    )
    node = OmegaConf.load(path)
    # nested objects (SpikeGuard's detector) come from a group of their own, between the schema and _self_
    nested = [d for d in node.defaults if not isinstance(d, str) and all(f"@{config}." in k for k in d)]
    assert list(node.defaults) == [f"{config}_schema", *nested, "_self_"]
    assert node[config]._target_ == target


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
        assert node._target_ == _yaml_schema(group, name)._target_
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


def _yaml_schema(group: str, name: str) -> Any:
    """The schema that ``<group>/<name>.yaml`` names first in its defaults list (momentum.yaml: sgd_schema)."""
    table = {"optimizer": schemas.OPTIMIZER_SCHEMAS, "task": schemas.TASK_SCHEMAS, "data": schemas.DATA_SCHEMAS}[group]
    first = OmegaConf.load(CONFIG_DIR / group / f"{name}.yaml").defaults[0]
    assert first.endswith("_schema"), f"{group}/{name}.yaml: its defaults list must start with its schema"
    return table[first.removesuffix("_schema")]


@pytest.mark.parametrize(
    ("group", "module", "kind", "table"),
    [
        ("task", "experiments.tasks", pl.LightningModule, schemas.TASK_SCHEMAS),
        ("data", "experiments.data", pl.LightningDataModule, schemas.DATA_SCHEMAS),
    ],
)
def test_every_task_and_data_module_has_a_schema_and_a_yaml(group: str, module: str, kind: type, table: dict) -> None:
    package = importlib.import_module(module)
    public = {
        f"{module}.{name}"
        for name in package.__all__
        if isinstance(obj := getattr(package, name), type) and issubclass(obj, kind) and not name.startswith("Base")
    }
    assert public == {conf._target_ for conf in table.values()}, f"list each in schemas.{group.upper()}_TARGETS"
    assert set(_options(group)) >= set(table), f"a {group} schema without its conf/{group}/<name>.yaml"


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


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["optimizer.lr=fast"], "optimizer.lr"),  # `lr: float | Tensor` is a float in a config
        (["optimizer=adam", "optimizer.betas=[0.9,fast]"], "optimizer.betas"),
        (["task=trajectories", "task.start=[1.0,fast]"], "task.start"),  # `Sequence[float]` is a list of floats
        (["trainer.max_epochs=ten"], "trainer.max_epochs"),
    ],
)
def test_a_value_of_the_wrong_type_fails_at_compose(overrides: list[str], key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(overrides, tmp_path)
    assert key in str(err.value) + str(err.value.__cause__)


def test_yaml_typo_fails_at_compose_naming_the_key(tmp_path: Path) -> None:
    """A misspelled callback argument inside a config file is rejected by its schema."""
    conf = tmp_path / "conf"
    (conf / "callbacks").mkdir(parents=True)
    (conf / "callbacks" / "bad_step.yaml").write_text(
        "defaults:\n  - step_decay_schema\n  - _self_\n"
        "step_decay:\n  _target_: lr_callbacks.StepDecay\n  step_sise: 3\n"
    )
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg([f"hydra.searchpath=[file://{conf}]", "callbacks=[bad_step]"], tmp_path)
    message = str(err.value) + str(err.value.__cause__)
    assert "step_sise" in message
    assert "StepDecayConf" in message


@pytest.mark.parametrize(
    ("override", "choices"),
    [
        ("callbacks.step_decay.interval=epcoh", ["epoch", "step"]),
        ("callbacks.warmup.shape=cosin", ["linear", "cosine"]),
        ("callbacks.warmup_stable_decay.shape=sqrt", ["linear", "cosine", "1-sqrt"]),
        ("callbacks.spike_adaptive.nan_policy=spik", ["spike", "ignore", "raise"]),
        ("callbacks.spike_guard.nan_policy=ignor", ["spike", "ignore", "raise"]),
        ("callbacks.lr_monitor.logging_interval=epochs", ["step", "epoch"]),
    ],
)
def test_misspelt_choice_fails_at_compose_naming_the_choices(override: str, choices: list[str], tmp_path: Path) -> None:
    """An argument typed ``Literal[...]`` in its signature is an Enum in its schema, checked at compose time."""
    callback = override.split(".")[1]
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg([f"callbacks=[{callback}]", override], tmp_path)
    message = str(err.value) + str(err.value.__cause__)
    assert override.split("=")[1] in message
    assert override.split("=")[0] in message
    assert all(choice in message for choice in choices)


def test_yaml_choice_typo_fails_at_compose(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "callbacks").mkdir(parents=True)
    (conf / "callbacks" / "bad_warmup.yaml").write_text(
        "defaults:\n  - warmup_schema\n  - _self_\n"
        "warmup:\n  _target_: lr_callbacks.Warmup\n  duration: 3\n  shape: lineer\n"
    )
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg([f"hydra.searchpath=[file://{conf}]", "callbacks=[bad_warmup]"], tmp_path)
    assert "lineer" in str(err.value) + str(err.value.__cause__)


def test_a_choice_from_a_config_is_the_plain_string_to_the_callback(tmp_path: Path) -> None:
    """The Enum that checks a choice at compose time is invisible to the callback: same repr, state_key, pickle."""
    cfg = compose_cfg(["callbacks=[step_decay]", "callbacks.step_decay.interval=step"], tmp_path)
    assert isinstance(cfg.callbacks.step_decay.interval, enum.Enum)
    (built,) = instantiate_callbacks(cfg.callbacks)
    plain = lr_callbacks.StepDecay(step_size=10, gamma=0.5, interval="step")
    assert repr(built) == repr(plain)
    assert built.state_key == plain.state_key
    assert built.interval == "step"
    assert f"{built.interval}" == str(built.interval) == "step"
    assert type(pickle.loads(pickle.dumps(built.interval))) is str  # noqa: S301 - a pickle this test just made
    assert OmegaConf.to_container(cfg.callbacks, enum_to_str=True)["step_decay"]["interval"] == "step"
    clone = pickle.loads(pickle.dumps(cfg))  # noqa: S301 - composed configs pickle (joblib, submitit launchers)
    assert clone.callbacks.step_decay.interval == "step"


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
    **{f"logger/{k}": v for k, v in schemas.LOGGER_SCHEMAS.items()},
    "trainer": schemas.TrainerConf,
}


def _plain(value: Any) -> Any:
    """Tuples as lists (as YAML and OmegaConf hold them), recursively."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    return a == b and isinstance(a, bool) == isinstance(b, bool)


@pytest.mark.parametrize("name", sorted(ALL_SCHEMAS))
def test_schema_fields_are_the_constructor_arguments(name: str) -> None:
    schema = ALL_SCHEMAS[name]
    fields = {f.name: f for f in dataclasses.fields(schema) if not f.name.startswith("_")}
    target = next(f.default for f in dataclasses.fields(schema) if f.name == "_target_")
    params = _ctor_params(target)
    assert set(fields) == set(params), (
        f"{name}: schema-only {set(fields) - set(params)}, ctor-only {set(params) - set(fields)}"
    )
    hints = get_type_hints(get_class(target).__init__)
    for key, param in params.items():
        field = fields[key]
        if param.default is inspect.Parameter.empty:
            assert field.default in (dataclasses.MISSING, MISSING), f"{name}.{key} is required"
            assert field.default_factory is dataclasses.MISSING
        else:
            default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
            assert _same(default, param.default), f"{name}.{key}: schema default {default!r} != {param.default!r}"
        literal, field_type = _unoptional(hints.get(key)), _unoptional(field.type)
        if get_origin(literal) is Literal and all(isinstance(v, str) for v in get_args(literal)):
            assert isinstance(field_type, type), f"{name}.{key}: a Literal is checked at compose time"
            assert issubclass(field_type, enum.Enum), f"{name}.{key}: a Literal is checked at compose time"
            assert list(field_type.__members__) == list(get_args(literal))


def _unoptional(type_: Any) -> Any:
    """``X`` of ``Optional[X]`` / ``X | None``, else the type itself."""
    args = [a for a in get_args(type_) if a is not type(None)]
    return args[0] if get_origin(type_) in (Union, types.UnionType) and len(args) == 1 else type_


# --------------------------------------------------------------------------- YAML values and the signatures

#: how a YAML value that is not its signature's default says which default it replaces:
#: ``gamma: 0.5  # multiplicative factor per drop (default: 0.1)``
DEFAULT_NOTE = re.compile(r"\(default: (?P<value>[^()]*)\)\s*$")
#: the YAMLs that configure one object each, read line by line (keyed groups hold it under their file name)
YAML_GROUPS = {
    "callbacks": True, "logger": True, "optimizer": False, "task": False, "data": False, "trainer": False,
    "spike_detector": False, "lr_suggestion": False,
}  # fmt: skip
YAMLS = [f"{group}/{name}" for group in YAML_GROUPS for name in _options(group)]
#: the value of a key that a defaults-list entry of its own sets (a nested object, such as SpikeGuard's detector)
NESTED = object()


def _yaml_object(config: str) -> tuple[dict[str, Any], dict[str, str], str]:
    """The object of ``conf/<config>.yaml``: its values as written (interpolations unresolved), the comment of each
    value's line, and its ``_target_`` (from the config it extends when it has none, as trainer/gpu.yaml)."""
    group, name = config.split("/")
    keyed = YAML_GROUPS[group]
    path = CONFIG_DIR / group / f"{name}.yaml"
    raw = OmegaConf.to_container(OmegaConf.load(path))
    defaults = raw.pop("defaults", [])
    base = [d for d in defaults if isinstance(d, str) and d not in ("_self_",) and "_schema" not in d]
    node = raw[name] if keyed else raw
    indent = "  " if keyed else ""
    # a nested object taken from a group of its own (`/spike_detector@spike_guard.detector: tail`): set, commented
    nested = {key.rsplit(".", 1)[1] for d in defaults if isinstance(d, dict) for key in d if f"@{name}." in key}
    node.update(dict.fromkeys(nested, NESTED))
    comments = dict.fromkeys(nested, "from the defaults list")
    for line in path.read_text().splitlines():
        if m := re.match(rf"^{indent}(\w+):(?P<rest>.*)$", line):
            comment = re.search(r"\s#\s?(?P<text>.*)$", m["rest"])
            comments[m[1]] = comment["text"] if comment else ""
    target = node.get("_target_") or _yaml_object(f"{group}/{base[0]}")[2]
    return node, comments, target


def yaml_default_problems(config: str) -> list[str]:
    """Each value of ``conf/<config>.yaml`` is its signature's default, or says ``(default: <the signature's>)``."""
    node, comments, target = _yaml_object(config)
    params = inspect.signature(get_object(target)).parameters
    problems = []
    for key, value in node.items():
        if key.startswith("_") or params[key].default is inspect.Parameter.empty or value is NESTED:
            continue  # required: any value; an unknown key fails at compose time; a nested object: its own YAML
        default = params[key].default
        note = DEFAULT_NOTE.search(comments.get(key, ""))
        if note is None and not _same(value, default):
            problems.append(f"{config}: {key}: {value!r} is not the default {default!r}; note it `(default: ...)`")
        elif note is not None:
            said = OmegaConf.create(f"v: {note['value']}").v  # read as YAML, as the value itself
            if not _same(said, default):
                problems.append(f"{config}: {key}: the comment says (default: {note['value']}), it is {default!r}")
            elif _same(value, default):
                problems.append(f"{config}: {key}: {value!r} is the default; drop the `(default: ...)` note")
    return problems


@pytest.mark.parametrize("config", YAMLS)
def test_yaml_values_are_the_signature_defaults_or_say_so(config: str) -> None:
    """The signature is the source of truth: a YAML restating a default must restate it right, and a value chosen
    otherwise carries the default it replaces in its comment, checked here too."""
    assert yaml_default_problems(config) == []


def test_a_changed_signature_default_fails_the_yaml_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing a default in the code without the YAML following is caught, both for a restated default and for
    a noted one (step_decay.yaml: ``gamma: 0.5  # ... (default: 0.1)``, ``interval: epoch``)."""
    assert yaml_default_problems("callbacks/step_decay") == []
    sig = inspect.signature(lr_callbacks.StepDecay)
    changed = {"gamma": 0.2, "interval": "step"}
    monkeypatch.setattr(
        lr_callbacks.StepDecay,
        "__signature__",
        sig.replace(parameters=[p.replace(default=changed.get(p.name, p.default)) for p in sig.parameters.values()]),
        raising=False,
    )
    problems = yaml_default_problems("callbacks/step_decay")
    assert len(problems) == 2
    assert "gamma: the comment says (default: 0.1), it is 0.2" in problems[0]
    assert "interval: 'epoch' is not the default 'step'" in problems[1]


@pytest.mark.parametrize(
    "config",
    [f"callbacks/{n}" for n in _options("callbacks") if n in schemas.CALLBACK_SCHEMAS]
    + [f"task/{n}" for n in _options("task")]
    + [f"data/{n}" for n in _options("data")]
    + [f"spike_detector/{n}" for n in _options("spike_detector")]
    + [f"lr_suggestion/{n}" for n in _options("lr_suggestion")],
)
def test_the_projects_yamls_list_every_argument(config: str) -> None:
    """Each YAML of a class of this project holds every argument (STYLE), so a new argument shows in conf/."""
    node, comments, target = _yaml_object(config)
    if not target.startswith(("lr_callbacks.", "experiments.")):
        pytest.skip("a third-party class: the YAML sets what the suite needs")
    missing = set(_ctor_params(target)) - set(node)
    assert not missing, f"conf/{config}.yaml lacks {sorted(missing)} of {target}: add each with a comment"
    assert all(comments[key] for key in _ctor_params(target)), f"conf/{config}.yaml: comment every argument"


# --------------------------------------------------------------------------- nested objects: SpikeGuard's detector


def test_every_detector_has_a_schema_and_a_yaml() -> None:
    from lr_callbacks.spike import MedianDetector, RatioDetector, TailDetector, ZScoreDetector

    assert set(_options("spike_detector")) == set(schemas.DETECTOR_SCHEMAS)
    targets = {get_object(conf._target_) for conf in schemas.DETECTOR_SCHEMAS.values()}
    assert targets == {MedianDetector, RatioDetector, TailDetector, ZScoreDetector}


@pytest.mark.parametrize("detector", _options("spike_detector"))
def test_the_nested_detector_composes_and_instantiates(detector: str, tmp_path: Path) -> None:
    """``callbacks=[spike_guard]`` nests the detector of conf/spike_detector/ (a ``_target_`` of its own); another is
    picked on the command line, its arguments set, and a gradient-norm detector added, all checked by their schemas."""
    from lr_callbacks.spike import MedianDetector

    cfg = compose_cfg(["callbacks=[spike_guard]"], tmp_path)
    (guard,) = instantiate_callbacks(cfg.callbacks)
    assert isinstance(guard, lr_callbacks.SpikeGuard)
    assert repr(guard.detector) == repr(MedianDetector())
    cls = get_object(schemas.DETECTOR_TARGETS[detector])
    key, value = ("ratio", 2.5) if detector == "median" else ("threshold", 1.5)
    cfg = compose_cfg(
        [
            "callbacks=[spike_guard]",
            f"spike_detector@callbacks.spike_guard.detector={detector}",
            f"callbacks.spike_guard.detector.{key}={value}",
            "+spike_detector@callbacks.spike_guard.grad_detector=zscore",
            "callbacks.spike_guard.reactions=[skip,backoff]",
            "callbacks.spike_guard.backoff={_target_: lr_callbacks.spike.Backoff, decay: sqrt}",
        ],
        tmp_path,
    )
    (guard,) = instantiate_callbacks(cfg.callbacks)
    assert type(guard.detector) is cls
    assert getattr(guard.detector, key) == value
    assert type(guard.grad_detector).__name__ == "ZScoreDetector"
    assert guard.reactions == ("skip", "backoff")
    assert guard.backoff == lr_callbacks.spike.Backoff(decay="sqrt")


def test_every_suggestion_method_has_a_schema_and_a_yaml() -> None:
    assert set(_options("lr_suggestion")) == set(schemas.SUGGESTION_SCHEMAS) == set(lr_callbacks.LRFinder.SUGGESTIONS)


@pytest.mark.parametrize("method", _options("lr_suggestion"))
def test_the_nested_suggestion_composes_and_instantiates(method: str, tmp_path: Path) -> None:
    """``callbacks=[lr_finder]`` nests the race of conf/lr_suggestion/; another method is picked on the command line;
    a typo in the race's arguments or in the method's name fails at compose time."""
    cfg = compose_cfg(["callbacks=[lr_finder]", "callbacks.lr_finder.suggestion.candidates=3"], tmp_path)
    (finder,) = instantiate_callbacks(cfg.callbacks)
    assert finder.suggestion == lr_callbacks.Race(candidates=3)
    cfg = compose_cfg(["callbacks=[lr_finder]", f"lr_suggestion@callbacks.lr_finder.suggestion={method}"], tmp_path)
    (finder,) = instantiate_callbacks(cfg.callbacks)
    assert finder.suggestion == get_object(schemas.SUGGESTION_TARGETS[method])()
    for typo in ("callbacks.lr_finder.suggestion.candidate=3", "lr_suggestion@callbacks.lr_finder.suggestion=valey"):
        with pytest.raises(ConfigCompositionException) as err:
            compose_cfg(["callbacks=[lr_finder]", typo], tmp_path)
        assert typo.split("=")[0].split(".")[-1] in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize(
    ("override", "key"),
    [("callbacks.spike_guard.detector.tial=3", "tial"), ("callbacks.spike_guard.detector.warmup=soon", "warmup")],
)
def test_a_typo_in_the_nested_detector_fails_at_compose(override: str, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["callbacks=[spike_guard]", override], tmp_path)
    assert key in str(err.value) + str(err.value.__cause__)

"""Every public callback configured through ``LightningCLI``: from a YAML config and from the command line.

Each case runs a real fit on a tiny model (two param groups) and checks every LR it stepped with against an
independent reference: torch's scheduler where torch has one, else the documented rule. A callback added to
``lr_callbacks.__all__`` without a case here fails :func:`test_every_public_callback_has_a_case`.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningCLI
from torch.optim import lr_scheduler as torch_sched

import lr_callbacks
from lr_callbacks import LRContributor, LRFinder, Modifier, Schedule, TimeModifier
from lr_callbacks.finder.curve import sweep_lrs
from tests.helpers.lr_cases import Case, assert_lrs_close
from tests.helpers.tiny import LRRecorder, TinyRegression, loader

BASES = [0.1, 0.02]
BATCHES, EPOCHS = 4, 4
STEPS = BATCHES * EPOCHS
#: the metric the model logs in each epoch, for the callbacks that watch one
SCRIPT = [1.0, 2.0, 1.9, 1.9]


class CLIRegression(TinyRegression):
    """:class:`tiny.TinyRegression` with its own train data, and a scripted metric logged once per epoch."""

    def __init__(self, lrs: list[float] = BASES, script: list[float] = SCRIPT) -> None:
        super().__init__(base_lrs=lrs)
        self.script = script

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.log("scripted", self.script[self.current_epoch], on_step=False, on_epoch=True)
        return super().training_step(batch, batch_idx)

    def train_dataloader(self) -> Any:
        return loader(n=8 * BATCHES)


Reference = Callable[[list[float], Callback], list[list[float]]]


def _torch(factory: Callable[..., Any], interval: str, fractional: bool = False) -> Reference:
    """The LRs of torch's scheduler made by ``factory(optimizer, bases, total)``, at each step's ``t``."""
    case = Case("sgdr" if fractional else "torch", make=lambda i: None, torch=factory)
    return lambda bases, callback: case.reference(bases, case.times(interval, STEPS, BATCHES))


def _per_epoch_factor(factors: list[float]) -> Reference:
    return lambda bases, callback: [[b * factors[k // BATCHES] for b in bases] for k in range(STEPS)]


def _plateau_reference(bases: list[float], callback: Callback) -> list[list[float]]:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in bases]
    optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, bases)])
    scheduler = torch_sched.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0, min_lr=[0.03, 0.001])
    out = []
    for value in SCRIPT:
        out += [[g["lr"] for g in optimizer.param_groups]] * BATCHES
        scheduler.step(value)
    return out


def _seed_spike_factors(threshold: float = 1.1, decay: float = 0.5) -> list[float]:
    """The seed's rule on the scripted epoch values: after an epoch with L_t / L_{t-1} > threshold, x decay."""
    scale, factors = 1.0, []
    for t, value in enumerate(SCRIPT):
        factors.append(scale)
        if t > 0 and SCRIPT[t - 1] > 0 and value / SCRIPT[t - 1] > threshold:
            scale *= decay
    return factors


def _guard_reference(bases: list[float], guard: Callback) -> list[list[float]]:
    """Each spike of the step's loss against the previous one's (x 1.01) halves every group's LR from the next step."""
    assert isinstance(guard, lr_callbacks.SpikeGuard)
    assert guard.spikes  # the loss of this noisy toy rises often: the LR moves
    return [[b * 0.5 ** sum(s < k for s in guard.spikes) for b in bases] for k in range(STEPS)]


def _finder_reference(bases: list[float], finder: Callback) -> list[list[float]]:
    """Every step runs at the suggestion, each group keeping its ratio to the first; the sweep was the one asked for."""
    assert isinstance(finder, LRFinder)
    assert finder.result is not None
    assert finder.result.suggestion is not None
    lrs = finder.result.lrs
    assert len(lrs) >= 10
    assert lrs == pytest.approx(sweep_lrs(1e-4, 1.0, 20)[: len(lrs)], rel=1e-12)
    return [[finder.result.suggestion * b / bases[0] for b in bases]] * STEPS


@dataclass(frozen=True)
class CLICase:
    init_args: dict[str, Any]
    reference: Reference


CLI_CASES: dict[str, CLICase] = {
    "StepDecay": CLICase(
        {"step_size": 3, "gamma": 0.5, "interval": "step"},
        _torch(lambda o, b, n: torch_sched.StepLR(o, 3, 0.5), "step"),
    ),
    "ExponentialDecay": CLICase(
        {"k": 0.3}, _torch(lambda o, b, n: torch_sched.ExponentialLR(o, math.exp(-0.3)), "epoch")
    ),
    "CosineAnnealing": CLICase(
        {"T_max": 20, "eta_min": 0.001, "interval": "step"},
        _torch(lambda o, b, n: torch_sched.CosineAnnealingLR(o, T_max=20, eta_min=0.001), "step"),
    ),
    "CosineWarmRestarts": CLICase(
        {"T_0": 1, "T_mult": 2, "interval": "step"},
        _torch(lambda o, b, n: torch_sched.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=2), "step", fractional=True),
    ),
    "CyclicLR": CLICase(  # one bound per param group, and a Literal mode
        {
            "base_lr": [0.001, 0.002],
            "max_lr": [0.05, 0.02],
            "step_size_up": 2,
            "step_size_down": 3,
            "mode": "exp_range",
            "gamma": 0.9,
        },
        _torch(
            lambda o, b, n: torch_sched.CyclicLR(
                o,
                [0.001, 0.002],
                [0.05, 0.02],
                step_size_up=2,
                step_size_down=3,
                mode="exp_range",
                gamma=0.9,
                cycle_momentum=False,
            ),
            "step",
        ),
    ),  # fmt: skip
    "OneCycle": CLICase(  # total_steps=None: the trainer's length
        {"max_lr": [0.5, 0.2], "pct_start": 0.4, "anneal_strategy": "linear"},
        _torch(
            lambda o, b, n: torch_sched.OneCycleLR(
                o, max_lr=[0.5, 0.2], total_steps=n, pct_start=0.4, anneal_strategy="linear", cycle_momentum=False
            ),
            "step",
        ),
    ),  # fmt: skip
    "ReduceOnPlateau": CLICase(  # one floor per param group
        {"monitor": "scripted", "mode": "max", "factor": 0.5, "patience": 0, "min_lr": [0.03, 0.001]},
        _plateau_reference,
    ),
    "WarmupStableDecay": CLICase(  # total_steps=None: the trainer's length, and a Literal shape
        {"warmup_steps": 2, "decay_steps": 4, "start_factor": 0.5, "shape": "1-sqrt"},
        _torch(
            lambda o, b, n: torch_sched.LambdaLR(
                o, lambda k: 0.5 + k / 4 if k < 2 else 1.0 if k < n - 4 else 1 - ((k - n + 4) / 4) ** 0.5
            ),
            "step",
        ),
    ),  # fmt: skip
    "Warmup": CLICase(
        {"duration": 5, "start_factor": 0.25, "shape": "linear"},
        _torch(lambda o, b, n: torch_sched.LinearLR(o, start_factor=0.25, total_iters=5), "step"),
    ),
    "SignAlternation": CLICase(
        {"pattern": "alternate", "negative_scale": 0.5},
        _per_epoch_factor([1.0 if e % 2 == 0 else -0.5 for e in range(EPOCHS)]),
    ),
    # Few arguments, the documented ones: SpikeAdaptiveLR and LRFinder are being extended.
    "SpikeAdaptiveLR": CLICase({"monitor": "scripted"}, _per_epoch_factor(_seed_spike_factors())),
    "SpikeGuard": CLICase(  # nested objects: a detector and a backoff policy, as class_path / init_args
        {
            "detector": {"class_path": "lr_callbacks.spike.RatioDetector", "init_args": {"threshold": 1.01}},
            "reactions": ["backoff"],
            "backoff": {"class_path": "lr_callbacks.spike.Backoff", "init_args": {"decay": 0.5, "min_lr": 0.0}},
        },
        _guard_reference,
    ),
    "LRFinder": CLICase({"min_lr": 1e-4, "max_lr": 1.0, "num_steps": 20}, _finder_reference),
}

#: the base classes, exported for users who write their own contributors
BASE_CLASSES = (LRContributor, Schedule, Modifier, TimeModifier)
PUBLIC_CALLBACKS = sorted(
    name
    for name in lr_callbacks.__all__
    if isinstance(getattr(lr_callbacks, name), type)
    and issubclass(getattr(lr_callbacks, name), Callback)
    and getattr(lr_callbacks, name) not in BASE_CLASSES
)


def test_every_public_callback_has_a_case() -> None:
    missing = sorted(set(PUBLIC_CALLBACKS) - set(CLI_CASES))
    assert not missing, f"public callbacks without a LightningCLI case in {__file__}: {missing}"
    assert set(CLI_CASES) == set(PUBLIC_CALLBACKS)
    assert len(PUBLIC_CALLBACKS) >= 11


@pytest.mark.parametrize("name", PUBLIC_CALLBACKS)
def test_jsonargparse_takes_every_argument_of_every_callback(name: str) -> None:
    """No argument is skipped for an unsupported or missing type hint."""
    cls = getattr(lr_callbacks, name)
    added = ArgumentParser().add_class_arguments(cls, "cb", fail_untyped=True)
    params = inspect.signature(cls).parameters
    named = {name for name, p in params.items() if p.kind is not p.VAR_KEYWORD}  # SpikeAdaptiveLR's deprecated **
    assert {key.split(".", 1)[1].split(".", 1)[0] for key in added} == named


#: the ``Literal`` hints LightningCLI checks, and the constants the runtime checks use
LITERALS = [
    (lr_callbacks.Warmup, "shape", lr_callbacks.Warmup.SHAPES),
    (lr_callbacks.SignAlternation, "pattern", lr_callbacks.SignAlternation.PATTERNS),
    (lr_callbacks.CyclicLR, "mode", lr_callbacks.CyclicLR.MODES),
    (lr_callbacks.OneCycle, "anneal_strategy", lr_callbacks.OneCycle.ANNEAL_STRATEGIES),
    (lr_callbacks.ReduceOnPlateau, "mode", lr_callbacks.ReduceOnPlateau.MODES),
    (lr_callbacks.ReduceOnPlateau, "threshold_mode", lr_callbacks.ReduceOnPlateau.THRESHOLD_MODES),
    (lr_callbacks.LRFinder, "mode", lr_callbacks.LRFinder.MODES),
    (lr_callbacks.SpikeAdaptiveLR, "nan_policy", lr_callbacks.SpikeAdaptiveLR.NAN_POLICIES),
    (lr_callbacks.SpikeGuard, "nan_policy", lr_callbacks.SpikeGuard.NAN_POLICIES),
    *[(getattr(lr_callbacks, n), "interval", LRContributor.INTERVALS) for n in PUBLIC_CALLBACKS
      if n not in ("LRFinder", "SpikeGuard")],  # SpikeGuard checks every step
]  # fmt: skip


@pytest.mark.parametrize(("cls", "argument", "allowed"), LITERALS, ids=[f"{c.__name__}.{a}" for c, a, _ in LITERALS])
def test_literal_hints_are_the_allowed_values_of_the_runtime_check(cls: type, argument: str, allowed: tuple) -> None:
    hint = typing.get_type_hints(cls.__init__)[argument]
    assert typing.get_origin(hint) is typing.Literal
    assert typing.get_args(hint) == allowed
    given = CLI_CASES[cls.__name__].init_args
    required = {k: v for k, v in given.items() if k != argument and not isinstance(v, dict)}  # no nested objects
    with pytest.raises(
        ValueError, match=rf"^`{argument}` must be one of {re.escape(str(list(allowed)))}, got 'nope'\.$"
    ):
        cls(**required, **{argument: "nope"})


@pytest.mark.parametrize(
    ("cls", "args", "expected"),
    [
        ("SpikeAdaptiveLR", ["--cb.decay=sqrt"], {"decay": "sqrt"}),
        ("SpikeAdaptiveLR", ["--cb.decay=0.7"], {"decay": 0.7}),
        ("SpikeGuard", ["--cb.reactions=skip"], {"reactions": "skip"}),
        ("SpikeGuard", ["--cb.reactions=[skip, backoff]"], {"reactions": ["skip", "backoff"]}),
        ("SpikeGuard", ["--cb.detector=null"], {"detector": None}),
    ],
)
def test_spike_choices_in_unions_parse(cls: str, args: list[str], expected: dict[str, Any]) -> None:
    """Choices inside unions: a decay name or a float, one reaction or a list, an optional detector."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(getattr(lr_callbacks, cls), "cb")
    parsed = parser.parse_args(args).cb
    assert {key: parsed[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("cls", "args"),
    [("SpikeAdaptiveLR", ["--cb.decay=halv"]), ("SpikeGuard", ["--cb.reactions=[skip, rolback]"])],
)
def test_spike_choices_in_unions_refuse_a_misspelling(cls: str, args: list[str]) -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(getattr(lr_callbacks, cls), "cb")
    with pytest.raises(Exception, match="Literal"):
        parser.parse_args(args)


@pytest.mark.parametrize(
    ("detector", "expected"),
    [
        ("lr_callbacks.spike.TailDetector", "TailDetector"),
        ({"class_path": "lr_callbacks.spike.ZScoreDetector", "init_args": {"z": 4.0}}, "ZScoreDetector(z=4.0, "),
        ({"class_path": "RatioDetector", "init_args": {"ema": 0.5}}, "RatioDetector(threshold=1.1, ema=0.5)"),
    ],
)
def test_the_guards_detector_parses_as_a_nested_object(detector: Any, expected: str) -> None:
    """SpikeGuard's detector is an object: a class path, or class_path / init_args (a short name resolves)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(lr_callbacks.SpikeGuard, "cb")
    value = detector if isinstance(detector, str) else json.dumps(detector)
    guard = parser.instantiate(parser.parse_args([f"--cb.detector={value}"])).cb
    assert repr(guard.detector).startswith(expected)
    with pytest.raises(Exception, match="tial"):
        parser.parse_args(['--cb.detector={"class_path": "lr_callbacks.spike.TailDetector", "init_args": {"tial": 3}}'])


def _yaml_config(path: Path, name: str, init_args: dict[str, Any]) -> list[str]:
    entry = {"class_path": f"lr_callbacks.{name}", "init_args": init_args}
    path.write_text(json.dumps({"trainer": {"callbacks": [entry]}}))  # JSON is YAML
    return ["--config", str(path)]


def _command_line(name: str, init_args: dict[str, Any]) -> list[str]:
    args = [f"--trainer.callbacks+=lr_callbacks.{name}"]
    for key, value in init_args.items():
        text = json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)
        args.append(f"--trainer.callbacks.{key}={text}")
    return args


def _matches(attribute: Any, given: Any) -> bool:
    """Whether a callback's attribute is what its configuration gave: a tuple for a list, and for a nested object
    (``class_path`` / ``init_args``) an instance of that class with those arguments."""
    if isinstance(given, dict) and "class_path" in given:
        same_class = type(attribute).__name__ == given["class_path"].rsplit(".", 1)[-1]
        return same_class and all(getattr(attribute, k) == v for k, v in given.get("init_args", {}).items())
    return (list(attribute) if isinstance(attribute, tuple) else attribute) == given


def run_cli(args: list[str], root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LightningCLI, LRRecorder]:
    """``LightningCLI(run=False)`` on ``args``, then its trainer's fit, recording every LR the optimizer steps with."""
    monkeypatch.setattr(sys, "argv", ["lightning-cli"])  # pytest's own arguments are not the CLI's
    cli = LightningCLI(
        CLIRegression,
        args=args,
        run=False,
        save_config_callback=None,
        seed_everything_default=0,
        trainer_defaults={
            "max_epochs": EPOCHS, "accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
            "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(root),
        },
    )  # fmt: skip
    recorder = LRRecorder()
    cli.trainer.callbacks.append(recorder)
    cli.trainer.fit(cli.model)
    return cli, recorder


@pytest.mark.parametrize("form", ["yaml", "command-line"])
@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_lightning_cli_configures_the_callback_and_the_run_follows_it(
    name: str, form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CLI_CASES[name]
    if form == "yaml":
        args = _yaml_config(tmp_path / "config.yaml", name, case.init_args)
    else:
        args = _command_line(name, case.init_args)
    cli, recorder = run_cli(args, tmp_path, monkeypatch)
    (callback,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == name]
    for key, value in case.init_args.items():
        assert _matches(getattr(callback, key), value), key
    assert len(recorder.lrs) == STEPS
    expected = case.reference(BASES, callback)
    assert_lrs_close(recorder.lrs, expected)
    assert len({tuple(row) for row in expected}) > 1 or name == "LRFinder"  # the LR moves: the check can fail


def test_callbacks_compose_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A schedule and two modifiers, each appended with ``+=`` and followed by its own arguments."""
    args = [
        *_command_line("Warmup", {"duration": 3}),
        *_command_line("CosineAnnealing", {"T_max": EPOCHS}),
        *_command_line("SignAlternation", {"period": 2}),
    ]
    _, recorder = run_cli(args, tmp_path, monkeypatch)
    factors = [min(k, 3) / 3 * (1.0 if (k // BATCHES) // 2 % 2 == 0 else -1.0) for k in range(STEPS)]
    cosine = [(1 + math.cos(math.pi * (k // BATCHES) / EPOCHS)) / 2 for k in range(STEPS)]
    assert_lrs_close(recorder.lrs, [[b * c * f for b in BASES] for c, f in zip(cosine, factors)])


@pytest.mark.parametrize(
    ("name", "argument", "value", "allowed"),
    [
        ("Warmup", "interval", "stepp", "'epoch', 'step'"),
        ("CyclicLR", "mode", "triangle", "'triangular', 'triangular2', 'exp_range'"),
    ],
)
def test_a_bad_choice_is_refused_when_parsing_with_the_allowed_values(
    name: str,
    argument: str,
    value: str,
    allowed: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = _command_line(name, {**CLI_CASES[name].init_args, argument: value})
    monkeypatch.setattr(sys, "argv", ["lightning-cli"])
    with pytest.raises(SystemExit) as stop:
        LightningCLI(CLIRegression, args=args, run=False, save_config_callback=None)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"Problem with given class_path 'lr_callbacks.{name}'" in err, err
    assert f'Parser key "{argument}":\n          Expected a typing.Literal[{allowed}]. Got value: {value}' in err, err

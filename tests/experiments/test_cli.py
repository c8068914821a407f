"""Every console script refuses a bad argument with its message alone (no traceback) and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from experiments import benchmark, reproduce
from experiments.cli import EXIT_BAD_ARGUMENT, BadArgument
from tests.helpers.paths import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # the dev extra installs tomli on 3.10
    import tomli as tomllib

ROOT = REPO_ROOT
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]

#: script -> (bad arguments, what its message must say); a new console script adds its case here
BAD_ARGUMENTS = {
    "lr-train": (["optimizer.momentun=0.9"], "Key 'momentun' not in 'SGDConf'"),
    "lr-reproduce": (["studies=[housingg]"], "Unknown studies ['housingg']; choose from ['linear_alternating'"),
    "lr-benchmark": (["schedules", "--steps", "5"], "argument --steps: must be at least 20, got 5"),
    "lr-preview": (["callbacks=[warmupp]"], "Could not load 'callbacks/warmupp'"),
}


def run_script(name: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The installed console script ``name``, run in ``cwd``."""
    script = Path(sys.executable).with_name(name)
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_every_console_script_has_a_bad_argument_case() -> None:
    assert set(BAD_ARGUMENTS) == set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(BAD_ARGUMENTS))
def test_console_script_refuses_a_bad_argument_with_the_message_alone(name: str, tmp_path: Path) -> None:
    args, expected = BAD_ARGUMENTS[name]
    proc = run_script(name, args, tmp_path)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert 'File "' not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert not list(tmp_path.iterdir())  # refused before anything ran


def test_lr_train_reports_a_configuration_lightning_refuses_as_its_message_alone(tmp_path: Path) -> None:
    """Two schedules on one optimizer are only found once fit starts; the answer is still the message alone."""
    proc = run_script(
        "lr-train",
        [
            "experiment=xor_adam",
            "callbacks=[step_decay,cosine_annealing]",
            "logger=[]",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert proc.returncode == 1
    assert "At most one schedule callback may drive an optimizer, got ['StepDecay', 'CosineAnnealing']" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert 'File "' not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["optimizer.lr=-1"], "optimizer: Invalid learning rate: -1.0"),
        (["optimizer=adam", "optimizer.betas=[0.9,1.5]"], "optimizer: Invalid beta parameter at index 1: 1.5"),
    ],
)
def test_lr_train_reports_a_value_torch_refuses_before_training(args: list[str], expected: str, tmp_path: Path) -> None:
    proc = run_script(
        "lr-train", ["experiment=xor_adam", *args, "logger=[]", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path
    )
    assert proc.returncode == 1
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert 'File "' not in proc.stderr, proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["profile.housing.epoch=3"], "Key 'epoch' not in 'HousingParams'"),
        (["profile=fast"], "Could not find 'profile/fast'"),
        (["n_jobs=abc"], "Value 'abc' of type 'str' could not be converted to Integer"),
        (["studies=["], "no viable alternative at input '['"),
        (["reuse=true", "out_dir={tmp}/empty"], "reuse=true re-analyses the runs saved in out_dir"),
        (["out_dir={tmp}/file/report"], "out_dir={tmp}/file/report cannot be created"),
        (["--help", "profile=fast"], "Could not find 'profile/fast'"),
    ],
)
def test_lr_reproduce_refuses_bad_arguments(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit) as stop:
        reproduce.main([a.format(tmp=tmp_path) for a in args])
    assert stop.value.code == EXIT_BAD_ARGUMENT
    err = capsys.readouterr().err
    assert err.startswith("lr-reproduce: error: ")
    assert expected.format(tmp=tmp_path) in err
    assert not (tmp_path / "empty").exists()


def test_hydra_full_error_shows_the_original_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(BadArgument, match="Unknown studies"):
        reproduce.main(["studies=[nope]"])
    with pytest.raises(ConfigCompositionException, match="profile.housing.epoch"):
        reproduce.main(["profile.housing.epoch=3"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["schedule"], f"unknown suite(s) ['schedule']; choose from {list(benchmark.SUITES)} or 'all'"),
        (["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        (["--steps", "x"], "argument --steps: invalid int value: 'x'"),
    ],
)
def test_lr_benchmark_refuses_bad_arguments(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        benchmark.main(args)
    assert stop.value.code == EXIT_BAD_ARGUMENT
    assert expected in capsys.readouterr().err

"""Helpers shared by the harness tests (compose configs, run train(), read outputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from experiments.train import CONFIG_MODULE, train
from tests.helpers.paths import SHARED_DATA

LR_TRAIN = str(Path(sys.executable).with_name("lr-train"))
#: a short run of any experiment: two epochs of a few batches
LIMITS = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]


def ensure_housing_data() -> None:
    """Points scikit-learn at the project's offline copy of California Housing unless already set."""
    if "SCIKIT_LEARN_DATA" not in os.environ and SHARED_DATA.is_dir():
        os.environ["SCIKIT_LEARN_DATA"] = str(SHARED_DATA)


def compose_cfg(overrides: list[str], output_dir: Path | None = None, hydra_cfg: bool = False) -> DictConfig:
    """Composes ``conf/train.yaml`` with ``overrides`` (and ``paths.output_dir`` when given)."""
    extra = [f"paths.output_dir={output_dir}"] if output_dir is not None else []
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose("train", overrides=[*overrides, *extra], return_hydra_config=hydra_cfg)


def run_train(overrides: list[str], output_dir: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """Composes and runs ``train()`` into ``output_dir``."""
    ensure_housing_data()
    return train(compose_cfg(overrides, output_dir))


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The ``metrics.json`` of a run."""
    return json.loads((run_dir / "metrics.json").read_text())


def scalar_tags(log_dir: Path) -> dict[str, list[float]]:
    """Scalar tags → values of all event files under ``log_dir`` (TensorBoard's EventAccumulator)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[float]] = {}
    for event_file in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
        for tag in acc.Tags()["images"]:
            out.setdefault(f"image:{tag}", []).append(float(len(acc.Images(tag))))
        for tag in acc.Tags()["tensors"]:
            out.setdefault(f"tensor:{tag}", []).append(1.0)
    return out


def lr_train(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs the ``lr-train`` console script in ``cwd`` (not the repo) and fails loudly on errors."""
    ensure_housing_data()
    proc = subprocess.run([LR_TRAIN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc

"""Run outputs: ``metrics.json``, TensorBoard hparams with final metrics, and figures."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from matplotlib.figure import Figure

from experiments.figures import curves_figure


def json_safe(value: Any) -> Any:
    """NaN/inf become ``null`` so the file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_metrics_json(path: Path, metrics: Mapping[str, float], history: Mapping[str, Sequence[float]]) -> Path:
    """Writes ``{"metrics": {...}, "history": {...}}`` (non-finite numbers as ``null``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe({"metrics": dict(metrics), "history": dict(history)}), indent=1))
    return path


def log_hparams(loggers: Sequence[Logger], params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """Logs the run's hyper-parameters with its finite final metrics (TensorBoard's HParams tab)."""
    finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(dict(params), metrics=finite)
        else:
            logger.log_hyperparams(dict(params))
            logger.log_metrics(finite)
        logger.save()


def history_figures(history: Mapping[str, Sequence[float]]) -> dict[str, Figure]:
    """Loss and LR curves per epoch from a run's history."""
    loss_keys = [k for k in history if "loss" in k and not k.startswith("trajectory/")]
    lr_keys = [k for k in history if k.rsplit("/", 1)[-1].startswith("lr") and "lr_step" not in k]
    figures = {
        "loss_curves": curves_figure(history, loss_keys, "loss per epoch"),
        "lr_curves": curves_figure(history, lr_keys, "learning rate per epoch"),
    }
    return {name: fig for name, fig in figures.items() if fig is not None}


def save_figures(figures: Mapping[str, Figure], out_dir: Path, loggers: Sequence[Logger], step: int = 0) -> list[Path]:
    """Adds each figure to every TensorBoard logger (``figures/<name>``) and saves it as PNG; closes them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
        for logger in loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(f"figures/{name}", fig, global_step=step, close=False)
                logger.experiment.flush()
        plt.close(fig)
    return paths

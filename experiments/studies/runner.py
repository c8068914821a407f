"""Runs of a study: Hydra-composed ``conf/train.yaml`` configs, trained by ``train(cfg)``, in parallel.

Each run is one composition of ``conf/train.yaml`` with an ``experiment=study_*`` preset and overrides,
exactly what ``lr-train <overrides>`` would compose. The composed config is saved as
``<run dir>/.hydra/config.yaml`` (with ``overrides.yaml``), as a Hydra run would, and the run writes its
TensorBoard logs, figures and ``metrics.json`` into the run dir. Several runs go through joblib's
process-based ``loky`` backend (the engine of Hydra's joblib launcher) with one torch thread per worker.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: ``post(metrics, objects) -> extras``: runs in the worker, after ``train(cfg)``; floats join the metrics,
#: lists the history.
PostFn = Callable[[dict[str, float], dict[str, Any]], dict[str, Any]]


@dataclass
class Run:
    """One training run of a study.

    Attributes:
        name: unique within the study, also the run's folder (``row/seed3``).
        overrides: Hydra overrides of ``conf/train.yaml`` (``experiment=study_...`` first).
        row: label of the table row the run belongs to (runs of one row differ in their seed only).
        post: extra scalars computed in the worker from ``train``'s ``(metrics, objects)``.
        keep_steps: keep the per-step LR history (``lr_step``), dropped by default to keep results small.
    """

    name: str
    overrides: list[str]
    row: str = ""
    post: PostFn | None = None
    keep_steps: bool = False


@dataclass
class RunResult:
    """What a run returned: final scalars, per-epoch history, wall time, and the error if it failed."""

    run: Run
    out_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = math.nan
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def get(self, key: str, default: float = math.nan) -> float:
        value = self.metrics.get(key, default)
        return default if value is None else float(value)


def lr_train_command(overrides: Sequence[str]) -> str:
    """The ``lr-train`` command line composing the same config."""
    return "lr-train " + " ".join(shlex.quote(o) for o in overrides)


def compose_configs(overrides: Sequence[Sequence[str]]) -> list[DictConfig]:
    """Composes ``conf/train.yaml`` once per override list (typos fail here, before any training)."""
    from hydra import compose, initialize_config_module

    from experiments.train import CONFIG_MODULE

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return [compose("train", overrides=list(o)) for o in overrides]


def quiet() -> None:
    """Silences Lightning's per-fit banners and known warnings of tiny in-memory runs."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (
        ".*does not have many workers.*",
        ".*LeafSpec.*",
        ".*You defined a `validation_step` but have no `val_dataloader`.*",
        ".*The number of training batches.*",
        ".*Starting from v1.9.0, `tensorboardX` has been removed.*",
        ".*litlogger.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def execute_one(cfg: DictConfig, post: PostFn | None, keep_steps: bool) -> tuple[dict, dict, float, str | None]:
    """Trains one composed config (in a worker or in-process); never raises."""
    import torch

    from experiments.train import train

    quiet()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        metrics, objects = train(cfg)
        history = {k: list(v) for k, v in objects["history"].items() if keep_steps or k != "lr_step"}
        for key, value in (post(metrics, objects) if post is not None else {}).items():
            (history if isinstance(value, list) else metrics)[key] = value
        return metrics, history, time.perf_counter() - start, None
    except Exception as err:
        tail = "".join(traceback.format_exception_only(type(err), err)).strip()
        return {}, {}, time.perf_counter() - start, tail
    finally:
        torch.set_num_threads(threads)


def execute(
    runs: Sequence[Run],
    root: Path,
    n_jobs: int = 1,
    progress: Callable[[RunResult, int, int], None] | None = None,
) -> list[RunResult]:
    """Composes and trains every run under ``root/<run.name>``; results in the order of ``runs``.

    Args:
        runs: the runs.
        root: the study's run folder.
        n_jobs: parallel worker processes; 1 trains in this process.
        progress: called as each run finishes, with ``(result, done, total)``.
    """
    outs = [root / run.name for run in runs]
    overrides = [[*run.overrides, f"paths.output_dir={out}"] for run, out in zip(runs, outs)]
    configs = compose_configs(overrides)
    for cfg, out, ov in zip(configs, outs, overrides):
        (out / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
        OmegaConf.save(OmegaConf.create(list(ov)), out / ".hydra" / "overrides.yaml")
    results: list[RunResult | None] = [None] * len(runs)
    for done, (i, (metrics, history, seconds, error)) in enumerate(_map(runs, configs, n_jobs), start=1):
        result = results[i] = RunResult(runs[i], outs[i], metrics, history, seconds, error)
        if progress is not None:
            progress(result, done, len(runs))
    return [r for r in results if r is not None]


def _map(runs: Sequence[Run], configs: Sequence[DictConfig], n_jobs: int) -> Iterator[tuple[int, tuple]]:
    if n_jobs <= 1 or len(runs) <= 1:
        for i, (run, cfg) in enumerate(zip(runs, configs)):
            yield i, execute_one(cfg, run.post, run.keep_steps)
        return
    from joblib import Parallel, delayed

    def task(i: int, cfg: DictConfig, run: Run) -> tuple[int, tuple]:
        return i, execute_one(cfg, run.post, run.keep_steps)

    parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")
    yield from parallel(delayed(task)(i, cfg, run) for i, (run, cfg) in enumerate(zip(runs, configs)))


def save_results(path: Path, results: Sequence[RunResult]) -> Path:
    """Every run's metrics, history (post extras included), wall time and error, as JSON (NaN as null)."""
    from experiments.outputs import json_safe

    rows = [
        {"name": r.run.name, "metrics": r.metrics, "history": r.history, "seconds": r.seconds, "error": r.error}
        for r in results
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(rows)))
    return path


def load_results(path: Path, runs: Sequence[Run], root: Path) -> list[RunResult]:
    """The results :func:`save_results` wrote, matched to ``runs`` by name.

    Raises:
        FileNotFoundError: if ``path`` is missing.
        KeyError: if a run has no saved result (the plan changed since).
    """
    nan = lambda v: math.nan if v is None else v
    saved = {row["name"]: row for row in json.loads(path.read_text())}
    out = []
    for run in runs:
        if run.name not in saved:
            raise KeyError(f"No saved result for run {run.name!r} in {path}; run without reuse.")
        row = saved[run.name]
        metrics = {k: nan(v) for k, v in row["metrics"].items()}
        history = {k: [nan(x) for x in v] for k, v in row["history"].items()}
        out.append(RunResult(run, root / run.name, metrics, history, nan(row["seconds"]), row["error"]))
    return out

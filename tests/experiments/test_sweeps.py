"""Sweeps: joblib in parallel, Optuna on main()'s return value, submitit configured; DDP on CPU."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from hydra.utils import instantiate

from tests.helpers.harness import LIMITS, compose_cfg, lr_train, read_metrics


@pytest.mark.slow
def test_joblib_multirun_two_jobs_in_parallel(tmp_path: Path) -> None:
    lr_train(
        ["-m", "hydra/launcher=local_parallel", "experiment=xor_adam", "optimizer.lr=0.01,0.1", *LIMITS,
         f"hydra.sweep.dir={tmp_path}"],
        cwd=tmp_path,
    )  # fmt: skip
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = sorted(read_metrics(p)["history"]["lr"][0] for p in jobs)
    assert lrs == pytest.approx([0.01, 0.1])


@pytest.mark.slow
def test_optuna_search_optimises_the_returned_metric(tmp_path: Path) -> None:
    lr_train(
        ["hparams_search=housing_optuna", "hydra.sweeper.n_trials=3", "data.batch_size=null", "trainer.max_epochs=20",
         "trainer.check_val_every_n_epoch=20", f"hydra.sweep.dir={tmp_path}"],
        cwd=tmp_path,
    )  # fmt: skip
    best = (tmp_path / "optimization_results.yaml").read_text()
    value = float(re.search(r"best_value: ([0-9.e+-]+)", best).group(1))
    runs = [read_metrics(p)["metrics"]["val/rmse"] for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit()]
    assert len(runs) == 3
    assert value == pytest.approx(min(runs), rel=1e-6)
    assert "optimizer.lr" in best


@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm", "joblib", "local_parallel"])
def test_launcher_configs_compose_and_instantiate(launcher: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"hydra/launcher={launcher}", "hydra.sweep.dir=/tmp/sweep"], tmp_path, hydra_cfg=True)
    node = cfg.hydra.launcher
    obj = instantiate(node)
    assert type(obj).__name__ == {"slurm": "SlurmLauncher", "submitit_slurm": "SlurmLauncher"}.get(
        launcher, "JoblibLauncher"
    )
    if launcher == "slurm":
        assert node.timeout_min == 60
        assert node.tasks_per_node == 1
        assert node.submitit_folder.endswith("%j")
    if launcher == "local_parallel":
        assert node.n_jobs == 2


def test_optuna_search_config_composes(tmp_path: Path) -> None:
    cfg = compose_cfg(["hparams_search=housing_optuna"], tmp_path, hydra_cfg=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.params["optimizer.lr"].startswith("tag(log")
    assert cfg.optimized_metric == "val/rmse"
    assert cfg.data.val_fraction > 0


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    lr_train(["experiment=housing_sgd", "trainer=ddp", *LIMITS, f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=600)
    saved = read_metrics(run_dir)["metrics"]
    assert saved["world_size"] == 2.0  # two gloo processes
    assert saved["epochs"] == 2.0
    assert saved["test/rmse"] > 0
    assert "train/loss" in saved


def test_harness_benchmark_prints_table_and_ratios() -> None:
    from experiments.benchmarks import harness

    out = io.StringIO()
    with redirect_stdout(out):
        harness.run(["--repeats", "1", "--steps", "60"])
    text = out.getvalue()
    for row in ("plain PyTorch / index slicing", "bare Lightning / index slicing", "harness / index slicing",
                "bare Lightning / DataLoader(TensorDataset)"):  # fmt: skip
        assert re.search(re.escape(row) + r"\s+\d+\s+\d+\s+[0-9.]+", text), text
    ratio = float(re.search(r"harness / bare Lightning: ([0-9.]+)", text).group(1))
    assert 0.2 < ratio < 5
    assert len(re.findall(r"index slicing / DataLoader\(TensorDataset\), .*: [0-9.]+x", text)) == 2


@pytest.mark.slow
def test_harness_within_ten_percent_of_bare_lightning() -> None:
    from experiments.benchmarks import harness

    res = harness.measure(steps=2000, repeats=7)
    assert res[harness.HARNESS][0] / res[harness.BARE][0] >= 0.90
    assert res["bare Lightning / index slicing"][0] > res["bare Lightning / DataLoader(TensorDataset)"][0]

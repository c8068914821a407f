"""``lr-train`` runs every task and writes TensorBoard logs (scalars, hparams, figures) and metrics.json."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers.harness import LIMITS, lr_train, read_metrics, run_train, scalar_tags

EXPERIMENTS = ["housing_sgd", "xor_adam", "autoencoder_continual", "trajectories"]
EXPECTED_METRICS = {
    "housing_sgd": {"train/loss", "val/rmse", "val/r2", "test/rmse", "test/r2", "epochs"},
    "xor_adam": {"train/loss", "train/acc", "test/acc", "convergence_epoch"},
    "autoencoder_continual": {
        "pretrain/val/loss_A", "pretrain/val/loss_B", "adapt/val/loss_A", "adapt/val/loss_B",
        "epochs_to_adapt", "forgetting", "test/loss_A", "test/loss_B",
    },
    "trajectories": {f"trajectory/{n}/final_loss" for n in ("SGD", "Momentum", "RMSprop", "Adam")},
}  # fmt: skip
EXPECTED_SCALARS = {
    "housing_sgd": {"train/loss", "val/rmse", "test/rmse"},
    "xor_adam": {"train/loss", "train/acc", "test/acc"},
    "autoencoder_continual": {"train/loss", "val/loss_A", "val/loss_B"},
    "trajectories": {"train/loss_Adam", "trajectory/Adam/final_loss"},
}


@pytest.fixture(scope="module")
def multirun_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One basic-launcher multirun over the four tasks, a few batches each."""
    root = tmp_path_factory.mktemp("multirun")
    lr_train(["-m", f"experiment={','.join(EXPERIMENTS)}", *LIMITS, f"hydra.sweep.dir={root}"], cwd=root)
    return root


def test_multirun_writes_one_dir_per_job(multirun_dir: Path) -> None:
    jobs = sorted(p.name for p in multirun_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1", "2", "3"]


@pytest.mark.parametrize(("job", "experiment"), list(enumerate(EXPERIMENTS)))
def test_each_task_writes_metrics_json(multirun_dir: Path, job: int, experiment: str) -> None:
    saved = read_metrics(multirun_dir / str(job))
    assert EXPECTED_METRICS[experiment] <= set(saved["metrics"])
    assert all(v is None or isinstance(v, float) for v in saved["metrics"].values())
    assert "lr" in saved["history"] or "pretrain/lr" in saved["history"]
    overrides = (multirun_dir / str(job) / ".hydra" / "overrides.yaml").read_text()
    assert f"experiment={experiment}" in overrides


@pytest.mark.parametrize(("job", "experiment"), list(enumerate(EXPERIMENTS)))
def test_each_task_writes_tensorboard_scalars_hparams_and_figures(
    multirun_dir: Path, job: int, experiment: str
) -> None:
    log_dir = multirun_dir / str(job) / "tensorboard"
    tags = scalar_tags(log_dir)
    assert EXPECTED_SCALARS[experiment] <= set(tags)
    assert any(t.startswith("image:figures/") for t in tags)
    saved = read_metrics(multirun_dir / str(job))["metrics"]
    hparam_runs = []
    for event_file in log_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        try:
            hparam_runs.append(set(acc.PluginTagToContent("hparams")))
        except KeyError:
            continue
    assert hparam_runs
    assert all("_hparams_/experiment" in h for h in hparam_runs)
    # the final metrics logged with the hparams are the ones in metrics.json
    key = sorted(EXPECTED_SCALARS[experiment] & set(saved))[0] if EXPECTED_SCALARS[experiment] & set(saved) else None
    if key is not None and saved[key] is not None:
        assert tags[key][-1] == pytest.approx(saved[key], rel=1e-5)
    assert list((multirun_dir / str(job) / "figures").glob("*.png"))


def test_single_run_from_another_cwd_returns_objects(tmp_path: Path) -> None:
    metrics, objects = run_train(["experiment=xor_adam", *LIMITS], tmp_path / "run")
    assert {"cfg", "model", "datamodule", "trainer", "trainers", "callbacks", "loggers", "history"} <= set(objects)
    assert objects["trainer"].current_epoch == 2
    assert objects["history"]["epoch"] == [0.0, 1.0]
    assert read_metrics(tmp_path / "run")["metrics"]["train/loss"] == pytest.approx(metrics["train/loss"])
    run_dir = tmp_path / "cli"
    lr_train(["experiment=xor_adam", *LIMITS, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert read_metrics(run_dir)["metrics"]["epochs"] == 2.0


@pytest.mark.parametrize("keep", [True, False])
def test_per_step_lrs_are_kept_unless_switched_off(tmp_path: Path, keep: bool) -> None:
    _, objects = run_train(
        ["experiment=xor_adam", *LIMITS, "callbacks=[step_decay]", f"record_step_lrs={keep}"], tmp_path / "run"
    )
    history = read_metrics(tmp_path / "run")["history"]
    steps = objects["trainer"].global_step
    if keep:
        assert len(history["lr_step"]) == steps
        assert history["lr_step"] == objects["history"]["lr_step"]
    else:
        assert "lr_step" not in history
    assert len(history["epoch"]) == 2

"""The tasks reach the studies' reference results through ``train(cfg)``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.harness import read_metrics, run_train

OLS_TEST_RMSE = 0.745581  # shared/data/README.md: OLS on the seed split


def test_housing_full_batch_gd_reaches_ols(tmp_path: Path) -> None:
    metrics, objects = run_train(["experiment=housing_gd"], tmp_path)
    assert abs(metrics["test/rmse"] - OLS_TEST_RMSE) < 0.002
    assert metrics["test/r2"] == pytest.approx(0.5758, abs=0.003)
    assert len(objects["datamodule"].train_dataloader()) == 1  # full batch: one step per epoch
    assert objects["history"]["lr_step"] == [0.1] * len(objects["history"]["lr_step"])


def test_xor_adam_converges_to_full_accuracy(tmp_path: Path) -> None:
    metrics, _ = run_train(
        ["experiment=xor_adam", "trainer.max_epochs=150", "trainer.check_val_every_n_epoch=150"], tmp_path
    )
    assert metrics["test/acc"] == 1.0
    assert metrics["train/acc"] == 1.0
    assert 0 <= metrics["convergence_epoch"] < 150
    assert metrics["train/loss"] < 0.1


def test_xor_convergence_epoch_is_nan_when_never_met(tmp_path: Path) -> None:
    metrics, _ = run_train(["experiment=xor_adam", "trainer.max_epochs=2", "optimizer.lr=1e-6"], tmp_path)
    assert math.isnan(metrics["convergence_epoch"])
    assert read_metrics(tmp_path)["metrics"]["convergence_epoch"] is None  # strict JSON: null


AE_SMALL = [
    "experiment=autoencoder_continual", "data.dim=64", "task.input_dim=64", "task.hidden_dim=16", "data.n=128",
    "data.n_eval=64", "trainer.max_epochs=20", "adapt.max_epochs=25", "optimizer.lr=1.0", "adapt.optimizer.lr=0.5",
]  # fmt: skip


def test_autoencoder_reports_epochs_to_adapt_and_forgetting(tmp_path: Path) -> None:
    metrics, objects = run_train(AE_SMALL, tmp_path)
    history = objects["history"]
    assert 1 <= metrics["epochs_to_adapt"] <= 25
    loss_b = history["adapt/val/loss_B"]
    first = int(metrics["epochs_to_adapt"])
    assert loss_b[first - 1] <= 0.02 < min(loss_b[: first - 1], default=1.0)
    assert metrics["forgetting"] == pytest.approx(metrics["adapt/loss_A"] - metrics["pretrain/loss_A"])
    assert metrics["forgetting"] > 0  # adapting to the high class forgets the low one
    assert len(history["pretrain/val/loss_A"]) == 20
    assert len(history["adapt/val/loss_A"]) == 25
    # the phases ran with their own batch sizes: full batch, then 32
    assert len(history["pretrain/lr_step"]) == 20
    assert len(history["adapt/lr_step"]) == 25 * 4
    saved = read_metrics(tmp_path)["metrics"]
    assert isinstance(saved["epochs_to_adapt"], float)
    assert isinstance(saved["forgetting"], float)


def test_autoencoder_phases_use_their_own_callbacks(tmp_path: Path) -> None:
    metrics, objects = run_train(
        [*AE_SMALL, "trainer.max_epochs=4", "adapt.max_epochs=3", "callbacks=[sign_alternation]",
         "callbacks@adapt.callbacks=[step_decay]", "adapt.callbacks.step_decay.step_size=1"],
        tmp_path,
    )  # fmt: skip
    history = objects["history"]
    assert history["pretrain/lr"] == [1.0, -1.0, 1.0, -1.0]
    assert history["adapt/lr"] == pytest.approx([0.5, 0.25, 0.125])


def _seed_numpy_paths(steps: int = 50) -> dict[str, np.ndarray]:
    """Closed-form updates of the tutorial's four optimizers on f = x^2 + 10 y^2."""
    grad = lambda p: np.array([2 * p[0], 20 * p[1]])
    out = {}
    p = np.array([5.0, 4.0])
    for _ in range(steps):
        p = p - 0.05 * grad(p)
    out["SGD"] = p
    p, v = np.array([5.0, 4.0]), np.zeros(2)
    for _ in range(steps):
        v = 0.9 * v + grad(p)
        p = p - 0.05 * v
    out["Momentum"] = p
    p, s = np.array([5.0, 4.0]), np.zeros(2)
    for _ in range(steps):
        g = grad(p)
        s = 0.9 * s + 0.1 * g**2
        p = p - 0.5 * g / (np.sqrt(s) + 1e-8)
    out["RMSprop"] = p
    p, m, v = np.array([5.0, 4.0]), np.zeros(2), np.zeros(2)
    for t in range(1, steps + 1):
        g = grad(p)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        p = p - 0.5 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    out["Adam"] = p
    return out


def test_trajectories_match_the_update_rules(tmp_path: Path) -> None:
    metrics, objects = run_train(["experiment=trajectories"], tmp_path)
    expected = _seed_numpy_paths()
    for name, point in expected.items():
        got = np.array([metrics[f"trajectory/{name}/final_x"], metrics[f"trajectory/{name}/final_y"]])
        np.testing.assert_allclose(got, point, rtol=1e-3, atol=1e-4, err_msg=name)
        assert len(objects["history"][f"trajectory/{name}/x"]) == 51
    assert metrics["trajectory/SGD/final_x"] == pytest.approx(5 * 0.9**50, rel=1e-4)
    assert (tmp_path / "figures" / "trajectories.png").stat().st_size > 10_000


def test_tasks_reject_bad_arguments(tmp_path: Path) -> None:
    from experiments.tasks import ContinualAutoencoderTask, LinearRegressionTask, TrajectoryTask, XORTask

    with pytest.raises(ValueError, match="in_features"):
        LinearRegressionTask(in_features=0)
    with pytest.raises(ValueError, match="converge_loss"):
        XORTask(converge_loss=None, converge_accuracy=None)
    with pytest.raises(ValueError, match="output_activation.*sigmoid"):
        ContinualAutoencoderTask(output_activation="tanh")
    with pytest.raises(ValueError, match="exactly one"):
        TrajectoryTask()
    with pytest.raises(ValueError, match="phase"):
        ContinualAutoencoderTask().set_phase("finetune")
    with pytest.raises(ValueError, match="adapt"):
        run_train(["task=xor", "data=xor", "adapt=default"], Path("unused"))

"""``lr-preview``: a Hydra callbacks config previewed with the run's length read from the composed config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from experiments import preview as script
from experiments.cli import EXIT_BAD_ARGUMENT
from lr_callbacks import CosineAnnealing, LRPreview, ReduceOnPlateau, SignAlternation, StepDecay, Warmup, preview

#: the linear data module with 100 samples in batches of 10: 10 training batches per epoch
LINEAR = ["data=linear", "data.batch_size=10", "optimizer.lr=0.2"]


def _preview_of(overrides: list[str], tmp_path: Path, **kwargs: object) -> LRPreview:
    cfg = script.compose_config([*LINEAR, *overrides], tmp_path)
    result, _, _ = script.preview_config(cfg, **kwargs)  # type: ignore[arg-type]
    return result


def test_the_run_length_comes_from_the_trainer_data_and_optimizer_configs(tmp_path: Path) -> None:
    """10 batches, accumulating 3: 4 steps per epoch; 6 epochs cut at 21 steps; base LR from optimizer.lr."""
    overrides = ["trainer.max_epochs=6", "trainer.max_steps=21", "trainer.accumulate_grad_batches=3",
                 "callbacks=[warmup,cosine_annealing,sign_alternation]", "callbacks.warmup.duration=5"]  # fmt: skip
    got = _preview_of(overrides, tmp_path)
    callbacks = [Warmup(duration=5), CosineAnnealing(T_max=6), SignAlternation()]
    want = preview(callbacks, epochs=6, batches_per_epoch=10, accumulate_grad_batches=3, max_steps=21, base_lrs=0.2)
    assert (got.steps_per_epoch, got.steps) == (4, 21)
    assert got.lrs == want.lrs


def test_limit_train_batches_follows_lightning(tmp_path: Path) -> None:
    """An int caps the batches, a float takes that fraction of them."""
    assert _preview_of(["trainer.limit_train_batches=3"], tmp_path).steps_per_epoch == 3
    assert _preview_of(["trainer.limit_train_batches=0.55"], tmp_path).steps_per_epoch == 5
    assert _preview_of(["trainer.limit_train_batches=0.55"], tmp_path, batches_per_epoch=7).steps_per_epoch == 7


def test_the_script_writes_the_png_and_prints_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    script.main([*LINEAR, "trainer.max_epochs=3", "callbacks=[warmup,step_decay]", "callbacks.warmup.duration=4",
                 "callbacks.step_decay.step_size=1", "--tensorboard", "tb"])  # fmt: skip
    out = capsys.readouterr().out
    assert (tmp_path / "lr_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "tb" / "lr_preview").glob("version_0/events.out.tfevents.*"))
    assert (
        "run: 3 epochs (trainer.max_epochs) x 10 steps per epoch [10 batches (LinearDataModule's train loader)]" in out
    )
    assert "base LR: 0.2 (optimizer.lr)" in out
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\S+)$", out, flags=re.MULTILINE)
    want = preview(
        [Warmup(duration=4), StepDecay(step_size=1, gamma=0.5)],  # the config's gamma
        epochs=3,
        steps_per_epoch=10,
        base_lrs=0.2,
    ).series()
    assert len(rows) == script.SUMMARY_ROWS
    assert (rows[0][0], rows[-1][0]) == ("0", "29")
    assert [(int(epoch), lr) for _, epoch, lr in rows] == [(int(s) // 10, f"{want[int(s)]:.6g}") for s, _, _ in rows]
    assert out.rstrip().endswith("wrote lr_preview.png")


def test_a_plateau_follows_the_metric_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9]
    overrides = ["trainer.max_epochs=6", "callbacks=[reduce_on_plateau]", "callbacks.reduce_on_plateau.patience=1"]
    got = _preview_of(overrides, tmp_path, metrics={"train/loss": values})
    want = preview([ReduceOnPlateau("train/loss", factor=0.5, patience=1)], epochs=6, steps_per_epoch=10, base_lrs=0.2,
                   metrics=values)  # fmt: skip
    assert got.lrs == want.lrs
    assert got.series()[-1] == 0.1
    script.main([*LINEAR, *overrides, "--out", str(tmp_path / "flat.png")])
    out = capsys.readouterr().out
    assert "note: ReduceOnPlateau(monitor='train/loss') cannot be foreseen without its metric" in out
    assert "note: lr-preview takes the metric as --metric V1,V2,..." in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["callbacks=[warmupp]"], "Could not load 'callbacks/warmupp'"),
        (["callbacks=[warmup]", "callbacks.warmup.interval=stepp"],  # a Literal choice: refused at compose time
         "Invalid value 'stepp', expected one of [epoch, step]"),
        (["callbacks=[warmup]", "callbacks.warmup.start_factor=2"],  # refused by the callback's own check
         "`start_factor` must be a finite number >= 0 and <= 1, got 2."),
        (["trainer.max_epochs=-1"], "trainer.max_epochs must be an integer >= 1 for a preview, got -1."),
        (["--metric", "1,x"], "--metric takes [NAME=]V1,V2,... with numbers, got '1,x'."),
        (["--metric", "1,2", "--metric", "val=1,2"],
         "--metric: give either one unnamed sequence for every callback or"),
        (["trainer.max_epochs=5", "callbacks=[reduce_on_plateau]", "--metric", "1,2"],
         "`metrics` gives 2 value(s) for ReduceOnPlateau(monitor='train/loss'), "
         "which checks once per epoch: 5 needed."),
        (["trainer.limit_train_batches=0.01"],
         "The train loader has no batch to preview (trainer.limit_train_batches=0.01)."),
    ],
)  # fmt: skip
def test_bad_arguments_end_with_the_message_alone(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        script.main([*LINEAR, *args])
    assert stop.value.code == EXIT_BAD_ARGUMENT
    captured = capsys.readouterr()
    assert captured.err.startswith("lr-preview: error: "), captured.err
    assert expected in captured.err, captured.err
    assert captured.out == ""
    assert not list(tmp_path.iterdir())


def test_a_config_without_an_optimizer_asks_for_the_base_lr(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        script.main(["experiment=trajectories"])
    assert stop.value.code == EXIT_BAD_ARGUMENT
    assert "The config has no optimizer.lr to take the base LR from; pass --base-lr." in capsys.readouterr().err


def test_argparse_refuses_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        script.main(["--batches-per-epoch", "0"])
    assert stop.value.code == EXIT_BAD_ARGUMENT
    assert "argument --batches-per-epoch: must be at least 1, got 0" in capsys.readouterr().err


def test_the_preview_benchmark_prints_a_time_per_configuration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments import benchmark
    from experiments.benchmarks import preview as suite

    monkeypatch.setattr(suite, "STEPS", 2_000)  # the suite's figure is for 100k steps; here, the table alone
    benchmark.main(["preview", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "preview of 2000 training steps, 2 param groups (median of 1):" in out
    for name in suite.CONFIGURATIONS:
        row = re.search(rf"^{re.escape(name)}\s+([0-9.]+)\s+([0-9.]+)$", out, flags=re.MULTILINE)
        assert row is not None, out
        assert float(row.group(1)) > 0
        assert float(row.group(2)) > 0

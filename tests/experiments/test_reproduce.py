"""lr-reproduce: report writer, one cheap study end to end, the EWC callback, and (slow) the quick profile."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from experiments import report
from experiments.ewc import EWC
from experiments.reproduce import compose_config, reproduce, run_study
from experiments.studies import STUDIES, Context
from experiments.studies.linear_alternating import LinearAlternatingStudy

SECTION_TITLES = [cls.title for cls in STUDIES.values()]


# --- helpers ---------------------------------------------------------------------------------------------


def tables_of(markdown: str) -> list[list[list[str]]]:
    """Every Markdown table as rows of cells (header and separator dropped)."""
    tables, current = [], None
    for line in markdown.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if current is None:
                current = []
                tables.append(current)
                current.append(None)  # header placeholder
            elif all(set(c) <= {"-"} for c in cells):
                continue
            else:
                current.append(cells)
        else:
            current = None
    return [[row for row in t if row is not None] for t in tables]


def sections_of(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## \d+\. ", markdown, flags=re.MULTILINE)[1:]
    return {p.splitlines()[0]: p for p in parts}


def assert_filled(section: str) -> None:
    """Every table has rows, no cell is empty or NaN, and every row holds a number (or a yes/no outcome)."""
    tables = tables_of(section)
    assert tables, "section without a table"
    for rows in tables:
        assert rows, "table without rows"
        for row in rows:
            assert all(cell for cell in row), f"empty cell in {row}"
            assert not any(re.search(r"\bnan\b", cell, re.IGNORECASE) for cell in row), f"NaN in {row}"
            assert any(re.search(r"\d|^(yes|no)$", cell) for cell in row[1:]), f"no measurement in {row}"


def event_scalars(run_dir: Path) -> dict[str, int]:
    """``{tag: number of scalar events}`` over the TensorBoard event files of one run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    counts: dict[str, int] = {}
    for folder in sorted({events.parent for events in run_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            counts[tag] = counts.get(tag, 0) + len(acc.Scalars(tag))
    return counts


# --- report writer ---------------------------------------------------------------------------------------


def test_number_formatting_never_prints_nan() -> None:
    assert report.num(0.7608) == "0.7608"
    assert report.num(0.0028, 2) == "0.0028"
    assert report.num(1.5e-18) == "1.500e-18"
    assert report.num(math.nan) == report.NA
    assert report.num(None) == report.NA
    assert report.mean_std([0.74, 0.75]) == "0.745 ± 0.007 (n=2)"
    assert report.mean_std([1.0, math.nan, 3.0]) == "2.000 ± 1.414 (2 of 3)"
    assert report.mean_std([math.nan, math.nan]) == "n/a (0 of 2)"
    assert report.mean_std([0.5]) == "0.500 (n=1)"


def test_render_has_contents_sections_tables_figures_and_errors(tmp_path: Path) -> None:
    ok = report.Section(
        key="a",
        title="First study",
        source="seed 9",
        tables=[report.Table("claims", ["quantity", "seed", "measured"], [["loss", "~0.003", "2.7 | odd"]])],
        figures=[report.Figure("figures/a.png", "a figure")],
        settings=["one"],
        commands=["lr-train x=1"],
        analysis=["It disagrees."],
        seconds=1.5,
        runs=(2, 2),
    )
    failed = report.Section(key="b", title="Second study", error="FileNotFoundError: no data", runs=(0, 0))
    path = report.write(tmp_path / "REPORT.md", [ok, failed], header=["header line"])
    text = path.read_text()
    assert "## 1. First study" in text
    assert "## 2. Second study" in text
    assert "1. [First study](#1-first-study)" in text
    assert "2. [Second study](#2-second-study) (not fully run)" in text
    assert "| loss | ~0.003 | 2.7 \\| odd |" in text
    assert "![a figure](figures/a.png)" in text
    assert "> **Not (fully) run:** FileNotFoundError: no data" in text
    assert tables_of(sections_of(text)["First study"]) == [[["loss", "~0.003", "2.7 \\| odd"]]]


def test_profiles_compose_and_typos_fail() -> None:
    for profile in ("quick", "seed"):
        cfg = compose_config([f"profile={profile}", "out_dir=x"])
        assert list(cfg.studies) == list(STUDIES)
        assert set(STUDIES) <= set(cfg.profile)
    with pytest.raises(Exception, match="epoch"):
        compose_config(["profile.housing.epoch=3"])
    with pytest.raises(ValueError, match="Unknown studies"):
        compose_config(["studies=[housing,nope]"])


# --- one cheap study end to end ------------------------------------------------------------------------------


def test_linear_study_runs_writes_a_filled_section_pngs_and_tensorboard(tmp_path: Path) -> None:
    params = {"epochs": 60, "lr": 0.01, "n": 100, "minibatch": None, "seeds": [0]}
    study = LinearAlternatingStudy(params, Context(out_dir=tmp_path, n_jobs=1, log=lambda m: None))
    section, results = run_study(study, log=lambda m: None)
    assert section.error is None
    assert section.runs == (2, 2)
    text = report.render([section])
    assert_filled(text)
    main = tables_of(text)[0]
    assert [row[0] for row in main] == ["alternating", "positive"]
    # the measured contraction per epoch pair is the analytic 1 - eta^2 h^2
    contraction = tables_of(text)[1][0]
    assert float(contraction[1]) == pytest.approx(float(contraction[2].split()[0]), rel=1e-4)
    for fig in section.figures:
        assert (tmp_path / fig.path).stat().st_size > 1000
    for r in results:
        assert (r.out_dir / ".hydra" / "config.yaml").is_file()
        scalars = event_scalars(r.out_dir)
        assert scalars.get("train/loss", 0) >= 60, scalars
        assert scalars.get("lr_sign", 0) == 60, scalars
    # the saved results re-analyse to the same section without training
    again, _ = run_study(LinearAlternatingStudy(params, study.ctx), log=lambda m: None, reuse=True)
    assert (
        report.render([again]).split("Wall time")[1].split("\n", 1)[1] == text.split("Wall time")[1].split("\n", 1)[1]
    )


def test_a_study_that_cannot_run_reports_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments.studies.housing import HousingStudy

    def missing(data_home: str | None = None) -> None:
        raise FileNotFoundError("California Housing is not available offline.")

    monkeypatch.setattr("experiments.data.housing.load_housing_arrays", missing)
    study = HousingStudy(
        {"epochs": 1, "step_size": 1, "window": 1, "seeds": [0]}, Context(out_dir=tmp_path, log=lambda m: None)
    )
    section, results = run_study(study, log=lambda m: None)
    assert results == []
    assert "FileNotFoundError: California Housing is not available offline." in section.error
    assert "Not (fully) run" in report.render([section])


# --- EWC -------------------------------------------------------------------------------------------------------


def test_ewc_fisher_matches_the_gauss_newton_diagonal() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    data = torch.randn(4000, 3)
    fisher = EWC.diagonal_fisher(model, data, chunk_size=500)
    # G = (2/D) E[J^T J]: for W_ij the Jacobian entry is x_j, for b_i it is 1 (D = 2 outputs)
    assert fisher["bias"] == pytest.approx(torch.ones(2), rel=0.1)
    expected_w = data.pow(2).mean(0).expand(2, 3)
    assert torch.allclose(fisher["weight"], expected_w, rtol=0.1)


def test_ewc_gradient_is_that_of_the_penalty() -> None:
    model = nn.Linear(2, 2)
    ewc = EWC(weight=3.0)
    ewc.fisher = {k: torch.full_like(v, 0.5) for k, v in model.named_parameters()}
    ewc.anchor = {k: v.detach() - 1.0 for k, v in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    ewc.on_after_backward(None, model)  # type: ignore[arg-type]
    for p in model.parameters():
        assert torch.allclose(p.grad, torch.full_like(p, 3.0 * 0.5 * 1.0))
    n = sum(p.numel() for p in model.parameters())
    assert float(ewc.penalty(model)) == pytest.approx(0.5 * 3.0 * 0.5 * n)
    with pytest.raises(ValueError, match="weight"):
        EWC(weight=-1.0)


# --- the whole quick profile ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_profile_writes_every_section_with_numbers_pngs_and_tensorboard(tmp_path: Path) -> None:
    cfg = compose_config(["profile=quick", f"out_dir={tmp_path}", "n_jobs=2"])
    path = reproduce(cfg, log=lambda m: None)
    text = path.read_text()
    sections = sections_of(text)
    assert list(sections) == SECTION_TITLES
    for title, body in sections.items():
        if "Not (fully) run" in body and "California Housing" in body:
            continue  # the data is missing on this machine: the section says so
        assert "Not (fully) run" not in body, body[:2000]
        assert_filled(body)
        for png in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", body):
            assert (tmp_path / png).stat().st_size > 1000, png
        assert re.findall(r"!\[", body), f"no figure in {title}"
    assert "| 1. " in text
    assert "agrees" in text
    # every study's runs hold TensorBoard events with scalars
    for key in STUDIES:
        run_dirs = {p.parent for p in (tmp_path / "runs" / key).rglob("metrics.json")}
        assert run_dirs, key
        for run_dir in run_dirs:
            scalars = event_scalars(run_dir)
            assert scalars, f"no scalars in {run_dir}"
    assert (tmp_path / "figures" / "housing_four_panel.png").is_file() or "California Housing" in text

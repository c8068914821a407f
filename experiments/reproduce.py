"""``lr-reproduce``: runs every seed study through Hydra and writes ``REPORT.md`` with PNG figures.

Usage::

    lr-reproduce                                   # profile=quick, a few minutes on 2 CPU cores
    lr-reproduce profile=seed n_jobs=2             # the seed documents' own settings
    lr-reproduce out_dir=reports/mine 'studies=[housing,tutorial]' profile.housing.epochs=300
    lr-reproduce out_dir=reports/mine reuse=true   # re-analyse the saved runs, train nothing
    tensorboard --logdir reports/mine              # every run's scalars, hparams and figures

The command line is a list of Hydra overrides of ``conf/reproduce/reproduce.yaml`` (profiles in
``conf/reproduce/profile/``); a misspelled key fails before anything runs. Each study composes its runs
from ``conf/train.yaml`` with an ``experiment=study_*`` preset (the same config ``lr-train`` composes),
trains them with ``experiments.train.train`` in parallel worker processes, and turns the results into a
report section. ``out_dir`` then holds ``REPORT.md``, ``figures/*.png``, ``reproduce.yaml`` (the resolved
settings) and ``runs/<study>/<run>/`` with each run's ``.hydra/config.yaml``, TensorBoard events and
``metrics.json``, and ``runs/<study>/results.json`` (what the analysis reads; ``reuse=true`` reads it back
instead of training, with the same profile). A study that cannot run (e.g. California Housing missing offline) gets
a section saying why, and the others still run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from experiments import report
from experiments.cli import BadArgument, refusing_bad_arguments
from experiments.report import Section, Table
from experiments.studies import STUDIES, Context, Study
from experiments.studies.runner import RunResult, execute, load_results, save_results
from experiments.train import CONFIG_MODULE

#: the package of ``reproduce.yaml`` and its profiles (the repository's ``conf/reproduce/``)
REPRODUCE_MODULE = f"{CONFIG_MODULE}.reproduce"

#: a profile: its name and one entry per study, typed by the study's ``Params`` schema
ProfileConf = dataclasses.make_dataclass(
    "ProfileConf",
    [("name", str, MISSING)] + [(key, cls.Params, field(default_factory=cls.Params)) for key, cls in STUDIES.items()],
)


@dataclass
class ReproduceConf:
    profile: Any = field(default_factory=ProfileConf)
    out_dir: str = MISSING
    studies: list[str] = field(default_factory=lambda: list(STUDIES))
    n_jobs: int = 2
    data_home: str | None = None
    reuse: bool = False


def register_configs() -> None:
    """Stores the schema of ``reproduce.yaml`` (idempotent)."""
    ConfigStore.instance().store(name="reproduce_schema", node=ReproduceConf)


register_configs()


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/reproduce/reproduce.yaml`` with ``overrides``, resolved; unknown keys and studies fail here.

    Raises:
        hydra.errors.ConfigCompositionException: on an unknown key, a value of the wrong type or an unknown
            profile (``MissingConfigException``).
        hydra.errors.OverrideParseException: on an override Hydra cannot parse.
        BadArgument: on an unknown study.
    """
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module=REPRODUCE_MODULE, version_base="1.3"):
        cfg = compose("reproduce", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    unknown = [s for s in cfg.studies if s not in STUDIES]
    if unknown:
        raise BadArgument(f"Unknown studies {unknown}; choose from {list(STUDIES)}.")
    return cfg


def _log(message: str) -> None:
    print(message, flush=True)


def run_study(study: Study, log: Any = _log, reuse: bool = False) -> tuple[Section, list[RunResult]]:
    """Plans, runs (or, with ``reuse``, reloads) and analyses one study; any failure becomes the section's error."""
    start = time.perf_counter()
    results: list[RunResult] = []
    saved = study.run_root / "results.json"
    try:
        runs = study.plan()
        if reuse:
            results = load_results(saved, runs, study.run_root)
            log(f"[{study.key}] reusing {len(results)} runs from {saved}")
        else:
            log(f"[{study.key}] {len(runs)} runs")

            def progress(result: RunResult, done: int, total: int) -> None:
                status = "ok" if result.ok else f"FAILED: {result.error}"
                log(f"  [{done:>2}/{total}] {study.key}/{result.run.name:<38} {result.seconds:7.1f} s  {status}")

            results = execute(runs, study.run_root, study.ctx.n_jobs, progress)
            save_results(saved, results)
        section = study.analyse(results)
    except Exception as err:
        tail = "".join(traceback.format_exception_only(type(err), err)).strip()
        log(f"[{study.key}] FAILED: {tail}")
        section = Section(key=study.key, title=study.title, source=study.source, error=tail)
    section.seconds = (
        time.perf_counter() - start if not reuse else sum(r.seconds for r in results if r.seconds == r.seconds)
    )
    section.runs = (sum(r.ok for r in results), len(results))
    log(f"[{study.key}] done in {section.seconds:.1f} s ({section.runs[0]} of {section.runs[1]} runs ok)")
    return section, results


def _code_version() -> str:
    """``lr-callbacks <version>``, and the commit when this code runs from a git checkout (editable install)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = f"lr-callbacks {version('lr-callbacks')}"
    except PackageNotFoundError:
        text = "lr-callbacks (not installed)"
    here = Path(__file__).resolve()
    git = ["git", "-C", str(here.parent)]
    try:
        # a wheel installed into a venv inside some repository is not that repository's code
        # fixed git arguments, no shell: nothing here comes from outside
        tracked = subprocess.run(  # noqa: S603
            [*git, "ls-files", "--error-unmatch", here.name], capture_output=True, timeout=10, check=False
        )
        commit = subprocess.run(  # noqa: S603
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return text
    if tracked.returncode == 0 and commit.stdout.strip():
        text += f" at commit `{commit.stdout.strip()}`"
    return text


def _verdict_counts(section: Section) -> str:
    cells = [c for t in section.tables for row in t.rows for c in row]
    counts = {k: sum(1 for c in cells if c.strip("*") == k) for k in ("agrees", "partly", "disagrees")}
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "—"


def reproduce(cfg: DictConfig, argv: Sequence[str] = (), log: Any = _log) -> Path:
    """Runs the studies of a composed reproduce config and writes the report; returns ``REPORT.md``'s path."""
    import lightning
    import torch

    out_dir = Path(cfg.out_dir).resolve()
    if cfg.reuse and not (out_dir / "runs").is_dir():
        raise BadArgument(
            f"reuse=true re-analyses the runs saved in out_dir, and {out_dir} holds none; run without reuse first."
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadArgument(f"out_dir={cfg.out_dir} cannot be created: {err.strerror or err}.") from err
    OmegaConf.save(cfg, out_dir / "reproduce.yaml")
    ctx = Context(out_dir=out_dir, n_jobs=int(cfg.n_jobs), data_home=cfg.data_home, log=log)
    log(f"lr-reproduce: profile={cfg.profile.name}, studies={list(cfg.studies)}, n_jobs={cfg.n_jobs} -> {out_dir}")
    start = time.perf_counter()
    timing_path = out_dir / "timing.json"
    timing = json.loads(timing_path.read_text()) if cfg.reuse and timing_path.is_file() else {}
    sections: list[Section] = []
    for key in cfg.studies:
        # a study's profile node is a mapping with str keys; omegaconf types the result as any node or key
        params = cast(dict[str, Any], OmegaConf.to_container(cfg.profile[key], resolve=True))
        section, _ = run_study(STUDIES[key](params, ctx), log, reuse=bool(cfg.reuse))
        section.seconds = timing.get("studies", {}).get(key, section.seconds)
        sections.append(section)
        report.write(
            out_dir / "REPORT.md",
            sections,
            _header(cfg, argv, time.perf_counter() - start, sections, torch, lightning, partial=True),
        )
    total = timing.get("total", time.perf_counter() - start)
    if not cfg.reuse:
        timing_path.write_text(json.dumps({"total": total, "studies": {s.key: s.seconds for s in sections}}))
    path = report.write(
        out_dir / "REPORT.md", sections, _header(cfg, argv, total, sections, torch, lightning, partial=False)
    )
    log(f"lr-reproduce: wrote {path} in {total:.1f} s; TensorBoard: tensorboard --logdir {out_dir}")
    return path


def _header(
    cfg: DictConfig,
    argv: Sequence[str],
    seconds: float,
    sections: list[Section],
    torch: Any,
    lightning: Any,
    partial: bool,
) -> list[str]:
    summary = Table(
        "Summary",
        ["study", "verdicts", "runs ok", "wall time (s)"],
        [
            [
                f"{i}. {s.title}",
                _verdict_counts(s) if not s.error or s.tables else "not run",
                f"{s.runs[0]} of {s.runs[1]}",
                f"{s.seconds:.1f}",
            ]
            for i, s in enumerate(sections, start=1)
        ],
    )
    return [
        f"Profile **{cfg.profile.name}**, written {datetime.now():%Y-%m-%d %H:%M}"
        + (" (in progress: later studies still running)" if partial else "")
        + f"; total wall time {seconds:.1f} s "
        f"with {cfg.n_jobs} parallel run(s) on {os.cpu_count()} CPU core(s)"
        + (
            ". Re-analysed from the saved runs (`reuse=true`): nothing was trained again; wall times are those of "
            "the original reproduction where it recorded them (`timing.json`), else the sum of the runs' times."
            if cfg.reuse
            else "."
        ),
        "",
        f"Command: `lr-reproduce {' '.join(argv)}`".rstrip() + f"; code: {_code_version()}; Python "
        f"{platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}.",
        "",
        "Every run's TensorBoard logs are under `runs/`: `tensorboard --logdir .` from this folder. The resolved "
        "settings are in `reproduce.yaml`; each run's composed Hydra config is "
        "`runs/<study>/<run>/.hydra/config.yaml`.",
        "",
        "A verdict compares a measurement with what the seed document claims, by the rule stated in each "
        "section's settings; **disagrees** is printed in bold.",
        "",
        summary.markdown(),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: ``lr-reproduce [override ...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with refusing_bad_arguments("lr-reproduce"):
        if any(a in ("-h", "--help") for a in argv):
            print(__doc__)
            print("Defaults (conf/reproduce/reproduce.yaml, profile=quick):\n")
            cfg = compose_config([a for a in argv if a not in ("-h", "--help")])
            print(OmegaConf.to_yaml(cfg))
            return
        reproduce(compose_config(argv), argv)


if __name__ == "__main__":
    main()

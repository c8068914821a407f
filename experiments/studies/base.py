"""What every study shares: its context, the plan → runs → section protocol, and small helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.report import Figure, Section
from experiments.studies.runner import Run, RunResult, lr_train_command


@dataclass
class Context:
    """Where a study writes, and how it runs.

    Attributes:
        out_dir: the report folder (``REPORT.md``, ``figures/``, ``runs/``).
        n_jobs: parallel runs.
        data_home: scikit-learn data folder for California Housing (``None``: ``SCIKIT_LEARN_DATA``).
        log: progress printer.
    """

    out_dir: Path
    n_jobs: int = 1
    data_home: str | None = None
    log: Callable[[str], None] = print


@dataclass
class Study:
    """A seed study: :meth:`plan` lists the runs, :meth:`analyse` turns their results into a :class:`Section`.

    Subclasses set ``key``, ``title`` and ``source`` and read their settings from ``params`` (a profile's
    entry for the study, already checked against the study's schema).
    """

    params: Mapping[str, Any]
    ctx: Context
    notes: list[str] = field(default_factory=list)

    key = "study"
    title = "Study"
    source = ""

    def plan(self) -> list[Run]:
        raise NotImplementedError

    def analyse(self, results: list[RunResult]) -> Section:
        raise NotImplementedError

    # --- helpers ---------------------------------------------------------------------------------------

    @property
    def run_root(self) -> Path:
        return self.ctx.out_dir / "runs" / self.key

    def figure(self, fig: Any, name: str, caption: str) -> Figure:
        """Saves a matplotlib figure as ``figures/<key>_<name>.png`` and closes it."""
        import matplotlib.pyplot as plt

        path = self.ctx.out_dir / "figures" / f"{self.key}_{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return Figure(path.relative_to(self.ctx.out_dir).as_posix(), caption)

    def section(self, **kwargs: Any) -> Section:
        return Section(key=self.key, title=self.title, source=self.source, **kwargs)


def by_row(results: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    """Results grouped by their run's row, in first-seen order (failed runs included)."""
    rows: dict[str, list[RunResult]] = {}
    for r in results:
        rows.setdefault(r.run.row or r.run.name, []).append(r)
    return rows


def values(results: Sequence[RunResult], key: str) -> list[float]:
    """``metrics[key]`` of every run (NaN where missing or failed)."""
    return [r.get(key) for r in results]


def failures(results: Sequence[RunResult]) -> str | None:
    """One line per failed run, or ``None``."""
    failed = [f"`{r.run.name}`: {r.error}" for r in results if not r.ok]
    return "; ".join(failed) if failed else None


def commands(runs: Sequence[Run]) -> list[str]:
    """One ``lr-train`` line per row: runs that differ only in their seed fold into ``-m ... seed=a,b,c``."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for run in runs:
        base = tuple(o for o in run.overrides if not o.startswith("seed="))
        groups.setdefault(base, []).extend(o.split("=", 1)[1] for o in run.overrides if o.startswith("seed="))
    lines = []
    for base, seeds in groups.items():
        if len(seeds) > 1:
            lines.append(lr_train_command(["-m", *base, "seed=" + ",".join(seeds)]))
        else:
            lines.append(lr_train_command([*base, *(f"seed={s}" for s in seeds)]))
    return lines


def verdict(agrees: bool | None, partly: bool = False) -> str:
    """``agrees`` / ``partly`` / ``disagrees`` / ``n/a``."""
    if agrees is None:
        return "n/a"
    if agrees:
        return "agrees"
    return "partly" if partly else "**disagrees**"


def within_factor(measured: float, claimed: float, factor: float) -> bool | None:
    """Whether ``measured`` is within ``×/÷ factor`` of ``claimed`` (``None`` if not finite)."""
    if not (math.isfinite(measured) and measured > 0 and claimed > 0):
        return None
    return 1 / factor <= measured / claimed <= factor


def finite_mean(xs: Sequence[float]) -> float:
    good = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(good) / len(good) if good else math.nan

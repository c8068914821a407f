"""Markdown of the reproduction report: number formatting, tables and study sections.

A study hands back a :class:`Section`; :func:`render` turns a list of them into ``REPORT.md``. Cells are
strings; :func:`num` and :func:`mean_std` format numbers so that a missing value reads ``n/a`` and never
``nan``.

>>> print(table(["method", "RMSE"], [["fixed", num(0.76081)], ["step", mean_std([0.74, 0.75])]]))
| method | RMSE |
| --- | --- |
| fixed | 0.7608 |
| step | 0.745 ± 0.007 (n=2) |
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

NA = "n/a"


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def num(value: float | None, digits: int = 4, sci_below: float = 1e-3) -> str:
    """``value`` to ``digits`` significant digits (scientific when tiny or huge); ``n/a`` if missing."""
    if value is None or not math.isfinite(float(value)):
        return NA if value is None or math.isnan(float(value)) else ("inf" if value > 0 else "-inf")
    value = float(value)
    if value != 0 and (abs(value) < sci_below or abs(value) >= 1e6):
        return f"{value:.{max(digits - 1, 1)}e}"
    if value == int(value):
        return str(int(value))
    return f"{value:.{digits}g}"


def mean_std(values: Sequence[float | None], digits: int = 3) -> str:
    """``mean ± std (n=k)`` over the finite values (sample std); ``n/a (0 of n)`` when none is finite."""
    finite = _finite(values)
    if not finite:
        return f"{NA} (0 of {len(values)})"
    mean = statistics.fmean(finite)
    if len(values) == 1:
        return f"{_fixed(mean, digits)} (n=1)"
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    note = f"n={len(finite)}" if len(finite) == len(values) else f"{len(finite)} of {len(values)}"
    return f"{_fixed(mean, digits)} ± {_fixed(std, digits)} ({note})"


def _fixed(value: float, digits: int) -> str:
    if value != 0 and (abs(value) < 10**-(digits) or abs(value) >= 1e6):
        return f"{value:.{max(digits - 1, 1)}e}"
    return f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    esc = lambda cell: str(cell).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Table:
    """A captioned table of a section."""

    caption: str
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        return f"**{self.caption}**\n\n{table(self.headers, self.rows)}"


@dataclass
class Figure:
    """A PNG of a section, relative to the report's folder."""

    path: str
    caption: str


@dataclass
class Section:
    """One study of the report.

    Attributes:
        key: short name (``housing``), also the prefix of the study's figures and run folder.
        title: section heading.
        source: the seed document and the part of it the study reproduces.
        tables: claim-beside-measurement tables, first the main one.
        settings: what was run (bullets).
        commands: ``lr-train`` command lines that compose the same configs.
        figures: the section's PNGs.
        analysis: paragraphs: agreement, disagreement and why.
        error: why the study (or part of it) could not run; the section says so instead of numbers.
        seconds: wall time of the study.
        runs: ``(ok, total)`` run counts.
    """

    key: str
    title: str
    source: str = ""
    tables: list[Table] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    analysis: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = math.nan
    runs: tuple[int, int] = (0, 0)

    def markdown(self, number: int) -> str:
        parts = [f"## {number}. {self.title}"]
        meta = [f"Source: {self.source}."] if self.source else []
        meta.append(f"Wall time {num(self.seconds, 3)} s; {self.runs[0]} of {self.runs[1]} runs finished.")
        parts.append(" ".join(meta))
        if self.error:
            parts.append(f"> **Not (fully) run:** {self.error}")
        parts += [t.markdown() for t in self.tables]
        if self.analysis:
            parts.append("**Analysis.**\n\n" + "\n\n".join(self.analysis))
        parts += [f"![{f.caption}]({f.path})\n\n*{f.caption}*" for f in self.figures]
        if self.settings:
            parts.append("**Settings.**\n\n" + "\n".join(f"- {s}" for s in self.settings))
        if self.commands:
            parts.append(
                "Equivalent single runs (add `-m` and comma lists to sweep):\n\n```\n"
                + "\n".join(self.commands)
                + "\n```"
            )
        return "\n\n".join(parts)


def anchor(title: str) -> str:
    """GitHub's heading anchor of ``title``."""
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return keep.replace(" ", "-")


def render(sections: Sequence[Section], header: Sequence[str] = (), footer: Sequence[str] = ()) -> str:
    """The whole report: title, header lines, contents, sections, footer."""
    lines = ["# Learning-rate studies: seed claims beside measurements", ""]
    lines += [*header, ""] if header else []
    lines += ["## Contents", ""]
    for i, s in enumerate(sections, start=1):
        title = f"{i}. {s.title}"
        lines.append(f"{i}. [{s.title}](#{anchor(title)})" + (" (not fully run)" if s.error else ""))
    body = [s.markdown(i) for i, s in enumerate(sections, start=1)]
    return "\n".join(lines) + "\n\n" + "\n\n".join(body) + ("\n\n" + "\n".join(footer) if footer else "") + "\n"


def write(path: Path, sections: Sequence[Section], header: Sequence[str] = (), footer: Sequence[str] = ()) -> Path:
    """Writes :func:`render`'s Markdown to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(sections, header, footer), encoding="utf-8")
    return path

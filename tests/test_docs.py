"""The docs site builds strictly (a broken cross-reference or link fails it), and its API reference covers the
package's public names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lr_callbacks
from tests.helpers.paths import REPO_ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once by ``mkdocs build --strict`` into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    problems = [line for line in proc.stderr.splitlines() if re.match(r"(WARNING|ERROR)\b", line)]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems or [proc.stderr[-3000:]])
    return out


def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    for page in ("index", "lr-rule", "schedules", "spikes", "finder", "benchmarks", "api/core"):
        path = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert path.is_file(), f"{page} was not built"


def test_every_public_name_has_an_entry_in_the_api_reference(site: Path) -> None:
    api_html = "".join(path.read_text(encoding="utf-8") for path in (site / "api").rglob("*.html"))
    summary = (REPO_ROOT / "docs" / "api" / "index.md").read_text(encoding="utf-8")
    for name in lr_callbacks.__all__:
        obj = getattr(lr_callbacks, name)
        canonical = f"{obj.__module__}.{obj.__qualname__}"
        assert f'id="{canonical}"' in api_html, f"{canonical} has no entry in the API reference"
        assert f"[lr_callbacks.{name}]" in summary, f"docs/api/index.md does not list {name}"


def test_the_readme_links_to_docs_pages_that_exist() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?:)([^)#]+)(?:#[^)]*)?\)", readme)
    assert any(t.startswith("docs/") for t in targets)
    missing = [t for t in targets if not (REPO_ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_the_custom_schedule_page_runs_as_written() -> None:
    """The contract page's examples (a schedule, a run beside ``WarmupStableDecay``, a modifier) are doctests."""
    import doctest

    page = REPO_ROOT / "docs" / "custom-schedules.md"
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 15
    assert result.failed == 0

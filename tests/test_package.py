"""The configs travel with the package: ``conf/`` is installed as ``experiments.conf`` and found by Hydra."""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from experiments.reproduce import REPRODUCE_MODULE
from experiments.train import CONFIG_DIR, CONFIG_MODULE, CONFIG_PATH
from tests.helpers.paths import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # the dev extra installs tomli on 3.10
    import tomli as tomllib

ROOT = REPO_ROOT
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def config_files() -> set[str]:
    """Every file under ``conf/`` a user edits (paths relative to it), machine-local overrides and Python aside."""
    return {
        p.relative_to(ROOT / "conf").as_posix()
        for p in (ROOT / "conf").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "local" not in p.relative_to(ROOT / "conf").parts[:1]
    }


def test_editable_install_reads_the_configs_from_the_repository_conf() -> None:
    assert CONFIG_PATH == "pkg://experiments.conf"
    assert CONFIG_DIR == ROOT / "conf"
    assert (CONFIG_DIR / "train.yaml").is_file()


def test_hydra_composes_both_entry_configs_from_the_package() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        train = compose("train", overrides=["experiment=xor_adam", "paths.output_dir=x"], return_hydra_config=True)
    assert train.task._target_ == "experiments.tasks.XORTask"
    sources = {s["provider"]: (s["schema"], s["path"]) for s in train.hydra.runtime.config_sources}
    assert sources["main"] == ("pkg", "experiments.conf")
    with initialize_config_module(REPRODUCE_MODULE, version_base="1.3"):
        reproduce = compose("reproduce", overrides=["profile=seed", "out_dir=x"])
    assert reproduce.profile.name == "seed"


def test_the_package_list_names_every_package_folder() -> None:
    """setuptools cannot discover a package mapped onto another folder, so the list is explicit: keep it whole."""
    roots = {"lr_callbacks": ROOT / "lr_callbacks", "experiments": ROOT / "experiments"}
    roots.update({name: ROOT / folder for name, folder in SETUPTOOLS["package-dir"].items()})
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            found.add(".".join([name, *init.parent.relative_to(folder).parts]))
    assert set(SETUPTOOLS["packages"]) == found


def test_every_config_file_is_package_data() -> None:
    """The package-data globs, expanded as setuptools does (recursive ``glob``), cover every config file."""
    conf = ROOT / "conf"
    matched = {
        Path(path).relative_to(conf).as_posix()
        for pattern in SETUPTOOLS.get("package-data", {}).get(CONFIG_MODULE, [])
        for path in glob.glob(str(conf / pattern), recursive=True)
    }
    files = config_files()
    assert "train.yaml" in files
    assert "reproduce/profile/quick.yaml" in files
    missed = sorted(files - matched)
    assert not missed, f"conf/ files the wheel would leave out (add them to package-data): {missed}"


@pytest.mark.slow
def test_the_wheel_holds_every_config(tmp_path: Path) -> None:
    """Builds the wheel from a clean copy of the sources and lists its configs (a machine-local one left out).

    The build starts from the files the wheel is made of, so that nothing a previous build left in the
    checkout (``build/``, ``*.egg-info``) can stand in for a missing package-data entry (no build
    isolation: it uses this venv's setuptools).
    """
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    for folder in ("lr_callbacks", "experiments", "conf"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "local"))
    (src / "conf" / "local").mkdir()
    (src / "conf" / "local" / "default.yaml").write_text("# @package _global_\nseed: 1\n")  # stays on the machine
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("lr_callbacks-*.whl")
    prefix = "experiments/conf/"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    shipped = {n[len(prefix) :] for n in names if n.startswith(prefix) and not n.endswith(".py")}
    assert "local/default.yaml" not in shipped
    assert shipped == config_files()
    assert {f"{prefix}__init__.py", f"{prefix}reproduce/__init__.py"} <= set(names)

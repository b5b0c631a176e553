"""Every install path ships the package data (issue 22): wheel, sdist, `pip install .` and
editable, each into its own fresh venv, then `sentitune presets` from another folder.

Cheap and offline: the venvs have no pip and no dependencies of their own (a .pth file lends
them this interpreter's site-packages, whose own .pth files, among them the editable install
of the source tree, are not read), builds use this interpreter's setuptools
(--no-build-isolation, --no-index) and work on a copy of the source tree, so the repository
gets no build/ folder.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import tarfile
import time
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "sentitune"
DATA_DIRS = ("presets", "server/assets", "evaluation/checks")
PRESETS = sorted(p.stem for p in (PACKAGE / "presets").glob("*.yaml"))


def _package_files(root: Path) -> set[str]:
    """Every file of the package below `root`, relative to it (byte code left out)."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return env


def _run(*cmd: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout}\n{done.stderr}"
    # `make demo` once showed two of these, from pyproject's [tool.distutils] (issue 27).
    assert "BuildBackendWarning" not in done.stderr, done.stderr
    return done.stdout


def _source_tree(tmp: Path) -> Path:
    """The files `pip install .` builds from, copied (no build/, no egg-info)."""
    tree = tmp / "source"
    for name in ("pyproject.toml", "setup.cfg", "README.md", "MANIFEST.in"):
        if (REPO / name).exists():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tree / name)
    shutil.copytree(PACKAGE, tree / "src" / "sentitune",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tree


def _venv(tmp: Path) -> Path:
    """A fresh venv that borrows this interpreter's dependencies, never its sentitune."""
    root = tmp / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(root)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                   cwd=tmp).strip()
    lent = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "zz_lent_dependencies.pth").write_text("\n".join(lent) + "\n")
    return python


def _pip(python: Path, *args: str | Path, cwd: Path) -> str:
    return _run(python, "-m", "pip", *args, "--no-deps", "--no-build-isolation", "--no-index",
                "-q", cwd=cwd)


def _check_installed(python: Path, tmp: Path, expected_root: Path) -> None:
    """From another folder: the console script lists every shipped preset, and the installed
    package holds every file of the source package, data folders included."""
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    script = python.parent / ("sentitune.exe" if os.name == "nt" else "sentitune")
    listed = _run(script, "presets", cwd=elsewhere).splitlines()
    assert [line.split()[0] for line in listed] == PRESETS  # each with its purpose
    probe = ("import json, sentitune, sentitune.config as c; "
             "print(json.dumps([sentitune.__file__, sentitune.presets(), str(c.PRESETS_DIR)]))")
    where, names, presets_dir = json.loads(_run(python, "-c", probe, cwd=elsewhere))
    installed = Path(where).resolve().parent
    assert installed.is_relative_to(expected_root.resolve()), installed
    assert not installed.is_relative_to(PACKAGE.resolve())
    assert names == PRESETS and Path(presets_dir) == installed / "presets"
    missing = _package_files(PACKAGE) - _package_files(installed)
    assert not missing, f"not installed: {sorted(missing)}"
    for folder in DATA_DIRS:
        assert any((installed / folder).iterdir()), folder


def test_wheel(tmp_path: Path) -> None:
    tree, python = _source_tree(tmp_path), _venv(tmp_path)
    _run(python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", tmp_path / "dist", tree, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("sentitune-*.whl")
    _pip(python, "install", wheel, cwd=tmp_path)
    _check_installed(python, tmp_path, tmp_path / "venv")


def test_sdist(tmp_path: Path) -> None:
    tree, python = _source_tree(tmp_path), _venv(tmp_path)
    build = "from setuptools import build_meta; print(build_meta.build_sdist(%r))"
    name = _run(python, "-c", build % str(tmp_path / "dist"), cwd=tree).strip().splitlines()[-1]
    sdist = tmp_path / "dist" / name
    with tarfile.open(sdist) as archive:
        members = {m.split("/", 1)[1] for m in archive.getnames() if "/" in m}
    for folder in DATA_DIRS:
        for file in (PACKAGE / folder).iterdir():
            assert f"src/sentitune/{folder}/{file.name}" in members
    _pip(python, "install", sdist, cwd=tmp_path)  # built from the unpacked sdist alone
    _check_installed(python, tmp_path, tmp_path / "venv")


def test_pip_install_dot(tmp_path: Path) -> None:
    tree, python = _source_tree(tmp_path), _venv(tmp_path)
    _pip(python, "install", ".", cwd=tree)
    _check_installed(python, tmp_path, tmp_path / "venv")


def test_editable(tmp_path: Path) -> None:
    tree, python = _source_tree(tmp_path), _venv(tmp_path)
    _pip(python, "install", "-e", ".", cwd=tree)
    _check_installed(python, tmp_path, tree)


def test_pip_install_dot_over_a_stale_build_folder(tmp_path: Path) -> None:
    """The defect of issue 22: a build/ left by an earlier build held an old config.py
    (presets looked up outside the package) newer than the source's, and `pip install .`
    shipped it, so `sentitune presets` listed nothing."""
    tree, python = _source_tree(tmp_path), _venv(tmp_path)
    stale = tree / "build" / "lib" / "sentitune"
    stale.mkdir(parents=True)
    (stale / "config.py").write_text(
        (PACKAGE / "config.py").read_text(encoding="utf-8").replace(
            'Path(__file__).resolve().parent / "presets"',
            'Path(__file__).resolve().parents[2] / "configs"'), encoding="utf-8")
    later = time.time() + 3600
    os.utime(stale / "config.py", (later, later))
    _pip(python, "install", ".", cwd=tree)
    _check_installed(python, tmp_path, tmp_path / "venv")


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_presets_says_when_none_shipped(tmp_path, monkeypatch, capsys, state) -> None:
    from sentitune import cli, config

    folder = tmp_path / "presets"
    if state == "empty":
        folder.mkdir()
    monkeypatch.setattr(config, "PRESETS_DIR", folder)
    assert cli.main(["presets"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and f"{folder} is {state}" in err and "reinstall" in err

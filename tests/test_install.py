"""A real install: ``pip install .`` (a wheel, not editable) into a clean venv, then the
commands run from another folder, so every ``.cpp``, CSV and data file they need must be in
the wheel (``make test-install``; slow: it installs the locked environment, minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args, cwd, timeout=1800):
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    path = tmp_path_factory.mktemp("install") / "venv"
    _run([sys.executable, "-m", "venv", str(path)], ROOT)
    pip = str(path / "bin" / "pip")
    _run([pip, "install", "-q", "--require-hashes", "--no-deps", "-r",
          str(ROOT / "requirements.lock")], ROOT)
    _run([pip, "install", "-q", "--no-deps", "--no-build-isolation", str(ROOT)], ROOT)
    _run([pip, "check"], ROOT)
    return path


def test_the_installed_package_is_not_the_checkout(venv, tmp_path):
    code = "import mefeat, mefeat.models, mefeat.cli; print(mefeat.__file__)"
    where = _run([str(venv / "bin" / "python"), "-c", code], tmp_path).strip()
    assert where.startswith(str(venv)) and "site-packages" in where


def test_models_and_env_from_another_folder(venv, tmp_path):
    text = _run([str(venv / "bin" / "mefeat"), "models"], tmp_path)
    assert "causalnet" in text and "ststnet" in text
    env = _run([str(venv / "bin" / "mefeat"), "env"], tmp_path)
    assert "(commit unknown)" in env  # an installed wheel is no git checkout


def test_demo_from_another_folder(venv, tmp_path):
    text = _run([str(venv / "bin" / "mefeat"), "demo", "--out", "demo"], tmp_path)
    assert "ststnet LOSO on the demo" in text
    assert (tmp_path / "demo" / "train-ststnet" / "metrics.json").is_file()
    assert (tmp_path / "demo" / "features.zarr").is_dir()

"""The architecture holds: import-linter's contracts of pyproject.toml (layers that only point
down; only the store imports zarr), checked on the package as it is installed.

``models/`` and ``cli/`` sit at the top of the repository but install as ``mefeat.models``
and ``mefeat.cli``; import-linter reads packages from the file system, so the test lays the
sources out as installed in a temporary folder and lints that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _installed_layout(tmp: Path) -> Path:
    pkg = tmp / "mefeat"
    shutil.copytree(ROOT / "mefeat", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for sub in ("models", "cli"):
        shutil.copytree(ROOT / sub, pkg / sub, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def test_import_linter_contracts_hold(tmp_path):
    tmp = _installed_layout(tmp_path)
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--config", "pyproject.toml", "--no-cache"], cwd=tmp,
                         capture_output=True, text=True, env={"PYTHONPATH": str(tmp),
                                                              "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in res.stdout


def test_the_contracts_catch_an_upward_import(tmp_path):
    tmp = _installed_layout(tmp_path)
    (tmp / "mefeat" / "store" / "oops.py").write_text("import mefeat.train.trainer\n")
    (tmp / "mefeat" / "views" / "oops.py").write_text("import zarr\n")
    (tmp / "mefeat" / "store" / "variant.py").write_text(
        (tmp / "mefeat" / "store" / "variant.py").read_text()
        + "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from mefeat.store.feature_store import FeatureStore\n")
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--config", "pyproject.toml", "--no-cache"], cwd=tmp,
                         capture_output=True, text=True, env={"PYTHONPATH": str(tmp),
                                                              "PATH": "/usr/bin:/bin"})
    assert res.returncode != 0
    assert "mefeat.store.oops -> mefeat.train.trainer" in res.stdout
    assert "mefeat.views.oops -> zarr" in res.stdout
    assert "mefeat.store.variant -> mefeat.store.feature_store" in res.stdout

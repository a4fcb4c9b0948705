"""benchmarks/scale_rehearsal.py runs end to end (HTNet, short passes; slow: minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_scale_rehearsal_runs_and_reports_every_pass(shared_data, tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_rehearsal.py"),
                          "--models", "htnet", "--all-folds", "3", "--checkpoints", "float16",
                          "--data", str(shared_data / "features"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    (report_file,) = tmp_path.glob("cpu-*.json")
    (row,) = json.loads(report_file.read_text())["models"]
    assert list(row["passes"]) == ["2 folds", "6 folds", "3 folds"]
    two, six, three = row["passes"].values()
    assert (two["folds"], six["folds"], three["folds"]) == (2, 6, 3)
    # float32 checkpoints of 139.6 M parameters, then float16 ones
    assert two["checkpoint_bytes"] > 2 * 139_582_982 * 4
    assert three["checkpoint_bytes"] < 3 * 139_582_982 * 2.1
    assert 0 < row["achieved_gflops"] and 0 < row["fraction_of_matmul"] < 2
    assert row["gflop_per_sample"] > 1  # HTNet: about 1.3 GFLOP forward + backward

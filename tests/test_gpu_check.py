"""benchmarks/gpu_check.py --smoke: the GPU check's script runs end to end on the CPU (2 folds,
2 epochs), so it cannot rot while no GPU is at hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_runs_end_to_end(shared_data, tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke",
                          "--out", str(tmp_path), "--data", str(shared_data / "features")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    paths = {r["model"]: r for r in report["paths"]}
    assert set(paths) == {"ststnet", "offapexnet", "offtanet", "mmnet"}
    for name in ("ststnet", "offapexnet", "offtanet"):
        assert paths[name]["agree"] and paths[name]["batched"].startswith("batched (vmap)")
    assert paths["mmnet"]["batched"].startswith("skipped: ")
    assert not any(r["nan"] for r in report["paths"])
    loso = {r["model"]: r for r in report["loso"]}
    assert set(loso) == {"causalnet", "htnet"}
    for r in loso.values():
        assert r["folds"] == 2 and r["epochs"] == 2
        assert 0 <= r["last"]["uf1"] <= 1 and 0 <= r["official"]["uar"] <= 1
        assert r["ratio_to_official"] > 0
    spot = report["spot_long"]
    assert spot["videos"] == 2 and spot["extract_long_fps"] > 0
    assert list(spot["runs"]) == ["cpu"] and 0 <= spot["runs"]["cpu"]["overall_f1"] <= 1
    tp = report["throughput"]
    assert [r["model"] for r in tp["models"]] == ["offapexnet"]
    assert tp["matmul_fp32_gflops"] > 0 and tp["matmul_bf16_gflops"] > 0
    for precision in ("fp32", "bf16"):
        r = tp["models"][0][precision]
        assert r["precision_run"] == precision and r["s_per_epoch"] > 0 and r["gflops"] > 0
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| causalnet | 2/4 |" in md and "Peak GPU memory" in md
    assert "## Training throughput" in md and "| offapexnet | 0.023 |" in md

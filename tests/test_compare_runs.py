"""benchmarks/compare_runs.py: two run folders side by side, scored by hand here."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare_runs.py"
CLASSES = ["negative", "positive", "surprise"]
# three subjects of two samples each, one per class pair; A right everywhere
LABELS = [0, 0, 1, 1, 2, 2]


def _run_folder(path: Path, predictions, labels=LABELS, seconds=10.0) -> Path:
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"classes": CLASSES}))
    subjects = [f"d/s{i // 2}" for i in range(len(labels))]
    (path / "metrics.json").write_text(json.dumps({
        "fold_seconds": {s: seconds for s in sorted(set(subjects))},
        "counting": "pooled", "settings": {"precision_run": "fp32"}}))
    with (path / "predictions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "dataset", "subject", "label", "prediction", "epoch", "fold", "run"])
        for i, (t, p) in enumerate(zip(labels, predictions, strict=True)):
            w.writerow([f"{subjects[i]}/c{i}", "d", subjects[i], t, p, 5, subjects[i], 0])
    return path


def _compare(a: Path, b: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), *extra],
                          capture_output=True, text=True, timeout=120)


def test_scores_and_differences_are_the_hand_computed_ones(tmp_path):
    a = _run_folder(tmp_path / "a", LABELS, seconds=10.0)
    b = _run_folder(tmp_path / "b", [0, 0, 1, 1, 2, 0], seconds=4.0)
    res = _compare(a, b, "--draws", "500", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # B: class 0 F1 = 2*2/(2*2+1) = 0.8, class 1 F1 = 1, class 2 F1 = 2*1/(2*1+1) = 2/3;
    # recalls 1, 1, 1/2; 5 of 6 right
    uf1_b, uar_b = (0.8 + 1 + 2 / 3) / 3, (1 + 1 + 0.5) / 3
    assert out["runs"][0]["overall"] == {"uf1": 1.0, "uar": 1.0, "acc": 1.0}
    assert out["runs"][1]["overall"] == pytest.approx({"uf1": uf1_b, "uar": uar_b, "acc": 5 / 6})
    assert [r["fold_seconds"] for r in out["runs"]] == [30.0, 12.0]
    assert out["same_prediction"] == 5 and out["samples"] == 6
    boot = out["bootstrap"]
    assert boot["subjects"] == 3 and boot["draws"] == 500
    assert boot["uf1"]["difference"] == pytest.approx(uf1_b - 1)
    # B is never above A, and is below it in every draw that holds subject s2
    # (1 - (2/3)^3 = 19/27 of them)
    assert boot["uf1"]["high"] == 0.0 and boot["uf1"]["low"] < 0
    assert boot["uf1"]["b_below_a"] == pytest.approx(19 / 27, abs=0.07)


def test_a_run_against_itself_differs_by_nothing(tmp_path):
    a = _run_folder(tmp_path / "a", [0, 1, 1, 1, 2, 0])
    res = _compare(a, a, "--draws", "200")
    assert res.returncode == 0, res.stderr
    assert "Same prediction: 6 of 6 samples (100%)." in res.stdout
    assert "- UF1: +0.0000 [+0.0000, +0.0000], 0%" in res.stdout


def test_runs_of_other_samples_are_refused(tmp_path):
    a = _run_folder(tmp_path / "a", LABELS)
    b = _run_folder(tmp_path / "b", [0, 1, 2, 0], labels=[0, 1, 2, 0])
    res = _compare(a, b)
    assert res.returncode == 1
    assert "do not hold the same samples" in res.stderr and "Traceback" not in res.stderr

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
# three subjects of two samples each; A right everywhere
LABELS = [0, 0, 1, 1, 2, 2]
PAIRS = ["d/s0", "d/s0", "d/s1", "d/s1", "d/s2", "d/s2"]


def _run_folder(path: Path, predictions, labels=LABELS, subjects=PAIRS, *, seconds=10.0,
                partial=False) -> Path:
    path.mkdir()
    (path / "metrics.json").write_text(json.dumps({
        "classes": ["negative", "positive", "surprise"], "selection": "last", "epochs": 5,
        "partial": partial, "fold_seconds": {s: seconds for s in sorted(set(subjects))},
        "settings": {"precision_run": "fp32"}}))
    with (path / "predictions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "dataset", "subject", "label", "prediction", "epoch", "fold", "run"])
        for i, (s, t, p) in enumerate(zip(subjects, labels, predictions, strict=True)):
            w.writerow([f"{s}/c{i}", s.split("/")[0], s, t, p, 5, s, 0])
    return path


def _compare(a: Path, b: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), *extra],
                          capture_output=True, text=True, timeout=120)


def _json(a: Path, b: Path, draws: int) -> dict:
    res = _compare(a, b, "--draws", str(draws), "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# B's one error: a surprise (class 2) called negative. Class 0 F1 = 2*2/(2*2+1) = 0.8,
# class 1 F1 = 1, class 2 F1 = 2*1/(2*1+1) = 2/3; recalls 1, 1, 1/2; 5 of 6 right.
UF1_B, UAR_B = (0.8 + 1 + 2 / 3) / 3, (1 + 1 + 0.5) / 3


def test_scores_and_differences_are_the_hand_computed_ones(tmp_path):
    a = _run_folder(tmp_path / "a", LABELS, seconds=10.0)
    b = _run_folder(tmp_path / "b", [0, 0, 1, 1, 2, 0], seconds=4.0)
    out = _json(a, b, 500)
    assert out["runs"][0]["overall"] == {"uf1": 1.0, "uar": 1.0, "acc": 1.0}
    assert out["runs"][1]["overall"] == pytest.approx({"uf1": UF1_B, "uar": UAR_B, "acc": 5 / 6})
    assert [r["fold_seconds"] for r in out["runs"]] == [30.0, 12.0]
    assert out["same_prediction"] == 5 and out["samples"] == 6
    boot = out["bootstrap"]
    assert boot["subjects"] == 3 and boot["draws"] == 500
    assert boot["uf1"]["difference"] == pytest.approx(UF1_B - 1)
    assert boot["uar"]["difference"] == pytest.approx(UAR_B - 1)
    # B is never above A: the 8/27 of draws without subject s2 tie
    assert boot["uf1"]["high"] == 0.0 and boot["uf1"]["low"] < 0


def test_the_bootstrap_draws_subjects_not_samples(tmp_path):
    # s0 holds B's one error alone, s1 five samples B gets right: drawing 2 subjects, s0 is
    # in 1 - (1/2)^2 = 3/4 of the draws; drawing 6 samples, the error would be in
    # 1 - (5/6)^6 = 0.665 of them
    subjects = ["d/s0"] + ["d/s1"] * 5
    labels = [2, 0, 0, 1, 1, 2]
    a = _run_folder(tmp_path / "a", labels, labels, subjects)
    b = _run_folder(tmp_path / "b", [0, 0, 0, 1, 1, 2], labels, subjects)
    boot = _json(a, b, 4000)["bootstrap"]
    assert boot["uf1"]["b_below_a"] == pytest.approx(3 / 4, abs=0.03)


def test_each_dataset_keeps_its_subjects_in_every_draw(tmp_path):
    # one subject per dataset: every draw is the whole set, so the interval is one point
    subjects = ["x/s0"] * 3 + ["y/s0"] * 3
    labels = [0, 1, 2, 0, 1, 2]
    a = _run_folder(tmp_path / "a", labels, labels, subjects)
    b = _run_folder(tmp_path / "b", [0, 1, 2, 0, 1, 0], labels, subjects)
    out = _json(a, b, 300)
    # B: class 0 F1 = 2*2/(2*2+1), class 1 F1 = 1, class 2 F1 = 2*1/(2*1+1), as above
    assert out["runs"][1]["overall"]["uf1"] == pytest.approx(UF1_B)
    assert out["runs"][1]["per_dataset"]["x"]["uf1"] == 1.0
    boot = out["bootstrap"]["uf1"]
    assert boot["low"] == boot["high"] == pytest.approx(UF1_B - 1)
    assert boot["b_below_a"] == 1.0


def test_a_run_against_itself_differs_by_nothing(tmp_path):
    a = _run_folder(tmp_path / "a", [0, 1, 1, 1, 2, 0])
    res = _compare(a, a, "--draws", "200")
    assert res.returncode == 0, res.stderr
    assert "Same prediction: 6 of 6 samples (100%)." in res.stdout
    assert "- UF1: +0.0000 [+0.0000, +0.0000], 0%" in res.stdout


def test_what_cannot_be_compared_is_refused_naming_the_folder(tmp_path):
    a = _run_folder(tmp_path / "a", LABELS)
    cases = {
        "do not hold the same samples":
            _run_folder(tmp_path / "b", [0, 1, 2, 0], [0, 1, 2, 0], PAIRS[:4]),
        "the run is partial": _run_folder(tmp_path / "c", LABELS, partial=True),
        "not a finished run folder": tmp_path / "missing",
    }
    for message, other in cases.items():
        res = _compare(a, other)
        assert res.returncode == 1, message
        assert message in res.stderr and "Traceback" not in res.stderr
        assert message == "do not hold the same samples" or str(other) in res.stderr

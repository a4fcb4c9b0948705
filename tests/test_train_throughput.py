"""benchmarks/train_throughput.py's steady-epoch timing: the difference of two folds, timed
again when noise makes the longer fold no slower, refused after the last try."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import train_throughput  # noqa: E402


def _fake_folds(monkeypatch, seconds: list[float]) -> list[int]:
    """train_loso replaced by one that takes the next of ``seconds``; returns the epochs
    each call asked for."""
    asked = []

    def train_loso(model, data, *, epochs, folds, **kw):
        asked.append(epochs)
        return SimpleNamespace(fold_seconds={folds[0]: seconds.pop(0)},
                               settings={"precision_run": kw["precision"]})

    monkeypatch.setattr("mefeat.train.train_loso", train_loso)
    return asked


DATA = SimpleNamespace(subjects=np.array(["d/a", "d/a", "d/b", "d/b", "d/b"]))


def test_a_noisy_pair_is_timed_again(monkeypatch):
    # warm-up, then a pair where 6 epochs took less than 2 (noise), then a good pair:
    # 4 epochs in 10.5 - 4.5 = 6 s, the 2-epoch fold's start 4.5 - 2 * 1.5 = 1.5 s
    asked = _fake_folds(monkeypatch, [9.0, 5.0, 4.0, 4.5, 10.5])
    r = train_throughput.fold_throughput("m", DATA, device="cpu", epochs=4, precision="fp32")
    assert asked == [1, 2, 6, 2, 6]
    assert r["s_per_epoch"] == 1.5 and r["s_fold_start"] == 1.5 and r["seconds"] == 6.0
    assert r["n_train"] == 3 and r["precision_run"] == "fp32"


def test_noise_in_every_try_is_refused(monkeypatch):
    _fake_folds(monkeypatch, [1.0] + [5.0, 5.0] * train_throughput.TRIES)
    with pytest.raises(train_throughput.NoisyTiming, match="in 3 tries, a fold of 4 epochs "
                       "took no longer than one of 2"):
        train_throughput.fold_throughput("m", DATA, device="cpu", epochs=2, precision="bf16")

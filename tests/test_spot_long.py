"""Spotting long videos (issue 27 items 4-5): SoftNet's labels and interval rule by hand,
the SoftNet network's size, and ``mefeat spot-long`` end to end on synthetic long videos
in CAS(ME)^2's layout, with a recogniser trained on the short demo clips."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _stores import demo_store
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.keyframes.softnet import frame_labels, score_intervals, smooth_scores, threshold
from mefeat.models.softnet import SoftNet, minmax


def test_frame_labels_by_hand():
    # window t..t+3 meets frames 6..8 (onset 5 + 1 .. offset 8) for t = 3..8
    y = frame_labels(20, [(5, 8)], k=4)
    assert len(y) == 16 and np.flatnonzero(y).tolist() == [3, 4, 5, 6, 7, 8]
    assert frame_labels(20, [(14, 19)], k=4).nonzero()[0].tolist() == [12, 13, 14, 15]
    assert frame_labels(3, [(0, 2)], k=4).shape == (0,)


def test_smoothing_threshold_and_intervals_by_hand():
    s = np.array([0, 0, 4, 4, 0, 0, 0, 0], float)
    # frame x + 1 = mean(s[x], s[x+1]) for k = 1, x = 0..6; no full window: NaN
    np.testing.assert_array_equal(smooth_scores(s, 1, 10),
                                  [np.nan, 0, 2, 4, 2, 0, 0, 0, np.nan, np.nan])
    curve = np.full(40, np.nan)
    curve[3:37] = 0
    curve[10], curve[11], curve[30] = 1.0, 0.9, 0.6
    # scored frames 3..36: mean 2.5/34 = 0.0735, max 1: thresholds 0.537 (p 0.5), 0.629 (0.6);
    # frame 11 is no peak (10 is higher and within k)
    assert threshold(curve, 0.5) == pytest.approx(2.5 / 34 + 0.5 * (1 - 2.5 / 34))
    assert score_intervals(curve, 3, 0.5) == [(7, 10, 13, 1.0), (27, 30, 33, 0.6)]
    assert score_intervals(curve, 3, 0.6) == [(7, 10, 13, 1.0)]
    assert score_intervals(np.full(5, np.nan), 3, 0.5) == []
    # the last scored frame is no peak for want of a score after it (SoftNet's agg[k:-k])
    curve = np.full(20, np.nan)
    curve[2:15] = np.linspace(0, 1, 13)
    assert score_intervals(curve, 2, 0.5) == []


def test_scores_of_a_video_end_where_its_windows_do():
    """100 frames, k = 6: raw scores for frames 0..93 (a flow to t+6), smoothed over 12
    for frames 6..88; the threshold is SoftNet's on those 83 frames alone."""
    raw = np.zeros(94)
    raw[20:30] = 1.0
    curve = smooth_scores(raw, 6, 100)
    scored = np.flatnonzero(np.isfinite(curve))
    assert (scored[0], scored[-1]) == (6, 88)
    # each of the 10 raw ones is in 12 windows of 12: the 83 scores sum to 10; max 10/12
    assert threshold(curve, 0.55) == pytest.approx(10 / 83 + 0.55 * (10 / 12 - 10 / 83))
    assert [iv[1] for iv in score_intervals(curve, 6, 0.55)] == [25]


def test_softnet_network_size_and_scaling():
    net = SoftNet()
    # 5x5 convs of 3, 5, 8 filters on one channel each, Dense 784 -> 400 -> 1
    expected = (25 * 3 + 3) + (25 * 5 + 5) + (25 * 8 + 8) + (784 * 400 + 400) + (400 + 1)
    assert sum(p.numel() for p in net.parameters()) == expected == 314817
    x = torch.rand(4, 3, 42, 42) * 7 - 2
    assert net(minmax(x)).shape == (4,)
    m = minmax(x)
    assert torch.allclose(m.amin(dim=(2, 3)), torch.zeros(4, 3))
    assert torch.allclose(m.amax(dim=(2, 3)), torch.ones(4, 3))
    assert minmax(torch.ones(1, 3, 42, 42)).abs().max() == 0


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def long_world(tmp_path_factory):
    from mefeat.demo import build_long_demo

    root = tmp_path_factory.mktemp("long")
    demo = build_long_demo(root, videos=2, frames=600)
    store = root / "long.zarr"
    res = _invoke("extract-long", demo.root, "--dataset", "casme-sq", "--store", store,
                  "--flow", "farneback")
    assert res.exit_code == 0, res.output
    short = demo_store(root, subjects=2, clips=3, size=112)
    run = root / "run"
    res = _invoke("train", "--model", "ststnet", "--store", short, "--epochs", 1,
                  "--workers", 1, "--out", run)
    assert res.exit_code == 0, res.output
    return SimpleNamespace(root=root, demo=demo, store=store, run=run)


def _truth(demo) -> dict[str, int]:
    events = [e for ev in demo.events.values() for e in ev if e.kind]
    return {k: sum(e.kind == k for e in events) for k in ("micro", "macro")}


def test_spot_long_softnet_with_a_recogniser(long_world):
    out = long_world.root / "softnet"
    res = _invoke("spot-long", long_world.store, "--spotter", "softnet", "--epochs", 2,
                  "--recognizer", long_world.run, "--out", out)
    assert res.exit_code == 0, res.output
    assert "STRS" in res.output
    m = json.loads((out / "metrics.json").read_text())
    truth = _truth(long_world.demo)  # 3 micro, 2 macro per video, from the generator
    for kind in ("micro", "macro"):
        assert m["spotting"][kind]["tp"] + m["spotting"][kind]["fn"] == truth[kind]
    assert [f["subject"] for f in m["folds"]["micro"]] == ["s01", "s02"]
    assert all(0.05 <= f["p"] <= 0.95 for f in m["folds"]["macro"])
    # the run's held-out subjects are the short demo's (sub01, sub02): all folds classify
    # the run's folds are the short demo's (casme2/sub01, casme2/sub02): all classify
    assert set(m["recognizer"]["folds_used"].values()) <= {"all folds (mean)"}
    rows = json.loads((out / "intervals.json").read_text())
    with open(out / "intervals.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    classes = m["recognizer"]["classes"]
    for r in rows:
        assert r["onset"] <= r["apex"] <= r["offset"]
        if r["kind"] == "micro":
            assert r.get("label") in classes or "error" in r
        else:
            assert "label" not in r
    assert m["str"]["spotting"]["tp"] == m["spotting"]["micro"]["tp"]
    assert m["str"]["strs"] == pytest.approx(m["str"]["spotting"]["f1"]
                                             * m["str"]["analysis"]["f1"])
    assert sorted(p.name for p in (out / "timeline").iterdir()) == [
        "casme-sq__s01__01_0101.png", "casme-sq__s02__02_0101.png"]


def test_spot_long_mdmd_finds_the_macro_expressions(long_world):
    """MDMD (training-free) on the 4 macro-expressions (3-5 px, 30-60 frames): at least
    half are found at IoU >= 0.5 (measured: all 8 of 4 videos in the demo)."""
    out = long_world.root / "mdmd"
    res = _invoke("spot-long", long_world.store, "--spotter", "mdmd", "--out", out, "--json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)  # the progress lines go to stderr
    assert m["spotting"]["macro"]["tp"] >= 2
    assert m["mdmd_flow"] == "farneback"


def test_recogniser_fold_is_the_one_that_held_the_person_out():
    from mefeat.run.spot_long import recogniser_fold

    folds = {"samm/006", "samm/007", "casme3a/spNO.1"}
    assert recogniser_fold(folds, "samm-long", "006") == "samm/006"
    assert recogniser_fold(folds, "casme3a-long", "spNO.1") == "casme3a/spNO.1"
    assert recogniser_fold(folds, "samm-long", "008") is None  # never trained on 008
    assert recogniser_fold(folds, "casme-sq", "006") is None  # another dataset's people


def test_spot_long_refusals(long_world, tmp_path):
    res = CliRunner().invoke(cli, ["spot-long", str(long_world.store), "--p", "2",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 2 and "'train' or a number in 0..1" in res.output
    res = CliRunner().invoke(cli, ["spot-long", str(tmp_path / "none.zarr"), "--out",
                                   str(tmp_path)])
    assert res.exit_code == 1 and "no mefeat store here" in res.output
    res = CliRunner().invoke(cli, ["demo", "--long-videos", "1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "needs 2 long videos" in res.output


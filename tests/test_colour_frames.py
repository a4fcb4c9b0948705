"""Colour frames: a colour source's aligned colour frames are kept beside the grayscale ones
(same warp, RGB order) and MMNet and EDMDBN read them, in their views and in MMNet's
key-frame jitter; a grayscale source stays grayscale; a store made without colour says so."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.demo import build_demo
from mefeat.run.extract import extract
from mefeat.store import FeatureStore
from mefeat.train import load_view

# The tint written into the colour clip: R = g, G = 0.8 g, B = 0.6 g of the demo's gray g.
TINT = np.array([1.0, 0.8, 0.6])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    ds = build_demo(tmp_path_factory.mktemp("colour") / "data", subjects=2, clips=1)
    folder = ds.root / "sub01" / "EP01_01"
    for path in folder.glob("*.jpg"):
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float64)
        rgb = np.clip(gray[..., None] * TINT, 0, 255).round().astype(np.uint8)
        cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])  # BGR file
    return ds


def _extract(ds, store, **options):
    return extract(ds.root, dataset="casme2", annotations=ds.annotations, store=store,
                   label_scheme="casme2-5", size=112, progress=False, **options)


@pytest.fixture(scope="module")
def store(dataset, tmp_path_factory):
    path = tmp_path_factory.mktemp("colour-store") / "s.zarr"
    summary = _extract(dataset, path)
    assert not summary.failed
    return path


def test_a_colour_source_keeps_its_aligned_colour_frames(store):
    fs = FeatureStore.open(store)
    colour_key, gray_key = "casme2/sub01/EP01_01", "casme2/sub02/EP01_02"
    assert fs.has_colour(colour_key) and not fs.has_colour(gray_key)
    gray, _ = fs.read_frames(colour_key)
    clip = fs.clip(colour_key, colour=True)
    rgb = np.stack([clip[t] for t in range(len(clip))])
    assert rgb.shape == gray.shape + (3,) and rgb.dtype == np.uint8
    face = gray > 40  # away from the dark background, where the tint's ratios are exact
    for c, ratio in enumerate(TINT):  # R, G, B in that order, not OpenCV's BGR
        assert np.median(rgb[..., c][face] / rgb[..., 0][face]) == pytest.approx(ratio, abs=0.02)
    # the same warp as the grayscale frames: their luma agrees pixel by pixel
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(luma - gray).mean() < 1.5


def test_mmnet_and_edmdbn_read_the_colour_frames(store):
    fs = FeatureStore.open(store)
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    data = load_view(store, "mmnet")
    assert not any("colour" in w for w in data.warnings)
    keys = list(data.keys)
    i, j = keys.index("casme2/sub01/EP01_01"), keys.index("casme2/sub02/EP01_02")
    onset = data.inputs[0] * std + mean  # back to [0, 1] RGB
    r, g, b = onset[i].reshape(3, -1)
    lit = r > 0.2
    assert np.median(g[lit] / r[lit]) == pytest.approx(0.8, abs=0.02)
    assert np.median(b[lit] / r[lit]) == pytest.approx(0.6, abs=0.02)
    assert np.allclose(onset[j][0], onset[j][1], atol=1e-5)  # grayscale: equal channels
    assert np.allclose(onset[j][0], onset[j][2], atol=1e-5)
    # the jitter bank is colour too, and a draw of the annotated frames is the view's input
    bank = data.jitter
    assert bank.bank.shape[1:] == (224, 224, 3)
    import torch

    kf = fs.variant("gt").read(["keyframes"])[1]["keyframes"]
    o, a, _ = kf[list(fs.column("key")).index(keys[i])]
    clip = fs.clip(keys[i], colour=True)
    frames = np.stack([cv2.resize(clip[t], (224, 224), interpolation=cv2.INTER_AREA)
                       for t in (o, a)])[None]
    x_on, x_apex = bank.to_inputs(torch.as_tensor(frames))
    assert np.allclose(x_on[0].numpy(), data.inputs[0][i], atol=1e-5)
    assert np.allclose(x_apex[0].numpy(), data.inputs[1][i], atol=1e-5)
    (stack,) = load_view(store, "edmdbn").inputs  # (N, 3, 10, S, S): its last frame is the apex
    apex = stack[i][:, -1] * std + mean
    assert np.median(apex[1][apex[0] > 0.2] / apex[0][apex[0] > 0.2]) == pytest.approx(
        0.8, abs=0.02)


def test_a_store_without_colour_says_so_and_is_not_mixed(dataset, store, tmp_path):
    plain = tmp_path / "plain.zarr"
    _extract(dataset, plain, colour=False)
    fs = FeatureStore.open(plain)
    assert not any(fs.has_colour(k) for k in fs.column("key"))
    data = load_view(plain, "mmnet")
    assert any("keeps no colour frames" in w and "mmnet" in w for w in data.warnings)
    # the grayscale frames are the same either way
    assert np.array_equal(fs.read_frames("casme2/sub01/EP01_01")[0],
                          FeatureStore.open(store).read_frames("casme2/sub01/EP01_01")[0])
    res = CliRunner().invoke(cli, ["extract", str(dataset.root), "--dataset", "casme2",
                                   "--annotations", str(dataset.annotations), "--labels",
                                   "casme2-5", "--size", "112", "--store", str(plain)])
    assert res.exit_code == 1 and "colour" in res.output and "other settings" in res.output
    res = CliRunner().invoke(cli, ["extract", "--store", str(plain), "--no-colour"])
    assert res.exit_code == 2 and "--colour/--no-colour describe a dataset at ROOT" in res.output


def test_predict_reads_colour_from_folders_and_videos(dataset, tmp_path):
    # `mefeat predict` gives a colour view the clip's colour frames, read as extract reads them
    from mefeat.frames import read_frames

    colour = read_frames(dataset.root / "sub01" / "EP01_01", colour=True)
    assert colour.colour is not None and colour.colour.shape == colour.frames.shape + (3,)
    assert read_frames(dataset.root / "sub01" / "EP01_01").colour is None  # not asked
    assert read_frames(dataset.root / "sub02" / "EP01_02", colour=True).colour is None
    video = tmp_path / "clip.avi"
    h, w = colour.frames.shape[1:]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for frame in colour.colour:
        writer.write(frame[..., ::-1].copy())
    writer.release()
    read = read_frames(video, colour=True)
    lit = read.colour[..., 0] > 50
    assert np.median(read.colour[..., 2][lit] / read.colour[..., 0][lit]) == pytest.approx(
        0.6, abs=0.03)

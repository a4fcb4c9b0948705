"""Views: resizing flows, the official u_v_os image, region tiling, importing official PNGs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mefeat.views import (
    HTNET_FALLBACK_POINTS,
    minmax_uint8,
    region_points,
    resize_maps,
    tile_regions,
    uvs_image,
)


def test_resized_flow_keeps_pixels_of_the_smaller_image():
    flow = np.full((1, 2, 224, 224), 8.0, np.float32)  # 8 px at 224 px
    small = resize_maps(flow, 28, displacement=True)
    assert small.shape == (1, 2, 28, 28) and np.allclose(small, 1.0)  # 1 px at 28 px
    strain = np.full((1, 1, 224, 224), 0.3, np.float32)
    assert np.allclose(resize_maps(strain, 28), 0.3)  # strain is scale-free


def test_uvs_image_is_the_official_channel_order_and_scaling():
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(2, 2, 56, 56)).astype(np.float32)
    strain = rng.random((2, 1, 56, 56)).astype(np.float32)
    img = uvs_image(flow, strain)
    assert img.shape == (2, 3, 28, 28)
    assert (img.min(axis=(2, 3)) == 0).all() and (img.max(axis=(2, 3)) == 255).all()
    assert np.array_equal(img, np.rint(img))  # quantised like a PNG
    # BGR as cv2 reads the official PNG: 0 = strain, 1 = v, 2 = u
    u28 = resize_maps(flow, 28, displacement=True)[:, 0:1]
    assert np.array_equal(img[:, 2:3], minmax_uint8(u28))
    assert np.array_equal(img[:, 0:1], minmax_uint8(resize_maps(strain, 28)))


def test_region_tiling_puts_each_region_in_its_quadrant():
    img = np.zeros((1, 1, 28, 28), np.float32)
    points = np.array([[[8, 10], [20, 10], [9, 21], [19, 21]]], np.float32)
    for q, (x, y) in enumerate(points[0].astype(int)):
        img[0, 0, y, x] = q + 1  # mark each point's own pixel
    tiles = tile_regions(img, points)
    assert tiles.shape == (1, 1, 28, 28)
    # each 14×14 quadrant holds its point's mark at its centre (7, 7)
    for q, (r, c) in enumerate(((0, 0), (0, 14), (14, 0), (14, 14))):
        assert tiles[0, 0, r + 7, c + 7] == q + 1


def test_region_points_from_68_landmarks(aligned_face):
    _, lm = aligned_face
    pts = region_points(lm[None], 224)
    assert pts.shape == (1, 4, 2)
    left_eye, right_eye, mouth_l, mouth_r = pts[0]
    assert left_eye[0] < right_eye[0] and mouth_l[0] < mouth_r[0]
    assert left_eye[1] < mouth_l[1]
    # near HTNet's own fallback points for a centred face
    assert np.abs(pts[0] - HTNET_FALLBACK_POINTS).max() < 4


def test_official_htnet_features_import_and_views(shared_data, tmp_path):
    from mefeat.run.import_features import import_features
    from mefeat.train import load_view

    folder = shared_data / "features" / "cde28_htnet"
    summary = import_features(folder, fmt="htnet", store=tmp_path / "h.zarr")
    n, variant = summary.imported, summary.variant
    assert n == 442 and variant == "official-htnet" and not summary.failed
    data = load_view(tmp_path / "h.zarr", "ststnet", variant=variant)
    assert data.inputs[0].shape == (442, 3, 28, 28) and len(set(data.subjects)) == 68
    assert np.bincount(data.labels).tolist() == [250, 109, 83]
    # the view holds exactly what cv2.imread gives for the official file
    first = folder / f"{data.keys[0].split('/')[1]}_{data.keys[0].split('/')[2]} .png"
    assert np.array_equal(data.inputs[0][0], cv2.imread(str(first)).transpose(2, 0, 1))
    assert len(data.folds()) == 68
    tiled = load_view(tmp_path / "h.zarr", "htnet", variant=variant).inputs[0]
    assert tiled.shape == (442, 3, 28, 28) and not np.array_equal(tiled, data.inputs[0])
    uv = load_view(tmp_path / "h.zarr", "offapexnet", variant=variant).inputs[0]
    assert uv.shape == (442, 2, 28, 28) and 0 <= uv.min() and uv.max() <= 1
    ds = data.torch_dataset()
    assert len(ds) == 442 and ds[0][1].item() == data.labels[0]


def test_frames_models_get_frames(tmp_path):
    from mefeat.views import imagenet_rgb

    x = imagenet_rgb(np.full((112, 112), 255, np.uint8))
    assert x.shape == (3, 224, 224)
    assert np.allclose(x[:, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) /
                       np.array([0.229, 0.224, 0.225]), atol=1e-5)


def test_a_view_that_cannot_use_official_images_says_so(shared_data, tmp_path):
    from mefeat.errors import StoreError
    from mefeat.run.import_features import import_features
    from mefeat.train import load_view

    import_features(shared_data / "features" / "cde28_htnet", fmt="htnet",
                    store=tmp_path / "h.zarr")
    with pytest.raises(StoreError, match="cannot use"):
        load_view(tmp_path / "h.zarr", "srmcl", variant="official-htnet")


def test_official_causalnet_import_crops_the_official_boxes(shared_data, tmp_path):
    from mefeat.run.import_features import import_features
    from mefeat.train import load_view

    folder = shared_data / "features" / "cde28_causalnet"
    summary = import_features(folder, fmt="causalnet", store=tmp_path / "c.zarr")
    n, variant = summary.imported, summary.variant
    data = load_view(tmp_path / "c.zarr", "causalnet", variant=variant)
    x = data.inputs[0]
    assert n == 442 and x.shape == (442, 4, 3, 28, 28)
    sub, clip = data.keys[5].split("/")[1:]
    # the released code's boxes (HTNet's fixed points, rows indexed by x)
    boxes = [(slice(2, 16), slice(4, 18)), (slice(14, 28), slice(3, 17)),
             (slice(3, 17), slice(14, 28)), (slice(13, 27), slice(14, 28))]
    for j, suffix in enumerate(["", "_1", "_2", "_3"]):
        png = cv2.imread(str(folder / f"{sub}_{clip}{suffix} .png")).transpose(2, 0, 1)
        tiles = [x[5, j, :, :14, :14], x[5, j, :, :14, 14:], x[5, j, :, 14:, :14],
                 x[5, j, :, 14:, 14:]]
        for tile, (r, c) in zip(tiles, boxes, strict=True):
            assert np.array_equal(tile, png[:, r, c])
    # direction maps: blue is 0 and the hue stays in 0..45 after normalisation
    assert x[:, 2:, 0].max() == 0


def _official_tiles(image_hwc: np.ndarray, points) -> np.ndarray:
    """main_HTNet.py's crop-and-tile, written out: rows indexed by x, four 14-px crops,
    [left eye | right eye] over [left lip | right lip]; points clamped to [7, 21], truncated."""
    (lx, ly), (rx, ry), (mlx, mly), (mrx, mry) = (
        np.clip(np.asarray(p, np.float64), 7, 21).astype(int) for p in points)
    crop = [image_hwc[x - 7:x + 7, y - 7:y + 7] for x, y in ((lx, ly), (rx, ry), (mlx, mly),
                                                            (mrx, mry))]
    return np.concatenate([np.concatenate(crop[:2], axis=1),
                           np.concatenate(crop[2:], axis=1)], axis=0)


def test_official_crop_geometry_on_mefeat_flows(tmp_path, aligner):
    """crops=official: HTNet cut at the apex frame's points, CausalNet at the fixed points,
    both transposed as the released scripts cut them, on flows mefeat extracted."""
    from _stores import demo_store

    from mefeat.store import FeatureStore
    from mefeat.train import load_view
    from mefeat.views import region_points, uvs_image

    store = demo_store(tmp_path, subjects=2, clips=2, size=112)
    paper = load_view(store, "htnet").inputs[0]
    official = load_view(store, "htnet", options={"crops": "official"}).inputs[0]
    fs = FeatureStore.open(store)
    idx, arrays = fs.variant("gt").read(["flow_oa", "strain_oa", "keyframes"])
    images = uvs_image(arrays["flow_oa"], arrays["strain_oa"])
    for j, i in enumerate(idx):
        frames, _ = fs.read_frames(str(fs.column("key")[i]))
        apex = frames[arrays["keyframes"][j][1]]
        points = region_points(aligner.landmarks(apex)[None], apex.shape[0])[0]
        expected = _official_tiles(images[j].transpose(1, 2, 0), points)
        np.testing.assert_array_equal(official[j], expected.transpose(2, 0, 1))
    assert not np.array_equal(paper, official)
    causal = load_view(store, "causalnet", options={"crops": "official"}).inputs[0]
    fixed = [(9.528073, 11.062551), (21.396168, 10.919773), (10.255435, 22.121233),
             (20.583706, 22.25584)]  # main_train.py's points (mouth, not nose)
    for j in range(len(idx)):
        expected = _official_tiles(images[j].transpose(1, 2, 0), fixed)
        np.testing.assert_array_equal(causal[j, 0], expected.transpose(2, 0, 1))


def test_official_htnet_tiling_on_every_shipped_image(shared_data, tmp_path):
    """The HTNet view of the shipped images and points equals main_HTNet.py's crop-and-tile
    (written out above) on all 442 samples."""
    import csv

    from mefeat.run.import_features import import_features
    from mefeat.train import load_view

    features = shared_data / "features"
    points_csv = features / "cde28_htnet_mtcnn_points.csv"
    import_features(features / "cde28_htnet", fmt="htnet", store=tmp_path / "h.zarr",
                    points=points_csv)
    data = load_view(tmp_path / "h.zarr", "htnet")
    with points_csv.open() as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert len(data.keys) == 442
    for i, key in enumerate(data.keys):
        sub, clip = str(key).split("/")[1:]
        name = f"{sub}_{clip} .png"
        r = rows[name]
        pts = [(float(r[f"{p}_x"]), float(r[f"{p}_y"])) for p in ("leye", "reye", "lmouth",
                                                                  "rmouth")]
        png = cv2.imread(str(features / "cde28_htnet" / name))
        np.testing.assert_array_equal(data.inputs[0][i], _official_tiles(png, pts)
                                      .transpose(2, 0, 1), err_msg=name)

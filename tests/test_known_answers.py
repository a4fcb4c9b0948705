"""Known answers computed independently of the code under test.

The expected values here come from what the demo generator did (``mefeat.synth``: which
landmarks it moved, which way, by how many pixels), from formulas written out in the test
(optical strain, Algorithm 1's direction map, the noisy key-frame rule of the README), or
from another implementation (scikit-learn's metrics, h5py reading the export back) — never
from the function being tested. Each test names the one-line library bug it catches.
"""

from __future__ import annotations

import csv
import json
import zlib

import cv2
import numpy as np
import pytest
from _stores import demo_store, store_arrays
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.demo import build_demo
from mefeat.run.extract import extract
from mefeat.store import FeatureStore
from mefeat.synth import ACTIONS

FLOWS = ("tvl1", "farneback", "dis")
SIZE = 112  # aligned frame side of the demo stores
PEAK = 1.5  # largest displacement of a demo action, pixels of the camera frame (build_demo)

# What each demo action does, read off mefeat.synth.ACTIONS and written out here as the
# known answer: (iBUG 68-point landmark, flow component, sign of the onset→apex flow there).
# Image axes: u = x (right), v = y (down). Listed: every component the generator moves by at
# least 0.6 of the action's unit, and repression's 0.5 downward corners; left out: the
# inner brows' sideways ±0.5 / ±0.4 of disgust and others, whose two nearby bumps pull
# against each other (the flow there is a few tenths of a pixel either way).
# Landmark 48 is the mouth corner on the image's left, 54 the one on its right.
MOVES: dict[str, tuple[tuple[int, str, int], ...]] = {
    # AU1+2, brows raised: every brow point moves up (v < 0)
    "surprise": ((19, "v", -1), (24, "v", -1), (17, "v", -1), (26, "v", -1)),
    # AU12, lip corners pulled up and out: left corner left (u < 0), right corner right
    "happiness": ((48, "u", -1), (54, "u", +1), (48, "v", -1), (54, "v", -1)),
    # AU4+9: inner brows down, nose wings up
    "disgust": ((21, "v", +1), (22, "v", +1), (31, "v", -1), (35, "v", -1)),
    # AU14/15: lip corners pressed in (left corner right, right corner left) and down
    "repression": ((48, "u", +1), (54, "u", -1), (48, "v", +1), (54, "v", +1)),
    # AU4: inner brows down
    "others": ((21, "v", +1), (22, "v", +1)),
}
COMPONENT = {"u": 0, "v": 1}


def test_the_known_moves_are_the_generators():
    # The table above is the generator's own motion, not a guess: each listed component
    # has the sign of synth's displacement direction and at least half its unit, and every
    # component synth moves by 0.6 or more is listed. (A synth change that moved, say, the
    # brows down for surprise would otherwise leave the flow tests below testing nothing.)
    assert set(MOVES) == set(ACTIONS)
    for emotion, moves in MOVES.items():
        direction = dict(ACTIONS[emotion])
        strong = {(i, c) for i, d in direction.items() for c in "uv"
                  if abs(d[COMPONENT[c]]) >= 0.6}
        assert strong <= {(i, c) for i, c, _ in moves}, emotion
        for i, c, sign in moves:
            d = direction[i][COMPONENT[c]]
            assert np.sign(d) == sign and abs(d) >= 0.5, (emotion, i, c)


# -- fixtures: one demo clip of every emotion, extracted with every flow method ---------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    # one subject, five clips: build_demo gives clip c of subject s the emotion
    # sorted(ACTIONS)[(s + c) % 5], so every action occurs once
    return build_demo(tmp_path_factory.mktemp("known") / "data", subjects=1, clips=5,
                      peak=PEAK)


@pytest.fixture(scope="module")
def flow_stores(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("known-stores")
    stores = {}
    for flow in FLOWS:
        stores[flow] = root / f"{flow}.zarr"
        summary = extract(demo.root, dataset="casme2", annotations=demo.annotations,
                          store=stores[flow], label_scheme="casme2-5", size=SIZE, flow=flow,
                          progress=False)
        assert len(summary.done) == 5 and not summary.failed, summary.lines()
    return stores


@pytest.fixture(scope="module")
def camera_scale(demo, flow_stores, aligner):
    """Aligned pixels per camera pixel: the generator's displacements are camera pixels."""
    clip = demo.root / "sub01" / "EP01_01"
    first = min(clip.glob("img*.jpg"), key=lambda p: int(p.stem[3:]))  # before the onset
    camera = aligner.landmarks(cv2.imread(str(first), cv2.IMREAD_GRAYSCALE), where="test")
    aligned = FeatureStore.open(flow_stores["tvl1"]).read_landmarks("casme2/sub01/EP01_01")
    return _eye_distance(aligned) / _eye_distance(camera)


def _eye_distance(lm):
    return float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))


def _disc_mean(img: np.ndarray, centres, radius: float) -> float:
    """Mean of a 2-D map over discs around (x, y) points."""
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), bool)
    for x, y in np.atleast_2d(centres):
        mask |= (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    assert mask.any(), (centres, radius)
    return float(img[mask].mean())


def _samples(fs: FeatureStore):
    """(row in the variant read, key, emotion) of every done sample."""
    t = fs.table()
    idx, _ = fs.variant(fs.pick_variant(None)).read(["keyframes"])
    return [(j, str(t["key"][i]), str(t["emotion"][i])) for j, i in enumerate(idx)]


# -- 1. the stored flow moves where and how the demo moved ------------------------------------


@pytest.mark.parametrize("flow", FLOWS)
def test_stored_flow_has_the_sign_and_component_of_the_demo_motion(flow_stores, flow):
    # Catches, in extraction or the store: u and v swapped when (H, W, 2) becomes
    # (2, H, W) (transpose(2, 1, 0) instead of (2, 0, 1) also swaps x and y), the phases
    # swapped or computed backwards (compute_flow(apex, onset): every sign flips), the
    # key frames of another sample written to a row, or a flow method's output negated.
    fs = FeatureStore.open(flow_stores[flow])
    _, arrays = fs.variant(fs.pick_variant(None)).read(["flow_oa", "flow_ao"])
    samples = _samples(fs)
    assert sorted(e for _, _, e in samples) == sorted(ACTIONS)  # every action, once
    for j, key, emotion in samples:
        _, landmarks = fs.read_frames(key)  # aligned 68 landmarks of the stored frames
        for phase, direction in (("flow_oa", +1), ("flow_ao", -1)):
            # apex→offset relaxes the same motion back: the opposite sign
            f = arrays[phase][j]
            assert f.shape == (2, SIZE, SIZE)
            for point, comp, sign in MOVES[emotion]:
                mean = _disc_mean(f[COMPONENT[comp]], landmarks[point], 4)
                assert direction * sign * mean > 0.3, (flow, key, emotion, phase, point,
                                                        comp, mean)
            if emotion == "surprise":
                # brows move straight up: u there stays small next to v
                u = _disc_mean(f[0], landmarks[[19, 24]], 4)
                v = _disc_mean(f[1], landmarks[[19, 24]], 4)
                assert abs(u) < 0.35 * abs(v), (flow, phase, u, v)


@pytest.mark.parametrize("flow", FLOWS)
def test_stored_flow_has_the_demo_magnitude(flow_stores, flow, camera_scale):
    # synth.displacement_field scales each action so that its largest displacement is
    # exactly PEAK camera pixels; in the aligned frames that is PEAK × camera_scale. The
    # flow methods smooth the peak a little (observed 0.78-0.98 of it). Catches a flow
    # stored in the wrong units: computed on resized frames and not scaled back, or scaled
    # twice (a factor 2 or 1/2 is far outside the band).
    fs = FeatureStore.open(flow_stores[flow])
    _, arrays = fs.variant(fs.pick_variant(None)).read(["flow_oa"])
    expected = PEAK * camera_scale
    assert 0.8 < camera_scale < 1.3  # the demo face is about as large aligned as in camera
    for j, _key, emotion in _samples(fs):
        mag = np.hypot(*arrays["flow_oa"][j])
        top = float(np.percentile(mag, 99.5))
        assert 0.6 * expected < top < 1.25 * expected, (flow, emotion, top, expected)


# -- 2. the same sign and component through every view ----------------------------------------

VIEWS = ("ststnet", "htnet", "causalnet", "offapexnet", "dual_inception", "offtanet",
         "micro_attention", "srmcl")
# The landmarks that stay still in an emotion (far, > 3 sigma, from every moved one).
STILL = {"surprise": (48, 54), "happiness": (19, 24)}
HALF = 7  # half the side of a HTNet / CausalNet region tile, pixels of the 28-px image


def _planes(view: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """The u/v planes (and direction-map hues) of a view's input, by the view's documented
    channel layout (mefeat/views/__init__.py); 'u_oa' etc. are (N, S, S)."""
    if view in ("ststnet", "htnet"):  # official u_v_os image: BGR = (strain, v, u)
        return {"u_oa": x[:, 2], "v_oa": x[:, 1]}
    if view == "causalnet":  # 4 tiled images: uvs oa, uvs ao, dir oa, dir ao
        return {"u_oa": x[:, 0, 2], "v_oa": x[:, 0, 1], "u_ao": x[:, 1, 2], "v_ao": x[:, 1, 1],
                "hue_oa": _hue(x[:, 2]), "hue_ao": _hue(x[:, 3])}
    # offapexnet / dual_inception (u, v); offtanet / micro_attention (u, v, strain);
    # srmcl (u, v, magnitude)
    return {"u_oa": x[:, 0], "v_oa": x[:, 1]}


def _hue(bgr: np.ndarray) -> np.ndarray:
    """OpenCV hue (0..180) of (N, 3, S, S) BGR images held as floats 0..255."""
    return np.stack([cv2.cvtColor(np.ascontiguousarray(im.transpose(1, 2, 0)).astype(np.uint8),
                                  cv2.COLOR_BGR2HSV)[..., 0] for im in bgr]).astype(np.float64)


def _to_view(ids, lm: np.ndarray, view: str, size: int) -> np.ndarray:
    """Where aligned-frame landmarks ``ids`` land in the view's image of side ``size``.

    Resizing maps pixel centres: x' = (x + 0.5)·size/112 − 0.5. The tiled views (the
    papers' geometry, views/__init__.py ``tile_regions``) cut 14-px crops around the eye
    centres (landmarks 36-41, 42-47) and the mouth corners (48, 54), centres at
    landmarks·28/112 clamped to [7, 21] and truncated, laid out as [left eye | right eye]
    over [mouth left | mouth right]; a landmark goes into the tile of its own region.
    """
    pts = (lm[list(ids)].astype(np.float64) + 0.5) * size / SIZE - 0.5
    if view not in ("htnet", "causalnet"):
        return pts
    s = size / SIZE
    centres = np.stack([lm[36:42].mean(0) * s, lm[42:48].mean(0) * s, lm[48] * s, lm[54] * s])
    centres = np.clip(centres, HALF, size - HALF).astype(int)
    corner = {0: (0, 0), 1: (2 * HALF, 0), 2: (0, 2 * HALF), 3: (2 * HALF, 2 * HALF)}  # (x, y)
    out = []
    for p, i in zip(pts, [REGION[k] for k in ids], strict=True):
        local = p - (centres[i] - HALF)
        assert (local >= 0).all() and (local < 2 * HALF).all(), (p, i, centres[i])
        out.append(local + corner[i])
    return np.array(out)


# Tile of a landmark: 0 left eye (its brow), 1 right eye, 2 mouth left, 3 mouth right.
REGION = {17: 0, 19: 0, 21: 0, 22: 1, 24: 1, 26: 1, 48: 2, 54: 3}


def _contrast(plane: np.ndarray, lm, moving, still, view) -> float:
    """(mean at the moving landmarks − mean at the still ones) / the plane's range.

    Min-max scaling (u_v_os, SRMCL) keeps the order of values but not zero: a region's
    sign becomes its place relative to a motionless region, as a fraction of the range."""
    size = plane.shape[-1]
    r = max(1.5, 4 * size / SIZE)
    a = _disc_mean(plane, _to_view(moving, lm, view, size), r)
    b = _disc_mean(plane, _to_view(still, lm, view, size), r)
    return (a - b) / float(plane.max() - plane.min())


@pytest.fixture(scope="module")
def views(flow_stores):
    from mefeat.train import load_view

    return {(flow, view): load_view(flow_stores[flow], view)
            for flow in FLOWS for view in VIEWS}


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("flow", FLOWS)
def test_every_view_keeps_the_sign_and_component(views, flow_stores, flow, view):
    # Surprise: v at the brows below v at the (still) mouth corners onset→apex, above it
    # apex→offset. Happiness: u at the left mouth corner below u at the (still) brows,
    # at the right corner above it. Why a broken view fails:
    # - u and v swapped (a wrong BGR channel order, [1, 0] for [0, 1]): the happiness
    #   check reads v, which is negative at *both* corners (they move up), so the right
    #   corner comes out below the brows instead of above;
    # - apex→onset instead of onset→apex (or flow_ao read for flow_oa): every sign flips,
    #   min-max scaling included (minmax(−x) = 255 − minmax(x));
    # - regions tiled from the transposed (official=True) centres or a wrong tile order:
    #   the landmarks' discs land on other face parts and the contrasts vanish.
    fs = FeatureStore.open(flow_stores[flow])
    data = views[(flow, view)]
    planes = _planes(view, data.inputs[0])
    emotions = dict(zip(fs.column("key"), fs.column("emotion"), strict=True))
    phases = [("oa", +1)] + ([("ao", -1)] if "u_ao" in planes else [])
    pixels = view in ("offapexnet", "dual_inception", "offtanet", "micro_attention")
    checked = 0
    for i, key in enumerate(map(str, data.keys)):
        emotion = emotions[key]
        if emotion not in STILL:
            continue
        lm = fs.read_landmarks(key)
        for phase, direction in phases:
            if emotion == "surprise":
                checks = [("v", (19, 24), -1)]
            else:
                checks = [("u", (48,), -1), ("u", (54,), +1)]
            for comp, moving, sign in checks:
                plane = planes[f"{comp}_{phase}"][i]
                c = _contrast(plane, lm, moving, STILL[emotion], view)
                assert direction * sign * c > 0.25, (flow, view, key, emotion, phase, comp,
                                                      moving, c)
                if pixels:  # raw displacements, in pixels of the view's image: the sign
                    size = plane.shape[-1]
                    mean = _disc_mean(plane, _to_view(moving, lm, view, size),
                                      max(1.5, 4 * size / SIZE))
                    assert direction * sign * mean > 0.3 * size / SIZE, (view, mean)
                checked += 1
    assert checked == (1 + 2) * len(phases)  # one surprise and one happiness clip


@pytest.mark.parametrize("flow", FLOWS)
def test_causalnet_direction_maps_point_the_demo_way(views, flow_stores, flow):
    # θ = atan2(v_n, u_n) of the min-max normalised components (cartToPolar(u_n, v_n)),
    # hue = θ·90/π. Brows moving up have the smallest v (v_n ≈ 0), so θ ≈ 0 (hue ≈ 0:
    # red, as the supplement says of upward motion), while at the still mouth v_n is in
    # the middle of its range (hue larger); apex→offset reverses it. Happiness: the left
    # corner has the smallest u (u_n ≈ 0, θ ≈ 90°: hue large), the right corner the largest
    # (hue small). Catches the cartToPolar arguments in the other order (θ = atan2(u_n,
    # v_n): the brows get the largest hue) and the onset→apex / apex→offset direction
    # maps swapped in the stack. (A joint u/v normalisation keeps these orders: the
    # written-out test below catches that one.)
    fs = FeatureStore.open(flow_stores[flow])
    data = views[(flow, "causalnet")]
    planes = _planes("causalnet", data.inputs[0])
    emotions = dict(zip(fs.column("key"), fs.column("emotion"), strict=True))
    for i, key in enumerate(map(str, data.keys)):
        lm = fs.read_landmarks(key)

        def hue(phase, points, i=i, lm=lm):
            plane = planes[f"hue_{phase}"][i]
            return _disc_mean(plane, _to_view(points, lm, "causalnet", 28), 1.5)

        if emotions[key] == "surprise":
            assert hue("oa", (19, 24)) - hue("oa", (48, 54)) < -5, flow
            assert hue("ao", (19, 24)) - hue("ao", (48, 54)) > 5, flow
        elif emotions[key] == "happiness":
            assert hue("oa", (54,)) - hue("oa", (48,)) < -5, flow
            assert hue("ao", (48,)) - hue("ao", (54,)) < -5, flow


# -- 3. optical strain of linear fields ----------------------------------------------------


@pytest.mark.parametrize(("a", "b", "c", "d"), [
    (0.05, 0.0, 0.0, 0.0),     # stretch along x
    (0.0, 0.0, 0.0, -0.03),    # compression along y: needs v_y (OFF-TANet's u_y fails)
    (0.0, 0.1, 0.1, 0.0),      # pure shear: only the ½(u_y + v_x)² term
    (0.0, 0.08, -0.08, 0.0),   # pure rotation: no strain at all
    (0.02, 0.07, -0.03, 0.04),  # everything, b ≠ c
])
def test_optical_strain_of_linear_fields(a, b, c, d):
    # u = a·x + b·y, v = c·x + d·y: u_x = a, u_y = b, v_x = c, v_y = d everywhere, so the
    # strain magnitude sqrt(ε_xx² + ε_yy² + 2 ε_xy²) with ε_xy = ½(u_y + v_x) is
    # sqrt(a² + d² + ½(b + c)²). A non-square field so that x/y mix-ups show. Catches:
    # np.gradient's (d/dy, d/dx) order taken as (d/dx, d/dy), a shear weight of 1 or ¼
    # instead of ½ (pure shear gives 0.141 instead of 0.2 or 0.1), (u_y − v_x) for
    # (u_y + v_x) (rotation would strain), u_y in place of v_y (the OFF-TANet formula).
    from mefeat.flow import optical_strain

    h, w = 20, 33
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    flow = np.dstack([a * xx + b * yy, c * xx + d * yy]).astype(np.float32)
    expected = np.sqrt(a**2 + d**2 + 0.5 * (b + c) ** 2)
    strain = optical_strain(flow)
    assert strain.shape == (h, w)
    # np.gradient's one-sided edges are exact for linear fields too; the interior is
    # what the formula is about
    assert np.allclose(strain[1:-1, 1:-1], expected, rtol=1e-4, atol=1e-6), (
        strain[5, 5], expected)
    assert np.allclose(strain, expected, rtol=1e-4, atol=1e-6)


# -- 4. Algorithm 1's direction map written out ------------------------------------------------


def _algorithm_1(flow: np.ndarray) -> np.ndarray:
    """The CausalNet supplement's Algorithm 1 with OpenCV calls, with the angle of
    (u_n, v_n): what the official direction images hold (see the test on them below)."""
    u = flow[..., 0].astype(np.float32)
    v = flow[..., 1].astype(np.float32)
    u_n = (u - u.min()) / (u.max() - u.min())  # each component on its own
    v_n = (v - v.min()) / (v.max() - v.min())
    _, theta = cv2.cartToPolar(u_n, v_n)  # the horizontal component as x
    hsv = np.zeros(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = (theta * 180 / (2 * np.pi)).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _direction_test_flow() -> np.ndarray:
    # u in [-1, 1] varying along x, v in [-5, 5] varying along y (and a little along x):
    # the two ranges differ, so one min/max shared by u and v gives other hues
    h, w = 24, 40
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = np.sin(xx / 6.0) * np.cos(yy / 9.0)
    u = 2 * (u - u.min()) / (u.max() - u.min()) - 1
    v = 5 * np.cos(yy / 4.0 + xx / 17.0)
    v = 10 * (v - v.min()) / (v.max() - v.min()) - 5
    return np.dstack([u, v]).astype(np.float32)


def test_direction_map_is_algorithm_1_and_normalises_each_component_alone():
    from mefeat.flow import direction_map

    flow = _direction_test_flow()
    assert np.isclose(flow[..., 0].min(), -1) and np.isclose(flow[..., 1].max(), 5)
    expected = _algorithm_1(flow)
    got = direction_map(flow)
    assert got.shape == flow.shape[:2] + (3,) and got.dtype == np.uint8
    assert np.array_equal(got, expected)
    # The test can tell the tempting mistakes apart: one min/max over both components, and
    # cartToPolar(v, u) in the order Algorithm 1 prints, both give other maps on this flow.
    lo, hi = float(flow.min()), float(flow.max())
    joint = _algorithm_1_variant(flow, (flow - lo) / (hi - lo), swap=False)
    swapped = _algorithm_1_variant(flow, None, swap=True)
    assert (joint != expected).any(axis=2).mean() > 0.5
    assert (swapped != expected).any(axis=2).mean() > 0.5


def _algorithm_1_variant(flow, normalised, *, swap):
    u, v = flow[..., 0], flow[..., 1]
    if normalised is None:
        u_n, v_n = ((c - c.min()) / (c.max() - c.min()) for c in (u, v))
    else:
        u_n, v_n = normalised[..., 0], normalised[..., 1]
    x, y = (v_n, u_n) if swap else (u_n, v_n)
    _, theta = cv2.cartToPolar(np.ascontiguousarray(x, np.float32),
                               np.ascontiguousarray(y, np.float32))
    hsv = np.full(flow.shape[:2] + (3,), 255, np.uint8)
    hsv[..., 0] = (theta * 180 / (2 * np.pi)).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def test_direction_map_hue_of_known_angles():
    # u_n and v_n at the corners of their ranges give known angles: θ = atan2(v_n, u_n).
    # (u_n, v_n) = (0, 1): θ = 90° → hue 45; (1, 1): 45° → hue 22; (1, 0): 0 → hue 0 (red:
    # the smallest v, upward motion, is red as the supplement says).
    from mefeat.flow import direction_map

    u = np.array([[-1.0, 1.0, 1.0, 0.0]], np.float32)  # u_n = 0, 1, 1, 0.5
    v = np.array([[5.0, 5.0, -5.0, 0.0]], np.float32)  # v_n = 1, 1, 0, 0.5
    hsv = cv2.cvtColor(direction_map(np.dstack([u, v])), cv2.COLOR_BGR2HSV)
    assert hsv[0, :, 0].tolist() == [45, 22, 0, 22]
    assert (hsv[..., 1:] == 255).all()


def test_direction_maps_match_the_official_causalnet_images(shared_data):
    # The official CausalNet features hold, per sample, the onset→apex u_v_os image (X:
    # BGR = strain, v, u, each min-max scaled) and its direction map (X_2), and likewise
    # apex→offset (X_1, X_3). The direction map of X's own u and v must have the official
    # map's hues: a known answer from the authors' data, not from mefeat. (The official
    # maps were made at another resolution, so pixels differ by resampling; the argument
    # order of cartToPolar flips the hue order, correlation -0.99.)
    import csv as _csv

    from mefeat.flow import direction_map

    folder = shared_data / "features" / "cde28_causalnet"
    with (folder / "combined_3_class2_for_optical_flow.csv").open(encoding="utf-8-sig") as f:
        rows = list(_csv.DictReader(f))
    corr = []
    for r in rows[::4]:
        stem = f"{r['sub']}_{r['filename_o']}"
        for image, direction in (("", "_2"), ("_1", "_3")):
            x = cv2.imread(str(folder / f"{stem}{image} .png")).astype(np.float32)
            official = cv2.imread(str(folder / f"{stem}{direction} .png"))
            ours = direction_map(np.dstack([x[..., 2], x[..., 1]]))
            hues = [cv2.cvtColor(m, cv2.COLOR_BGR2HSV)[..., 0].astype(float).ravel()
                    for m in (ours, official)]
            if hues[0].std() and hues[1].std():
                corr.append(np.corrcoef(*hues)[0, 1])
    assert len(corr) > 150 and np.median(corr) > 0.95, np.median(corr)


def test_official_uv_views_hand_u_then_v(shared_data, tmp_path):
    # Off-ApexNet's and Dual-Inception's view of imported official images must hand the
    # model (u, v). The known answer is the authors' own direction map X_2, made from the
    # onset→apex u and v: Algorithm 1 (written out above) of the view's two channels has
    # its hues; of the channels swapped, the reverse order (correlation near -1).
    from mefeat.run.import_features import import_features
    from mefeat.train import load_view

    folder = shared_data / "features" / "cde28_causalnet"
    summary = import_features(folder, fmt="causalnet", store=tmp_path / "c.zarr")
    for view in ("offapexnet", "dual_inception"):
        data = load_view(tmp_path / "c.zarr", view, variant=summary.variant)
        uv = data.inputs[0]
        assert uv.shape == (442, 2, 28, 28)
        corr = []
        for i in range(0, 442, 4):
            sub, clip = data.keys[i].split("/")[1:]
            official = cv2.imread(str(folder / f"{sub}_{clip}_2 .png"))
            ours = _algorithm_1(uv[i].transpose(1, 2, 0))
            hues = [cv2.cvtColor(m, cv2.COLOR_BGR2HSV)[..., 0].astype(float).ravel()
                    for m in (ours, official)]
            if hues[0].std() and hues[1].std():
                corr.append(np.corrcoef(*hues)[0, 1])
        assert len(corr) > 75 and np.median(corr) > 0.95, (view, np.median(corr))


# -- 5. noisy key frames: one draw per run and key ---------------------------------------------


def _noisy_apex(key: str, n: int, gt: tuple[int, int, int], std: float, seed: int):
    """The README's rule, written out: errors rint(N(0, std²)) from
    default_rng([seed, crc32(key)]), only the apex moving, apex clipped into
    [onset + 1, offset − 1]."""
    e = np.rint(np.random.default_rng([seed, zlib.crc32(key.encode())]).normal(0, std, 3))
    onset, apex, offset = gt
    return onset, int(min(max(apex + int(e[1]), onset + 1), offset - 1)), offset


def test_noise_policy_draws_per_run_and_key():
    # Catches a seed ignored (every run the same draw), Python's salted hash() for crc32
    # (differs per process: not reproducible), a draw that depends on the order of the
    # samples (one shared generator), and a wrong clip range.
    from mefeat.keyframes import KeyFrames, Noise, parse_policy

    keys = [f"casme2/sub{s:02d}/EP0{c}_0{s}" for s in range(1, 4) for c in range(1, 6)]
    gt = KeyFrames(3, 15, 30)
    runs = {seed: [parse_policy(f"noise:10:{seed}").apply(k, 34, gt) for k in keys]
            for seed in (0, 1)}
    for seed, drawn in runs.items():
        assert [tuple(kf) for kf in drawn] == [_noisy_apex(k, 34, gt, 10, seed) for k in keys]
        # the same run and key again, in another order: the same key frames
        again = [Noise(10, seed).apply(k, 34, gt) for k in reversed(keys)]
        assert again[::-1] == drawn
    assert runs[0] != runs[1]
    assert sum(a != b for a, b in zip(runs[0], runs[1], strict=True)) >= len(keys) // 2


@pytest.fixture(scope="module")
def bench_store(tmp_path_factory):
    # two subjects (two LOSO folds), three clips each
    return demo_store(tmp_path_factory.mktemp("known-bench"), subjects=2, clips=3, size=SIZE)


@pytest.fixture(scope="module")
def bench_out(bench_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("known-bench-out") / "b"
    res = CliRunner().invoke(cli, ["bench", str(bench_store), "--models", "ststnet",
                                   "--conditions", "gt,std10", "--runs", "2", "--epochs", "1",
                                   "--no-tsne", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_bench_noisy_runs_use_their_own_draws(bench_store, bench_out):
    # Run r of a noisy condition draws with noise seed r. Fails if the bench used
    # noise:{std}:0 for every run: run 1 would name the seed-0 variant, whose key frames
    # are the seed-0 draws, not the seed-1 ones computed here from the README's rule.
    info = json.loads((bench_out / "bench.json").read_text())
    variants = info["variants"]
    assert variants["gt/run0"] == variants["gt/run1"] == "gt"
    assert variants["std10/run0"] != variants["std10/run1"]
    fs = FeatureStore.open(bench_store)
    t = fs.table()
    drawn = {}
    for run in (0, 1):
        idx, arrays = fs.variant(variants[f"std10/run{run}"]).read(["keyframes"])
        assert len(idx) == 6
        drawn[run] = arrays["keyframes"].tolist()
        expected = [list(_noisy_apex(str(t["key"][i]), int(t["n_frames"][i]),
                                     (int(t["onset"][i]), int(t["apex"][i]),
                                      int(t["offset"][i])), 10, run)) for i in idx]
        assert drawn[run] == expected, run
    assert drawn[0] != drawn[1]
    # and the ground truth variant holds the annotation itself
    idx, arrays = fs.variant("gt").read(["keyframes"])
    assert arrays["keyframes"].tolist() == [[int(t[k][i]) for k in ("onset", "apex", "offset")]
                                            for i in idx]


def test_sweep_bench_makes_one_row_per_value(bench_store, tmp_path):
    # The real check of test_bench.py's test_sweep_makes_one_row_per_value, which never
    # runs a sweep. Catches a sweep whose models are dropped when --models is absent (the
    # CLI passing None: every registered model instead), values collapsed into one model
    # (same tag), or the option not reaching the jobs.
    out = tmp_path / "sweep"
    res = CliRunner().invoke(cli, ["bench", str(bench_store), "--sweep",
                                   "ststnet.dropout=0.0,0.5", "--conditions", "gt", "--runs",
                                   "1", "--epochs", "1", "--no-tsne", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with (out / "table.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["ststnet[dropout=0.0]", "ststnet[dropout=0.5]"]
    assert all(r["gt_runs"] == "1" for r in rows)
    options = {json.dumps(json.loads(p.read_text())["options"], sort_keys=True)
               for p in (out / "jobs").rglob("*.json")}
    assert options == {'{"dropout": 0.0}', '{"dropout": 0.5}'}


# -- 6. metrics against scikit-learn -----------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_sklearn_when_every_class_occurs(seed):
    # MEGC's UF1/UAR are sklearn's macro F1/recall when every class is true and predicted.
    # Catches 1/(C−1) for 1/C (the supplement's typo), per-fold instead of pooled means,
    # F1 = TP/(TP+FP+FN), recall over predictions (precision) instead of truths.
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    from mefeat.metrics import metrics

    rng = np.random.default_rng(seed)
    c = int(rng.integers(3, 6))
    t = np.concatenate([np.arange(c), rng.integers(0, c, 120)])
    p = np.where(rng.random(t.size) < 0.4, t, rng.integers(0, c, t.size))
    p[: c] = np.roll(np.arange(c), 1)  # every class predicted too
    m = metrics(t, p, c)
    assert m["n"] == t.size
    assert m["uf1"] == pytest.approx(f1_score(t, p, average="macro"), abs=1e-12)
    assert m["uar"] == pytest.approx(recall_score(t, p, average="macro"), abs=1e-12)
    assert m["acc"] == pytest.approx(accuracy_score(t, p), abs=1e-12)
    assert m["f1_per_class"] == pytest.approx(list(f1_score(t, p, average=None)), abs=1e-12)


def test_metrics_with_absent_classes_follow_the_megc_rule_in_sklearn_terms():
    # The module doc's rule in sklearn terms: UF1 over the classes true or predicted, UAR
    # over the classes true. Catches a class absent from both counted with F1 = 0.
    from sklearn.metrics import f1_score, recall_score

    from mefeat.metrics import metrics

    t = np.array([0, 0, 1, 1, 1, 3, 3])
    p = np.array([0, 1, 1, 1, 2, 3, 0])  # class 2 predicted, never true; 4 never seen
    m = metrics(t, p, 5)
    assert m["uf1"] == pytest.approx(f1_score(t, p, labels=[0, 1, 2, 3], average="macro"))
    assert m["uar"] == pytest.approx(recall_score(t, p, labels=[0, 1, 3], average="macro"))


@pytest.mark.parametrize("seed", range(8))
def test_fold_score_is_sklearn_macro_with_default_labels(seed):
    # A fold (one held-out subject) often lacks classes. fold_score is documented as
    # sklearn's average="macro" with its default labels (those in truth or prediction), a
    # class predicted but never true counting 0. Catches labels=range(num_classes) (absent
    # classes averaged in as 0), classes only from the truth, and acc over the classes.
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    from mefeat.metrics import fold_score

    rng = np.random.default_rng(100 + seed)
    present = rng.choice(5, size=int(rng.integers(1, 4)), replace=False)
    t = rng.choice(present, size=int(rng.integers(3, 12)))
    p = np.where(rng.random(t.size) < 0.5, t, rng.integers(0, 5, t.size))
    assert len(np.union1d(t, p)) < 5  # some class absent from the fold
    kw = {"average": "macro", "zero_division": 0}
    assert fold_score("uf1", t, p, 5) == pytest.approx(f1_score(t, p, **kw), abs=1e-12)
    assert fold_score("uar", t, p, 5) == pytest.approx(recall_score(t, p, **kw), abs=1e-12)
    assert fold_score("acc", t, p, 5) == pytest.approx(accuracy_score(t, p), abs=1e-12)


# -- 7. the HDF5 export holds every array of the store ---------------------------------------


def test_hdf5_export_holds_every_array(bench_store, bench_out, tmp_path):
    # After the bench the store holds three variants (gt and two noisy ones). Catches an
    # array skipped by the export's walk (a nested group: the frames of every key), a
    # dtype changed (float16 flows, int32 key frames), strings mangled, a column dropped.
    import h5py

    out = tmp_path / "s.h5"
    res = CliRunner().invoke(cli, ["export", str(bench_store), "--format", "h5", "--out",
                                   str(out)])
    assert res.exit_code == 0, res.output
    fs = FeatureStore.open(bench_store)
    assert len(fs.variants()) == 3
    expected = {}
    for name, arr in store_arrays(bench_store).items():
        if name.startswith("frames/"):
            expected[f"{name}/frames"] = arr
        elif name.startswith("landmarks/"):
            expected[f"frames/{name.removeprefix('landmarks/')}/landmarks"] = arr
        elif name not in ("status", "error"):
            expected[f"features/{name}"] = arr
    for col, values in fs.table().items():
        expected[f"samples/{col}"] = values
    assert any(k.endswith("/flow_oa") for k in expected) and "samples/status" in expected

    with h5py.File(out, "r") as h5:
        found = {}

        def collect(name, obj):  # visititems stops at the first callback returning a value
            if isinstance(obj, h5py.Dataset):
                found[name] = obj[()]

        h5.visititems(collect)
        assert sorted(found) == sorted(expected)
        for name, want in expected.items():
            got = found[name]
            if want.dtype.kind in "OUT":
                got = [g.decode() if isinstance(g, bytes) else str(g) for g in got]
                assert got == [str(w) for w in want], name
            else:
                assert got.dtype == want.dtype, name
                assert np.array_equal(got, want), name

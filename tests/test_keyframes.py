"""Key-frame policies: the noise rule's guarantees (property-based), parsing and names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mefeat.errors import MefeatError, SampleError
from mefeat.keyframes import (
    KEY_NAMES,
    GroundTruth,
    KeyFrames,
    Noise,
    Spot,
    parse_policy,
    stable_hash,
)


@st.composite
def clips(draw) -> tuple[int, KeyFrames]:
    """A clip length n >= 3 and an annotation 0 <= onset < apex < offset < n."""
    n = draw(st.integers(3, 400))
    idx = sorted(draw(st.lists(st.integers(0, n - 1), min_size=3, max_size=3, unique=True)))
    return n, KeyFrames(*idx)


stds = st.floats(0.0, 200.0, allow_nan=False, allow_infinity=False)
seeds = st.integers(0, 2**32 - 1)
keys = st.text(min_size=1, max_size=40)
moves = st.sampled_from([("apex",), KEY_NAMES, ("onset", "offset"), ("offset",)])


@settings(max_examples=400, deadline=None)
@given(clip=clips(), std=stds, seed=seeds, key=keys, move=moves)
def test_noise_stays_in_clip_and_in_order(clip, std, seed, key, move):
    n, gt = clip
    kf = Noise(std, seed, move=move).apply(key, n, gt)
    assert isinstance(kf, KeyFrames)
    assert all(isinstance(i, int) for i in kf)
    assert 0 <= kf.onset < kf.apex < kf.offset < n
    # A key frame that does not move stays where it was annotated unless a moved one
    # pushes it (the documented rule: onset first, then offset, then apex).
    if "onset" not in move:
        assert kf.onset == gt.onset
    if "offset" not in move:
        assert kf.offset == max(gt.offset, kf.onset + 2)
    if "apex" not in move:
        assert kf.apex == min(max(gt.apex, kf.onset + 1), kf.offset - 1)
    if move == ("apex",):
        assert (kf.onset, kf.offset) == (gt.onset, gt.offset)


@settings(max_examples=200, deadline=None)
@given(clip=clips(), std=stds, seed=seeds, key=keys, move=moves)
def test_noise_is_reproducible(clip, std, seed, key, move):
    n, gt = clip
    first = Noise(std, seed, move=move).apply(key, n, gt)
    again = Noise(std, seed, move=move).apply(key, n, gt)
    reparsed = parse_policy(Noise(std, seed, move=move).spec)
    assert first == again
    assert reparsed == Noise(std, seed, move=move)
    assert reparsed.apply(key, n, gt) == first


@settings(max_examples=200, deadline=None)
@given(clip=clips(), seed=seeds, key=keys, move=moves)
def test_noise_with_zero_std_is_ground_truth(clip, seed, key, move):
    n, gt = clip
    assert Noise(0.0, seed, move=move).apply(key, n, gt) == gt


@settings(max_examples=200, deadline=None)
@given(clip=clips(), std=stds, seed=seeds, key=keys)
def test_noise_adds_the_drawn_error_when_nothing_needs_clipping(clip, std, seed, key):
    n, gt = clip
    pol = Noise(std, seed, move=KEY_NAMES)
    raw = KeyFrames(*(int(g + e) for g, e in zip(gt, pol.errors(key), strict=True)))
    if 0 <= raw.onset < raw.apex < raw.offset < n:
        assert pol.apply(key, n, gt) == raw


@settings(max_examples=200, deadline=None)
@given(std=stds, seed=seeds, key=keys)
def test_apex_error_is_the_same_whether_or_not_onset_and_offset_move(std, seed, key):
    apex_only = Noise(std, seed).errors(key)
    every = Noise(std, seed, move=KEY_NAMES).errors(key)
    assert apex_only[1] == every[1]
    assert apex_only[0] == apex_only[2] == 0


def test_noise_does_not_depend_on_sample_order():
    pol = Noise(10, 3, move=KEY_NAMES)
    items = [(f"casme2/sub{i:02d}/EP{i:02d}_01", 80, KeyFrames(10, 40, 70)) for i in range(30)]
    forward = {k: pol.apply(k, n, gt) for k, n, gt in items}
    backward = {k: pol.apply(k, n, gt) for k, n, gt in reversed(items)}
    assert forward == backward
    # ...and different samples do get different errors.
    assert len({kf.apex for kf in forward.values()}) > 5


def test_noise_error_distribution_matches_std():
    pol = Noise(10, 0)
    errs = np.array([pol.errors(f"k{i}")[1] for i in range(4000)], dtype=float)
    assert abs(errs.mean()) < 0.5
    assert 9.5 < errs.std() < 10.5
    # Other seeds give other draws.
    other = np.array([Noise(10, 1).errors(f"k{i}")[1] for i in range(200)])
    assert not np.array_equal(errs[:200], other)


def test_noise_known_answer_is_stable_across_processes():
    # CRC-32 (not Python's salted hash) seeds the draw: these numbers must never change,
    # or published noisy variants could not be re-made.
    assert stable_hash("casme2/sub01/EP02_01f") == 3187889671
    assert Noise(10, 0).errors("casme2/sub01/EP02_01f").tolist() == [0, 2, 0]
    assert Noise(10, 0, move=KEY_NAMES).errors("casme2/sub01/EP02_01f").tolist() == [-8, 2, -13]


def test_noise_clipping_rule_at_the_edges():
    # Huge errors pile up at the limits: onset <= n-3, offset >= onset+2, apex between.
    n = 10
    pol = Noise(1000, 0, move=KEY_NAMES)
    for i in range(50):
        key = f"s{i}"
        e_on, e_ap, e_off = pol.errors(key)
        kf = pol.apply(key, n, KeyFrames(2, 5, 8))
        onset = min(max(2 + e_on, 0), n - 3)
        offset = min(max(8 + e_off, onset + 2), n - 1)
        apex = min(max(5 + e_ap, onset + 1), offset - 1)
        assert kf == (onset, apex, offset)
    # The shortest clip leaves one answer.
    assert pol.apply("x", 3, KeyFrames(0, 1, 2)) == (0, 1, 2)


def test_apex_on_the_offset_is_a_valid_annotation():
    # Two MEGC 2019 clips are annotated so (CASME II sub12/EP09_06, sub25/EP18_04f).
    assert GroundTruth().apply("k", 10, KeyFrames(3, 5, 5)) == (3, 5, 5)
    assert GroundTruth().apply("k", 10, KeyFrames(3, 3, 5)) == (3, 3, 5)
    moved = Noise(5, 0).apply("k", 10, KeyFrames(3, 5, 5))
    assert moved.onset < moved.apex < moved.offset  # noisy key frames are strictly ordered
    with pytest.raises(SampleError, match="k2"):
        Noise(5, 0).apply("k2", 2, KeyFrames(0, 1, 1))  # two frames cannot hold three


@pytest.mark.parametrize("n, gt", [(2, (0, 1, 2)), (10, (3, 3, 3)), (10, (0, 5, 10)),
                                   (10, (-1, 2, 5)), (10, (6, 5, 8))])
def test_bad_annotation_is_a_sample_error(n, gt):
    for pol in (GroundTruth(), Noise(5, 0), Noise(5, 0, move=KEY_NAMES)):
        with pytest.raises(SampleError, match="casme2/s1/e1"):
            pol.apply("casme2/s1/e1", n, KeyFrames(*gt))


def test_ground_truth_is_unchanged():
    assert GroundTruth().apply("k", 20, KeyFrames(1, 7, 15)) == KeyFrames(1, 7, 15)
    assert GroundTruth().apply("k", 20, (1, 7, 15)) == (1, 7, 15)


@pytest.mark.parametrize(
    "spec, name, canonical",
    [
        ("gt", "gt", "gt"),
        ("noise:10:0", "noise-std10-s0", "noise:10:0"),
        ("noise:10:0:all", "noise-std10-s0-all", "noise:10:0:all"),
        ("noise:2.5:7", "noise-std2.5-s7", "noise:2.5:7"),
        ("noise:10.0:0:apex", "noise-std10-s0", "noise:10:0"),
        ("noise:5:1:offset+onset", "noise-std5-s1-onset-offset", "noise:5:1:onset+offset"),
        ("spot:flowpeak", "spot-flowpeak", "spot:flowpeak"),
        ("spot:featdiff", "spot-featdiff", "spot:featdiff"),
    ],
)
def test_parse_names_and_round_trip(spec, name, canonical):
    pol = parse_policy(spec)
    assert pol.name == name
    assert pol.spec == canonical
    assert parse_policy(pol.spec) == pol
    params = pol.params
    assert json.loads(json.dumps(params)) == params
    assert params["policy"] == spec.split(":")[0]


def test_parse_types():
    assert isinstance(parse_policy("gt"), GroundTruth)
    noise = parse_policy("noise:10:0:all")
    assert isinstance(noise, Noise)
    assert (noise.std, noise.seed, noise.move) == (10.0, 0, KEY_NAMES)
    assert parse_policy("spot:flowpeak") == Spot("flowpeak")


@pytest.mark.parametrize(
    "spec",
    ["", "GT:1", "noise", "noise:10", "noise:-1:0", "noise:nan:0", "noise:inf:0",
     "noise:a:0", "noise:10:-1", "noise:10:1.5", "noise:10:0:nose", "noise:10:0:all:x",
     "spot", "spot:xyz", "spot:flowpeak:1", "random"],
)
def test_parse_rejects_bad_specs(spec):
    with pytest.raises(MefeatError, match="policy"):
        parse_policy(spec)


def test_spot_policy_needs_frames():
    with pytest.raises(SampleError, match="aligned frames"):
        Spot("flowpeak").apply("k", 10, KeyFrames(1, 4, 8), None)
    frames = np.zeros((9, 32, 32), np.uint8)
    with pytest.raises(SampleError, match="9 frames"):
        Spot("flowpeak").apply("k", 10, KeyFrames(1, 4, 8), frames)


def test_spot_policy_needs_a_frame_between_onset_and_offset():
    # offset = onset + 1 passes the annotation check (the apex may sit on the onset) but
    # leaves nothing to spot: a SampleError naming the sample, so extract fails only it
    frames = np.zeros((10, 32, 32), np.uint8)
    for gt in (KeyFrames(3, 3, 4), KeyFrames(3, 4, 4)):
        with pytest.raises(SampleError) as err:
            Spot("featdiff").apply("casme2/sub01/EP01", 10, gt, frames)
        assert err.value.key == "casme2/sub01/EP01"
        assert str(err.value).startswith("casme2/sub01/EP01: policy spot:featdiff: onset=3 and "
                                         "offset=4 (indices) leave no frame between them")
        assert "left out of this variant" in err.value.reason and "use the gt" in err.value.reason
    assert Spot("featdiff").apply("k", 10, KeyFrames(3, 3, 5), frames).apex == 4


def test_spot_policy_keeps_onset_and_offset():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 64, 64), dtype=np.uint8)
    for method in ("flowpeak", "featdiff"):
        kf = Spot(method).apply("k", 12, KeyFrames(2, 5, 10), frames)
        assert (kf.onset, kf.offset) == (2, 10)
        assert 2 < kf.apex < 10

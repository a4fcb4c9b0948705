"""Official inputs: a flow variant at the OFF-TANet repository's image size is OpenCV's Dual
TV-L1 on the aligned frames resized with INTER_CUBIC, and ``--selection official`` trains
each model on its own official inputs, or says how to make them."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from _stores import demo_store
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.models import get_spec
from mefeat.run.extract import add_variants
from mefeat.run.train import official_inputs
from mefeat.store import FeatureStore
from mefeat.views.data import read_view


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return demo_store(tmp_path_factory.mktemp("profiles"), subjects=2, clips=2, size=112)


@pytest.fixture
def store_28(store, tmp_path):
    copy = tmp_path / "s28.zarr"
    shutil.copytree(store, copy)
    summary = add_variants(copy, keyframes=("gt",), flow_size=28, progress=False)
    assert summary.variants == ["gt-28px"] and not summary.failed
    return copy


def test_flow_size_is_opencv_tvl1_on_cubic_resized_frames(store_28):
    # OFF-TANet data.py: cv2.resize(..., (img_sz, img_sz), interpolation=INTER_CUBIC), then
    # DualTVL1OpticalFlow_create() with its defaults, onset to apex; raw displacements.
    fs = FeatureStore.open(store_28)
    var = fs.variant("gt-28px")
    idx, maps = var.read(["flow_oa", "keyframes"])
    keys = fs.column("key")
    assert maps["flow_oa"].shape[1:] == (2, 28, 28)
    for row, i in enumerate(idx):
        frames, _ = fs.read_frames(keys[i])
        onset, apex, _ = maps["keyframes"][row]
        small = [cv2.resize(frames[t], (28, 28), interpolation=cv2.INTER_CUBIC)
                 for t in (onset, apex)]
        want = cv2.optflow.DualTVL1OpticalFlow_create().calc(small[0], small[1], None)
        np.testing.assert_array_equal(maps["flow_oa"][row], want.transpose(2, 0, 1))


def _repository_strain(flow):
    # data.py __append_optical_strain, as written (uy where vy would be)
    ux = cv2.Sobel(flow[0], cv2.CV_32F, 1, 0)
    uy = cv2.Sobel(flow[0], cv2.CV_32F, 0, 1)
    vx = cv2.Sobel(flow[1], cv2.CV_32F, 1, 0)
    return np.sqrt(ux * ux + uy * uy + 0.5 * (vx + uy) * (vx + uy))


def test_offtanet_profile_is_the_repository_preprocessing(store):
    # OFF-TANet: img_sz 112, calculate_strain True; the store's faces are 112 px, so its own
    # gt variant holds the flow at that size.
    variant, options = official_inputs("offtanet", store)
    assert (variant, options) == ("gt", {"strain": "offtanet"})
    data = read_view(store, get_spec("offtanet").view, variant=variant, options=options)
    fs = FeatureStore.open(store)
    keyframes = dict(zip(fs.column("key"), fs.variant("gt").group["keyframes"][:], strict=True))
    assert len(data.keys) == 4
    for x, key in zip(data.inputs[0], data.keys, strict=True):
        frames, _ = fs.read_frames(key)
        onset, apex, _ = keyframes[key]
        flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(
            frames[onset], frames[apex], None).transpose(2, 0, 1)
        want = np.concatenate([flow, _repository_strain(flow)[None]])
        np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)


def test_micro_attention_wants_224_px_flows(store):
    with pytest.raises(Exception, match="no variant gt-224px"):
        official_inputs("micro_attention", store)


def _train(store, out, *extra):
    return CliRunner().invoke(cli, ["train", "--model", "dual_inception", "--store", str(store),
                                    "--selection", "official", "--epochs", "1",
                                    "--checkpoints", "none", "--out", str(out), *extra])


def test_official_selection_trains_on_the_official_inputs(store_28, tmp_path):
    res = _train(store_28, tmp_path / "run")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["data"]["variant"] == "gt-28px"


def test_given_variant_wins_over_the_profile(store_28, tmp_path):
    res = _train(store_28, tmp_path / "run", "--variant", "gt")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["data"]["variant"] == "gt"


def test_store_without_the_official_inputs_says_how_to_make_them(store, tmp_path):
    res = _train(store, tmp_path / "run")
    assert res.exit_code != 0
    line = res.output.strip()
    assert "\n" not in line and "has no variant gt-28px" in line
    assert f"mefeat extract --store {store} --keyframes gt --flow-size 28" in line
    assert not (tmp_path / "run").exists()

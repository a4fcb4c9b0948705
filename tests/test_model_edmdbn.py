"""Model-specific tests of EDMDBN (github.com/likemby/EDMDBN, ``long_short_fusenet.py``).

Parameter counts are those of the official ``LongShortActionFuseNet`` with the same flags.
The Swin branches are heavy on a CPU, so forward passes use one sample.
"""

from __future__ import annotations

import pytest
import torch

from mefeat.errors import ModelError
from mefeat.models import count_params
from mefeat.models.edmdbn import EDMDBN, SwinTransformer3D, _shift_mask, edmdbn


@pytest.fixture(scope="module")
def model() -> EDMDBN:
    torch.manual_seed(0)
    return edmdbn().eval()


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randn(1, 3, 10, 224, 224, generator=torch.Generator().manual_seed(0))


def test_parameter_count_matches_official_code(model):
    assert count_params(model) == 50_616_747
    # Branch sizes of the official model: vit_pos 6,508,550, each Swin 21,903,569.
    assert count_params(model.vit_pos) == 6_508_550
    assert count_params(model.long_action_model) == 21_903_569
    assert count_params(edmdbn(num_classes=5)) == 50_817_453


def test_official_keys_including_the_shared_patch_merging(model):
    sd = model.state_dict()
    for key in (
        "long_action_model.layers.0.blocks.1.attn.relative_position_bias_table",
        "long_action_model.layers.0.sa_atten.conv.weight",
        "long_action_model.layers.0.sa_atten.down.reduction.weight",
        "short_action_model.layers.1.downsample.norm.weight",
        "short_action_model.patch_embed.norm.weight",
        "vit_pos.to_Mask.0.weight",
        "head.1.weight",
    ):
        assert key in sd, key
    layer = model.long_action_model.layers[0]
    assert layer.sa_atten.down is layer.downsample
    assert "long_action_model.layers.2.sa_atten.down.reduction.weight" not in sd


def test_swin_branch_shapes():
    torch.manual_seed(0)
    swin = SwinTransformer3D().eval()
    with torch.no_grad():
        assert swin(torch.randn(1, 3, 1, 224, 224)).shape == (1, 512, 1, 14, 14)


def test_shift_mask_blocks_wrapped_regions():
    mask = _shift_mask((1, 14, 14), (1, 7, 7), (0, 3, 3), torch.device("cpu"))
    assert mask.shape == (4, 49, 49)
    assert torch.equal(mask[0], torch.zeros(49, 49))  # top-left window: no wrap
    assert (mask[3] == -100.0).any()
    assert torch.equal(mask[3], mask[3].t())


def test_forward_and_options_change_outputs(model, clip):
    with torch.no_grad():
        base = model(clip)
        feats = model.forward_features(clip)
    assert base.shape == (1, 3) and feats.shape == (1, 512 * 14 * 14)
    assert torch.isfinite(base).all()
    state = model.state_dict()
    for options in ({"accumulated_attention": False}, {"use_pos_vit": True}):
        other = edmdbn(**options).eval()
        other.load_state_dict(state)
        with torch.no_grad():
            assert not torch.allclose(other(clip), base), options


def test_single_branch_and_reset(clip):
    torch.manual_seed(0)
    entire_only = edmdbn(use_detail=False).eval()
    assert entire_only.short_action_model is None
    assert count_params(entire_only) == 50_616_747 - 21_903_569
    entire_only.reset_classifier(5)
    with torch.no_grad():
        assert entire_only(clip).shape == (1, 5)
    with pytest.raises(ModelError, match="both"):
        edmdbn(use_entire=False, use_detail=False)


def test_bad_input_raises(model):
    with pytest.raises(ModelError, match="num_frames"):
        model(torch.zeros(1, 3, 224, 224))

"""Model-specific tests of the OFF-TANet repository's models.

Off-ApexNet, Dual-Inception, Micro-attention and OFF-TANet (with its ablations), as
re-implemented from github.com/ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet. The
parameter counts of the ablations are those of the official code (counted by running it).
"""

from __future__ import annotations

import math

import pytest
import torch

from mefeat.errors import ModelError
from mefeat.models import count_params, create_model, get_spec
from mefeat.models.micro_attention import MABlock
from mefeat.models.offtanet import NET_TYPES, SelfAttention
from mefeat.recipes import StepLR

# name -> (input shape without batch, feature width, official 3-class parameter count)
FAMILY = {
    "offapexnet": ((2, 28, 28), 1024, 2_664_475),
    "dual_inception": ((2, 28, 28), 1024, 6_449_867),
    "micro_attention": ((3, 224, 224), 4096, 53_384_195),
    "offtanet": ((3, 112, 112), 64, 59_403),
}

# Parameter counts of OffTANet(net_type=...) in the official code.
OFFTANET_ABLATION_PARAMS = {
    "ta": 59_403,
    "sa": 57_589,
    "cbam": 56_967,
    "res": 50_353,
    "bot": 48_625,
}


# train_arg.py of ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet (master): optimizer (name,
# lr, momentum, weight decay), epochs, evaluation every N epochs, batch size, schedule.
OFFICIAL_RECIPES = {
    "offapexnet": (("adam", 1e-4, 0.0, 0.0), 3000, 200, 64, None),  # L52-55
    "dual_inception": (("adam", 1e-3, 0.0, 0.0), 501, 20, 64, None),  # L42-45
    "micro_attention": (("sgd", 1e-3, 0.9, 5e-4), 51, 10, 10, StepLR(10, 0.1)),  # L83-89
    "offtanet": (("adam", 1e-3, 0.0, 0.0), 201, 20, 64, StepLR(60, 0.3)),  # L20-32
}


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_spec_matches_official(name: str) -> None:
    shape, _, params = FAMILY[name]
    spec = get_spec(name)
    assert spec.input_shapes == (shape,)
    assert spec.params == params
    r = spec.recipe
    assert r.loss == "cross_entropy" and r.shuffle  # train.py:22, :27
    optimizer, epochs, every, batch, schedule = OFFICIAL_RECIPES[name]
    assert (r.optimizer.name, r.optimizer.lr, r.optimizer.momentum,
            r.optimizer.weight_decay) == optimizer
    assert (r.epochs, r.official.every, r.batch_size) == (epochs, every, batch)
    assert r.schedule == schedule
    assert (r.official.kind, r.official.metric, r.official.ties) == ("all-folds", "uar",
                                                                        "set-order")


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_features_head_and_reset_classifier(name: str) -> None:
    shape, width, params = FAMILY[name]
    torch.manual_seed(0)
    model = create_model(name).eval()
    assert model.num_features == width
    x = torch.randn(2, *shape)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (2, width)
    assert logits.shape == (2, 3)
    torch.testing.assert_close(model.forward_head(features), logits, rtol=0, atol=0)

    model.reset_classifier(5)
    assert model.num_classes == 5
    assert count_params(model) == params + 2 * (width + 1)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
        # The backbone is untouched by a new head.
        torch.testing.assert_close(model.forward_features(x), features, rtol=0, atol=0)
    with pytest.raises(ModelError):
        model.reset_classifier(0)


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_wrong_input_shape_names_expected_shape(name: str) -> None:
    shape, _, _ = FAMILY[name]
    model = create_model(name)
    bad = torch.zeros(1, shape[0] + 1, *shape[1:])
    with pytest.raises(ModelError, match=r"expects input of shape"):
        model(bad)


@pytest.mark.parametrize("net_type", NET_TYPES)
def test_offtanet_ablations_match_official_counts(net_type: str) -> None:
    model = create_model("offtanet", net_type=net_type).eval()
    assert count_params(model) == OFFTANET_ABLATION_PARAMS[net_type]
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_offtanet_rejects_unknown_net_type() -> None:
    with pytest.raises(ModelError, match="net_type"):
        create_model("offtanet", net_type="triplet")


def test_offtanet_state_dict_uses_official_names() -> None:
    keys = set(create_model("offtanet").state_dict())
    # 88 entries in the official LOSO1_60epoch.pth; the position table is not saved.
    assert len(keys) == 88
    assert {
        "conv1.2.running_var",
        "eres.ca.fc1.weight",
        "eres.spa.conv1.weight",
        "eres.sa.sa_blocks.3.w_v.bias",
        "dense.6.weight",
    } <= keys
    assert not any("pos_code" in k for k in keys)


def test_position_table_is_official_formula() -> None:
    head = SelfAttention(in_c=4, out_c=2, fm_sz=14)
    table = head.pos_code
    assert table.shape == (14, 14)
    s0, s1, s3 = math.sin(1.0), math.cos(1.0), math.cos(1 / 10000 ** (1 / 14))
    assert table[0, 0].item() == pytest.approx(2 * s0)
    assert table[0, 1].item() == pytest.approx(s0 + s1)
    assert table[3, 1].item() == pytest.approx(s3 + s1)
    torch.testing.assert_close(table, table.t())


def test_offtanet_img_size_option() -> None:
    model = create_model("offtanet", img_size=64).eval()
    assert model.eres.sa.sa_blocks[0].pos_code.shape == (8, 8)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    with pytest.raises(ModelError, match="multiple of 16"):
        create_model("offtanet", img_size=100)


@pytest.mark.parametrize("name", ["offapexnet", "dual_inception"])
def test_two_stream_models_route_u_and_v_to_their_own_stream(name: str) -> None:
    model = create_model(name).eval()
    first, second = (model.cnn1, model.cnn2) if name == "offapexnet" else (model.icpt1, model.icpt2)
    torch.manual_seed(0)
    x = torch.randn(3, 2, 28, 28)
    with torch.no_grad():
        by_hand = model.dense[:-1](
            torch.cat((first(x[:, :1]).flatten(1), second(x[:, 1:]).flatten(1)), dim=1)
        )
        torch.testing.assert_close(model.forward_features(x), by_hand, rtol=0, atol=0)
        # The streams are not interchangeable: swapping u and v changes the features.
        assert not torch.allclose(model.forward_features(x.flip(1)), by_hand)


@pytest.mark.parametrize(
    "name,size", [("offapexnet", 32), ("dual_inception", 16), ("micro_attention", 64)]
)
def test_img_size_option(name: str, size: int) -> None:
    channels = FAMILY[name][0][0]
    model = create_model(name, img_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, size, size)).shape == (2, 3)
    with pytest.raises(ModelError, match="multiple of"):
        create_model(name, img_size=size + 2)


def test_mablock_attention_is_a_spatial_softmax() -> None:
    torch.manual_seed(0)
    block = MABlock(4, 8).eval()
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        out = block(x)
        y = block.convl_2(block.convl_1(x)) + block.convm(x)
        ratio = (out / y - 1.0)[:, 0]  # the attention map, shared by every channel
    assert out.shape == (2, 8, 6, 6)
    torch.testing.assert_close(ratio.sum(dim=(1, 2)), torch.ones(2), rtol=1e-4, atol=1e-4)
    assert (ratio > 0).all()

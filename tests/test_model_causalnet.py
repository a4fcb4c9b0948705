"""Model-specific tests of CausalNet (github.com/tony19980810/CausalNet, ``Models.py``).

The parameter counts are those of the official code, counted by running it with the same
arguments (the CAB length by swapping in an official ``CausalAttentionBlock`` of that depth).
Full-size models are built on the meta device, where only their structure is checked; the
forward tests use a small configuration so that they stay fast on a CPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from mefeat.errors import ModelError
from mefeat.models import count_params, create_model, get_spec
from mefeat.models.causalnet import (
    CausalAttentionBlock,
    PositionalCrossAttention,
    region_adjacency,
)

# (depths, block_length) -> parameter count of the official CausalNet(...) (3 classes).
OFFICIAL_PARAMS = {
    ((3, 3, 9), 1): 276_590_089,
    ((3, 3, 9), 2): 277_905_673,
    ((3, 3, 9), 4): 280_536_841,
    ((3, 3, 9), 6): 283_168_009,
    ((2, 2, 7), 1): 216_835_081,
    ((3, 2, 10), 1): 296_239_369,
}

# dim 32 -> encoder widths 32, 64, 128 -> four tokens of 32 channels (8 heads of 4).
SMALL = {"depths": (1, 1, 1), "dim": 32, "heads": 2}


def _small_input(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 4, 3, 28, 28) * 255


@pytest.mark.parametrize("key", list(OFFICIAL_PARAMS), ids=str)
@pytest.mark.parametrize("cross_attention", ["positional", "plain"])
def test_parameter_count_matches_official_code(key, cross_attention):
    depths, block_length = key
    with torch.device("meta"):
        model = create_model(
            "causalnet", depths=depths, block_length=block_length, cross_attention=cross_attention
        )
    assert count_params(model) == OFFICIAL_PARAMS[key]


def test_spec_is_the_official_configuration():
    spec = get_spec("causalnet")
    assert spec.params == 276_590_089
    assert spec.options["depths"] == (3, 3, 9)
    assert spec.options["gamma"] == 0.5
    assert spec.options["block_length"] == 1
    assert spec.options["cross_attention"] == "positional"
    assert spec.input_shapes == ((4, 3, 28, 28),)
    r = spec.recipe  # main_train.py:135-143, :277, :347, :356
    assert (r.optimizer.name, r.optimizer.lr, r.epochs, r.batch_size, r.shuffle, r.seed) == (
        "adam", 5e-5, 200, 1024, False, 2025)
    assert (r.official.kind, r.official.metric, r.official.ties, r.official.stop) == (
        "per-fold", "acc", "earliest", (">=", 1.0))


def test_official_parameter_names_and_structure():
    with torch.device("meta"):
        model = create_model("causalnet")
    keys = model.state_dict().keys()
    for key in (
        "to_patch_embedding.1.weight",
        "to_patch_embedding1.1.bias",
        "layers.0.0.pos_emb",
        "layers.2.0.layers.8.1.fn.net.3.bias",
        "layers1.1.1.0.weight",
        "CrossAttention.layers.8.1.P_matrix",
        "CrossAttention.layers.0.1.to_kv.weight",
        "cab.layers.0.1.temp_to_kv.weight",
        "cab.layers.0.3.to_v.bias",
        "mlp_head.0.weight",
        "mlp_head.1.weight",
    ):
        assert key in keys
    assert len(keys) == 514
    # The CMPLM depth is the last level's depth (official quirk), the CAB has one layer.
    assert len(model.CrossAttention.layers) == 9
    assert len(model.cab.layers) == 1
    assert model.mlp_head[0].in_features == 3 * 4 * 256


def test_adjacency_mask_values():
    mask, penalty = region_adjacency(0.5)
    # Grid 0=(0,0) 1=(0,1) 2=(1,0) 3=(1,1): only the diagonal pairs are not adjacent.
    expected = torch.tensor(
        [[1, 1, 1, 0], [1, 1, 0, 1], [1, 0, 1, 1], [0, 1, 1, 1]], dtype=torch.float32
    )
    torch.testing.assert_close(mask, expected, rtol=0, atol=0)
    assert torch.equal(mask, mask.T)
    assert torch.equal(torch.diagonal(mask), torch.ones(4))
    assert mask.dtype == penalty.dtype == torch.float32


@pytest.mark.parametrize("gamma", [0.3, 0.4, 0.5])
def test_distance_penalty_values(gamma):
    mask, penalty = region_adjacency(gamma)
    # Penalty only where the mask is zero; -(j + 1)·gamma with j the key (column) index.
    assert torch.equal(penalty != 0, mask == 0)
    for i in range(4):
        for j in range(4):
            want = -(j + 1) * gamma if mask[i, j] == 0 else 0.0
            assert penalty[i, j].item() == pytest.approx(want, abs=1e-6)
    assert penalty[0, 3].item() == pytest.approx(-4 * gamma)
    assert penalty[3, 0].item() == pytest.approx(-gamma)
    assert (penalty <= 0).all()


def test_modules_hold_the_adjacency_buffers():
    model = create_model("causalnet", **SMALL, gamma=0.3)
    mask, penalty = region_adjacency(0.3)
    attn = model.CrossAttention.layers[0][1]
    stca = model.cab.layers[0][1]
    for module in (attn, stca):
        assert torch.equal(module.M_mask, mask)
        assert torch.equal(module.P_matrix, penalty)


def test_positional_attention_ignores_non_adjacent_regions():
    torch.manual_seed(0)
    x, context = torch.randn(2, 4, 16), torch.randn(2, 4, 16)
    moved = context.clone()
    moved[:, 3] += 5.0  # region 3 is not adjacent to region 0
    positional = PositionalCrossAttention(16, heads=4, gamma=0.5).eval()
    plain = PositionalCrossAttention(16, heads=4, gamma=0.5, positional=False).eval()
    plain.load_state_dict(positional.state_dict())
    with torch.no_grad():
        out, out_moved = positional(x, context), positional(x, moved)
        torch.testing.assert_close(out[:, 0], out_moved[:, 0])
        assert not torch.allclose(out[:, 1], out_moved[:, 1])  # region 1 neighbours region 3
        assert not torch.allclose(plain(x, context)[:, 0], plain(x, moved)[:, 0])


def test_positional_weights_follow_mask_and_penalty():
    attn = PositionalCrossAttention(8, heads=1, gamma=0.5)
    logits = torch.zeros(1, 1, 4, 4)
    weights = attn._masked_softmax(logits)
    # Row 0: three adjacent keys with logit 0 and one masked key with logit -(3+1)·0.5.
    denom = 3 + math.exp(-2.0)
    torch.testing.assert_close(weights[0, 0, 0], torch.tensor([1, 1, 1, 0]) / denom)
    assert (weights[0, 0][region_adjacency(0.5)[0] == 0] == 0).all()
    assert (weights.sum(-1) < 1).all()  # the penalty enlarges the denominator only


def test_plain_cross_attention_is_supplement_equation_2():
    torch.manual_seed(0)
    attn = PositionalCrossAttention(12, heads=3, positional=False).eval()
    x1, x2 = torch.randn(2, 4, 12), torch.randn(2, 4, 12)
    q = attn.to_q(x1)
    k, v = attn.to_kv(x2).chunk(2, dim=-1)
    heads = []
    for h in range(3):
        sl = slice(4 * h, 4 * (h + 1))
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(12), dim=-1)
        heads.append(w @ v[..., sl])
    expected = attn.to_out(torch.cat(heads, dim=-1))
    with torch.no_grad():
        torch.testing.assert_close(attn(x1, x2), expected)


def test_causal_attention_block_is_symmetric_in_time_for_equal_phases():
    torch.manual_seed(0)
    cab = CausalAttentionBlock(16, depth=2, heads=4, mlp_mult=2, gamma=0.5).eval()
    x = torch.randn(3, 4, 16)
    with torch.no_grad():
        out = cab(x, x)
        assert out.shape == (3, 3, 4, 16)
        # Forward and backward passes see the same pair, so their outputs coincide.
        torch.testing.assert_close(out[:, 1], out[:, 2])
        other = cab(x, torch.randn(3, 4, 16))
    assert not torch.allclose(other[:, 1], other[:, 2])


@pytest.mark.parametrize("block_length", [1, 2, 4, 6])
@pytest.mark.parametrize("cross_attention", ["positional", "plain"])
def test_ablations_forward_backward(block_length, cross_attention):
    torch.manual_seed(0)
    model = create_model(
        "causalnet", **SMALL, block_length=block_length, cross_attention=cross_attention
    )
    assert len(model.cab.layers) == block_length
    assert model.CrossAttention.layers[0][1].positional == (cross_attention == "positional")
    x = _small_input()
    tokens = model.forward_tokens(x)
    assert tokens.shape == (2, 3, 4, 32)
    features = model.forward_features(x)
    assert features.shape == (2, model.num_features) == (2, 2048)
    logits = model(x)
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    for name in ("to_patch_embedding.1.weight", "to_patch_embedding1.1.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0
    assert model.cab.layers[-1][3].to_q.weight.grad is not None


def test_plain_and_positional_differ_with_same_weights():
    torch.manual_seed(0)
    positional = create_model("causalnet", **SMALL).eval()
    plain = create_model("causalnet", **SMALL, cross_attention="plain").eval()
    plain.load_state_dict(positional.state_dict())
    x = _small_input()
    with torch.no_grad():
        assert not torch.allclose(positional(x), plain(x))


def test_flow_encoder_is_shared_and_direction_encoder_separate():
    model = create_model("causalnet", **SMALL).eval()
    seen: dict[str, list[float]] = {"flow": [], "direction": []}

    def record(kind):
        # Record the first pixel of every image each embedding sees, to know which it got.
        return lambda module, args: seen[kind].extend(args[0][:, 0, 0, 0].tolist())

    model.to_patch_embedding.register_forward_pre_hook(record("flow"))
    model.to_patch_embedding1.register_forward_pre_hook(record("direction"))
    x = torch.zeros(1, 4, 3, 28, 28)
    for i in range(4):
        x[:, i, 0, 0, 0] = i
    with torch.no_grad():
        model(x)
    assert seen == {"flow": [0.0, 1.0], "direction": [2.0, 3.0]}


def test_forward_is_head_of_features_in_eval():
    torch.manual_seed(0)
    model = create_model("causalnet", **SMALL).eval()
    x = _small_input()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))


def test_reset_classifier():
    model = create_model("causalnet", **SMALL)
    model.reset_classifier(5)
    assert model(_small_input()).shape == (2, 5)
    assert model.mlp_head[1].out_features == 5


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"cross_attention": "sparse"}, "cross_attention"),
        ({"block_length": 0}, "block_length"),
        ({"depths": (1, 1)}, "token map"),
        ({"depths": (1, 0, 1)}, "depth"),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(ModelError, match=match):
        create_model("causalnet", **{**SMALL, **options})


def test_wrong_input_shape_raises():
    model = create_model("causalnet", **SMALL)
    with pytest.raises(ModelError, match="4, 3, H, W"):
        model(torch.rand(2, 3, 28, 28))


@pytest.mark.slow
def test_full_model_forward_on_cpu():
    # The official configuration (276.6 M parameters, ~1.1 GB in float32).
    torch.manual_seed(2025)
    model = create_model("causalnet").eval()
    assert count_params(model) == 276_590_089
    with torch.no_grad():
        features = model.forward_features(_small_input(2))
        logits = model.forward_head(features)
    assert features.shape == (2, 2048)
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()

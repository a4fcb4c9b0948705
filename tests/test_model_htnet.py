"""Model-specific tests of HTNet (github.com/wangzhifengharrison/HTNet, ``Model.py``).

The parameter counts of the ablations are those of the official code (counted by running
it with the same arguments). The full model is built on the meta device where only its
structure is checked, so these tests stay fast.
"""

from __future__ import annotations

import pytest
import torch

from mefeat.errors import ModelError
from mefeat.models import count_params, create_model, get_spec
from mefeat.models.nest import Attention, PatchToChannels
from mefeat.models.nest import from_blocks as _from_blocks
from mefeat.models.nest import to_blocks as _to_blocks

# builder options -> parameter count of the official HTNet(...) with the same settings.
OFFICIAL_PARAMS = {
    (("depths", (2, 2, 10)),): 139_582_982,
    (("depths", (2, 2, 8)),): 114_429_446,
    (("depths", (1, 1, 1)), ("dim", 32), ("heads", 2)): 358_406,
    (("depths", (2, 2, 10)), ("dim", 96), ("heads", 6)): 19_692_102,
    (("depths", (2, 4)), ("dim", 32), ("heads", 2)): 248_075,
}

SMALL = {"depths": (1, 1, 1), "dim": 32, "heads": 2}


@pytest.mark.parametrize("options", list(OFFICIAL_PARAMS), ids=str)
def test_parameter_count_matches_official_code(options):
    with torch.device("meta"):
        model = create_model("htnet", **dict(options))
    assert count_params(model) == OFFICIAL_PARAMS[options]


def test_spec_is_the_official_configuration():
    spec = get_spec("htnet")
    assert spec.params == 139_582_982
    assert spec.options["depths"] == (2, 2, 10)
    assert spec.input_shapes == ((3, 28, 28),)
    r = spec.recipe  # main_HTNet.py:162-164, :240, :244, :295
    assert (r.optimizer.name, r.optimizer.lr, r.epochs, r.batch_size, r.shuffle) == (
        "adam", 5e-5, 800, 256, False)
    assert (r.official.kind, r.official.metric, r.official.ties) == ("per-fold", "acc",
                                                                        "latest")


def test_official_parameter_names():
    with torch.device("meta"):
        keys = create_model("htnet").state_dict().keys()
    for key in (
        "to_patch_embedding.1.weight",
        "layers.0.0.pos_emb",
        "layers.0.0.layers.1.0.fn.to_qkv.weight",
        "layers.0.0.layers.1.1.fn.net.3.bias",
        "layers.0.1.1.g",
        "layers.2.0.layers.9.1.norm.b",
        "mlp_head.0.g",
        "mlp_head.2.weight",
    ):
        assert key in keys
    assert len(keys) == 171


def test_inner_dim_quirk_of_official_attention():
    # dim 256 with 3 heads: heads of 85 channels, 255 inner channels, as in Model.py.
    attn = Attention(256, heads=3)
    assert attn.to_qkv.weight.shape == (765, 256, 1, 1)
    assert attn.to_out[0].weight.shape == (256, 255, 1, 1)


def test_attention_matches_naive_per_head_loop():
    torch.manual_seed(0)
    attn = Attention(12, heads=3).eval()
    x = torch.randn(2, 12, 2, 3)
    q, k, v = attn.to_qkv(x).flatten(2).chunk(3, dim=1)  # (B, 12, 6) each
    heads = []
    for h in range(3):
        qh, kh, vh = (t[:, h * 4 : (h + 1) * 4].transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(qh @ kh.transpose(1, 2) / 2.0, dim=-1)  # scale 4**-0.5
        heads.append((weights @ vh).transpose(1, 2))
    expected = attn.to_out(torch.cat(heads, dim=1).reshape(2, 12, 2, 3))
    torch.testing.assert_close(attn(x), expected)


def test_patch_channel_order_is_row_col_channel():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = PatchToChannels(2)(x)
    assert out.shape == (2, 12, 2, 2)
    # channel index (p1 * p + p2) * C + c  <->  pixel (h * p + p1, w * p + p2) of channel c
    for p1 in range(2):
        for p2 in range(2):
            for c in range(3):
                torch.testing.assert_close(
                    out[:, (p1 * 2 + p2) * 3 + c], x[:, c, p1::2, p2::2], rtol=0, atol=0
                )


def test_blocks_round_trip_and_layout():
    x = torch.randn(2, 5, 4, 6)
    blocks = _to_blocks(x, 2)
    assert blocks.shape == (8, 5, 2, 3)
    torch.testing.assert_close(blocks[1], x[0, :, :2, 3:])  # sample 0, block row 0, col 1
    torch.testing.assert_close(blocks[6], x[1, :, 2:, :3])  # sample 1, block row 1, col 0
    torch.testing.assert_close(_from_blocks(blocks, 2), x)


@pytest.mark.parametrize(
    "options", [SMALL, {"depths": (2, 4), "dim": 32, "heads": 2}, {**SMALL, "dropout": 0.1}]
)
def test_ablations_forward_backward(options):
    torch.manual_seed(0)
    model = create_model("htnet", **options)
    x = torch.rand(3, 3, 28, 28) * 255
    features = model.forward_features(x)
    assert features.shape == (3, model.num_features)
    logits = model(x)
    assert logits.shape == (3, 3)
    logits.sum().backward()
    assert model.to_patch_embedding[1].weight.grad is not None
    assert torch.isfinite(logits).all()


def test_forward_is_head_of_features_in_eval():
    torch.manual_seed(0)
    model = create_model("htnet", **SMALL).eval()
    x = torch.rand(2, 3, 28, 28) * 255
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))


def test_reset_classifier():
    model = create_model("htnet", **SMALL)
    model.reset_classifier(5)
    assert model(torch.rand(2, 3, 28, 28)).shape == (2, 5)
    assert model.mlp_head[2].out_features == 5


def test_unknown_option_is_refused():
    with pytest.raises(ModelError, match="depth"):
        create_model("htnet", depth=(1, 1, 1))


@pytest.mark.parametrize(("name", "shape"), [("htnet", (3, 28, 28)),
                                             ("causalnet", (4, 3, 28, 28))])
def test_nest_rewritten_layers_are_the_official_layers(name, shape):
    """NesT's convolutions as matrix products (GemmConv2d), its channel layer norm as
    F.layer_norm and its single-position attention as the value projection compute the
    official layers' function to float rounding: logits and every gradient (the official
    configurations, float32) within 1e-5 of the largest logit and gradient, against the same
    model inside ``official_formulation()``."""
    from mefeat.models.nest import official_formulation

    torch.manual_seed(0)
    model = create_model(name).train()
    x = torch.rand(4, *shape) * 255
    y = torch.tensor([0, 1, 2, 1])

    def run():
        model.zero_grad()
        logits = model(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    with official_formulation():
        official_logits, official_grads = run()
    logits, grads = run()
    scale = official_logits.abs().max()
    torch.testing.assert_close(logits, official_logits, rtol=0, atol=1e-5 * scale)
    assert not torch.equal(logits, official_logits)  # the rewritten layers did run
    g_scale = max(g.abs().max() for g in official_grads)
    for a, b in zip(grads, official_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * g_scale)


@pytest.mark.parametrize("switch", ["layer_norm", "attention"])
def test_each_rewritten_nest_layer_matches_its_official_ops(switch):
    """Each rewrite alone: the fused layer norm equals the official seven ops on maps of one
    and of 2×2 positions, and single-position attention equals softmax attention (whose
    query and key gradients are exactly zero), to float rounding."""
    from mefeat.models.nest import Attention, ChannelLayerNorm

    torch.manual_seed(0)
    for hw in (1, 2) if switch == "layer_norm" else (1,):  # attention's rewrite: one position
        x = (torch.randn(6, 24, hw, hw) * 3 + 1).requires_grad_()
        if switch == "layer_norm":
            layer, cls, flag = ChannelLayerNorm(24), ChannelLayerNorm, "fused"
            with torch.no_grad():
                layer.g.uniform_(0.5, 1.5)
                layer.b.normal_()
        else:
            layer, cls, flag = Attention(24, heads=3), Attention, "single_position_shortcut"
        outs = {}
        for on in (False, True):
            setattr(cls, flag, on)
            try:
                layer.zero_grad()
                x.grad = None
                out = layer(x)
                (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
                outs[on] = (out.detach(), x.grad.clone(),
                            [p.grad.clone() for p in layer.parameters()])
            finally:
                setattr(cls, flag, True)
        (o_ref, gx_ref, gp_ref), (o, gx, gp) = outs[False], outs[True]
        torch.testing.assert_close(o, o_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-5)
        for a, b in zip(gp, gp_ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        if switch == "attention":
            qk_rows = 2 * (layer.to_qkv.out_channels // 3)
            assert torch.count_nonzero(gp_ref[0][:qk_rows]) == 0  # softmax over one key


def test_tap_layout_of_a_two_by_two_map():
    """Output position p sees input q through tap 3·(q_row - p_row + 1) + (q_col - p_col + 1):
    on a 2×2 map (positions 0 1 / 2 3) the top-left output sees the bottom-right input
    through the kernel's bottom-right tap (8), the bottom-right output the top-left input
    through its top-left tap (0), each output itself through the centre (4)."""
    from mefeat.models.nest import tap_layout

    layout = tap_layout(2, 2)
    assert layout.shape == (9, 16)
    assert torch.equal(layout.sum(0), torch.ones(16))  # every pair within reach: one tap
    assert layout[8, 0 * 4 + 3] == 1 and layout[0, 3 * 4 + 0] == 1
    assert layout[5, 0 * 4 + 1] == 1 and layout[7, 0 * 4 + 2] == 1  # right, below
    assert all(layout[4, p * 4 + p] == 1 for p in range(4))
    assert tap_layout(1, 3)[:, 0 * 3 + 2].sum() == 0  # two columns apart: out of reach


@pytest.mark.parametrize(("kernel", "hw"), [(3, (2, 2)), (3, (1, 2)), (3, (1, 1)), (3, (4, 4)),
                                             (1, (1, 1)), (1, (2, 2))])
def test_gemm_conv2d_is_the_convolution(kernel, hw):
    """GemmConv2d against F.conv2d with the same weight, float64 (so that only the
    formulation can differ): output and the gradients of input, weight and bias."""
    from mefeat.models.nest import GemmConv2d

    torch.manual_seed(0)
    layer = GemmConv2d(6, 5, kernel, padding=kernel // 2).double()
    x = torch.randn(3, 6, *hw, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    w_ref = layer.weight.detach().clone().requires_grad_()
    b_ref = layer.bias.detach().clone().requires_grad_()
    out = layer(x)
    ref = torch.nn.functional.conv2d(x_ref, w_ref, b_ref, padding=kernel // 2)
    probe = torch.randn_like(ref)
    (out * probe).sum().backward()
    (ref * probe).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, want in ((x.grad, x_ref.grad), (layer.weight.grad, w_ref.grad),
                      (layer.bias.grad, b_ref.grad)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_tap_layout_made_in_inference_mode_still_trains():
    """The tap layout is cached: one first made for an evaluation under
    torch.inference_mode() must not break a later training step's backward."""
    from mefeat.models.nest import GemmConv2d, tap_layout

    tap_layout.cache_clear()
    layer = GemmConv2d(4, 3, 3, padding=1)
    x = torch.randn(2, 4, 2, 2)
    with torch.inference_mode():
        layer(x)
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0

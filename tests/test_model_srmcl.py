"""Model-specific tests of SRMCL (github.com/pakchoi-php/SRMCL, ``Model/VIT_SRMCL.py``).

The parameter counts are those of the official ``Model`` built as its test scripts build it
(``number_class`` 5, or 3 for the ``head_width=None`` case).
"""

from __future__ import annotations

import pytest
import torch

from mefeat.errors import ModelError
from mefeat.models import count_params, create_model, get_spec
from mefeat.models.srmcl import (
    PrototypeMemory,
    SRMCLOutput,
    masked_patch_mse,
    sincos_pos_embed_2d,
    srmcl,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return srmcl()


def _x(b: int = 4) -> torch.Tensor:
    return torch.randn(b, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, 26_857_989),
        ({"num_classes": 5}, 26_857_989),
        ({"head_width": None}, 26_856_451),
    ],
    ids=str,
)
def test_parameter_count_matches_official_code(options, expected):
    assert count_params(srmcl(**options)) == expected


def test_registry_entry():
    spec = get_spec("srmcl")
    assert spec.params == 26_857_989
    assert count_params(create_model("srmcl")) == spec.params


def test_official_names():
    sd = srmcl().state_dict()
    for key in (
        "backbone.pos_embed",
        "backbone.decoder_pos_embed",
        "backbone.last_blocks.attn.qkv.weight",
        "backbone.decoder_blocks.2.mlp.fc2.weight",
        "backbone.mask_token",
        "mlp_head.1.weight",
        "bn_neck.running_mean",
        "memory.features",
    ):
        assert key in sd, key
    assert tuple(sd["mlp_head.1.weight"].shape) == (5, 768)
    assert not srmcl().backbone.pos_embed.requires_grad


def test_sincos_table_known_values():
    table = sincos_pos_embed_2d(768, 14)
    assert table.shape == (197, 768)
    assert torch.equal(table[0], torch.zeros(768))
    # Patch (row 0, col 0): sin(0) = 0 and cos(0) = 1 in both halves.
    assert torch.equal(table[1, :192], torch.zeros(192))
    assert torch.equal(table[1, 192:384], torch.ones(192))
    # The first half follows the column: patch (0, 1) differs there, (1, 0) does not.
    assert not torch.equal(table[2, :384], table[1, :384])
    assert torch.equal(table[15, :384], table[1, :384])
    with pytest.raises(ModelError):
        sincos_pos_embed_2d(30, 14)


def test_eval_forward_is_deterministic_train_forward_is_masked(model):
    x = _x(2)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.shape == (2, 3) and torch.equal(a, b)
    model.train()
    with torch.no_grad():
        torch.manual_seed(3)
        c = model(x)
        torch.manual_seed(3)
        d = model(x)
        torch.manual_seed(4)
        e = model(x)
    assert torch.equal(c, d) and not torch.allclose(c, e)
    assert not torch.allclose(a, c)


def test_mask_round_masks_the_right_number_of_tokens(model):
    seq = torch.randn(3, 197, 768)
    out, mask = model.backbone.mask_round(seq, 0.75)
    assert out.shape == seq.shape and mask.shape == (3, 196)
    assert (mask.sum(dim=1) == 196 - int(196 * 0.25)).all()
    assert torch.equal(out[:, 0], seq[:, 0])  # class token untouched
    masked = mask.bool()
    token = model.backbone.mask_token[0, 0]
    assert torch.equal(out[:, 1:][masked], token.expand(int(masked.sum()), -1))
    assert torch.equal(out[:, 1:][~masked], seq[:, 1:][~masked])


def test_patchify_order(model):
    img = torch.arange(3 * 224 * 224, dtype=torch.float32).reshape(1, 3, 224, 224)
    patches = model.backbone.patchify(img)
    assert patches.shape == (1, 196, 768)
    first = img[0, :, :16, :16].permute(1, 2, 0).reshape(-1)  # (row, col, channel)
    assert torch.equal(patches[0, 0], first)
    second = img[0, :, :16, 16:32].permute(1, 2, 0).reshape(-1)
    assert torch.equal(patches[0, 1], second)


def test_masked_patch_mse_known_answer():
    target = torch.zeros(1, 4, 2)
    pred = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]])
    mask = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    assert masked_patch_mse(target, pred, mask).item() == pytest.approx((4 + 16) / 2)
    assert masked_patch_mse(pred, pred, mask).item() == 0.0


def test_losses_are_finite_and_reach_every_part():
    torch.manual_seed(0)
    model = srmcl().train()
    y = torch.tensor([0, 1, 2])
    out = model.forward_train(_x(3))
    assert isinstance(out, SRMCLOutput)
    assert out.logits.shape == (3, 3) and out.features.shape == (3, 768)
    terms = model.loss_terms(out, y)
    assert set(terms) == {"cls", "recon", "memory", "total"}
    for value in terms.values():
        assert torch.isfinite(value) and value.ndim == 0
    assert terms["recon"] > 0
    expected = terms["cls"] + 0.5 * terms["recon"] + 0.5 * terms["memory"]
    assert torch.allclose(terms["total"], expected)
    terms["total"].backward()
    for name in (
        "backbone.decoder_pred.weight",
        "backbone.blocks.0.attn.qkv.weight",
        "backbone.last_blocks.mlp.fc1.weight",
        "backbone.mask_token",
        "mlp_head.1.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # The prototypes of the classes in the batch moved and are unit vectors.
    norms = model.memory.features.norm(dim=1)
    assert torch.allclose(norms, torch.ones(3), atol=1e-5)


def test_loss_weights_switch_terms_off():
    torch.manual_seed(0)
    model = srmcl(recon_weight=0.0, memory_weight=0.0).train()
    y = torch.tensor([0, 1, 2])
    terms = model.loss_terms(model.forward_train(_x(3)), y)
    assert "memory" not in terms
    assert torch.equal(terms["total"], terms["cls"])
    terms["total"].backward()
    assert model.backbone.decoder_pred.weight.grad is None
    assert torch.equal(model.memory.features, torch.zeros(3, 768))


def test_memory_updates_only_when_training():
    mem = PrototypeMemory(3, 4, temp=0.05, momentum=0.1)
    feats = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 1])
    mem.eval()
    loss, logits = mem(feats, y)
    assert torch.equal(mem.features, torch.zeros(3, 4)) and logits.shape == (5, 3)
    mem.train()
    loss, _ = mem(feats, y)
    loss.backward()
    assert torch.isfinite(feats.grad).all()
    # momentum 0.1 from zero: the prototype is the normalised class mean.
    mean0 = torch.nn.functional.normalize(feats.detach()[:2], dim=1).mean(dim=0)
    assert torch.allclose(mem.features[0], mean0 / mean0.norm(), atol=1e-6)
    assert torch.equal(mem.features[2], torch.zeros(4))  # class 2 not in the batch
    with pytest.raises(ModelError, match="prototypes"):
        mem(feats, torch.tensor([0, 1, 2, 3, 0]))


def test_reset_classifier():
    model = srmcl()
    model.reset_classifier(7)
    assert model.mlp_head[1].out_features == 7 and model.memory.features.shape == (7, 768)
    model.eval()
    with torch.no_grad():
        assert model(_x(1)).shape == (1, 7)


@pytest.mark.parametrize("bad", [{"mask_ratio": 1.0}, {"mask_rounds": 0}, {"num_classes": 0}])
def test_bad_options_raise(bad):
    with pytest.raises(ModelError):
        srmcl(**bad)


def test_wrong_input_size_raises(model):
    with pytest.raises(ModelError, match="224x224"):
        model.eval()(torch.zeros(1, 3, 112, 112))

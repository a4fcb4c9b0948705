"""Model-specific tests of MMNet (github.com/muse1998/MMNet, ``CASME2_3.py``).

The parameter counts are those of the official ``MMNet()`` built with the same settings
(``conv_act`` groups patched to 1 or 3, since the released groups=2 does not build).
"""

from __future__ import annotations

import pytest
import torch

from mefeat.errors import ModelError
from mefeat.models import count_params, create_model, get_spec
from mefeat.models.mmnet import MMNet, mmnet

# Official-code names and shapes of a few state-dict entries (checkpoints must load as is).
OFFICIAL_KEYS = {
    "conv_act.0.weight": (180, 3, 3, 3),
    "pos.0.weight": (512, 3, 1, 1),
    "vit_pos.pos_embed": (1, 196, 512),
    "vit_pos.patch_embed.proj.weight": (512, 3, 1, 1),
    "vit_pos.blocks.2.attn.qkv.weight": (1536, 512),
    "vit_pos.blocks.2.mlp.fc1.weight": (1024, 512),
    "vit_pos.to_Mask.0.weight": (1, 512),
    "vit_pos.head.weight": (5, 512),
    "main_branch.conv1.weight": (128, 180, 3, 3),
    "main_branch.layer1.0.attn.0.weight": (1, 2, 1, 1),
    "main_branch.layer4.0.downsample.0.weight": (512, 256, 1, 1),
    "main_branch.fc.weight": (5, 512 * 196),
    "head1.1.weight": (38, 112 * 112),
    "timeembed": (1, 4, 111, 111),
}


def _pair(b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 3, 224, 224, generator=g), torch.randn(b, 3, 224, 224, generator=g)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, 9_974_531),
        ({"act_groups": 3}, 9_971_291),
        ({"head_width": None}, 9_773_825),
        ({"keep_unused": False}, 9_442_425),
    ],
    ids=str,
)
def test_parameter_count_matches_official_code(options, expected):
    assert count_params(mmnet(**options)) == expected


def test_registry_entry_uses_the_official_count():
    spec = get_spec("mmnet")
    assert spec.params == 9_974_531
    assert spec.input_shapes == ((3, 224, 224), (3, 224, 224))
    assert count_params(create_model("mmnet")) == spec.params


def test_state_dict_has_the_official_names_and_shapes():
    sd = mmnet().state_dict()
    for key, shape in OFFICIAL_KEYS.items():
        assert tuple(sd[key].shape) == shape, key


def test_groups_option_changes_only_the_first_conv():
    full, per_channel = mmnet(), mmnet(act_groups=3)
    assert per_channel.conv_act[0].groups == 3
    assert tuple(per_channel.conv_act[0].weight.shape) == (180, 1, 3, 3)
    diff = {k for k, v in full.state_dict().items() if v.shape != per_channel.state_dict()[k].shape}
    assert diff == {"conv_act.0.weight"}


def test_grouped_conv_keeps_colour_channels_apart():
    conv = mmnet(act_groups=3).eval().conv_act[0]
    x = torch.randn(1, 3, 32, 32)
    y = conv(x)
    x2 = x.clone()
    x2[:, 0] += 1.0  # touch the red channel only
    changed = (conv(x2) - y).abs().amax(dim=(0, 2, 3)) > 0
    assert changed[:60].all() and not changed[60:].any()
    # groups=1 mixes the channels: every filter sees red.
    conv1 = mmnet().eval().conv_act[0]
    assert ((conv1(x2) - conv1(x)).abs().amax(dim=(0, 2, 3)) > 0).all()


@pytest.mark.parametrize("groups", [2, 4, 0])
def test_groups_that_do_not_divide_raise(groups):
    with pytest.raises(ModelError, match="act_groups"):
        mmnet(act_groups=groups)


def test_forward_shapes_and_the_released_head():
    torch.manual_seed(0)
    model = mmnet().eval()
    x = _pair()
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
        full = model.main_branch.fc(feats)
    assert feats.shape == (2, 512 * 196)
    # The released head: all five logits, trained and argmax-ed over (CASME2_3.py L488).
    assert logits.shape == (2, 5) and torch.equal(logits, full)
    assert torch.isfinite(logits).all()


def test_reset_classifier():
    model = mmnet()
    model.reset_classifier(7)
    assert model.main_branch.fc.out_features == 7
    model.reset_classifier(2)
    assert model.main_branch.fc.out_features == 5  # head_width keeps 5 rows
    with torch.no_grad():
        assert model.eval()(_pair(1)).shape == (1, 5)
    plain = mmnet(head_width=None)
    plain.reset_classifier(4)
    assert plain.main_branch.fc.out_features == 4


def test_unused_modules_do_not_change_outputs():
    torch.manual_seed(0)
    full = mmnet().eval()
    lean = mmnet(keep_unused=False).eval()
    result = lean.load_state_dict(full.state_dict(), strict=False)
    assert not result.missing_keys
    assert "timeembed" in result.unexpected_keys
    x = _pair(1)
    with torch.no_grad():
        assert torch.equal(full(x), lean(x))


def test_only_onset_feeds_position_branch_and_motion_feeds_main():
    """A common offset added to both frames changes the PC input but not apex - onset."""
    torch.manual_seed(0)
    model = mmnet().eval()
    onset, apex = _pair(1)
    with torch.no_grad():
        base = model.forward_features((onset, apex))
        # Same motion, other onset: the main-branch input is unchanged, the output is not.
        moved = model.forward_features((onset + 0.5, apex + 0.5))
        act = model.conv_act(apex - onset)
        act2 = model.conv_act((apex + 0.5) - (onset + 0.5))
    assert torch.allclose(act, act2, atol=1e-5)
    assert not torch.allclose(base, moved)


def test_bad_inputs_raise():
    model = mmnet()
    with pytest.raises(ModelError, match="pair"):
        model(torch.zeros(1, 3, 224, 224))
    with pytest.raises(ModelError, match="RGB"):
        model((torch.zeros(1, 1, 224, 224), torch.zeros(1, 1, 224, 224)))


def test_backward_reaches_both_branches():
    torch.manual_seed(0)
    model: MMNet = mmnet().train()
    loss = model(_pair(1)).logsumexp(dim=1).mean()
    loss.backward()
    assert model.conv_act[0].weight.grad.abs().sum() > 0
    assert model.vit_pos.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.timeembed.grad is None  # never used, as in the official forward

"""Registry-driven checks of every model: shape, gradients, parameter counts."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from mefeat.models import (
    count_params,
    create_model,
    get_spec,
    list_models,
    register,
    scoped_registry,
)

# Parameter counts of the official 3-class configurations, counted from the official code.
OFFICIAL_PARAMS = {
    "causalnet": 276_590_089,
    "htnet": 139_582_982,
    "ststnet": 1_683,
    "offapexnet": 2_664_475,
    "dual_inception": 6_449_867,
    "micro_attention": 53_384_195,
    "offtanet": 59_403,
    "mmnet": 9_974_531,
    "srmcl": 26_857_989,
    "edmdbn": 50_616_747,  # likemby/EDMDBN, counted from the official code
}


# Released heads wider than the 3 classes (all their logits are trained and predicted on).
WIDER_HEADS = {"mmnet": 5}


def _inputs(spec, batch=2):
    xs = tuple(torch.randn(batch, *s) for s in spec.input_shapes)
    return xs[0] if len(xs) == 1 else xs


def test_every_official_model_is_registered():
    assert set(OFFICIAL_PARAMS) <= set(list_models())


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_count_is_the_official_one(name):
    model = create_model(name)
    assert count_params(model) == OFFICIAL_PARAMS[name] == get_spec(name).params


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_forward_backward_head_and_reset(name):
    torch.manual_seed(0)
    spec = get_spec(name)
    model = create_model(name)
    model.train()
    x = _inputs(spec)
    out = model(x)
    width = WIDER_HEADS.get(name, spec.num_classes)
    assert out.shape == (2, width) and torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 2 and feats.shape[0] == 2
        assert torch.allclose(model.forward_head(feats), model(x), atol=1e-5)
        model.reset_classifier(5)
        assert model(x).shape == (2, 5)
        model.reset_classifier(2)
        assert model(x).shape == (2, WIDER_HEADS.get(name, 2))


def test_user_models_register_with_the_same_decorator():
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, num_classes=3):
            super().__init__()
            self.body = nn.Flatten()
            self.head = nn.Linear(2 * 4 * 4, num_classes)

        def forward_features(self, x):
            return self.body(x)

        def forward_head(self, f):
            return self.head(f)

        def forward(self, x):
            return self.forward_head(self.forward_features(x))

        def reset_classifier(self, num_classes):
            self.head = nn.Linear(self.head.in_features, num_classes)

    with scoped_registry():
        @register("tiny_user_net", view="offapexnet", input_shapes=((2, 4, 4),))
        def tiny_user_net(*, num_classes=3):
            return Tiny(num_classes)

        assert "tiny_user_net" in list_models()
        net = create_model("tiny_user_net", num_classes=4)
        assert net(torch.zeros(1, 2, 4, 4)).shape == (1, 4)
        assert get_spec("tiny_user_net").view is get_spec("offapexnet").view
        # no recorded count: counted on a network built on the meta device
        assert get_spec("tiny_user_net").count_params() == 2 * 4 * 4 * 3 + 3
    assert "tiny_user_net" not in list_models()  # the test's registry only


def test_models_answers_without_building_a_network(monkeypatch):
    from mefeat.cli.main import cli
    from mefeat.models import registry

    def no_building(*args, **kwargs):
        raise AssertionError("mefeat models built a network")

    monkeypatch.setattr(registry, "create_model", no_building)
    res = CliRunner().invoke(cli, ["models"])
    assert res.exit_code == 0, res.output
    assert "276,590,089" in res.output  # CausalNet's count, from its spec


def test_models_json_lists_official_counts():
    from mefeat.cli.main import cli

    res = CliRunner().invoke(cli, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    for name, params in OFFICIAL_PARAMS.items():
        assert rows[name]["params"] == params
        assert rows[name]["inputs"]["shapes"]
    # the OFF-TANet repository's img_sz per model (train_arg.py), and what mefeat cannot do
    assert {n: (r["official_inputs"] or {}).get("flow_size") for n, r in rows.items()
            if r["official_inputs"]} == {"offapexnet": 28, "dual_inception": 28,
                                          "offtanet": 112, "micro_attention": 224}
    assert any("Baidu" in d for d in rows["srmcl"]["deviations"])


def test_unknown_model_and_option_are_clear_errors():
    from mefeat.errors import ModelError

    with pytest.raises(ModelError, match="unknown model 'resnet'.*known models"):
        create_model("resnet")
    with pytest.raises(ModelError, match="has no option"):
        create_model("ststnet", nonsense=1)

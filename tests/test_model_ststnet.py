"""Model-specific tests of STSTNet (github.com/christy1206/STSTNet, ``main.py``).

The official per-subject weights (``STSTNet_Weights/<subject>.pth``) are not shipped with
mefeat; the loading path is tested with a checkpoint written the same way (``torch.save`` of
the state dict) and with a malicious pickle that must be refused. Set MEFEAT_STSTNET_WEIGHTS
to a folder of the official weights to also load the real ones.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

from mefeat.errors import ModelError
from mefeat.models import count_params, create_model, get_spec
from mefeat.train.checkpoints import load_official_state_dict

# The keys of the official model's state_dict (STSTNet() in main.py).
OFFICIAL_KEYS = {
    *(f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")),
    *(
        f"bn{i}.{p}"
        for i in (1, 2, 3)
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    ),
    "fc.weight",
    "fc.bias",
}


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    # Non-trivial batch-norm statistics, as a trained checkpoint would have.
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 3, 28, 28) * 255)
    return model.eval()


def test_parameter_count_and_spec():
    model = create_model("ststnet")
    assert count_params(model) == 1_683
    spec = get_spec("ststnet")
    assert spec.params == 1_683 and spec.input_shapes == ((3, 28, 28),)
    r = spec.recipe  # main.py:88-90, :149, :155, :217
    assert (r.optimizer.name, r.optimizer.lr, r.epochs, r.batch_size, r.shuffle) == (
        "adam", 5e-5, 800, 256, False)
    assert r.official.kind == "last"


def test_official_parameter_names():
    assert set(create_model("ststnet").state_dict()) == OFFICIAL_KEYS


def test_shapes_and_features():
    model = create_model("ststnet").eval()
    x = torch.rand(4, 3, 28, 28) * 255
    features = model.forward_features(x)
    assert features.shape == (4, 400)
    assert model(x).shape == (4, 3)
    torch.testing.assert_close(model(x), model.forward_head(features))


def test_batch_norm_follows_relu():
    # Official order conv -> ReLU -> BN: with BN in eval at identity statistics and a negative
    # BN shift, a stream's output can be negative before pooling only if BN comes after ReLU.
    model = create_model("ststnet").eval()
    with torch.no_grad():
        model.bn1.bias.fill_(-1.0)
        model.conv1.weight.zero_()
        model.conv1.bias.fill_(-5.0)
    out = model._stream(torch.zeros(1, 3, 28, 28), model.conv1, model.bn1)
    torch.testing.assert_close(out, torch.full_like(out, -1.0))


def test_dropout_option_and_reset_classifier():
    model = create_model("ststnet", dropout=0.0)
    assert model.dropout.p == 0.0
    model.reset_classifier(5)
    assert model(torch.rand(2, 3, 28, 28)).shape == (2, 5)
    model(torch.rand(2, 3, 28, 28)).sum().backward()
    assert model.conv3.weight.grad is not None


def test_torch_saved_state_dict_loads_and_reproduces_outputs(tmp_path):
    reference = _trained_like(create_model("ststnet"))
    path = tmp_path / "sub01.pth"
    torch.save(reference.state_dict(), path)  # exactly how main.py writes its weights

    model = create_model("ststnet")
    model.load_state_dict(load_official_state_dict(path), strict=True)
    model.eval()
    x = torch.rand(5, 3, 28, 28) * 255
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_dataparallel_prefix_is_removed(tmp_path):
    reference = create_model("ststnet")
    path = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, path)
    state = load_official_state_dict(path)
    assert set(state) == OFFICIAL_KEYS


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Exploit(marker)}, path)
    with pytest.raises(ModelError, match="evil.pth"):
        load_official_state_dict(path)
    assert not marker.exists()


def _official_weights() -> Path:
    folder = os.environ.get("MEFEAT_STSTNET_WEIGHTS")
    if not folder or not (Path(folder) / "sub01.pth").is_file():
        pytest.skip("set MEFEAT_STSTNET_WEIGHTS to the official STSTNet_Weights folder")
    return Path(folder)


def test_real_official_checkpoint_loads():
    folder = _official_weights()
    model = create_model("ststnet")
    model.load_state_dict(load_official_state_dict(folder / "sub01.pth"), strict=True)
    assert int(model.bn1.num_batches_tracked) > 0


@pytest.fixture(params=["c++", "torch"])
def stage(request, monkeypatch):
    """Which form the fused first stage takes: the C++ kernel or PyTorch operators."""
    import mefeat.models.ststnet as module

    if request.param == "torch":
        monkeypatch.setattr(module, "_stage_kernel", lambda: None)
        return "_ReluStatsPoolBackward"
    if module._stage_kernel() is None:
        pytest.skip("the C++ kernel could not be built here (see the logged warning)")
    return "_CompiledStageBackward"


@pytest.mark.parametrize("negative_gamma", [False, True])
def test_fused_training_matches_the_plain_layers(negative_gamma, stage):
    # The training fast path (one conv, pooling before the BN affine map, one autograd node
    # for conv + ReLU + statistics + pooling) must compute the official function: same
    # outputs, same gradients, same running statistics. A negative BN weight flips max to min.
    torch.manual_seed(0)
    x = torch.rand(64, 3, 28, 28) * 255
    fused = _trained_like(create_model("ststnet", dropout=0.0)).train()
    if negative_gamma:
        with torch.no_grad():
            fused.bn2.weight[1] = -0.7
            fused.bn3.weight[0] = -0.2
    plain = copy.deepcopy(fused)
    plain.fused_training = False
    out_f, out_p = fused(x), plain(x)
    assert _graph_has(out_f, stage)
    assert not _graph_has(out_p, stage)
    torch.testing.assert_close(out_f, out_p, rtol=1e-5, atol=1e-4)
    out_f.square().sum().backward()
    out_p.square().sum().backward()
    for (name, p_f), p_p in zip(fused.named_parameters(), plain.parameters(), strict=True):
        scale = p_p.grad.abs().max().clamp_min(1e-12)
        assert (p_f.grad - p_p.grad).abs().max() / scale < 1e-4, name
    for name, b_f in fused.named_buffers():
        torch.testing.assert_close(b_f, dict(plain.named_buffers())[name], rtol=1e-5, atol=1e-3)
    fused.eval()
    plain.eval()
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-5, atol=1e-4)


def test_fused_training_dropout_is_unbiased(stage):
    torch.manual_seed(0)
    model = create_model("ststnet", dropout=0.5).train()
    x = torch.rand(512, 3, 28, 28) * 255
    kept = model.forward_features(x)
    model.dropout.p = 0.0
    full = model.forward_features(x)
    # Each pooled value is kept with probability 1/2 and doubled: the mean is unchanged.
    ratio = (kept.mean() / full.mean()).item()
    assert 0.97 < ratio < 1.03
    assert (kept == 0).float().mean() > (full == 0).float().mean()


def _graph_has(out: torch.Tensor, name: str) -> bool:
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == name:
            return True
        todo += [f for f, _ in fn.next_functions]
    return False

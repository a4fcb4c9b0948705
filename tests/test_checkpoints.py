"""Tests of mefeat.train.checkpoints: safetensors round trips and safe reading of .pth files."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from mefeat.errors import ModelError
from mefeat.train.checkpoints import (
    load_checkpoint,
    load_official_state_dict,
    read_checkpoint_metadata,
    save_checkpoint,
    strip_prefix,
)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))


def _built(seed: int = 0) -> nn.Module:
    model = _model(seed)
    model(torch.rand(2, 3, 6, 6))  # materialise the lazy layer
    return model.eval()


class _Exploit:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_save_load_round_trip_with_metadata(tmp_path):
    source, target = _built(0), _built(1)
    x = torch.rand(3, 3, 6, 6)
    meta = {"model": "toy", "epoch": 12, "metrics": {"uf1": 0.5}, "classes": ["a", "b"]}
    path = save_checkpoint(source, tmp_path / "sub" / "toy.safetensors", meta)
    assert path.is_file()
    assert not torch.equal(source(x), target(x))

    loaded = load_checkpoint(target, path)
    assert loaded == meta
    assert read_checkpoint_metadata(path) == meta
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
    # Buffers (batch-norm statistics) travel too.
    assert torch.equal(target[1].running_var, source[1].running_var)


def test_tied_weights_can_be_saved(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    model[1].weight = model[0].weight
    path = save_checkpoint(model, tmp_path / "tied.safetensors")
    other = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    load_checkpoint(other, path)
    assert torch.equal(other[1].weight, model[0].weight)


def test_load_checkpoint_refuses_wrong_model(tmp_path):
    path = save_checkpoint(_built(), tmp_path / "toy.safetensors")
    with pytest.raises(ModelError, match="toy.safetensors"):
        load_checkpoint(nn.Linear(3, 2), path)


def test_save_needs_safetensors_suffix_and_json_metadata(tmp_path):
    with pytest.raises(ModelError, match="safetensors"):
        save_checkpoint(_built(), tmp_path / "toy.pth")
    with pytest.raises(ModelError, match="JSON"):
        save_checkpoint(_built(), tmp_path / "toy.safetensors", {"bad": object()})


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="nope.pth"):
        load_official_state_dict(tmp_path / "nope.pth")
    with pytest.raises(ModelError, match="nope.safetensors"):
        load_checkpoint(_built(), tmp_path / "nope.safetensors")


def test_official_pth_and_nested_and_prefixed(tmp_path):
    state = _built().state_dict()
    plain, nested, prefixed = (tmp_path / n for n in ("a.pth", "b.pt", "c.pth"))
    torch.save(state, plain)
    torch.save({"epoch": 3, "state_dict": state}, nested)
    torch.save({f"module.{k}": v for k, v in state.items()}, prefixed)
    for path in (plain, nested, prefixed):
        loaded = load_official_state_dict(path)
        assert set(loaded) == set(state)
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_official_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"module.fc.weight": torch.ones(2, 3)}, path)
    assert torch.equal(load_official_state_dict(path)["fc.weight"], torch.ones(2, 3))


def test_malicious_zip_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(_Exploit(marker), path)
    with pytest.raises(ModelError, match="evil.pth"):
        load_official_state_dict(path)
    assert not marker.exists()


def test_malicious_legacy_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps(_Exploit(marker), protocol=2))
    with pytest.raises(ModelError, match="legacy.pth"):
        load_official_state_dict(path)
    assert not marker.exists()


def test_non_state_dict_contents_are_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ModelError, match="not a state dict"):
        load_official_state_dict(path)
    path = tmp_path / "mixed.pth"
    torch.save({"w": torch.zeros(1), "epoch": 3}, path)
    with pytest.raises(ModelError, match="not tensors"):
        load_official_state_dict(path)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown file kind"):
        load_official_state_dict(path)


def test_strip_prefix_only_when_all_keys_have_it():
    t = torch.zeros(1)
    assert list(strip_prefix({"module.a": t, "module.b": t})) == ["a", "b"]
    assert list(strip_prefix({"module.a": t, "b": t})) == ["module.a", "b"]

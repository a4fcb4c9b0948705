"""ARCHITECTURE.md stays true: every module it names exists, and a model is added in one file
(network, view, recipe) and trains with `mefeat train`, no other file touched."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from _stores import demo_store
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.models import list_models, scoped_registry

ROOT = Path(__file__).resolve().parents[1]

MODEL_FILE = '''
"""A tiny model in a file of its own: network, view and recipe."""
import numpy as np
from torch import nn

from mefeat.models import register
from mefeat.recipes import Optimizer, Recipe, Selection
from mefeat.views import View, resize_maps


class MeanFlowNet(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.head = nn.Linear(2 * 8 * 8, num_classes)

    def forward_features(self, x):
        return x.flatten(1)

    def forward_head(self, f):
        return self.head(f)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes):
        self.head = nn.Linear(self.head.in_features, num_classes)


def _inputs(arrays, landmarks, src, **options):
    return (resize_maps(arrays["flow_oa"], 8, displacement=True),)


VIEW = View("mean_flow", ("flow_oa",), _inputs)


@register("mean_flow_net", view=VIEW, input_shapes=((2, 8, 8),),
          recipe=Recipe(Optimizer("sgd", lr=0.1, momentum=0.9), epochs=3, batch_size=4,
                        official=Selection("last", source="a test model")))
def mean_flow_net(*, num_classes=3):
    return MeanFlowNet(num_classes)
'''


def test_every_module_architecture_md_names_exists():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    paths = set(re.findall(r"`((?:mefeat|models|cli)/[\w/]+\.(?:py|cpp))`", text))
    assert len(paths) > 10
    missing = [p for p in sorted(paths) if not (ROOT / p).is_file()]
    assert not missing, missing
    layers = re.search(r"datasets → .*→ cli", text).group(0)
    toml = (ROOT / "pyproject.toml").read_text()
    contract = re.search(r'name = "Layers point down".*?layers = \[(.*?)\]', toml, re.S).group(1)
    order = [name.split(".")[1].split(" ")[0] for name in re.findall(r'"([^"]+)"', contract)]
    top_down = [n for n in order if n in layers.replace(" ", "").split("→")]
    assert top_down[::-1] == layers.replace(" ", "").split("→")


def test_a_model_added_in_one_file_trains_on_the_demo_store(tmp_path, monkeypatch):
    store = demo_store(tmp_path, subjects=3, clips=2, size=64)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "mean_flow_model.py").write_text(MODEL_FILE)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.delitem(sys.modules, "mean_flow_model", raising=False)
    with scoped_registry():
        res = CliRunner().invoke(cli, ["--plugin", "mean_flow_model", "train", "--model",
                                       "mean_flow_net", "--store", str(store), "--workers", "1",
                                       "--out", str(tmp_path / "run")])
        assert res.exit_code == 0, res.output
    assert "mean_flow_net" not in list_models()
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["model"] == "mean_flow_net" and m["view"] == "mean_flow"
    assert m["settings"]["recipe"]["optimizer"] == (
        {"name": "sgd", "lr": 0.1, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8,
         "momentum": 0.9, "nesterov": False, "decay_matrices_only": False})
    assert m["samples_scored"] == 6 and not m["partial"]


def test_every_package_folder_is_in_the_wheel():
    # pyproject lists the packages one by one (models/ and cli/ install inside mefeat): a
    # new folder missing there imports in the editable checkout and fails in the wheel.
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    where = {"mefeat": ROOT / "mefeat", "mefeat.models": ROOT / "models",
             "mefeat.cli": ROOT / "cli"}
    found = set()
    for name, folder in where.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((name, *rel)) if rel else name)
    assert found <= listed, sorted(found - listed)

"""`mefeat train` / `evaluate` on a small demo store: outputs, checkpoints, repeatability."""

from __future__ import annotations

import csv
import json
from importlib import metadata

import pytest
from _stores import demo_store
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.run.extract import extract


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return demo_store(tmp_path_factory.mktemp("train"), subjects=3, clips=4, size=112)


def _train(store, out, *extra):
    res = CliRunner().invoke(cli, ["train", "--model", "ststnet", "--store", str(store),
                                   "--epochs", "30", "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return res.output


def test_train_writes_metrics_predictions_figure_and_checkpoints(store, tmp_path):
    out = tmp_path / "run"
    text = _train(store, out, "--runs", "2")
    m = json.loads((out / "metrics.json").read_text())
    assert {"uf1", "uar", "acc", "per_dataset", "std", "runs", "environment"} <= set(m)
    assert set(m["per_dataset"]["casme2"]) >= {"uf1", "uar", "acc"}
    assert m["selection"] == "last" and len(m["runs"]) == 2
    env = m["environment"]
    assert env["torch"] == metadata.version("torch") and env["zarr"] == metadata.version("zarr")
    assert env["opencv-contrib-python-headless"] == metadata.version(
        "opencv-contrib-python-headless")
    assert env["kernels"]["STSTNet"] in ("in use", "built", "unavailable: no C++ compiler")
    with (out / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 12
    assert set(rows[0]) == {"key", "dataset", "subject", "label", "prediction", "epoch",
                            "fold", "run"}
    assert all(r["fold"] == r["subject"] for r in rows)  # LOSO: tested on its own subject
    assert (out / "confusion.png").stat().st_size > 5000
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.safetensors"))
    assert ckpts == ["casme2_sub01.safetensors", "casme2_sub02.safetensors",
                     "casme2_sub03.safetensors"]
    assert "selection last" in text
    # evaluate reads the checkpoints back and predicts exactly what the last run predicted
    res = CliRunner().invoke(cli, ["evaluate", "--model", "ststnet", "--store", str(store),
                                   "--checkpoints", str(out / "checkpoints"),
                                   "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    with (tmp_path / "ev" / "predictions.csv").open() as f:
        again = {r["key"]: r["prediction"] for r in csv.DictReader(f)}
    assert again == {r["key"]: r["prediction"] for r in rows if r["run"] == "1"}


def test_same_seed_same_numbers_bit_for_bit(store, tmp_path):
    _train(store, tmp_path / "a", "--seed", "7")
    _train(store, tmp_path / "b", "--seed", "7")
    assert (tmp_path / "a" / "predictions.csv").read_bytes() == \
        (tmp_path / "b" / "predictions.csv").read_bytes()
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["runs"][0]["overall"] == b["runs"][0]["overall"]
    from safetensors.torch import load_file

    for name in ("casme2_sub01.safetensors", "casme2_sub03.safetensors"):
        wa = load_file(tmp_path / "a" / "checkpoints" / name)
        wb = load_file(tmp_path / "b" / "checkpoints" / name)
        assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


def test_test_best_is_labelled_everywhere(store, tmp_path):
    text = _train(store, tmp_path / "tb", "--selection", "test-best")
    m = json.loads((tmp_path / "tb" / "metrics.json").read_text())
    assert m["selection"] == "test-best" and "TEST-BEST" in m["selection_note"]
    assert "TEST-BEST" in text
    assert set(m["runs"][0]["chosen_epoch"]) == {"casme2/sub01", "casme2/sub02", "casme2/sub03"}
    # the honest policy stands beside the chosen one
    assert set(m["policies"]) == {"test-best", "last"}


def test_unlabelled_store_is_a_clear_error(tmp_path):
    from mefeat.demo import build_demo

    ds = build_demo(tmp_path / "d", subjects=1, clips=2)
    extract(ds.root, dataset="casme2", annotations=ds.annotations, store=tmp_path / "u.zarr",
            size=96, progress=False)
    res = CliRunner().invoke(cli, ["train", "--model", "ststnet", "--store",
                                   str(tmp_path / "u.zarr"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "--labels" in res.output


def test_a_user_model_trains_with_mefeat_train(store, tmp_path, monkeypatch):
    plugin = tmp_path / "my_models.py"
    plugin.write_text('''
from torch import nn
from mefeat.models import register


class Flat(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.head = nn.Linear(3 * 28 * 28, num_classes)

    def forward_features(self, x):
        return x.flatten(1) / 255.0

    def forward_head(self, f):
        return self.head(f)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes):
        self.head = nn.Linear(self.head.in_features, num_classes)


@register("flat_user_net", view="ststnet", input_shapes=((3, 28, 28),),
          recipe={"optimizer": "adam", "lr": 1e-3, "epochs": 5})
def flat_user_net(*, num_classes=3):
    return Flat(num_classes)
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "user"
    res = CliRunner().invoke(cli, ["--plugin", "my_models", "train", "--model",
                                   "flat_user_net", "--store", str(store), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["model"] == "flat_user_net"

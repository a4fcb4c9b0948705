"""`mefeat train` / `evaluate` / `score` on a small demo store: the run folder (streamed
folds, resume after a kill, one run per folder), outputs, checkpoints that reproduce the
run's predictions, partial runs, repeatability, Ray."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
from _stores import demo_store
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.models import scoped_registry
from mefeat.run.extract import extract

SUBJECTS = ["casme2/sub01", "casme2/sub02", "casme2/sub03"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return demo_store(tmp_path_factory.mktemp("train"), subjects=3, clips=4, size=112)


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _train(store, out, *extra, epochs=30):
    res = _invoke("train", "--model", "ststnet", "--store", store, "--epochs", epochs,
                  "--workers", 1, "--out", out, *extra)
    assert res.exit_code == 0, res.output
    return res.output


def _predictions(path, run=None) -> dict[str, str]:
    with open(path) as f:
        return {r["key"]: r["prediction"] for r in csv.DictReader(f)
                if run is None or r["run"] == str(run)}


def test_train_writes_metrics_predictions_history_figures_and_checkpoints(store, tmp_path):
    out = tmp_path / "run"
    text = _train(store, out, "--runs", 2)
    m = json.loads((out / "metrics.json").read_text())
    assert {"uf1", "uar", "acc", "per_dataset", "std", "runs", "environment"} <= set(m)
    assert set(m["per_dataset"]["casme2"]) >= {"uf1", "uar", "acc"}
    assert m["selection"] == "last" and len(m["runs"]) == 2 and not m["partial"]
    assert (m["folds_scored"], m["folds_total"]) == (3, 3)
    assert (m["samples_scored"], m["samples_total"]) == (12, 12)
    env = m["environment"]
    assert env["torch"] == metadata.version("torch") and env["zarr"] == metadata.version("zarr")
    assert env["opencv-contrib-python-headless"] == metadata.version(
        "opencv-contrib-python-headless")
    assert env["kernels"]["STSTNet"] in ("in use", "built", "unavailable: no C++ compiler")
    record = json.loads((out / "run.json").read_text())
    assert record["version"] == 2 and record["model"] == "ststnet" and record["runs"] == 2
    assert record["environment"]["numpy"] == metadata.version("numpy")
    assert record["recipe"]["epochs"] == 30 and record["overrides"] == {"epochs": 30}
    with (out / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 12
    assert set(rows[0]) == {"key", "dataset", "subject", "label", "prediction", "epoch",
                            "fold", "run"}
    assert all(r["fold"] == r["subject"] for r in rows)  # LOSO: tested on its own subject
    with (out / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    assert len(history) == 2 * 3 * 30  # runs × folds × epochs
    assert set(history[0]) == {"run", "subject", "epoch", "train_loss", "test_loss",
                               "test_acc", "lr"}
    assert float(history[0]["lr"]) == 5e-5  # STSTNet's recipe
    assert (out / "confusion.png").stat().st_size > 5000
    assert (out / "learning_curves.png").stat().st_size > 5000
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.safetensors"))
    assert ckpts == ["casme2_sub01.safetensors", "casme2_sub02.safetensors",
                     "casme2_sub03.safetensors"]
    assert "selection last" in text and "checkpoints: 3 files (float32)" in text
    assert "±" in text  # two runs: a spread
    # evaluate reads the checkpoints back and predicts exactly what run 0 predicted, from
    # the run folder or, as official weights are given, from a folder and a model name
    res = _invoke("evaluate", "--run", out, "--store", store, "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    assert _predictions(tmp_path / "ev" / "predictions.csv") == _predictions(
        out / "predictions.csv", run=0)
    res = _invoke("evaluate", "--model", "ststnet", "--store", store, "--checkpoints",
                  out / "checkpoints", "--out", tmp_path / "ev2")
    assert res.exit_code == 0, res.output
    assert _predictions(tmp_path / "ev2" / "predictions.csv") == _predictions(
        out / "predictions.csv", run=0)


@pytest.mark.parametrize("selection", ["test-best", "official"])
def test_the_checkpoints_hold_the_selected_epoch(store, tmp_path, selection):
    # test-best: a per-fold rule applied while the fold trains; Off-ApexNet's official rule
    # (one epoch for every fold) is known only at the end: its folds are trained again to
    # that epoch. Either way evaluate gives the run's predictions.
    model = "ststnet" if selection == "test-best" else "offapexnet"
    out = tmp_path / "run"
    res = _invoke("train", "--model", model, "--store", store, "--epochs", 4, "--workers", 1,
                  "--selection", selection, "--variant", "gt", "--out", out)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    chosen = m["runs"][0]["chosen_epoch"]
    for subject in SUBJECTS:
        fold = json.loads((out / "folds" / "run0" / f"{subject.replace('/', '_')}.json")
                          .read_text())
        assert fold["checkpoint"]["epoch"] == chosen[subject]
        assert "provisional" not in fold["checkpoint"]
    if selection == "official":  # Off-ApexNet's rule looks at epochs 1, 21, ...: epoch 1
        assert set(chosen.values()) == {1} and m["checkpoints"]["replayed"] == 3
        assert m["checkpoints"]["not_reproduced"] == []
    res = _invoke("evaluate", "--run", out, "--store", store, "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    assert _predictions(tmp_path / "ev" / "predictions.csv") == _predictions(
        out / "predictions.csv")


def test_same_seed_same_numbers_bit_for_bit(store, tmp_path):
    _train(store, tmp_path / "a", "--seed", 7)
    _train(store, tmp_path / "b", "--seed", 7)
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


def _killed(store, out, fault: str) -> subprocess.CompletedProcess:
    code = ("import sys; from mefeat.cli.main import main; sys.argv = ['mefeat', 'train', "
            f"'--model', 'ststnet', '--store', {str(store)!r}, '--epochs', '30', "
            f"'--workers', '1', '--out', {str(out)!r}]; main()")
    # one torch thread, as this process trains (conftest): the same arithmetic
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "MEFEAT_FAULT": fault, "OMP_NUM_THREADS": "1"},
                          timeout=600)


@pytest.mark.parametrize("fault", ["train:fold:written@2:kill",  # at a fold boundary
                                   "train:epoch@45:kill",  # mid-fold (the 2nd fold's epoch 15)
                                   "train:checkpoint:written@1:kill"])  # before a fold's record
def test_a_killed_run_resumes_to_the_uninterrupted_numbers(store, tmp_path, fault):
    whole = tmp_path / "whole"
    _train(store, whole)
    out = tmp_path / "killed"
    proc = _killed(store, out, fault)
    assert proc.returncode == -9, proc.stderr[-2000:]
    done = sorted(p.stem for p in (out / "folds" / "run0").glob("*.json")) \
        if (out / "folds").exists() else []
    assert len(done) < 3
    text = _train(store, out)  # the same command again
    assert (out / "predictions.csv").read_bytes() == (whole / "predictions.csv").read_bytes()
    assert "PARTIAL" not in text
    from safetensors.torch import load_file

    for p in (whole / "checkpoints").glob("*.safetensors"):
        a, b = load_file(p), load_file(out / "checkpoints" / p.name)
        assert all((a[k] == b[k]).all() for k in a)


def test_a_folder_holds_one_run(store, tmp_path):
    out = tmp_path / "run"
    _train(store, out, "--folds", 1, epochs=3)
    res = _invoke("train", "--model", "ststnet", "--store", store, "--epochs", 4,
                  "--workers", 1, "--out", out)
    assert res.exit_code == 1
    assert "holds another run" in res.output and "recipe.epochs" in res.output
    assert "the folder's run has 3, this one 4" in res.output
    res = _invoke("train", "--model", "offapexnet", "--store", store, "--epochs", 3,
                  "--workers", 1, "--out", out)
    assert res.exit_code == 1 and "model: the folder's run has 'ststnet'" in res.output
    assert len(list((out / "folds" / "run0").glob("*.json"))) == 1  # nothing was mixed in
    text = _train(store, out, "--overwrite", epochs=4)
    record = json.loads((out / "run.json").read_text())
    assert record["recipe"]["epochs"] == 4 and "PARTIAL" not in text
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    res = _invoke("train", "--model", "ststnet", "--store", store, "--out", tmp_path / "other")
    assert res.exit_code == 1 and "holds no run" in res.output


def test_a_partial_run_says_so_everywhere(store, tmp_path):
    out = tmp_path / "part"
    text = _train(store, out, "--folds", 2, epochs=3)
    m = json.loads((out / "metrics.json").read_text())
    n_scored = m["samples_scored"]
    assert m["partial"] and (m["folds_scored"], m["folds_total"]) == (2, 3)
    assert m["samples_total"] == 12 and n_scored == 8  # 4 clips a subject
    assert m["missing_folds"] == ["casme2/sub03"] and m["runs"][0]["overall"]["n"] == 8
    assert "PARTIAL: 2 of 3 folds, 8 of 12 samples scored; missing: casme2/sub03" in text
    assert "±" not in text  # one run: no spread to show
    res = _invoke("train", "--model", "ststnet", "--store", store, "--epochs", 3,
                  "--folds", 999, "--out", tmp_path / "x")
    assert res.exit_code == 1 and "folds must lie in 1..3" in res.output
    res = _invoke("train", "--model", "ststnet", "--store", store, "--epochs", 3,
                  "--subjects", "casme2/sub09", "--out", tmp_path / "x")
    assert res.exit_code == 1 and "not subjects of the data" in res.output
    # the missing fold on its own (as another machine would), then the run is whole
    text = _train(store, out, "--subjects", "casme2/sub03", epochs=3)
    assert "PARTIAL" not in text
    # evaluate scores the folds present and names the missing one
    (out / "checkpoints" / "casme2_sub02.safetensors").unlink()
    res = _invoke("evaluate", "--run", out, "--store", store, "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    assert "PARTIAL: 2 of 3 folds" in res.output and "missing: casme2/sub02" in res.output


def test_tensorboard_event_files_hold_the_history(store, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    _train(store, out, "--tensorboard", epochs=3)
    folds = sorted(p.name for p in (out / "tensorboard" / "run0").iterdir())
    assert folds == ["casme2_sub01", "casme2_sub02", "casme2_sub03"]
    events = EventAccumulator(str(out / "tensorboard" / "run0" / "casme2_sub02")).Reload()
    with (out / "history.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["subject"] == "casme2/sub02"]
    for tag in ("train_loss", "test_acc"):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert logged == [(int(r["epoch"]), pytest.approx(float(r[tag]))) for r in rows]
    # where TensorBoard is missing: refused before anything trains
    import torch.utils

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.delattr(torch.utils, "tensorboard", raising=False)
    res = _invoke("train", "--model", "ststnet", "--store", store, "--tensorboard",
                  "--out", tmp_path / "no-tb")
    assert res.exit_code == 1 and "--tensorboard needs TensorBoard" in res.output
    assert not (tmp_path / "no-tb").exists()


def test_score_rescores_by_the_recorded_rule_or_an_explicit_one(store, tmp_path):
    out = tmp_path / "run"
    _train(store, out, epochs=3)
    res = _invoke("score", out)
    assert res.exit_code == 0, res.output
    assert "selection last" in res.output
    res = _invoke("score", out, "--selection", "test-best")
    assert res.exit_code == 0, res.output
    assert "rescored under test-best" in res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["selection"] == "test-best" and m["rescored_from"] == "last"


def test_test_best_is_labelled_everywhere(store, tmp_path):
    text = _train(store, tmp_path / "tb", "--selection", "test-best")
    m = json.loads((tmp_path / "tb" / "metrics.json").read_text())
    assert m["selection"] == "test-best" and "TEST-BEST" in m["selection_note"]
    assert "TEST-BEST" in text
    assert set(m["runs"][0]["chosen_epoch"]) == set(SUBJECTS)
    # the honest policy stands beside the chosen one
    assert set(m["policies"]) == {"test-best", "last"}


def test_store_warnings_reach_the_summary_and_metrics(store, tmp_path):
    import shutil

    from mefeat.store import FeatureStore

    broken = tmp_path / "broken.zarr"
    shutil.copytree(store, broken)
    FeatureStore.open(broken, mode="r+").variant("gt").group["done"][0] = False
    text = _train(broken, tmp_path / "w", epochs=2)
    m = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert m["samples_total"] == 11
    assert any("1 of 12 samples of the store have no features" in w for w in m["warnings"])
    assert "WARNING: 1 of 12 samples" in text


def test_ray_gives_the_same_predictions_as_the_default_executor(store, tmp_path):
    _train(store, tmp_path / "local", epochs=3)
    _train(store, tmp_path / "ray", "--executor", "ray", "--workers", 2, epochs=3)
    assert _predictions(tmp_path / "ray" / "predictions.csv") == _predictions(
        tmp_path / "local" / "predictions.csv")
    m = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    assert "Ray (local), 2 CPUs" in m["settings"]["fold_batching"]


def test_unlabelled_store_is_a_clear_error(tmp_path):
    from mefeat.demo import build_demo

    ds = build_demo(tmp_path / "d", subjects=1, clips=2)
    extract(ds.root, dataset="casme2", annotations=ds.annotations, store=tmp_path / "u.zarr",
            size=96, progress=False)
    res = _invoke("train", "--model", "ststnet", "--store", tmp_path / "u.zarr", "--out",
                  tmp_path / "o")
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
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    out = tmp_path / "user"
    with scoped_registry():
        res = _invoke("--plugin", "my_models", "train", "--model", "flat_user_net",
                      "--store", store, "--workers", 1, "--out", out)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["model"] == "flat_user_net"

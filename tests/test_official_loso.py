"""benchmarks/official_loso.py: a fold is trained once, logged, and scored again by
``--score-done`` without training, which refuses a folder with no fold done."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from _stores import official_subset

from mefeat.run.import_features import import_features

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location(
        "official_loso", ROOT / "benchmarks" / "official_loso.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def store(shared_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("official_loso")
    folder = official_subset(shared_data / "features" / "cde28_htnet", work / "htnet", 2)
    import_features(folder, fmt="htnet", store=work / "htnet.zarr")
    return work / "htnet.zarr"


def test_score_done_refuses_a_folder_with_no_fold(script, store, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        script.main(["--model", "offapexnet", "--store", str(store), "--out", str(tmp_path),
                     "--score-done"])
    assert err.value.code == 2
    assert f"no fold of offapexnet is done in {tmp_path}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_fold_trained_once_is_scored_again_without_training(script, store, tmp_path, capsys):
    base = ["--model", "offapexnet", "--store", str(store), "--out", str(tmp_path), "--json"]
    assert script.main([*base, "--folds", "1", "--epochs", "2"]) == 0
    trained = json.loads(capsys.readouterr().out)
    jobs = sorted((tmp_path / "jobs").rglob("*.json"))
    assert len(jobs) == 1
    job = json.loads(jobs[0].read_text())
    log = [json.loads(line) for line in (tmp_path / "fold_log.jsonl").read_text().splitlines()]
    assert [e["fold"] for e in log] == [job["fold"]]
    assert log[0]["seconds"] == round(job["seconds"], 1) and log[0]["workers"] == 1
    assert {"versions", "commit", "cpus", "load_avg", "finished"} <= set(log[0])

    # the accuracy under `last`, from the job's own predictions and labels
    last = np.asarray(job["epoch_predictions"][-1])
    assert trained["last"]["acc"] == pytest.approx(np.mean(last == np.asarray(job["labels"])))
    assert (trained["folds"], trained["of_folds"], trained["epochs"]) == (1, 2, 2)
    # one subject is one dataset: its per-dataset row is the overall one
    (name,) = set(job["datasets"])
    for policy in ("last", "official"):
        row = trained[policy]
        assert list(row["per_dataset"]) == [name]
        assert row["per_dataset"][name] == {k: row[k] for k in ("uf1", "uar", "acc", "n")}
        assert row["n"] == len(job["labels"])

    stamp = jobs[0].stat().st_mtime_ns
    assert script.main([*base, "--score-done"]) == 0  # every fold: only the done one scored
    scored = json.loads(capsys.readouterr().out)
    assert (scored["folds"], scored["of_folds"]) == (1, 2)
    for policy in ("last", "official"):
        assert scored[policy] == trained[policy]
    assert scored["fold_seconds_total"] == job["seconds"]
    assert jobs[0].stat().st_mtime_ns == stamp  # nothing trained or rewritten
    assert len((tmp_path / "fold_log.jsonl").read_text().splitlines()) == 1
    assert json.loads((tmp_path / "result.json").read_text()) == scored

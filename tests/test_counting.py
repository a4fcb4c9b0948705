"""Scoring as each paper counts, next to the pooled figure: the OFF-TANet repository's mean of
per-fold scores, CausalNet's pooling without the folds whose accuracy never rose above 0.
Expected values come from scikit-learn, as the official scripts compute them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, f1_score, recall_score

from mefeat.cli.main import cli
from mefeat.models import get_spec
from mefeat.recipes import RecipeError
from mefeat.recipes.selection import Selection, choose_epochs, counted_scores

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "official_loso"


def _folds(sizes):
    out, start = [], 0
    for i, n in enumerate(sizes):
        out.append((f"d/s{i}", np.arange(start, start + n)))
        start += n
    return out


def test_fold_mean_is_the_mean_of_sklearn_macro_scores_per_fold():
    labels = np.array([0, 0, 1, 1, 2, 2, 1, 0, 2])
    preds = np.array([[0, 0, 1, 0, 2, 0, 1, 2, 2]])  # one kept epoch
    folds = _folds([4, 2, 3])
    rule = Selection("all-folds", metric="uar", counting="fold-mean", source="test")
    chosen = {s: 1 for s, _ in folds}
    got = counted_scores(rule, chosen, preds, [1], labels, folds, 3)
    per = [(labels[t], preds[0, t]) for _, t in folds]
    assert got["uar"] == pytest.approx(np.mean([recall_score(y, p, average="macro", zero_division=0)
                                                for y, p in per]))
    assert got["uf1"] == pytest.approx(np.mean([f1_score(y, p, average="macro", zero_division=0)
                                                for y, p in per]))
    assert got["acc"] == pytest.approx(np.mean([accuracy_score(y, p) for y, p in per]))
    # by hand for the second fold: labels (2, 2), predictions (2, 0): sklearn's labels are
    # {0, 2}; recall 1/2 and 0, F1 2/3 and 0
    assert recall_score(*per[1], average="macro", zero_division=0) == pytest.approx(0.25)
    assert got["folds_counted"] == 3 and got["folds_dropped"] == []


def test_nonzero_folds_pools_without_the_folds_never_right():
    # fold s1 is wrong at every epoch: CausalNet's best_matrix stays [] and
    # calculate_all_results.py pools nothing of it
    labels = np.array([0, 1, 2, 1, 1, 0, 2])
    preds = np.array([[0, 2, 2, 0, 0, 1, 2],
                      [0, 1, 2, 2, 0, 0, 0]])
    folds = _folds([3, 2, 2])
    rule = get_spec("causalnet").recipe.official
    assert rule.counting == "nonzero-folds"
    chosen = choose_epochs(rule, preds, [1, 2], labels, folds, 3, 2)
    assert chosen == {"d/s0": 2, "d/s1": 1, "d/s2": 1}  # earliest best accuracy
    got = counted_scores(rule, chosen, preds, [1, 2], labels, folds, 3)
    y = np.array([0, 1, 2, 0, 2])
    p = np.array([0, 1, 2, 1, 2])  # s0 at epoch 2, s2 at epoch 1 (a tie: the earlier)
    assert got["folds_dropped"] == ["d/s1"] and got["folds_counted"] == 2
    assert got["acc"] == pytest.approx(accuracy_score(y, p))
    assert got["uar"] == pytest.approx(recall_score(y, p, average="macro", zero_division=0))
    assert got["uf1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))


def test_pooled_rules_count_nothing_else():
    assert counted_scores(get_spec("htnet").recipe.official, {}, np.zeros((1, 0)), [1],
                          np.zeros(0), [], 3) is None


def test_a_bad_counting_is_refused():
    with pytest.raises(RecipeError, match="counting 'mean'"):
        Selection("all-folds", metric="uar", counting="mean", source="test")


@pytest.mark.skipif(not (RESULTS / "offtanet" / "run.json").is_file(),
                    reason="the shipped OFF-TANet run is not here")
def test_shipped_offtanet_run_reports_the_per_fold_mean_beside_the_pooled(tmp_path):
    run = tmp_path / "offtanet"
    shutil.copytree(RESULTS / "offtanet", run)
    res = CliRunner().invoke(cli, ["score", str(run), "--out", str(tmp_path / "scored")])
    assert res.exit_code == 0, res.output
    assert "as the paper counts (fold-mean" in res.output
    m = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert m["counting"].startswith("pooled")
    # written out from the fold records: each fold's sklearn macro scores at the epoch the
    # official rule chose (one epoch for all folds), averaged over the 68 folds
    uar, uf1 = [], []
    chosen = m["runs"][0]["chosen_epoch"]
    assert len(set(chosen.values())) == 1
    for f in sorted((run / "folds" / "run0").glob("*.json")):
        rec = json.loads(f.read_text())
        row = rec["kept"].index(chosen[rec["subject"]])
        pred = np.asarray(rec["epoch_predictions"]).reshape(-1, len(rec["labels"]))[row]
        uar.append(recall_score(rec["labels"], pred, average="macro", zero_division=0))
        uf1.append(f1_score(rec["labels"], pred, average="macro", zero_division=0))
    assert len(uar) == 68
    assert m["as_counted"]["uar"] == pytest.approx(np.mean(uar))
    assert m["as_counted"]["uf1"] == pytest.approx(np.mean(uf1))
    assert m["as_counted"]["uar"] != pytest.approx(m["uar"])  # a different quantity


def test_a_run_recorded_before_counting_existed_is_the_same_run():
    # run.json files written before Selection.counting existed lack the field: at its
    # default (pooled) they are the run that today's registry describes, and resume.
    from mefeat.train import RunRecord

    recipe = get_spec("htnet").recipe.to_dict()
    old = json.loads(json.dumps(recipe))
    del old["official"]["counting"]
    kw = dict(model="htnet", view="htnet", selection="last", seed=0, subjects=["a/1"],
              n_samples=1, num_classes=3)
    assert RunRecord(recipe=old, **kw).identity() == RunRecord(recipe=recipe, **kw).identity()
    changed = json.loads(json.dumps(recipe))
    changed["official"]["counting"] = "fold-mean"
    assert RunRecord(recipe=changed, **kw).identity() != RunRecord(recipe=recipe, **kw).identity()


def test_a_run_says_where_the_model_departs_from_its_official_training(tmp_path):
    # SRMCL's pre-trained weights are not published where mefeat can read them: every run
    # of it says it starts from random weights (run.json warnings, metrics.json, summary)
    from mefeat.train import TrainPlan, make_record
    from mefeat.views.data import ViewData

    def record(model):
        x = tuple(np.zeros((6, *shape), np.float32) for shape in get_spec(model).input_shapes)
        data = ViewData.from_arrays(x, np.arange(6) % 3, [f"d/s{i % 2}" for i in range(6)])
        return make_record(TrainPlan.create(model, data), data)

    assert any("srmcl deviates from its official training: it starts from random weights"
               in w for w in record("srmcl").warnings)
    assert not record("ststnet").warnings


def test_mmnet_counts_accuracy_at_each_folds_best_accuracy_epoch():
    # CASME2_3.py: F1_ALL from the pooled counts at each fold's F1-best epoch, but the
    # accuracy from each fold's max_corr over all epochs (num_sum / val_now).
    labels = np.array([0, 0, 0, 1, 2, 0, 1, 2])
    preds = np.array([[0, 0, 0, 0, 0, 0, 0, 0],    # s0: 3 right, F1 (3/4 + 0 + 0)/3 = 1/4
                      [1, 1, 2, 1, 2, 0, 1, 2]])   # s0: 2 right, F1 (0 + 1/2 + 2/3)/3; s1 all
    folds = _folds([5, 3])
    rule = get_spec("mmnet").recipe.official
    assert rule.counting == "best-acc-folds"
    chosen = choose_epochs(rule, preds, [1, 2], labels, folds, 3, 2)
    assert chosen == {"d/s0": 2, "d/s1": 2}
    got = counted_scores(rule, chosen, preds, [1, 2], labels, folds, 3)
    assert got["acc"] == pytest.approx((3 + 3) / 8)  # not (2 + 3) / 8, the chosen epochs'
    y, p = labels, preds[1]
    assert got["uf1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert got["uar"] == pytest.approx(recall_score(y, p, average="macro", zero_division=0))

"""UF1 / UAR / accuracy as MEGC2019 defines them, and the per-dataset table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from mefeat.metrics import metrics, metrics_table


def test_hand_computed_example():
    y = [0, 0, 1, 1, 2, 2]
    p = [0, 1, 1, 1, 2, 0]
    m = metrics(y, p, 3)
    # class 0: TP 1, FP 1, FN 1 -> 0.5; class 1: TP 2, FP 1 -> 0.8; class 2: TP 1, FN 1 -> 2/3
    assert m["f1_per_class"] == pytest.approx([0.5, 0.8, 2 / 3])
    assert m["uf1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["recall_per_class"] == pytest.approx([0.5, 1.0, 0.5])
    assert m["uar"] == pytest.approx(2 / 3)
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["n"] == 6
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_matches_sklearn_when_every_class_occurs():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    m = metrics(y, p, 3)
    assert m["uf1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y, p))
    assert m["acc"] == pytest.approx(np.mean(y == p))


def test_perfect_and_all_wrong():
    assert metrics([0, 1, 2], [0, 1, 2], 3)["uf1"] == 1.0
    m = metrics([0, 1, 2], [1, 2, 0], 3)
    assert m["uf1"] == 0.0 and m["uar"] == 0.0 and m["acc"] == 0.0


def test_class_absent_from_truth_and_predictions_is_left_out():
    # As the official STSTNet/HTNet evaluation (it skips the class); not a zero.
    m = metrics([0, 0, 1], [0, 0, 1], 3)
    assert m["uf1"] == 1.0 and m["uar"] == 1.0
    assert m["f1_per_class"][2] is None and m["recall_per_class"][2] is None


def test_class_predicted_but_never_true():
    m = metrics([0, 0, 1, 1], [0, 2, 1, 1], 3)
    # class 2: F1 = 0 (a false positive), recall undefined -> left out of UAR
    assert m["f1_per_class"][2] == 0.0
    assert m["recall_per_class"][2] is None
    assert m["uf1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)


def test_classes_given_as_ids_and_empty_input():
    m = metrics([5, 7], [5, 7], [5, 7])
    assert m["uf1"] == 1.0
    e = metrics([], [], 3)
    assert e["n"] == 0 and math.isnan(e["uf1"])
    with pytest.raises(ValueError):
        metrics([0, 1], [0], 3)


def test_metrics_table_overall_and_per_dataset():
    records = [
        {"dataset": "casme2", "label": 0, "prediction": 0},
        {"dataset": "casme2", "label": 1, "prediction": 1},
        {"dataset": "samm", "label": 0, "prediction": 1},
        {"dataset": "samm", "label": 2, "prediction": 2},
    ]
    t = metrics_table(records, 3)
    assert list(t["per_dataset"]) == ["casme2", "samm"]
    assert t["per_dataset"]["casme2"]["acc"] == 1.0
    assert t["per_dataset"]["samm"]["acc"] == 0.5
    assert t["overall"]["n"] == 4 and t["overall"]["acc"] == 0.75
    # a DataFrame gives the same table
    t2 = metrics_table(pd.DataFrame(records), 3)
    assert t2["overall"]["uf1"] == pytest.approx(t["overall"]["uf1"])
    with pytest.raises(KeyError):
        metrics_table([{"label": 0, "prediction": 0}], 3)


# -- written against the surviving mutants of `make mutants` (mefeat.train.metrics) ---------


def test_empty_input_gives_every_field():
    e = metrics([], [], 3)
    assert set(e) == {"uf1", "uar", "acc", "n", "f1_per_class", "recall_per_class",
                      "confusion"}
    assert all(math.isnan(e[k]) for k in ("uf1", "uar", "acc")) and e["n"] == 0
    assert e["f1_per_class"] == [None] * 3 and e["recall_per_class"] == [None] * 3
    assert e["confusion"] == [[0] * 3] * 3


def test_a_length_mismatch_says_both_lengths():
    with pytest.raises(ValueError, match="y_true has 2 entries but y_pred has 1"):
        metrics([0, 1], [0], 3)


def test_column_vectors_and_string_ids_score_as_flat_integers():
    # A prediction table read back from CSV holds strings; a model's argmax may come as
    # (N, 1). Both are the same predictions, scored without a warning.
    import warnings

    y = [0, 0, 1, 1, 2, 2]
    p = [0, 1, 1, 1, 2, 0]
    flat = metrics(y, p, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics(np.array(y)[:, None], np.array(p)[:, None], 3) == flat
        assert metrics([str(v) for v in y], [str(v) for v in p], 3) == flat


def test_samples_of_no_scheme_class_give_nan_means():
    # Every sample's class lies outside the scheme: no class to average over.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no mean of an empty list
        m = metrics([5, 6], [5, 6], 3)
    assert math.isnan(m["uf1"]) and math.isnan(m["uar"]) and m["acc"] == 1.0
    assert m["f1_per_class"] == [None] * 3 and m["confusion"] == [[0] * 3] * 3


def test_a_class_absent_from_both_keeps_its_row_of_the_confusion_matrix():
    m = metrics([0, 0, 1], [0, 1, 1], 3)
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_metrics_table_defaults_to_three_classes_and_names_what_is_missing():
    records = [{"dataset": "casme2", "label": 0, "prediction": 0},
               {"dataset": "samm", "label": 1, "prediction": 1}]
    t = metrics_table(records)
    assert len(t["overall"]["f1_per_class"]) == 3
    with pytest.raises(KeyError, match=r"lacks column\(s\) \['dataset'\]"):
        metrics_table(pd.DataFrame(records).drop(columns="dataset"))
    with pytest.raises(KeyError, match="record 1 lacks field 'dataset'"):
        metrics_table([records[0], {"label": 1, "prediction": 1}])


def test_one_sample_is_scored():
    m = metrics([1], [1], 3)
    assert (m["uf1"], m["uar"], m["acc"], m["n"]) == (1.0, 1.0, 1.0, 1)
    assert m["confusion"] == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]

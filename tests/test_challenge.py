"""The MEGC long-video scores on hand-worked cases and on the organisers' own published
figures: the STRS-Metric README's example (STRS 0.2) and the MEGC 2020 baseline's counts."""

from __future__ import annotations

import pytest

from mefeat.keyframes import Expression as E
from mefeat.keyframes import spotting_scores, str_scores
from mefeat.keyframes.challenge import Counts, interval_iou, match


@pytest.mark.parametrize("a, b, iou", [
    ((10, 70), (45, 85), 26 / 76),   # frames 45..70 shared, 10..85 in either
    ((0, 9), (0, 4), 5 / 10),        # exactly the threshold
    ((0, 4), (5, 9), 0.0),           # adjacent: no frame shared
    ((0, 4), (20, 29), 0.0),
    ((7, 7), (7, 7), 1.0),           # one frame each, the same
    ((0, 99), (50, 50), 1 / 100),
])
def test_iou_counts_frames_with_both_ends_included(a, b, iou):
    x, y = E("v", *a), E("v", *b)
    assert interval_iou(x, y) == pytest.approx(iou) == pytest.approx(interval_iou(y, x))


def test_strs_readme_example():
    # genbing99/STRS-Metric README: "STRS: 0.2". By hand: EP02_01f IoU 26/76 and EP03_02
    # 31/71 miss (2 FP, 2 FN), the other three hit (3 TP): spotting F1 0.6. Classes are the
    # ground truth's {happiness, others, repression}; of the three pairs only others->others
    # is right: precision (0 + 1 + 0)/3, recall (0 + 1 + 0)/3, analysis F1 1/3.
    truth = [E("1/EP02_01f", 45, 85, label="happiness"), E("1/EP03_02", 130, 160, label="others"),
             E("1/EP04_02", 20, 75, label="others"), E("2/EP01_11f", 45, 95, label="repression"),
             E("2/EP02_04f", 30, 140, label="repression")]
    spotted = [E("1/EP02_01f", 10, 70, label="happiness"), E("1/EP03_02", 100, 170, label="others"),
               E("1/EP04_02", 0, 70, label="others"), E("2/EP01_11f", 20, 90, label="happiness"),
               E("2/EP02_04f", 70, 140, label="happiness")]
    s = str_scores(truth, spotted)
    assert (s["spotting"]["tp"], s["spotting"]["fp"], s["spotting"]["fn"]) == (3, 2, 2)
    assert s["spotting"]["f1"] == pytest.approx(0.6)
    assert s["analysis"]["classes"] == ["happiness", "others", "repression"]
    assert s["analysis"]["precision"] == pytest.approx(1 / 3)
    assert s["analysis"]["recall"] == pytest.approx(1 / 3)
    assert s["analysis"]["f1"] == pytest.approx(1 / 3)
    assert round(s["strs"], 4) == 0.2


@pytest.mark.parametrize("counts, published", [
    # HeyingGithub/Baseline-project-for-MEGC2020_spotting README / MEGC2020_results.txt
    ((130, 6428, 227), (0.0198, 0.3641, 0.0376)),   # CAS(ME)^2 overall
    ((109, 1414, 191), (0.0716, 0.3633, 0.1196)),   # CAS(ME)^2 macro
    ((21, 5014, 36), (0.0042, 0.3684, 0.0082)),     # CAS(ME)^2 micro
    ((51, 1741, 451), (0.0285, 0.1016, 0.0445)),    # SAMM-LV overall
])
def test_scores_of_the_mdmd_baselines_published_counts(counts, published):
    c = Counts(*counts)
    assert (round(c.precision, 4), round(c.recall, 4), round(c.f1, 4)) == published


def test_a_ground_truth_is_claimed_once_in_the_order_spotted():
    truth = [E("v", 0, 9, label="a")]
    first, second = E("v", 0, 11, label="x"), E("v", 0, 9, label="y")  # IoU 10/12, then 1
    m = match(truth, [first, second])
    assert m.pairs == [(truth[0], first)] and m.false_positives == [second]
    assert spotting_scores(truth, [first, second])["overall"] == {
        "tp": 1, "fp": 1, "fn": 0, "precision": 0.5, "recall": 1.0, "f1": 2 / 3}
    assert match(truth, [second, first]).pairs == [(truth[0], second)]


def test_one_spotted_interval_can_claim_two_overlapping_ground_truths():
    # strs_metric.py:58-63 has no break: [0, 9] has IoU 1 with [0, 9] and 10/11 with [0, 10]
    truth = [E("v", 0, 9), E("v", 0, 10)]
    s = spotting_scores(truth, [E("v", 0, 9)])["micro"]
    assert (s["tp"], s["fp"], s["fn"]) == (2, 0, 0)


def test_kinds_match_only_their_own_and_overall_pools_them():
    truth = [E("v", 0, 9, "macro"), E("v", 100, 104, "micro"), E("w", 10, 19, "micro"),
             E("v", 200, 239, "macro")]
    spotted = [E("v", 0, 9, "micro"),       # right frames, wrong kind: FP, and the macro a FN
               E("v", 100, 104, "micro"),   # TP
               E("v", 200, 239, "macro"),   # TP
               E("x", 5, 9, "macro")]       # a video without ground truth: FP
    s = spotting_scores(truth, spotted)
    assert {k: (v["tp"], v["fp"], v["fn"]) for k, v in s.items()} == {
        "micro": (1, 1, 1), "macro": (1, 1, 1), "overall": (2, 2, 2)}
    assert s["overall"]["f1"] == pytest.approx(0.5)  # P = 2/4, R = 2/4


def test_nothing_spotted_or_nothing_to_spot():
    truth = [E("v", 0, 9)]
    assert spotting_scores(truth, [])["overall"] == {
        "tp": 0, "fp": 0, "fn": 1, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert spotting_scores([], [E("v", 0, 9)])["overall"]["fp"] == 1
    empty = str_scores([], [])
    assert empty["strs"] == 0.0 and empty["analysis"]["f1"] == 0.0


def test_recognition_counts_only_the_true_positives_of_the_classes_scored():
    truth = [E("v", 0, 9, label="negative"), E("v", 50, 59, label="positive"),
             E("v", 80, 89, label="others"), E("w", 0, 9, label="surprise")]
    spotted = [E("v", 0, 9, label="negative"), E("v", 50, 59, label="negative"),
               E("v", 80, 89, label="others"), E("w", 30, 39, label="surprise")]  # a miss
    s = str_scores(truth, spotted, classes=["negative", "positive", "surprise"])
    # pairs scored: negative->negative, positive->negative (others left out, surprise missed)
    a = s["analysis"]
    assert a["pairs"] == 2
    assert a["per_class"]["negative"] == {"tp": 1, "fp": 1, "fn": 0, "precision": 0.5,
                                               "recall": 1.0, "f1": 2 / 3}
    assert a["precision"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert a["recall"] == pytest.approx((1 + 0 + 0) / 3)
    assert a["f1"] == pytest.approx(2 * (1 / 6) * (1 / 3) / (1 / 6 + 1 / 3))
    assert a["uf1"] == pytest.approx((2 / 3) / 3)
    assert s["spotting"]["f1"] == pytest.approx(0.75)  # 3 TP, 1 FP, 1 FN
    assert s["strs"] == pytest.approx(0.75 * a["f1"])


def test_a_single_class_recognised_right_scores_one():
    # where strs_metric.py:34-37 scores the class 0 (a one-cell confusion matrix)
    truth = [E("v", 0, 9, label="negative")]
    s = str_scores(truth, [E("v", 0, 9, label="negative")])
    assert s["analysis"]["f1"] == 1.0 and s["strs"] == 1.0


@pytest.mark.parametrize("bad", [E("v", 9, 0), E("v", 0, 9, kind="other")])
def test_malformed_intervals_are_refused(bad):
    with pytest.raises(ValueError, match="interval"):
        spotting_scores([bad], [])


def test_an_iou_of_exactly_one_half_is_a_hit():
    assert spotting_scores([E("v", 0, 4)], [E("v", 0, 9)])["micro"]["tp"] == 1  # 5/10
    assert spotting_scores([E("v", 0, 4)], [E("v", 0, 10)])["micro"]["tp"] == 0  # 5/11

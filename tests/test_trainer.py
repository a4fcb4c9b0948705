"""LOSO folds and the trainer: fold-batched training agrees with one fold at a time,
seeds repeat, test-best selection follows main_HTNet.py, models that vmap cannot run
fall back to a loop.

The tests register tiny models of their own, so they do not depend on the model zoo.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _models import ARRAYS_VIEW, LinearNet
from torch import nn

from mefeat.errors import ModelError
from mefeat.models import register, scoped_registry
from mefeat.train import LosoResult, TrainingError, loso_folds, train_loso

TRAIN = {"optimizer": "adam", "lr": 1e-2, "epochs": 3, "batch_size": 16, "loss": "cross_entropy"}


class TinyNet(LinearNet):
    """conv -> BatchNorm -> ReLU -> pool -> linear; dropout optional."""

    def __init__(self, *, num_classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__(in_features=4 * 4 * 4, num_classes=num_classes)
        # no bias before BatchNorm: its gradient is rounding noise, which Adam turns into
        # full-size steps, so two correct implementations would drift apart
        self.conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(dropout)

    def forward_features(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.drop(nn.functional.max_pool2d(x, 2).flatten(1))


class TwoInputNet(TinyNet):
    """Two inputs (a map and a vector), BatchNorm1d in the head."""

    def __init__(self, *, num_classes: int = 3) -> None:
        super().__init__(num_classes=num_classes)
        self.vec = nn.Linear(5, 6, bias=False)
        self.bn1 = nn.BatchNorm1d(6)
        self.fc = nn.Linear(4 * 4 * 4 + 6, num_classes)

    def forward_features(self, x):
        img, vec = x
        return torch.cat([super().forward_features(img), self.bn1(self.vec(vec))], 1)


class ItemNet(TinyNet):
    """Data-dependent Python control flow: vmap cannot run it."""

    def forward(self, x):
        if x.sum().item() > 0:
            x = x * 1.0
        return super().forward(x)


@pytest.fixture(autouse=True, scope="module")
def tiny_models():
    """The tests' own models, registered for this module only."""
    with scoped_registry():
        register("tiny_test_net", view=ARRAYS_VIEW, input_shapes=((2, 8, 8),), recipe=TRAIN,
                 options={"dropout": 0.0})(
            lambda *, num_classes=3, dropout=0.0: TinyNet(num_classes=num_classes,
                                                         dropout=dropout))
        register("tiny_two_input", view=ARRAYS_VIEW, input_shapes=((2, 8, 8), (5,)), recipe=TRAIN)(
            lambda *, num_classes=3: TwoInputNet(num_classes=num_classes))
        register("tiny_item_net", view=ARRAYS_VIEW, input_shapes=((2, 8, 8),), recipe=TRAIN)(
            lambda *, num_classes=3: ItemNet(num_classes=num_classes))
        yield


def _data(n: int = 60, n_subjects: int = 5, seed: int = 0, signal: float = 0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 2, 8, 8)).astype(np.float32)
    x[:, 0, :3, :3] += signal * y[:, None, None]  # a learnable cue when signal > 0
    # uneven subject sizes, so folds have training sets of different sizes
    sizes = np.array([1, 2, 3, 4, 5][:n_subjects], dtype=float)
    subj_of = rng.choice(n_subjects, size=n, p=sizes / sizes.sum())
    subjects = np.array([f"ds{s % 2}/s{s:02d}" for s in subj_of], dtype=object)
    return x, y, subjects


def test_loso_folds_partition_in_sorted_order():
    subjects = ["b/2", "a/1", "b/2", "a/10", "a/1"]
    folds = loso_folds(subjects)
    assert [f[0] for f in folds] == ["a/1", "a/10", "b/2"]
    for subject, train, test in folds:
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(5))
        assert all(subjects[i] == subject for i in test)
        assert all(subjects[i] != subject for i in train)
    assert folds[0][2].tolist() == [1, 4]


@pytest.mark.parametrize("selection", ["last", "test-best"])
def test_batched_folds_match_one_at_a_time(selection):
    x, y, s = _data()
    kw = dict(epochs=4, selection=selection, seed=7, batch_size=16, shuffle=True)
    seq = train_loso("tiny_test_net", x, y, s, fold_batch=1, **kw)
    bat = train_loso("tiny_test_net", x, y, s, fold_batch=5, **kw)
    assert "batched" in bat.settings["fold_batching"]
    assert "one fold" in seq.settings["fold_batching"]
    np.testing.assert_allclose(bat.logits, seq.logits, rtol=1e-4, atol=1e-5)
    assert (bat.predictions["prediction"] == seq.predictions["prediction"]).all()
    if selection == "test-best":
        assert bat.best_epoch == seq.best_epoch
        np.testing.assert_array_equal(bat.epoch_predictions, seq.epoch_predictions)


def test_batched_full_batch_and_two_inputs():
    x, y, s = _data()
    vec = np.random.default_rng(1).normal(size=(len(y), 5)).astype(np.float32)
    kw = dict(epochs=3, seed=1, batch_size="full")
    seq = train_loso("tiny_two_input", (x, vec), y, s, fold_batch=1, **kw)
    bat = train_loso("tiny_two_input", (x, vec), y, s, fold_batch=3, **kw)
    assert seq.settings["recipe"]["batch_size"] is None
    assert seq.settings["overrides"] == {"epochs": 3, "batch_size": "full"}
    np.testing.assert_allclose(bat.logits, seq.logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fold_batch", [1, 4])
def test_same_seed_is_bit_identical(fold_batch):
    x, y, s = _data()
    kw = dict(epochs=2, fold_batch=fold_batch, model_options={"dropout": 0.5}, shuffle=True)
    a = train_loso("tiny_test_net", x, y, s, seed=3, **kw)
    b = train_loso("tiny_test_net", x, y, s, seed=3, **kw)
    c = train_loso("tiny_test_net", x, y, s, seed=4, **kw)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert not np.array_equal(a.logits, c.logits)


def test_result_layout_and_learning():
    x, y, s = _data(n=90, signal=3.0)
    res = train_loso("tiny_test_net", x, y, s, epochs=15, seed=0, batch_size="full", lr=3e-2)
    assert isinstance(res, LosoResult)
    assert res.selection == "last" and res.epochs == 15
    p = res.predictions
    assert sorted(p["index"]) == list(range(90))
    assert (p["epoch"] == 15).all()
    assert set(p["dataset"]) == {"ds0", "ds1"}
    assert (p["label"].to_numpy() == y[p["index"].to_numpy()]).all()
    assert set(res.fold_seconds) == set(s)
    m = res.metrics()
    assert m["selection"] == "last"
    assert m["overall"]["acc"] > 0.8  # the cue is easy; a broken trainer stays near 1/3
    assert set(m["per_dataset"]) == {"ds0", "ds1"}


def test_test_best_follows_main_htnet():
    x, y, s = _data(signal=1.0)
    res = train_loso("tiny_test_net", x, y, s, epochs=6, selection="test-best", fold_batch=1)
    ep = res.epoch_predictions
    assert ep.shape == (6, len(y)) and (ep >= 0).all()
    for subject, _, test in loso_folds(s):
        acc = (ep[:, test] == y[test]).mean(1)
        # best test accuracy, ties to the later epoch (main_HTNet.py compares with <=)
        expected = int(np.flatnonzero(acc == acc.max())[-1]) + 1
        assert res.best_epoch[subject] == expected
        chosen = res.predictions.set_index("index").loc[test]
        assert (chosen["epoch"] == expected).all()
        assert (chosen["prediction"].to_numpy() == ep[expected - 1, test]).all()


def test_fold_subset_and_vmap_fallback():
    x, y, s = _data()
    first_two = sorted(set(s))[:2]
    res = train_loso("tiny_item_net", x, y, s, epochs=1, folds=2, fold_batch=4)
    assert res.settings["folds"] == first_two
    assert "vmap failed" in res.settings["fold_batching"]
    assert set(res.predictions["subject"]) == set(first_two)
    assert np.isnan(res.logits[~np.isin(s, first_two)]).all()


def test_user_errors():
    x, y, s = _data()
    with pytest.raises(TrainingError, match="selection"):
        train_loso("tiny_test_net", x, y, s, epochs=1, selection="best")
    with pytest.raises(TrainingError, match="sample shape"):
        train_loso("tiny_test_net", x[:, :1], y, s, epochs=1)
    with pytest.raises(TrainingError, match="labels must lie in 0..2"):
        train_loso("tiny_test_net", x, y + 3, s, epochs=1, num_classes=3)
    with pytest.raises(TrainingError, match="folds must lie in 1..5"):
        train_loso("tiny_test_net", x, y, s, epochs=1, folds=6)
    with pytest.raises(TrainingError, match="not subjects"):
        train_loso("tiny_test_net", x, y, s, epochs=1, folds=["nobody"])
    with pytest.raises(ModelError):
        train_loso("tiny_test_net", x, y, s, epochs=1, model_options={"width": 3})
    with pytest.raises(ModelError):
        train_loso("no_such_model_xyz", x, y, s, epochs=1)


def test_ststnet_batched_matches_loop_without_dropout():
    rng = np.random.default_rng(0)
    x = rng.random((24, 3, 28, 28)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    s = np.array([f"d/s{i % 3}" for i in range(24)], dtype=object)
    kw = dict(epochs=2, batch_size=8, model_options={"dropout": 0.0}, seed=0)
    seq = train_loso("ststnet", x, y, s, fold_batch=1, **kw)
    bat = train_loso("ststnet", x, y, s, fold_batch=3, **kw)
    assert seq.settings["recipe"]["optimizer"]["lr"] == 5e-5
    assert seq.settings["recipe"]["shuffle"] is False
    np.testing.assert_allclose(bat.logits, seq.logits, rtol=1e-4, atol=1e-5)


def test_worker_processes_give_the_same_predictions():
    # Folds are independent: training them in two spawned processes changes nothing but
    # where they run (one torch thread each there, so compare to rounding).
    rng = np.random.default_rng(0)
    x = rng.random((24, 3, 28, 28)).astype(np.float32) * 255
    y = rng.integers(0, 3, 24)
    s = np.array([f"d/s{i % 4}" for i in range(24)], dtype=object)
    kw = dict(epochs=3, batch_size=8, model_options={"dropout": 0.5}, seed=3,
              selection="test-best")
    one = train_loso("ststnet", x, y, s, workers=1, **kw)
    two = train_loso("ststnet", x, y, s, workers=2, **kw)
    assert two.settings["workers"] == 2 and one.settings["workers"] == 1
    assert "2 worker processes" in two.settings["fold_batching"]
    np.testing.assert_allclose(two.logits, one.logits, rtol=1e-4, atol=1e-4)
    assert two.best_epoch == one.best_epoch
    assert set(two.fold_seconds) == set(one.fold_seconds) == {f"d/s{i}" for i in range(4)}
    with pytest.raises(TrainingError, match="workers"):
        train_loso("ststnet", x, y, s, workers=0, **kw)

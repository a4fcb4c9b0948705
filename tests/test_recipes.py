"""Every recipe field is executed: schedules give torch's own learning rates, augmentation
and key-frame jitter act in training only and differ between epochs and folds, the model's
own loss reaches the gradients, each official epoch rule picks what the official code's
logic picks (written out here), and a field that nothing executes is refused.

The tests register tiny models of their own (in a scoped registry); the official rules are
checked with the registered models' own recipes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _models import ARRAYS_VIEW, LinearNet
from torch import nn

from mefeat.models import get_spec, list_models, register, scoped_registry
from mefeat.recipes import (
    ClassBalancedSampler,
    ExponentialLR,
    HorizontalFlip,
    KeyframeJitter,
    Optimizer,
    Oversample,
    RandomCrop,
    Recipe,
    RecipeError,
    Rotation,
    Selection,
    StepLR,
    WarmupCosine,
)
from mefeat.recipes.augment import Augmenter, pad_crop, rotate
from mefeat.recipes.selection import FoldPicker, choose_epochs, rule_of
from mefeat.train import loso_folds, train_loso

LAST = Selection("last", source="test")
CALLS: list[tuple[bool, torch.Tensor]] = []  # (training?, input batch) of the Recorder
DTYPES: list[torch.dtype] = []  # dtype of the Recorder's linear layer output in training


class Recorder(LinearNet):
    """A linear model that records every batch it sees."""

    def __init__(self, *, num_classes: int = 3, in_features: int = 2 * 8 * 8) -> None:
        super().__init__(in_features=in_features, num_classes=num_classes)

    def forward_features(self, x):
        x = x[0] if isinstance(x, tuple) else x
        CALLS.append((self.training, x.detach().clone()))
        if self.training:
            DTYPES.append(self.fc(x.flatten(1)).dtype)
        return x.flatten(1)


def _recipe(**kw) -> Recipe:
    base = dict(optimizer=Optimizer("sgd", lr=0.1), epochs=4, batch_size=None, official=LAST)
    return Recipe(**{**base, **kw})


@pytest.fixture(autouse=True, scope="module")
def recorder_model():
    """The Recorder, registered for this module only."""
    with scoped_registry():
        register("recipe_recorder", view=ARRAYS_VIEW, input_shapes=((2, 8, 8),), recipe=_recipe())(
            lambda *, num_classes=3: Recorder(num_classes=num_classes))
        yield


@pytest.fixture
def scoped():
    """Models a test registers are gone after it."""
    with scoped_registry():
        yield


def _data(n=30, subjects=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 8, 8)).astype(np.float32)
    y = np.arange(n) % 3
    s = np.array([f"d/s{i % subjects}" for i in range(n)], dtype=object)
    return x, y, s


# -- schedules ----------------------------------------------------------------------------

def _torch_epoch_lrs(make, epochs, lr, step_if=lambda epoch: True):
    """The learning rate of each epoch under a torch scheduler stepped after each epoch."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make(opt)
    lrs = []
    for epoch in range(1, epochs + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if step_if(epoch):
            sched.step()
    return lrs


@pytest.mark.parametrize("fold_batch", [1, 3])
def test_step_lr_is_torchs_step_lr(fold_batch):
    x, y, s = _data()
    res = train_loso("recipe_recorder", x, y, s, recipe=_recipe(epochs=10,
                     schedule=StepLR(3, 0.5)), fold_batch=fold_batch)
    expected = _torch_epoch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5), 10, 0.1)
    for lrs in res.lr.values():
        np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert expected[3] == pytest.approx(0.05) and expected[9] == pytest.approx(0.0125)


def test_exponential_lr_stops_after_its_epoch_cap():
    # MMNet's CASME2_3.py:497-500: `if i <= 50: scheduler_all.step()` after epoch i.
    x, y, s = _data()
    res = train_loso("recipe_recorder", x, y, s, recipe=_recipe(
        epochs=9, schedule=ExponentialLR(0.8, until_epoch=4)))
    expected = _torch_epoch_lrs(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.8), 9,
                                0.1, step_if=lambda epoch: epoch <= 4)
    for lrs in res.lr.values():
        np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert expected[4:] == [pytest.approx(0.1 * 0.8 ** 4)] * 5


def test_warmup_cosine_is_edmdbn_s_per_step_formula():
    # EDMDBN's models/utils/lr_sched.py CosineWarmupScheduler, written out: after k steps,
    # lr = 1e-8 + lr0 * 0.5 * (1 + cos(pi k / T)) * (k / W if k <= W else 1).
    x, y, s = _data()
    epochs, bs = 6, 4
    res = train_loso("recipe_recorder", x, y, s, recipe=_recipe(
        epochs=epochs, batch_size=bs, optimizer=Optimizer("adamw", lr=1e-3),
        schedule=WarmupCosine(warmup_epochs=2, floor=1e-8)))
    for subject, _, test in loso_folds(s):
        steps = math.ceil((len(s) - len(test)) / bs)
        total, warm = epochs * steps, 2 * steps

        def official(k, total=total, warm=warm):
            factor = 0.5 * (1 + np.cos(np.pi * k / total))
            if k <= warm:
                factor *= k / warm
            return 1e-8 + 1e-3 * factor

        got = res.lr_steps[subject]
        assert len(got) == total
        np.testing.assert_allclose(got, [official(k) for k in range(total)], rtol=1e-9,
                                   atol=1e-15)


def test_a_constant_schedule_keeps_the_learning_rate():
    x, y, s = _data()
    res = train_loso("recipe_recorder", x, y, s, recipe=_recipe(epochs=5))
    assert all(lrs == [0.1] * 5 for lrs in res.lr.values())


# -- augmentation -------------------------------------------------------------------------

def test_rotation_by_90_degrees_is_a_quarter_turn():
    img = torch.arange(36, dtype=torch.float32).reshape(1, 1, 6, 6)
    out = rotate(img, torch.tensor([90.0]))
    # counter-clockwise, as torchvision's RandomRotation with a positive angle
    np.testing.assert_array_equal(out[0, 0].numpy(), np.rot90(img[0, 0].numpy()))


def test_pad_crop_is_a_padded_slice():
    img = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    out = pad_crop(img, 2, "constant", torch.tensor([0, 3]), torch.tensor([4, 1]))
    padded = np.pad(img.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)))
    np.testing.assert_array_equal(out[0].numpy(), padded[0, :, 0:5, 4:9])
    np.testing.assert_array_equal(out[1].numpy(), padded[1, :, 3:8, 1:6])
    edge = pad_crop(img, 2, "edge", torch.tensor([0, 0]), torch.tensor([0, 0]))
    np.testing.assert_array_equal(edge[0, 0, :3, :3].numpy(), np.full((3, 3), 0.0))


def test_one_draw_serves_every_input_and_channel():
    aug = Augmenter((HorizontalFlip(0.5), RandomCrop(2)))
    a = torch.randn(8, 3, 6, 6)
    b = a.clone() * 2
    out_a, out_b = aug((a, b), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out_b, out_a * 2)


def test_augmentation_acts_in_training_only_and_differs_between_epochs_and_folds():
    x, y, s = _data(n=12)
    CALLS.clear()
    train_loso("recipe_recorder", x, y, s, recipe=_recipe(
        epochs=2, augmentation=(HorizontalFlip(0.5), RandomCrop(2))), folds=2)
    train = [c for t, c in CALLS if t]
    evals = [c for t, c in CALLS if not t]
    # one full-batch step an epoch, 2 epochs, 2 folds; every epoch is evaluated per fold
    assert len(train) == 4 and len(evals) == 4
    folds = loso_folds(s)[:2]
    for (_, _, te), ev in zip([f for f in folds for _ in range(2)], evals, strict=True):
        np.testing.assert_array_equal(ev.numpy(), x[te])  # evaluation: the inputs as given
    f0_e1, f0_e2, f1_e1 = train[0], train[1], train[2]
    assert not torch.equal(f0_e1, torch.as_tensor(x[folds[0][1]]))  # training: augmented
    assert not torch.equal(f0_e1, f0_e2)  # a new draw every epoch
    # sample 2 trains in both folds: other draws in each
    pos0 = list(folds[0][1]).index(2)
    pos1 = list(folds[1][1]).index(2)
    assert not torch.equal(f0_e1[pos0], f1_e1[pos1])


def test_class_balanced_batches():
    labels = np.array([0] * 20 + [1] * 9 + [2] * 13)
    batches = ClassBalancedSampler(3, 4).batches(labels, np.random.default_rng(0))
    assert len(batches) == 3  # 42 samples: 0, 12, 24 (+12 < 42), then 36 + 12 >= 42
    for b in batches:
        assert len(b) == 12 and sorted(np.bincount(labels[b]).tolist()) == [4, 4, 4]
    two = ClassBalancedSampler(3, 4).batches(
        labels[labels > 0], np.random.default_rng(0))  # a fold with 2 classes: both each batch
    assert all(sorted(np.bincount(labels[labels > 0][b])[1:].tolist()) == [4, 4] for b in two)


# fp16 runs as bf16 on a CPU, as PyTorch Lightning does (mefeat.recipes.loss.Precision).
@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32),
                                                ("fp16", torch.bfloat16),
                                                ("bf16", torch.bfloat16)])
def test_precision_runs_the_training_forward_in_its_dtype(precision, dtype):
    from mefeat.recipes.loss import Precision

    x, y, s = _data(n=12)
    DTYPES.clear()
    res = train_loso("recipe_recorder", x, y, s, recipe=_recipe(epochs=2, precision=precision),
                     folds=1)
    assert DTYPES == [dtype, dtype]
    assert np.isfinite(res.logits[np.isfinite(res.logits).all(1)]).all()
    # The run no longer records the precision it ran (the former settings["precision_run"]):
    # the precision the trainer makes for the run's recorded device says it.
    ran = Precision(res.settings["recipe"]["precision"], torch.device(res.settings["device"]))
    assert ran.precision == ("fp32" if precision == "fp32" else "bf16")
    assert res.settings["recipe"]["precision"] == precision
    if precision == "fp16":
        assert "gradient scaler" in res.settings["fold_batching"]


# -- key-frame jitter -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frames_store(tmp_path_factory):
    from _stores import demo_store

    return demo_store(tmp_path_factory.mktemp("jitter"), subjects=2, clips=3, size=64)


def test_keyframe_jitter_draws_frames_in_range_in_training_only(frames_store, scoped):
    from mefeat.store import FeatureStore
    from mefeat.train import load_view
    from mefeat.views import imagenet_rgb

    jitter = KeyframeJitter(onset_after=1.0, apex_before=1.0, apex_after=1.0, divisor=2)
    name = "recipe_jitter_recorder"
    register(name, view="mmnet", input_shapes=((3, 224, 224), (3, 224, 224)),
             recipe=_recipe(epochs=3, keyframe_jitter=jitter))(
        lambda *, num_classes=3: Recorder(num_classes=num_classes, in_features=3 * 224 * 224))
    data = load_view(frames_store, name)  # the model's recipe jitters: the data has a bank
    assert data.jitter is not None
    CALLS.clear()
    train_loso(name, data, num_classes=data.num_classes)
    train = [c for t, c in CALLS if t]
    evals = [c for t, c in CALLS if not t]
    folds = loso_folds(data.subjects)
    assert len(train) == 3 * len(folds) and len(evals) == 3 * len(folds)  # every epoch
    for (_, _, te), ev in zip([f for f in folds for _ in range(3)], evals, strict=True):
        np.testing.assert_array_equal(ev.numpy(), data.inputs[0][te])  # annotated onset
    # Every training onset is the view's image of a frame in the allowed range.
    fs = FeatureStore.open(frames_store)
    kf = fs.variant("gt").read(["keyframes"])[1]["keyframes"]
    (_, tr, _) = folds[0]
    for epoch_batch in train[:3]:
        for pos, i in enumerate(tr):
            o, a, _ = kf[i]
            clip = fs.read_frames(str(data.keys[i]))[0]
            allowed = [imagenet_rgb(clip[t]) for t in range(o, o + int(1.0 * (a - o) / 2) + 1)]
            assert any(np.array_equal(epoch_batch[pos].numpy(), im) for im in allowed)
    assert not all(torch.equal(train[0], t) for t in train[1:3])  # new draws every epoch


def test_jitter_needs_the_frames(frames_store):
    from mefeat.train import TrainingError, load_view

    x = np.zeros((4, 3, 224, 224), np.float32)
    with pytest.raises(TrainingError, match="jitters the key frames"):
        train_loso("mmnet", (x, x), np.arange(4) % 3, np.array(["a/1", "a/2"] * 2, object),
                   epochs=1)
    # and the other way round: jittered frames for a recipe that does not jitter
    data = load_view(frames_store, "mmnet")
    assert data.jitter is not None
    with pytest.raises(TrainingError, match="no keyframe_jitter"):
        train_loso("mmnet", data, recipe=get_spec("mmnet").recipe.replace(keyframe_jitter=None),
                   epochs=1)


# -- the model's own loss -----------------------------------------------------------------

def test_srmcl_extra_terms_change_the_gradients_and_weight_zero_removes_them():
    from mefeat.models import create_model
    from mefeat.recipes.loss import cross_entropy, model_loss

    assert get_spec("srmcl").recipe.loss == "model"
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2])

    def grads(loss_of, **options):
        torch.manual_seed(0)
        model = create_model("srmcl", **options).train()
        torch.manual_seed(1)  # the same masks in every call
        loss_of(model).backward()
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                          for p in model.parameters()])

    recipe = get_spec("srmcl").recipe
    full = grads(lambda m: model_loss(m, x, y, recipe))
    ce_only = grads(lambda m: cross_entropy(m(x), y, recipe.label_smoothing).mean())
    zero = grads(lambda m: model_loss(m, x, y, recipe), recon_weight=0.0, memory_weight=0.0)
    assert not torch.allclose(full, ce_only)
    torch.testing.assert_close(zero, ce_only)


class OwnLoss(Recorder):
    """A model with its own training loss, counting its calls (at module level: the
    registered factory must build this class however often the test runs in a process)."""

    calls = 0

    def forward_train(self, x):
        return self(x)

    def loss(self, out, y):
        OwnLoss.calls += 1
        return nn.functional.cross_entropy(out, y) * 0 + out.sum() * 0


def test_the_trainer_calls_the_model_loss(scoped):
    OwnLoss.calls = 0
    name = "recipe_own_loss"
    register(name, view=ARRAYS_VIEW, input_shapes=((2, 8, 8),),
             recipe=_recipe(epochs=3, loss="model"))(
        lambda *, num_classes=3: OwnLoss(num_classes=num_classes))
    x, y, s = _data()
    res = train_loso(name, x, y, s, fold_batch=3)
    assert OwnLoss.calls == 3 * 3  # epochs × folds, one full batch each
    assert "own loss" in res.settings["fold_batching"]


# -- official epoch rules, against the official code's logic -----------------------------

def _preds(epochs, folds, n_per, seed):
    """Coarse per-epoch predictions (few samples, few patterns), so that ties are common."""
    rng = np.random.default_rng(seed)
    n = folds * n_per
    labels = rng.integers(0, 3, n)
    patterns = rng.integers(0, 3, (3, n))
    preds = patterns[rng.integers(0, 3, epochs)]
    # a few epochs where one fold is perfect (stops, thresholds)
    for e in rng.choice(epochs, 3, replace=False):
        preds[e, :n_per] = labels[:n_per]
    fold_list = [(f"d/s{f}", np.arange(f * n_per, (f + 1) * n_per)) for f in range(folds)]
    return preds, labels, fold_list


def _ours(model, preds, labels, folds, epochs):
    recipe = get_spec(model).recipe.replace(epochs=epochs)
    return choose_epochs(rule_of("official", recipe.official), preds,
                         list(range(1, epochs + 1)), labels, folds, 3, epochs)


def _causalnet_official(accs):
    # main_train.py:293-363
    best, best_epoch = 0, None
    for epoch, acc in enumerate(accs, 1):
        if best < acc:
            best, best_epoch = acc, epoch
        if acc >= 1:
            break
    return best_epoch


def _htnet_official(accs):
    # main_HTNet.py:250-301
    best, best_epoch = 0, None
    for epoch, acc in enumerate(accs, 1):
        if best <= acc:
            best, best_epoch = acc, epoch
    return best_epoch


def _mmnet_f1(y, p):
    # CASME2_3.py:553-572: per-class counts, mean over classes seen in labels or predictions
    f1s = []
    for cls in range(3):
        pos_label = np.sum(p == cls)  # (the official names are swapped)
        pos_pred = np.sum(y == cls)
        tp = np.sum((p == cls) & (y == cls))
        if pos_label + pos_pred:
            f1s.append(2 * tp / (pos_pred + pos_label))
    return float(np.mean(f1s))


def _mmnet_official(f1s):
    max_f1, best = 0, None
    for epoch, f1 in enumerate(f1s, 1):
        if f1 >= max_f1:
            max_f1, best = f1, epoch
    return best


def _edmdbn_official(uf1s, patience=30, threshold=0.99):
    # Lightning 1.9: ModelCheckpoint(monitor="uf1", mode="max") saves on a strict increase;
    # EarlyStopping(stopping_threshold=0.99, patience=30) after the same validation.
    best_ckpt, best_epoch = -math.inf, None
    es_best, wait = -math.inf, 0
    for epoch, f1 in enumerate(uf1s, 1):
        if f1 > best_ckpt:
            best_ckpt, best_epoch = f1, epoch
        if f1 > threshold:
            break
        if f1 > es_best:
            es_best, wait = f1, 0
        else:
            wait += 1
            if wait >= patience:
                break
    return best_epoch


@pytest.mark.parametrize("seed", range(6))
def test_per_fold_official_rules_pick_what_the_official_code_picks(seed):
    from sklearn.metrics import f1_score

    epochs = 60
    preds, labels, folds = _preds(epochs, 4, 4, seed)
    for model, official, score in (
        ("causalnet", _causalnet_official, lambda y, p: np.mean(y == p)),
        ("htnet", _htnet_official, lambda y, p: np.mean(y == p)),
        ("mmnet", _mmnet_official, _mmnet_f1),
        # torchmetrics 0.9 macro F1 = sklearn's over the labels present
        ("edmdbn", lambda s: _edmdbn_official(s, patience=5),
         lambda y, p: f1_score(y, p, average="macro")),
    ):
        recipe = get_spec(model).recipe.replace(epochs=epochs)
        if model == "edmdbn":  # a short patience, so that early stopping happens here
            recipe = recipe.replace(official=Selection(
                "per-fold", metric="uf1", ties="earliest", stop=(">", 0.99), patience=5,
                source="test"))
        ours = choose_epochs(rule_of("official", recipe.official), preds,
                             list(range(1, epochs + 1)), labels, folds, 3, epochs)
        for subject, test in folds:
            scores = [score(labels[test], preds[e, test]) for e in range(epochs)]
            expected = official(scores)
            if expected is None:  # CausalNet: every epoch at 0 adds no prediction; mefeat: 1
                expected = 1
            assert ours[subject] == expected, (model, subject)


@pytest.mark.parametrize("model", ["offtanet", "dual_inception", "micro_attention",
                                   "offapexnet"])
def test_all_folds_rule_picks_what_the_offtanet_repository_picks(model):
    from sklearn.metrics import recall_score

    recipe = get_spec(model).recipe
    epochs, step = recipe.epochs, recipe.official.every
    preds, labels, folds = _preds(epochs, 5, 3, seed=len(model))
    # train.py:72-86, written out
    observed_epochs = set(range(0, epochs, step))
    results = [{e: recall_score(labels[t], preds[e, t], average="macro", zero_division=0)
                for e in observed_epochs} for _, t in folds]

    def mean_uar(epoch):
        return np.mean(np.array([dic[epoch] for dic in results]))

    e1 = sorted(list(observed_epochs), reverse=True, key=mean_uar)[0]
    ours = _ours(model, preds, labels, folds, epochs)
    assert set(ours.values()) == {e1 + 1}  # 0-based there, 1-based here


def test_last_is_the_last_epoch():
    preds, labels, folds = _preds(30, 3, 3, 0)
    assert set(_ours("ststnet", preds, labels, folds, 30).values()) == {30}


# -- refusals ------------------------------------------------------------------------------

def test_a_recipe_field_nothing_executes_is_refused():
    with pytest.raises(RecipeError, match=r"model 'bad_recipe'.*\['scheduler'\]"):
        register("bad_recipe", view=ARRAYS_VIEW, input_shapes=((2,),),
                 recipe={"optimizer": "adam", "lr": 1e-3, "epochs": 2, "scheduler": "step"})
    with pytest.raises(RecipeError, match="schedule 'plateau'"):
        register("bad_recipe", view=ARRAYS_VIEW, input_shapes=((2,),),
                 recipe={"lr": 1e-3, "epochs": 2, "schedule": {"name": "plateau"}})
    with pytest.raises(RecipeError, match="keyframe_jitter"):
        register("bad_recipe", view="ststnet", input_shapes=((2,),),
                 recipe=_recipe(keyframe_jitter=KeyframeJitter(0.1, 0.1, 0.1)))
    with pytest.raises(RecipeError, match="shuffle"):
        _recipe(sampler=ClassBalancedSampler(3, 2), shuffle=True)
    with pytest.raises(RecipeError, match="precision"):
        _recipe(precision="fp8")
    assert "bad_recipe" not in list_models()


def test_overrides_are_recorded_as_overrides():
    x, y, s = _data()
    res = train_loso("recipe_recorder", x, y, s, epochs=2, lr=0.5, batch_size=4, folds=1)
    assert res.settings["overrides"] == {"epochs": 2, "lr": 0.5, "batch_size": 4}
    recipe = res.settings["recipe"]
    assert recipe["optimizer"]["lr"] == 0.5 and recipe["epochs"] == 2


def test_every_registered_recipe_round_trips_its_json_form():
    zoo = [n for n in list_models() if get_spec(n).builder.__module__.startswith("mefeat.models.")]
    assert len(zoo) == 10
    for name in zoo:
        r = get_spec(name).recipe
        d = r.to_dict()
        assert d["optimizer"]["name"] == r.optimizer.name and d["epochs"] == r.epochs
        assert d["official"]["kind"] and d["official"]["source"]
        assert isinstance(d["augmentation"], list)
        back = Recipe.from_dict(json.loads(json.dumps(d)), model=name)
        assert back == r, name
        assert back.official.rule and back.official.source == r.official.source


def _fold_pick(rule, scores, epochs):
    """The epoch a FoldPicker holds once every (epoch, score) has been offered."""
    picker = FoldPicker(rule)
    for epoch, score in zip(epochs, scores, strict=True):
        picker.offer(epoch, score)
    return picker.chosen


def test_a_stop_and_a_patience_end_a_fold_s_candidates():
    def rule(**kw):
        return Selection("per-fold", metric="acc", ties="earliest", source="test", **kw)

    scores, epochs = [0.2, 0.6, 0.9], [1, 2, 3]
    assert _fold_pick(rule(), scores, epochs) == 3
    assert _fold_pick(rule(stop=(">=", 0.5)), scores, epochs) == 2  # recorded, then stopped
    assert _fold_pick(rule(stop=(">", 0.6)), scores, epochs) == 3
    assert _fold_pick(rule(patience=2), [0.5, 0.4, 0.4, 0.9], [1, 2, 3, 4]) == 1
    assert _fold_pick(rule(patience=3), [0.5, 0.4, 0.4, 0.9], [1, 2, 3, 4]) == 4


# -- the rest of the recipe, field by field -------------------------------------------------

def _first_step(out, opt: Optimizer, label_smoothing: float = 0.0):
    """One full-batch step of the trainer on fold 0 (its checkpoint in the run folder
    ``out``), and the same step by hand."""
    from safetensors.torch import load_file

    from mefeat.models import create_model
    from mefeat.train import RunFolder, fold_seed

    x, y, s = _data(n=12)
    recipe = _recipe(epochs=1, optimizer=opt, label_smoothing=label_smoothing)
    res = train_loso("recipe_recorder", x, y, s, recipe=recipe, folds=1, out=out)
    subject, train_idx, _ = loso_folds(s)[0]
    (fold,) = res.folds
    assert fold.subject == subject and fold.checkpoint["epoch"] == 1  # after the one step
    state = load_file(RunFolder(out).checkpoint_file(subject))
    torch.manual_seed(fold_seed(0, subject))  # the trainer's initialisation rule
    model = create_model("recipe_recorder")
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    xb, yb = torch.as_tensor(x[train_idx]), torch.as_tensor(y[train_idx])
    loss = nn.functional.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
    grads = dict(zip([n for n, _ in model.named_parameters()],
                     torch.autograd.grad(loss, list(model.parameters())), strict=True))
    return state, w0, grads


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_the_first_step_is_sgd_with_the_recipe_s_arguments(smoothing, tmp_path):
    lr, wd = 0.3, 0.01
    got, w0, g = _first_step(tmp_path / "run",
                             Optimizer("sgd", lr=lr, momentum=0.9, weight_decay=wd), smoothing)
    for name, w in w0.items():  # first step: momentum buffer = gradient (+ weight decay)
        torch.testing.assert_close(got[name], w - lr * (g[name] + wd * w), rtol=1e-5,
                                   atol=1e-6)


def test_the_first_step_is_adam_and_adamw_with_the_recipe_s_arguments(tmp_path):
    lr, eps = 0.01, 1e-8
    got, w0, g = _first_step(tmp_path / "adam", Optimizer("adam", lr=lr, eps=eps))
    for name, w in w0.items():  # bias-corrected first step: g / (|g| + eps)
        torch.testing.assert_close(got[name], w - lr * g[name] / (g[name].abs() + eps),
                                   rtol=1e-5, atol=1e-6)
    wd = 0.5
    got, w0, g = _first_step(tmp_path / "adamw", Optimizer("adamw", lr=lr, weight_decay=wd,
                                                           decay_matrices_only=True))
    for name, w in w0.items():  # decoupled decay, on the weight matrix only
        decay = wd if w.ndim >= 2 else 0.0
        torch.testing.assert_close(got[name], w * (1 - lr * decay)
                                   - lr * g[name] / (g[name].abs() + eps), rtol=1e-5,
                                   atol=1e-6)


def test_shuffle_and_a_fixed_order():
    x, y, s = _data(n=12)
    for shuffle in (False, True):
        CALLS.clear()
        train_loso("recipe_recorder", x, y, s, recipe=_recipe(epochs=2, batch_size=4,
                                                              shuffle=shuffle), folds=1)
        train = [c for t, c in CALLS if t]
        first, second = torch.cat(train[:2]), torch.cat(train[2:4])
        assert torch.equal(first, second) != shuffle  # the same batches every epoch, or not
        if not shuffle:
            _, tr, _ = loso_folds(s)[0]
            np.testing.assert_array_equal(first.numpy(), x[tr][:8])  # in the data's order


def test_the_sampler_makes_the_trainer_s_batches():
    x, y, _ = _data(n=30)
    s = np.array([f"d/s{i // 6}" for i in range(30)], dtype=object)  # every class in a fold
    CALLS.clear()
    train_loso("recipe_recorder", x, y, s, recipe=_recipe(
        epochs=1, sampler=ClassBalancedSampler(3, 2)), folds=1)
    train = [c for t, c in CALLS if t]
    _, tr, _ = loso_folds(s)[0]
    count, official = 0, 0  # batchsize_balance.py's loop, written out
    while count + 6 < len(tr):
        official, count = official + 1, count + 6
    assert len(train) == official == 3 and all(len(b) == 6 for b in train)
    rows = {x[i].tobytes(): int(y[i]) for i in tr}
    for b in train:
        assert sorted(np.bincount([rows[v.numpy().tobytes()] for v in b]).tolist()) == [2, 2, 2]


def test_the_evaluation_cadence_and_the_seed():
    x, y, s = _data()
    rule = Selection("per-fold", metric="acc", ties="latest", every=3, first=2, source="test")
    res = train_loso("recipe_recorder", x, y, s, recipe=_recipe(epochs=10, official=rule,
                                                              seed=2025),
                     selection="official")
    # every epoch's held-out predictions are kept; the rule looks at epochs 2, 5, 8 only
    assert res.kept_epochs == list(range(1, 11))
    assert res.epoch_predictions.shape == (10, len(y))
    assert res.seed == 2025 and res.settings["seed"] == 2025
    chosen = res.chosen("official")
    assert set(chosen.values()) <= {2, 5, 8}
    assert res.best_epoch == chosen
    for subject, _, test in loso_folds(s):  # the rule written out: latest best acc of 2, 5, 8
        acc = {e: np.mean(res.epoch_predictions[e - 1, test] == y[test]) for e in (2, 5, 8)}
        assert chosen[subject] == max(e for e in acc if acc[e] == max(acc.values()))
    other = train_loso("recipe_recorder", x, y, s, recipe=_recipe(epochs=10, seed=7))
    assert other.seed == 7


# -- each model's recipe against its official source, written out here ----------------------
# (CausalNet, HTNet, STSTNet and the OFF-TANet family: their tests/test_model_*.py spec tests)


def test_mmnet_recipe_is_casme2_3_py():
    r = get_spec("mmnet").recipe
    # CASME2_3.py L430-431 AdamW(lr=0.0008, weight_decay=0.7); L441 + L497-500
    # ExponentialLR(0.987) stepped while i <= 50; L445 range(1, 100); L407 batch 24, shuffle
    assert r.optimizer == Optimizer("adamw", lr=0.0008, weight_decay=0.7)
    assert r.schedule == ExponentialLR(gamma=0.987, until_epoch=50)
    assert (r.epochs, r.batch_size, r.shuffle, r.loss, r.label_smoothing) == (
        99, 24, True, "cross_entropy", 0.0)
    # L371-378 RandomHorizontalFlip(0.5) → RandomRotation(4) → RandomCrop(224, padding=4)
    assert r.augmentation == (HorizontalFlip(p=0.5), Rotation(degrees=4),
                              RandomCrop(padding=4, padding_mode="constant"))
    # L137 onset + int(0.2 d1 / 4); L145-146 apex - int(0.15 d1 / 4) .. apex + int(0.15 d2 / 4)
    assert r.keyframe_jitter == KeyframeJitter(onset_after=0.2, apex_before=0.15,
                                               apex_after=0.15, divisor=4)
    # L553-584: per fold, best F1 with >=, the later epoch on ties
    s = r.official
    assert (s.kind, s.metric, s.ties, s.every, s.stop) == ("per-fold", "uf1", "latest", 1, None)


def test_edmdbn_recipe_is_its_trainer_and_yaml():
    r = get_spec("edmdbn").recipe
    # trainer configure_optimizers: AdamW(lr 1e-4) with weight decay 1e-8 on >= 2-D weights
    assert r.optimizer == Optimizer("adamw", lr=1e-4, weight_decay=1e-8,
                                    decay_matrices_only=True)
    # lr_sched.CosineWarmupScheduler: 1e-8 + lr ½(1 + cos(πk/T)) min(k/W, 1) per step, W 10 epochs
    assert r.schedule == WarmupCosine(warmup_epochs=10, floor=1e-8)
    # yaml: max_epochs 60, batch 4, precision 16; trainer L76-78 label_smoothing=0.1; seed 42
    assert (r.epochs, r.batch_size, r.shuffle, r.precision, r.label_smoothing, r.seed) == (
        60, 4, True, "fp16", 0.1, 42)
    # datasets/transforms.py FuseNetTransform: flip 0.5, rotation 4, crop padding 4 'edge'
    assert r.augmentation == (HorizontalFlip(p=0.5), Rotation(degrees=4),
                              RandomCrop(padding=4, padding_mode="edge"))
    # ModelCheckpoint(monitor uf1, max: strict, earliest on ties); EarlyStopping(uf1,
    # patience 60 * 0.5 = 30, stopping_threshold 0.99)
    s = r.official
    assert (s.kind, s.metric, s.ties, s.stop, s.patience) == (
        "per-fold", "uf1", "earliest", (">", 0.99), 30)


def test_srmcl_recipe_trains_its_method_with_a_balanced_sampler():
    r = get_spec("srmcl").recipe
    # VIT_SRMCL.py L312-334: the model's own loss (masked forward, reconstruction and
    # memory-contrastive terms); Dataloader/batchsize_balance.py: classes × samples batches
    assert r.loss == "model" and r.sampler == ClassBalancedSampler(n_classes=3, n_samples=10)
    assert r.batch_size is None  # the sampler's 3 × 10 batches
    assert r.official.kind == "last"
    assert "mefeat's choices" in r.source  # no training script: the rest is said to be ours


def test_oversample_draws_every_class_to_the_largest_count():
    labels = np.array([0, 0, 0, 0, 1, 2, 2])
    pos = Oversample(("samm",)).draw(labels, np.random.default_rng(0))
    assert len(pos) == 12 and np.bincount(labels[pos]).tolist() == [4, 4, 4]
    assert set(pos[labels[pos] == 1]) == {4}  # the only sample of class 1, four times
    assert Oversample(("samm", "smic")).applies(["smic", "samm"])
    assert not Oversample(("samm", "smic")).applies(["casme2", "samm"])


@pytest.mark.parametrize(("datasets", "balanced"), [(("d",), True), (("samm",), False)])
def test_oversampled_folds_train_on_the_balanced_list(datasets, balanced):
    # 3 subjects of dataset "d", classes 0 ×8, 1 ×2, 2 ×2 (in every subject's share)
    x, _, s = _data(n=12)
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    s = np.array([f"d/s{i % 3}" for i in range(12)], dtype=object)
    CALLS.clear()
    train_loso("recipe_recorder", x, y, s, folds=1,
               recipe=_recipe(epochs=1, oversample=Oversample(datasets)))
    (batch,) = [c for t, c in CALLS if t]  # one full batch
    _, train, _ = loso_folds(s)[0]
    counts = np.bincount(y[train], minlength=3)
    if not balanced:  # "d" is not among the datasets: the fold's list as it is
        assert len(batch) == len(train)
        return
    assert len(batch) == 3 * counts.max()
    rows = {tuple(np.round(x[i].ravel(), 5)): y[i] for i in train}
    drawn = [rows[tuple(np.round(b.numpy().ravel(), 5))] for b in batch]
    assert np.bincount(drawn).tolist() == [counts.max()] * 3


def test_edmdbn_oversamples_on_samm_and_smic_only():
    over = get_spec("edmdbn").recipe.oversample
    assert over.applies(["samm"]) and over.applies(["smic"]) and over.applies(["smic-e"])
    assert not over.applies(["casme2"]) and not over.applies(["casme2", "samm", "smic"])

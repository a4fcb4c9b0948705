"""Nine behaviours pinned against expected values that come from outside the code under test
(hand computation, or torch's own optimizer and scheduler on a toy problem).

1. the Off-ApexNet / Dual-Inception view of an official PNG hands the model (u, v);
2. StepLR decays once per epoch, however many optimizer steps an epoch has;
3. the key-frame jitter's apex upper bound uses the apex→offset length (MMNet);
4. an lr override changes the learning rate only;
5. SGD runs with the recipe's momentum;
6. the rotation augmentation draws angles of both signs, uniform in [-degrees, degrees];
7. the all-folds selection rule scores an epoch by the mean over folds of per-fold UAR;
8. a subset of a view keeps each kept sample's own key-frame-jitter rows;
9. a long-video interval handed on by ``predict`` keeps its offset frame.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from _models import ARRAYS_VIEW, LinearNet
from torch import nn

from mefeat.models import get_spec, register, scoped_registry
from mefeat.recipes import KeyframeJitter, Optimizer, Recipe, Rotation, Selection, StepLR

LAST = Selection("last", source="test")


def _tiny(*, num_classes=3):
    return LinearNet(in_features=2 * 4 * 4, num_classes=num_classes)


def _data(n=30, subjects=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 4, 4)).astype(np.float32)
    y = np.arange(n) % 3
    s = np.array([f"d/s{i % subjects}" for i in range(n)], dtype=object)
    return x, y, s


# -- 1. the official PNG's (u, v) -------------------------------------------------------------

@pytest.mark.parametrize("model", ["offapexnet", "dual_inception"])
def test_official_png_view_hands_u_then_v(model, tmp_path):
    # The official PNG, as OpenCV reads it (BGR), holds (strain, v, u): write one whose
    # three channels hold three different known patterns and read it back.
    rows, cols = np.mgrid[0:28, 0:28]
    u = (cols * 9).astype(np.uint8)  # grows left to right
    v = (rows * 5 + 100).astype(np.uint8)  # grows top to bottom
    strain = np.full((28, 28), 7, np.uint8)
    path = tmp_path / "x.png"
    assert cv2.imwrite(str(path), np.dstack([strain, v, u]))
    image = cv2.imread(str(path)).transpose(2, 0, 1)[None]  # (1, 3, 28, 28), BGR
    (out,) = get_spec(model).view.official({"image": image}, None)
    assert out.shape == (1, 2, 28, 28)
    np.testing.assert_allclose(out[0, 0], u / 255.0, rtol=0, atol=1e-7, err_msg="u")
    np.testing.assert_allclose(out[0, 1], v / 255.0, rtol=0, atol=1e-7, err_msg="v")


# -- 2. StepLR once per epoch -----------------------------------------------------------------

@pytest.mark.parametrize("fold_batch", [1, 3])
def test_step_lr_decays_once_per_epoch_with_several_steps_per_epoch(fold_batch):
    from mefeat.train import train_loso

    x, y, s = _data()  # 3 subjects: 20 training samples a fold, batches of 4: 5 steps an epoch
    epochs, lr = 6, 0.1
    recipe = Recipe(Optimizer("sgd", lr=lr), epochs=epochs, batch_size=4, official=LAST,
                    schedule=StepLR(2, 0.5))
    with scoped_registry():
        register("behaviour_steplr", view=ARRAYS_VIEW, input_shapes=((2, 4, 4),),
                 recipe=recipe)(_tiny)
        res = train_loso("behaviour_steplr", x, y, s, fold_batch=fold_batch)
    # torch's own StepLR, stepped once after each epoch (of 5 optimizer steps)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    expected = []
    for _ in range(epochs):
        expected.append(opt.param_groups[0]["lr"])
        for _ in range(5):
            opt.step()
        sched.step()
    assert expected == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert len(res.lr) == 3
    for subject, lrs in res.lr.items():
        np.testing.assert_allclose(lrs, expected, rtol=1e-12, err_msg=subject)


# -- 3. the key-frame jitter's apex range -----------------------------------------------------

def test_keyframe_jitter_apex_upper_bound_uses_apex_to_offset_length():
    # onset 0, apex 10, offset 50: d1 = apex - onset = 10, d2 = offset - apex = 40.
    # MMNet's CASME2_3.py: onset' in [onset, onset + int(0.2*d1/4)],
    # apex' in [apex - int(0.15*d1/4), apex + int(0.15*d2/4)]
    mmnet = KeyframeJitter(onset_after=0.2, apex_before=0.15, apex_after=0.15, divisor=4)
    onset, apex = mmnet.ranges(0, 10, 50)
    assert onset == range(0, 1)  # 0 + int(0.5) = 0
    assert apex == range(10, 12)  # 10 - int(0.375) = 10 .. 10 + int(1.5) = 11
    half = KeyframeJitter(onset_after=0.5, apex_before=0.5, apex_after=0.5)
    onset, apex = half.ranges(0, 10, 50)
    assert onset == range(0, 6)  # 0 .. 0 + 5
    assert apex == range(5, 31)  # 10 - 5 .. 10 + 20
    assert get_spec("mmnet").recipe.keyframe_jitter == mmnet


# -- 4. an lr override keeps the optimizer's other arguments ----------------------------------

def test_lr_override_changes_the_learning_rate_only():
    from mefeat.train import TrainPlan
    from mefeat.views.data import ViewData

    sgd = Optimizer("sgd", lr=0.1, weight_decay=0.01, momentum=0.9, nesterov=True)
    adam = Optimizer("adamw", lr=1e-3, weight_decay=0.05, betas=(0.8, 0.99), eps=1e-6,
                     decay_matrices_only=True)
    for opt, want in (
        (sgd, Optimizer("sgd", lr=0.5, weight_decay=0.01, momentum=0.9, nesterov=True)),
        (adam, Optimizer("adamw", lr=0.5, weight_decay=0.05, betas=(0.8, 0.99), eps=1e-6,
                         decay_matrices_only=True)),
    ):
        recipe = Recipe(opt, epochs=3, batch_size=4, official=LAST)
        new, recorded = recipe.with_overrides(lr=0.5)
        assert new.optimizer == want
        assert recorded == {"lr": 0.5}
        # what `mefeat train --lr` reaches: the plan's recipe
        x, y, s = _data(n=6)
        with scoped_registry():
            register("behaviour_lr", view=ARRAYS_VIEW, input_shapes=((2, 4, 4),),
                     recipe=recipe)(_tiny)
            plan = TrainPlan.create("behaviour_lr", ViewData.from_arrays(x, y, s), lr=0.5)
        assert plan.recipe.optimizer == want


# -- 5. SGD with the recipe's momentum --------------------------------------------------------

def test_sgd_runs_with_the_recipe_s_momentum():
    lr, m = 0.1, 0.9
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    target = torch.tensor([1.0, -2.0, 0.5])
    w0 = torch.tensor([0.3, -0.2])

    def loss(w):
        return ((x @ w - target) ** 2).mean()

    ours = nn.Parameter(w0.clone())
    theirs = nn.Parameter(w0.clone())
    opt = Optimizer("sgd", lr=lr, momentum=m).make([("w", ours)])
    ref = torch.optim.SGD([theirs], lr=lr, momentum=m)
    grads = []
    for _ in range(2):  # the first step alone cannot tell momentum apart
        for p, o in ((ours, opt), (theirs, ref)):
            o.zero_grad()
            loss(p).backward()
            o.step()
        grads.append(theirs.grad.clone())
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-6, atol=1e-7)
    # by hand: buffer b1 = g1, b2 = m b1 + g2; w2 = w0 - lr b1 - lr b2
    g1, g2 = grads
    by_hand = w0 - lr * g1 - lr * (m * g1 + g2)
    torch.testing.assert_close(ours.detach(), by_hand, rtol=1e-6, atol=1e-7)


# -- 6. rotation angles of both signs ---------------------------------------------------------

def test_rotation_draws_angles_of_both_signs_uniform_in_plus_minus_degrees():
    degrees, b = 30.0, 200
    # A horizontal ramp, 0 on the centre column: after a counter-clockwise turn by θ the
    # column above the centre samples the input at x = k·sin θ (k pixels up), so its values
    # have the sign of θ.
    ramp = torch.arange(33, dtype=torch.float32) - 16
    img = ramp.expand(33, 33).clone()
    batch = img.expand(b, 1, 33, 33).clone()
    out = Rotation(degrees).apply(batch, torch.Generator().manual_seed(1234))
    sign = torch.sign(out[:, 0, 2:14, 16].sum(dim=1)).numpy()
    # the angles Rotation should draw: u ~ U[0, 1) from the same generator, 2u - 1 scaled
    u = torch.rand(b, generator=torch.Generator().manual_seed(1234), dtype=torch.float64)
    angles = ((u * 2 - 1) * degrees).numpy()
    assert angles.min() < -25 and angles.max() > 25
    clear = np.abs(angles) > 5  # nearest neighbour: a tiny turn moves nothing
    np.testing.assert_array_equal(sign[clear], np.sign(angles[clear]))
    assert (sign < 0).sum() > 60 and (sign > 0).sum() > 60  # both signs, about half each


# -- 7. the all-folds rule: mean over folds of per-fold UAR -----------------------------------

def test_all_folds_rule_scores_the_mean_of_per_fold_uar_not_pooled_uar():
    from mefeat.recipes.selection import choose_epochs

    # fold a: samples 0-7 (classes 0,0,0,0,1,1,1,1); fold b: samples 8-9 (classes 0, 1)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    preds = np.array([
        [0, 0, 0, 0, 1, 1, 1, 1, 0, 0],  # epoch 1: a perfect; b all class 0
        [0, 0, 0, 0, 0, 0, 1, 1, 0, 1],  # epoch 2: a misses two of class 1; b perfect
    ])
    folds = [("d/a", np.arange(8)), ("d/b", np.arange(8, 10))]
    # per-fold UAR (mean recall over the classes present):
    #   epoch 1: a = (1 + 1)/2 = 1.0, b = (1 + 0)/2 = 0.5     -> mean 0.75
    #   epoch 2: a = (1 + 0.5)/2 = 0.75, b = (1 + 1)/2 = 1.0  -> mean 0.875  (picked)
    # pooled UAR: epoch 1 = (5/5 + 4/5)/2 = 0.9, epoch 2 = (5/5 + 3/5)/2 = 0.8 (would pick 1)
    for ties in ("earliest", "latest", "set-order"):
        rule = Selection("all-folds", metric="uar", ties=ties, source="test")
        chosen = choose_epochs(rule, preds, [1, 2], labels, folds, 2, 2)
        assert chosen == {"d/a": 2, "d/b": 2}, ties


# -- 8. a subset keeps each sample's own jitter rows ------------------------------------------

@pytest.mark.parametrize("keep", [np.array([True, False, True, True]), np.array([0, 2, 3])],
                         ids=["mask", "indices"])
def test_view_subset_keeps_each_kept_sample_s_own_jitter_rows(keep):
    from mefeat.views.data import ViewData
    from mefeat.views.jitter import JitteredFrames

    # 4 samples, 2 key frames; sample i's candidates for key k are frames filled with
    # 10·i + k, a different number of them per sample and key.
    counts = np.array([[1, 3], [2, 2], [3, 1], [2, 4]])
    rows, start = [], np.zeros_like(counts)
    for i in range(4):
        for k in range(2):
            start[i, k] = len(rows)
            rows += [np.full((2, 2), 10 * i + k, np.uint8)] * counts[i, k]
    bank = JitteredFrames(np.stack(rows), start, counts, ("onset", "apex"), to_inputs=None)
    x, y, s = _data(n=4, subjects=4)
    data = ViewData.from_arrays(x, y, s)
    data.jitter = bank
    sub = data.subset(keep)  # sample 1, in the middle, dropped
    assert list(sub.keys) == [data.keys[0], data.keys[2], data.keys[3]]
    j = sub.jitter
    assert j.start.shape == j.count.shape == (3, 2)
    for pos, i in enumerate([0, 2, 3]):
        for k in range(2):
            assert j.count[pos, k] == counts[i, k], (pos, k)
            got = j.bank[j.start[pos, k]:j.start[pos, k] + j.count[pos, k]]
            assert (got == 10 * i + k).all(), (pos, k, np.unique(got).tolist())
    # every draw for a kept sample is one of its own frames
    drawn = j.draw(np.array([0, 1, 2] * 20), np.random.default_rng(0))
    owner = np.array([0, 2, 3] * 20)[:, None] * 10 + np.arange(2)
    assert (j.bank[drawn][:, :, 0, 0] == owner).all()


# -- 9. a long-video interval keeps its offset frame ------------------------------------------

def test_video_interval_hands_on_onset_to_offset_inclusive(monkeypatch):
    from mefeat.keyframes.intervals import Interval, VideoSearch
    from mefeat.run import predict

    frames = (np.arange(100, dtype=np.uint8)[:, None, None] * np.ones((1, 4, 4), np.uint8))
    colour = np.repeat(frames[..., None], 3, axis=-1)  # a colour view's frames go along
    src = SimpleNamespace(frames=frames, path="numbered.mp4", colour=colour)
    monkeypatch.setattr(predict, "search_video", lambda *a, **k: VideoSearch(
        [Interval(onset=20, peak=24, offset=30, score=0.5)], [], []))
    seen = []

    def keyed(run, raw, aligner, start, where, figure, colour=None):
        assert colour is not None and np.array_equal(colour[..., 0], raw)
        seen.append((start, raw[:, 0, 0].tolist()))
        last = len(raw) - 1
        return predict._Keyed(start, start + last // 2, start + last, inputs=None)

    monkeypatch.setattr(predict, "keyed_clip", keyed)
    keyed_out, skipped, _ = predict._video(None, src, None, 64, 32, 0.1, False, False)
    assert seen == [(20, list(range(20, 31)))]  # frames 20..30, the offset included
    assert [(k.onset, k.offset) for k in keyed_out] == [(20, 30)]
    assert keyed_out[0].score == 0.5 and skipped == []

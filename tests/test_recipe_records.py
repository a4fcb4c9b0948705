"""A recipe survives its own record, and a run is scored by the rule it recorded.

``Recipe.from_dict(r.to_dict()) == r`` for every registered model and for random valid
recipes (hypothesis), through JSON; a run folder rescored after its model's registered rule
changed keeps its recorded score, and rescoring under another rule is explicit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _models import ARRAYS_VIEW, LinearNet
from hypothesis import given, settings
from hypothesis import strategies as st

from mefeat.models import get_spec, list_models, register, scoped_registry
from mefeat.recipes import (
    AUGMENTATIONS,
    ClassBalancedSampler,
    ExponentialLR,
    KeyframeJitter,
    Optimizer,
    Recipe,
    Selection,
    StepLR,
    WarmupCosine,
)
from mefeat.run.train import run_score
from mefeat.train import RunFolder, train_loso


def _round_trip(recipe: Recipe) -> Recipe:
    return Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())), model="test")


def test_every_registered_recipe_survives_its_record():
    zoo = [n for n in list_models() if get_spec(n).recipe is not None]
    assert len(zoo) >= 10
    for name in zoo:
        recipe = get_spec(name).recipe
        assert _round_trip(recipe) == recipe, name


finite = dict(allow_nan=False, allow_infinity=False)
optimizers = st.one_of(
    st.builds(Optimizer, st.sampled_from(["adam", "adamw"]), st.floats(1e-6, 1, **finite),
              weight_decay=st.floats(0, 1, **finite),
              betas=st.tuples(st.floats(0, 0.99, **finite), st.floats(0, 0.9999, **finite)),
              eps=st.floats(1e-10, 1e-3, **finite), decay_matrices_only=st.booleans()),
    st.builds(Optimizer, st.just("sgd"), st.floats(1e-6, 1, **finite),
              weight_decay=st.floats(0, 1, **finite), momentum=st.floats(0, 0.99, **finite),
              nesterov=st.booleans()),
)
schedules = st.one_of(
    st.none(),
    st.builds(StepLR, st.integers(1, 100), st.floats(0.01, 1, **finite)),
    st.builds(ExponentialLR, st.floats(0.5, 1, **finite),
              st.one_of(st.none(), st.integers(0, 100))),
    st.builds(WarmupCosine, st.integers(0, 20), st.floats(0, 1e-5, **finite)),
)
augmentations = st.lists(st.sampled_from(sorted(AUGMENTATIONS.names())), max_size=3).map(
    lambda names: tuple(AUGMENTATIONS[n](**({"degrees": 4.0} if n == "rotation" else
                                           {"padding": 4} if n == "random_crop" else {}))
                        for n in names))
selections = st.one_of(
    st.builds(Selection, st.just("last"), st.text(max_size=20)),
    st.builds(Selection, st.just("per-fold"), st.text(max_size=20),
              metric=st.sampled_from(["acc", "uar", "uf1"]),
              ties=st.sampled_from(["earliest", "latest"]), every=st.integers(1, 20),
              first=st.integers(1, 5),
              stop=st.one_of(st.none(), st.tuples(st.sampled_from([">=", ">"]),
                                                  st.floats(0, 1, **finite))),
              patience=st.one_of(st.none(), st.integers(1, 50))),
    st.builds(Selection, st.just("all-folds"), st.text(max_size=20),
              metric=st.sampled_from(["acc", "uar", "uf1"]),
              ties=st.sampled_from(["earliest", "latest", "set-order"]),
              every=st.integers(1, 20), first=st.integers(1, 5)),
)


@st.composite
def recipes(draw) -> Recipe:
    sampler = draw(st.one_of(st.none(), st.builds(ClassBalancedSampler, st.integers(1, 5),
                                                  st.integers(1, 8))))
    loss = draw(st.sampled_from(["cross_entropy", "model"]))
    return Recipe(
        optimizer=draw(optimizers), epochs=draw(st.integers(1, 800)),
        batch_size=None if sampler else draw(st.one_of(st.none(), st.integers(1, 512))),
        official=draw(selections), schedule=draw(schedules),
        shuffle=False if sampler else draw(st.booleans()), sampler=sampler, loss=loss,
        label_smoothing=0.0 if loss == "model" else draw(st.floats(0, 0.5, **finite)),
        augmentation=draw(augmentations),
        keyframe_jitter=draw(st.one_of(st.none(), st.builds(
            KeyframeJitter, st.floats(0, 1, **finite), st.floats(0, 1, **finite),
            st.floats(0, 1, **finite), st.floats(0.5, 8, **finite)))),
        precision=draw(st.sampled_from(["fp32", "bf16", "fp16"])),
        seed=draw(st.one_of(st.none(), st.integers(0, 2**31))), source=draw(st.text()))


@settings(max_examples=200, deadline=None)
@given(recipes())
def test_random_valid_recipes_survive_their_record(recipe):
    assert _round_trip(recipe) == recipe


# -- a run keeps the rule it recorded ------------------------------------------------------


BEST = Selection("per-fold", metric="acc", ties="earliest", source="the rule it ran with")


def _register(official: Selection) -> None:
    register("rule_test_net", view=ARRAYS_VIEW, input_shapes=((12,),), recipe=Recipe(
        Optimizer("sgd", lr=0.5), epochs=8, batch_size=8, official=official))(_build)


def _build(*, num_classes=3):
    return LinearNet(in_features=12, num_classes=num_classes)


def test_a_run_is_rescored_by_the_rule_it_recorded(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 12)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    subjects = np.array([f"d/s{i % 4}" for i in range(40)], dtype=object)
    out = tmp_path / "run"
    with scoped_registry():
        _register(BEST)
        torch.manual_seed(0)
        res = train_loso("rule_test_net", x, y, subjects, selection="official", seed=0, out=out)
        chosen = res.chosen("official")
        assert chosen != {s: 8 for s in chosen}  # the recorded rule picks other epochs
        first = run_score(out, out=tmp_path / "a")
        # the model's registered rule changes (a fix, a new reading of the official code)
        _register(Selection("last", source="the rule of today's registry"))
        assert get_spec("rule_test_net").recipe.official.kind == "last"
        again = run_score(out, out=tmp_path / "b")
        assert again["runs"] == first["runs"]  # scored by the rule the run recorded
        assert again["runs"][0]["chosen_epoch"] == chosen
        last = run_score(out, selection="last", out=tmp_path / "c")  # another rule: explicit
        assert last["rescored_from"] == "official" and last["selection"] == "last"
    record = RunFolder(out).record()
    assert record.recipe["official"]["kind"] == "per-fold"


@pytest.mark.parametrize("bad", [{"kind": "per-fold", "source": "x", "stop": ["<", 1]},
                                 {"kind": "best", "source": "x"}])
def test_a_record_with_a_rule_mefeat_cannot_apply_is_refused(bad):
    from mefeat.recipes import RecipeError

    record = get_spec("ststnet").recipe.to_dict()
    with pytest.raises(RecipeError, match="model 'test'"):
        Recipe.from_dict({**record, "official": bad}, model="test")

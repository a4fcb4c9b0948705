"""A training recipe: how a model's paper (or official script) trains it, as one frozen
record, and its JSON form.

timm keeps a pretrained config beside each model builder; mefeat keeps a :class:`Recipe`
beside each registered model (``@register(..., recipe=Recipe(...))``). A recipe says
everything the official training does: optimizer and its arguments, learning-rate schedule,
epochs, batch size and order (shuffle or a class-balanced sampler), loss, train-time
augmentation, key-frame jitter, precision, the official epoch-selection rule with its
source, and the run seed. Every field is executed by :mod:`mefeat.train`; nothing else is
accepted: a recipe given as a plain dict (:meth:`Recipe.from_dict`) is refused when it names
a field or part the trainer does not know, and every value is checked when the record is
made, so a model registers only with a recipe the trainer can run.

``Recipe.from_dict(r.to_dict()) == r``: a run records its recipe this way, and a finished
run is rescored by the rule it recorded, whatever the registry says today.

Conventions shared by the official loops and therefore by mefeat:

- epochs count from 1; a per-epoch schedule steps once after each epoch (after that epoch's
  evaluation), a per-step schedule after each optimizer step;
- evaluation is on the held-out subject, in ``eval()`` mode, without augmentation or jitter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .augment import AUGMENTATIONS
from .batches import ClassBalancedSampler, Oversample, steps_per_epoch
from .jitter import KeyframeJitter
from .loss import LOSSES, PRECISIONS
from .optim import SCHEDULES, Optimizer
from .parts import RecipeError, need, record
from .selection import Selection

SCHEDULE_TYPES = tuple(SCHEDULES.parts.values())


@dataclass(frozen=True)
class Recipe:
    """How a model is trained (see the module docstring).

    Attributes:
        optimizer: the optimizer and its arguments.
        epochs: epochs per fold.
        batch_size: samples per step; ``None``: the whole training set (one step an epoch).
            With a ``sampler`` it must be ``None`` or equal to the sampler's batch.
        official: the official repository's epoch-selection rule and where it comes from
            (``--selection official``; ``last`` and ``test-best`` are the same for all).
        schedule: learning-rate schedule (:data:`~mefeat.recipes.optim.SCHEDULES`);
            ``None``: constant.
        shuffle: reshuffle the training set every epoch (``DataLoader(shuffle=True)``);
            ``False``: the same order every epoch, as the scripts that pass no shuffle.
        sampler: a class-balanced batch sampler instead of plain batches.
        oversample: each fold's training list first resampled to balanced classes, on the
            datasets whose official configuration does so (:class:`Oversample`).
        loss: a loss of :data:`~mefeat.recipes.loss.LOSSES`: ``"cross_entropy"``, or
            ``"model"``: the model's own training loss (with its extra terms).
        label_smoothing: of the cross-entropy.
        augmentation: train-time transforms, applied in this order.
        keyframe_jitter: train-time key-frame draws (views that read frames only).
        precision: ``"fp32"``; ``"bf16"`` (autocast); ``"fp16"`` (autocast with a
            gradient scaler, PyTorch Lightning's ``precision=16``).
        seed: the run seed when none is given (the official script's, where it sets one).
        source: where these settings come from (repository file, paper section, or
            mefeat's own choice and why).
    """

    optimizer: Optimizer
    epochs: int
    batch_size: int | None
    official: Selection
    schedule: Any = None
    shuffle: bool = False
    sampler: ClassBalancedSampler | None = None
    oversample: Oversample | None = None
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    augmentation: tuple[Any, ...] = ()
    keyframe_jitter: KeyframeJitter | None = None
    precision: str = "fp32"
    seed: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        need(isinstance(self.optimizer, Optimizer), "optimizer must be an Optimizer")
        need(isinstance(self.official, Selection), "official must be a Selection")
        need(isinstance(self.epochs, int) and not isinstance(self.epochs, bool)
             and self.epochs >= 1, f"epochs must be an int >= 1, got {self.epochs!r}")
        need(self.batch_size is None or (isinstance(self.batch_size, int)
                                         and self.batch_size >= 1),
             f"batch_size must be None (full batch) or an int >= 1, got {self.batch_size!r}")
        need(self.schedule is None or isinstance(self.schedule, SCHEDULE_TYPES),
             f"schedule {self.schedule!r} is not one of {SCHEDULES.names()} or None")
        need(self.loss in LOSSES, f"loss {self.loss!r} is not one of {sorted(LOSSES)}")
        need(0 <= self.label_smoothing < 1,
             f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        need(self.loss == "cross_entropy" or self.label_smoothing == 0,
             "label_smoothing applies to the cross_entropy loss only")
        object.__setattr__(self, "augmentation", tuple(self.augmentation))
        kinds = tuple(AUGMENTATIONS.parts.values())
        for a in self.augmentation:
            need(isinstance(a, kinds),
                 f"augmentation {a!r} is not one of {AUGMENTATIONS.names()}")
        need(self.keyframe_jitter is None or isinstance(self.keyframe_jitter, KeyframeJitter),
             f"keyframe_jitter {self.keyframe_jitter!r} is not a KeyframeJitter")
        need(self.precision in PRECISIONS,
             f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.sampler is not None:
            need(isinstance(self.sampler, ClassBalancedSampler),
                 f"sampler {self.sampler!r} is not a ClassBalancedSampler")
            need(not self.shuffle, "a sampler orders the batches: shuffle must be False")
            need(self.batch_size in (None, self.sampler.batch_size),
                 f"batch_size {self.batch_size} differs from the sampler's "
                 f"{self.sampler.batch_size} (n_classes × n_samples)")
        need(self.oversample is None or isinstance(self.oversample, Oversample),
             f"oversample {self.oversample!r} is not an Oversample")
        need(self.oversample is None or self.sampler is None,
             "oversample and a class-balanced sampler are two answers to one question: "
             "give one")
        need(self.seed is None or (isinstance(self.seed, int) and self.seed >= 0),
             f"seed must be None or an int >= 0, got {self.seed!r}")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimizer steps in one epoch of a fold with ``n_train`` training samples."""
        return steps_per_epoch(self.batch_size, self.sampler, n_train)

    def with_overrides(self, *, epochs: int | None = None, lr: float | None = None,
                       batch_size: int | str | None = None, shuffle: bool | None = None,
                       precision: str | None = None) -> tuple[Recipe, dict[str, Any]]:
        """The recipe with command-line overrides applied (``None``: keep), and the
        overrides as recorded. ``lr`` changes the learning rate only (the optimizer's other
        arguments stay); ``batch_size`` may be ``"full"``."""
        changes: dict[str, Any] = {}
        recorded: dict[str, Any] = {}
        if epochs is not None:
            need(isinstance(epochs, int) and epochs >= 1, f"epochs must be >= 1, got {epochs}")
            changes["epochs"] = recorded["epochs"] = epochs
        if lr is not None:
            need(isinstance(lr, (int, float)) and lr > 0, f"lr must be > 0, got {lr}")
            changes["optimizer"] = dataclasses.replace(self.optimizer, lr=float(lr))
            recorded["lr"] = float(lr)
        if batch_size is not None:
            need(self.sampler is None,
                 "this recipe draws class-balanced batches of "
                 f"{self.sampler and self.sampler.batch_size} (n_classes × n_samples); "
                 "--batch-size cannot change them")
            need(batch_size == "full" or (isinstance(batch_size, int) and batch_size >= 1),
                 f"batch_size must be >= 1 or 'full', got {batch_size!r}")
            changes["batch_size"] = None if batch_size == "full" else batch_size
            recorded["batch_size"] = batch_size
        if shuffle is not None:
            need(self.sampler is None or not shuffle,
                 "this recipe's sampler orders the batches; shuffle cannot be set")
            changes["shuffle"] = recorded["shuffle"] = bool(shuffle)
        if precision is not None:
            changes["precision"] = recorded["precision"] = precision
        return self.replace(**changes), recorded

    # -- the JSON form ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able record: every field, each part as ``{"name": ..., **fields}``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "augmentation":
                out[f.name] = [record(a) for a in v]
            elif dataclasses.is_dataclass(v):
                out[f.name] = record(v)
            else:
                out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, model: str = "<model>") -> Recipe:
        """A recipe from its record (:meth:`to_dict`), or from the plain form a plugin may
        write: ``optimizer`` a name with its arguments beside it (``lr``,
        ``weight_decay``...), ``official`` left out (the last epoch), ``batch_size`` left
        out (full batch). Any other key is refused, naming the model and the key."""
        data = dict(data)
        opt_keys = {f.name for f in dataclasses.fields(Optimizer)} - {"name"}
        own = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - own - opt_keys)
        if unknown:
            raise RecipeError(
                f"model {model!r}: recipe field(s) {unknown} are not executed by mefeat's "
                f"trainer; the fields are {sorted(own | opt_keys)}"
            )
        try:
            opt_args = {k: data.pop(k) for k in sorted(opt_keys) if k in data}
            opt = data.pop("optimizer", "adam")
            if isinstance(opt, Mapping):
                opt = Optimizer(**{**opt, **opt_args})
            elif not isinstance(opt, Optimizer):
                opt = Optimizer(opt, **opt_args)
            data["optimizer"] = opt
            data["schedule"] = SCHEDULES.from_record(data.get("schedule"))
            data["augmentation"] = tuple(AUGMENTATIONS.from_record(a)
                                         for a in data.get("augmentation") or ())
            for key, kind in (("sampler", ClassBalancedSampler), ("oversample", Oversample),
                              ("keyframe_jitter", KeyframeJitter)):
                if isinstance(data.get(key), Mapping):
                    data[key] = kind(**data[key])
            data.setdefault("batch_size", None)
            official = data.get("official") or {"kind": "last", "source": "not given"}
            if isinstance(official, Mapping):
                official = dict(official)
                if official.get("stop") is not None:
                    official["stop"] = tuple(official["stop"])
                data["official"] = Selection(**official)
            return cls(**data)
        except (RecipeError, TypeError) as exc:
            raise RecipeError(f"model {model!r}: recipe: {exc}") from None


def check_recipe(model: str, recipe: Any, *, jitter_view: bool) -> Recipe:
    """The recipe a model registers with, or a :class:`RecipeError` naming the model and
    the field the trainer cannot execute."""
    if isinstance(recipe, Mapping):
        recipe = Recipe.from_dict(recipe, model=model)
    if not isinstance(recipe, Recipe):
        raise RecipeError(f"model {model!r}: recipe must be a mefeat.recipes.Recipe or a "
                          f"dict, got {type(recipe).__name__}")
    if recipe.keyframe_jitter is not None and not jitter_view:
        raise RecipeError(
            f"model {model!r}: recipe field keyframe_jitter needs a view that builds its "
            "inputs from the aligned key frames (a View with a jitter function); this "
            "model's view has none"
        )
    return recipe

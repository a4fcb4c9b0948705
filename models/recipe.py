"""Training recipes: how each model's paper (or official script) trains it, as a typed record.

timm keeps a pretrained config beside each model builder; mefeat keeps a :class:`Recipe`
beside each registered model (``@register(..., recipe=Recipe(...))``). A recipe says
everything the official training does: optimizer and its arguments, learning-rate schedule,
epochs, batch size and order (shuffle or a class-balanced sampler), loss, train-time
augmentation, key-frame jitter, precision, the official epoch-selection rule with its
source, and the run seed.

Every field is executed by :mod:`mefeat.train` (``recipes`` builds the optimizer, schedule,
augmentation, loss and sampler; ``selection`` applies the epoch rules). Nothing else is
accepted: a recipe given as a plain dict (:meth:`Recipe.from_dict`, the form a plugin may
use) is refused when it names a field the trainer does not know, and every value is checked
when the record is made, so a model registers only with a recipe the trainer can run.

Conventions shared by the official loops and therefore by mefeat:

- epochs count from 1; a per-epoch schedule steps once after each epoch (after that epoch's
  evaluation, where there is one), a per-step schedule after each optimizer step;
- evaluation is on the held-out subject, in ``eval()`` mode, without augmentation or jitter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .epoch_rule import RecipeError, Selection
from .epoch_rule import need as _need

__all__ = [
    "ClassBalancedSampler",
    "ExponentialLR",
    "HorizontalFlip",
    "KeyframeJitter",
    "Optimizer",
    "RandomCrop",
    "Recipe",
    "Rotation",
    "Selection",
    "StepLR",
    "WarmupCosine",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
LOSSES = ("cross_entropy", "model")
PRECISIONS = ("fp32", "bf16", "fp16")


# -- optimizer --------------------------------------------------------------------------


@dataclass(frozen=True)
class Optimizer:
    """``torch.optim`` Adam, AdamW or SGD with these arguments.

    ``decay_matrices_only``: weight decay on parameters of two or more dimensions only
    (biases and norm weights get none), as EDMDBN's parameter groups do.
    """

    name: str
    lr: float
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.0
    nesterov: bool = False
    decay_matrices_only: bool = False

    def __post_init__(self) -> None:
        _need(self.name in OPTIMIZERS, f"optimizer {self.name!r} is not one of {OPTIMIZERS}")
        _need(self.lr > 0, f"optimizer lr must be > 0, got {self.lr}")
        _need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.name != "sgd":
            _need(self.momentum == 0 and not self.nesterov,
                  f"momentum/nesterov are SGD arguments, not {self.name}'s")


# -- learning-rate schedules --------------------------------------------------------------


@dataclass(frozen=True)
class StepLR:
    """``torch.optim.lr_scheduler.StepLR(step_size, gamma)``, stepped after every epoch."""

    step_size: int
    gamma: float
    name: ClassVar[str] = "step"
    per: ClassVar[str] = "epoch"

    def __post_init__(self) -> None:
        _need(self.step_size >= 1 and self.gamma > 0, f"StepLR({self.step_size}, {self.gamma})")


@dataclass(frozen=True)
class ExponentialLR:
    """``torch.optim.lr_scheduler.ExponentialLR(gamma)``, stepped after epochs
    ``1..until_epoch`` only (``None``: after every epoch); constant afterwards."""

    gamma: float
    until_epoch: int | None = None
    name: ClassVar[str] = "exponential"
    per: ClassVar[str] = "epoch"

    def __post_init__(self) -> None:
        _need(self.gamma > 0, f"ExponentialLR gamma must be > 0, got {self.gamma}")
        _need(self.until_epoch is None or self.until_epoch >= 0,
              f"ExponentialLR until_epoch must be >= 0, got {self.until_epoch}")


@dataclass(frozen=True)
class WarmupCosine:
    """Per-step linear warm-up times a cosine over the whole run, plus a floor:

    ``lr(k) = floor + lr0 · ½(1 + cos(π k / T)) · min(k / W, 1)``

    after ``k`` optimizer steps, with ``T = epochs · steps_per_epoch`` and
    ``W = warmup_epochs · steps_per_epoch``. This is EDMDBN's ``CosineWarmupScheduler``:
    the cosine also runs during the warm-up, so the peak is below ``lr0``.
    """

    warmup_epochs: int
    floor: float = 0.0
    name: ClassVar[str] = "warmup_cosine"
    per: ClassVar[str] = "step"

    def __post_init__(self) -> None:
        _need(self.warmup_epochs >= 0 and self.floor >= 0,
              f"WarmupCosine({self.warmup_epochs}, floor={self.floor})")


Schedule = StepLR | ExponentialLR | WarmupCosine

# -- batches ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassBalancedSampler:
    """Batches of ``n_classes`` classes × ``n_samples`` samples each (SRMCL's
    ``BalancedBatchSampler``): each batch draws ``n_classes`` classes without replacement
    (every class, when a fold's training set has fewer) and takes the next ``n_samples`` of
    each class's shuffled list (reshuffled when used up); an epoch ends before the batch that
    would reach the end of the training set (the official ``while count + batch_size <
    len(dataset)``), so it has ``ceil(n_train / batch) - 1`` batches, at least one."""

    n_classes: int
    n_samples: int

    def __post_init__(self) -> None:
        _need(self.n_classes >= 1 and self.n_samples >= 1,
              f"ClassBalancedSampler({self.n_classes}, {self.n_samples})")

    @property
    def batch_size(self) -> int:
        return self.n_classes * self.n_samples


# -- train-time augmentation ------------------------------------------------------------
# One random draw per sample is shared by every input tensor and every channel of the
# sample (the official code stacks the frames into one tensor before transforming it).


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror left-right with probability ``p`` (torchvision ``RandomHorizontalFlip``)."""

    p: float = 0.5
    name: ClassVar[str] = "hflip"

    def __post_init__(self) -> None:
        _need(0 <= self.p <= 1, f"HorizontalFlip p must lie in [0, 1], got {self.p}")


@dataclass(frozen=True)
class Rotation:
    """Rotate by an angle uniform in ``[-degrees, degrees]`` about the centre, nearest
    neighbour, new pixels ``fill`` (torchvision ``RandomRotation`` defaults)."""

    degrees: float
    fill: float = 0.0
    name: ClassVar[str] = "rotation"

    def __post_init__(self) -> None:
        _need(self.degrees >= 0, f"Rotation degrees must be >= 0, got {self.degrees}")


@dataclass(frozen=True)
class RandomCrop:
    """Pad by ``padding`` on every side (``"constant"`` 0 or ``"edge"``), then crop the
    input's own size at a uniform offset (torchvision ``RandomCrop(size, padding)``)."""

    padding: int
    padding_mode: str = "constant"
    name: ClassVar[str] = "random_crop"

    def __post_init__(self) -> None:
        _need(self.padding >= 0, f"RandomCrop padding must be >= 0, got {self.padding}")
        _need(self.padding_mode in ("constant", "edge"),
              f"RandomCrop padding_mode {self.padding_mode!r} is not 'constant' or 'edge'")


Augmentation = HorizontalFlip | Rotation | RandomCrop

# -- key-frame jitter -------------------------------------------------------------------


@dataclass(frozen=True)
class KeyframeJitter:
    """Training clips take their onset and apex near the annotated ones (MMNet).

    With ``d1 = apex - onset`` and ``d2 = offset - apex`` (annotated indices), every
    epoch draws, uniformly and inclusively (Python's ``random.randint``)::

        onset' in [onset, onset + int(onset_after * d1 / divisor)]
        apex'  in [apex - int(apex_before * d1 / divisor), apex + int(apex_after * d2 / divisor)]

    The fractions are kept in the official code's form (``int(0.2*d/4)``, not
    ``int(0.05*d)``), since the two can round differently. Only views that read the aligned
    frames (``View.frames``) can be jittered; evaluation always uses the annotated frames.
    """

    onset_after: float
    apex_before: float
    apex_after: float
    divisor: float = 1.0

    def __post_init__(self) -> None:
        _need(min(self.onset_after, self.apex_before, self.apex_after) >= 0
              and self.divisor > 0, f"KeyframeJitter{dataclasses.astuple(self)}")

    def ranges(self, onset: int, apex: int, offset: int) -> tuple[range, range]:
        """The onset and apex indices a training draw may take."""
        d1, d2 = apex - onset, offset - apex
        on_hi = onset + int(self.onset_after * d1 / self.divisor)
        ap_lo = apex - int(self.apex_before * d1 / self.divisor)
        ap_hi = apex + int(self.apex_after * d2 / self.divisor)
        return range(onset, on_hi + 1), range(ap_lo, ap_hi + 1)


# -- the recipe -------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How a model is trained (see the module docstring).

    Attributes:
        optimizer: the optimizer and its arguments.
        epochs: epochs per fold.
        batch_size: samples per step; ``None``: the whole training set (one step an epoch).
            With a ``sampler`` it must be ``None`` or equal to the sampler's batch.
        selection: the official epoch-selection rule and where it comes from (``mefeat
            train --selection official``).
        schedule: learning-rate schedule; ``None``: constant.
        shuffle: reshuffle the training set every epoch (``DataLoader(shuffle=True)``);
            ``False``: the same order every epoch, as the scripts that pass no shuffle.
        sampler: a class-balanced batch sampler instead of plain batches.
        loss: ``"cross_entropy"``, or ``"model"``: the model's own training loss
            (``model.forward_train(x)`` then ``model.loss(out, y)``, with its extra terms).
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
    selection: Selection
    schedule: Schedule | None = None
    shuffle: bool = False
    sampler: ClassBalancedSampler | None = None
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    augmentation: tuple[Augmentation, ...] = ()
    keyframe_jitter: KeyframeJitter | None = None
    precision: str = "fp32"
    seed: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        _need(isinstance(self.optimizer, Optimizer), "optimizer must be an Optimizer")
        _need(isinstance(self.selection, Selection), "selection must be a Selection")
        _need(isinstance(self.epochs, int) and self.epochs >= 1,
              f"epochs must be an int >= 1, got {self.epochs!r}")
        _need(self.batch_size is None or (isinstance(self.batch_size, int)
                                          and self.batch_size >= 1),
              f"batch_size must be None (full batch) or an int >= 1, got {self.batch_size!r}")
        _need(self.schedule is None or isinstance(self.schedule, Schedule),
              f"schedule {self.schedule!r} is not StepLR, ExponentialLR, WarmupCosine or None")
        _need(self.loss in LOSSES, f"loss {self.loss!r} is not one of {LOSSES}")
        _need(0 <= self.label_smoothing < 1,
              f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        _need(self.loss == "cross_entropy" or self.label_smoothing == 0,
              "label_smoothing applies to the cross_entropy loss only")
        object.__setattr__(self, "augmentation", tuple(self.augmentation))
        for a in self.augmentation:
            _need(isinstance(a, Augmentation), f"augmentation {a!r} is not HorizontalFlip, "
                  "Rotation or RandomCrop")
        _need(self.keyframe_jitter is None or isinstance(self.keyframe_jitter, KeyframeJitter),
              f"keyframe_jitter {self.keyframe_jitter!r} is not a KeyframeJitter")
        _need(self.precision in PRECISIONS,
              f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.sampler is not None:
            _need(isinstance(self.sampler, ClassBalancedSampler),
                  f"sampler {self.sampler!r} is not a ClassBalancedSampler")
            _need(not self.shuffle, "a sampler orders the batches: shuffle must be False")
            _need(self.batch_size in (None, self.sampler.batch_size),
                  f"batch_size {self.batch_size} differs from the sampler's "
                  f"{self.sampler.batch_size} (n_classes × n_samples)")
        _need(self.seed is None or (isinstance(self.seed, int) and self.seed >= 0),
              f"seed must be None or an int >= 0, got {self.seed!r}")

    @property
    def steps_batch(self) -> int | None:
        """Samples per optimizer step (``None``: full batch)."""
        return self.sampler.batch_size if self.sampler is not None else self.batch_size

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (``mefeat models --json``, ``metrics.json`` ``settings.recipe``)."""
        def record(obj: Any) -> dict[str, Any] | None:
            if obj is None:
                return None
            out = {"name": obj.name} if hasattr(obj, "name") and not isinstance(
                obj, Optimizer) else {}
            for f in dataclasses.fields(obj):
                v = getattr(obj, f.name)
                out[f.name] = list(v) if isinstance(v, tuple) else v
            return out

        opt = record(self.optimizer)
        sel = record(self.selection)
        sel["rule"] = self.selection.rule
        return {
            "optimizer": self.optimizer.name,
            "lr": self.optimizer.lr,
            "optimizer_args": {k: v for k, v in opt.items() if k not in ("name", "lr")},
            "schedule": record(self.schedule),
            "epochs": self.epochs,
            "batch_size": self.batch_size if self.sampler is None else self.sampler.batch_size,
            "shuffle": self.shuffle,
            "sampler": record(self.sampler),
            "loss": self.loss,
            "label_smoothing": self.label_smoothing,
            "augmentation": [record(a) for a in self.augmentation],
            "keyframe_jitter": record(self.keyframe_jitter),
            "precision": self.precision,
            "official_selection": sel,
            "seed": self.seed,
            "source": self.source,
        }

    # -- the plain-dict form -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, model: str = "<model>") -> Recipe:
        """A recipe from plain values (a plugin's convenience).

        Keys: the :class:`Recipe` fields, with ``optimizer`` a name (its arguments beside it
        as ``lr``, ``weight_decay``, ``betas``, ``eps``, ``momentum``, ``nesterov``),
        ``schedule`` ``None`` or ``{"name": "step"|"exponential"|"warmup_cosine", ...}``,
        ``sampler`` ``None`` or ``{"n_classes", "n_samples"}``, ``augmentation`` a list of
        ``{"name": "hflip"|"rotation"|"random_crop", ...}``, ``keyframe_jitter`` ``None`` or
        its fields, ``selection`` ``{"kind", "source", ...}`` (default: the last epoch).
        ``batch_size`` defaults to ``None`` (full batch). Any other key is refused, naming the
        model and the key.
        """
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
            name = data.pop("optimizer", "adam")
            data["optimizer"] = name if isinstance(name, Optimizer) else Optimizer(name,
                                                                                   **opt_args)
            data["schedule"] = _from_named(data.get("schedule"), _SCHEDULES, "schedule")
            data["augmentation"] = tuple(_from_named(a, _AUGMENTATIONS, "augmentation")
                                         for a in data.get("augmentation") or ())
            for key, kind in (("sampler", ClassBalancedSampler),
                              ("keyframe_jitter", KeyframeJitter)):
                value = data.get(key)
                if isinstance(value, Mapping):
                    data[key] = kind(**value)
            data.setdefault("batch_size", None)
            sel = data.get("selection") or {"kind": "last", "source": "not given"}
            if isinstance(sel, Mapping):
                sel = dict(sel)
                if sel.get("stop") is not None:
                    sel["stop"] = tuple(sel["stop"])
                data["selection"] = Selection(**sel)
            return cls(**data)
        except RecipeError as exc:
            raise RecipeError(f"model {model!r}: recipe: {exc}") from None
        except TypeError as exc:
            raise RecipeError(f"model {model!r}: recipe: {exc}") from None


_SCHEDULES: dict[str, type] = {c.name: c for c in (StepLR, ExponentialLR, WarmupCosine)}
_AUGMENTATIONS: dict[str, type] = {c.name: c for c in (HorizontalFlip, Rotation, RandomCrop)}


def _from_named(value: Any, kinds: dict[str, type], what: str) -> Any:
    if value is None or not isinstance(value, Mapping):
        return value
    args = dict(value)
    name = args.pop("name", None)
    if name not in kinds:
        raise RecipeError(f"{what} {name!r} is not one of {sorted(kinds)}")
    return kinds[name](**args)


def check_recipe(model: str, recipe: Any, *, jitter_view: bool) -> Recipe:
    """The recipe a model registers with, or a :class:`RecipeError` naming the model and
    the field the trainer cannot execute."""
    if isinstance(recipe, Mapping):
        recipe = Recipe.from_dict(recipe, model=model)
    if not isinstance(recipe, Recipe):
        raise RecipeError(f"model {model!r}: recipe must be a mefeat.models.Recipe or a dict, "
                          f"got {type(recipe).__name__}")
    if recipe.keyframe_jitter is not None and not jitter_view:
        raise RecipeError(
            f"model {model!r}: recipe field keyframe_jitter needs a view that builds its "
            "inputs from the aligned key frames (a View with a jitter function); this "
            "model's view has none"
        )
    return recipe


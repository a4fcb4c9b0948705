"""What to train, decided once: a :class:`TrainPlan` is built from the command line or the
API (:meth:`TrainPlan.create`), checked there, and read by everything that trains; no
setting is threaded through function signatures one by one."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from mefeat.recipes import Recipe
from mefeat.recipes.selection import SELECTIONS, rule_of
from mefeat.train.checkpoints import DTYPES
from mefeat.train.errors import TrainingError
from mefeat.views.data import ViewData

CHECKPOINTS = ("selected", "none")
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class TrainPlan:
    """A LOSO training of one model on one set of data.

    Attributes:
        model: the registered model; ``model_options`` its builder's options.
        recipe: the recipe that runs (the model's, with the overrides applied once);
            ``overrides``: what was changed, as recorded.
        num_classes: classes of the label scheme (from the data's classes, else its labels).
        selection: the headline policy (``last``, ``test-best``, ``official``); the fold
            checkpoints hold the weights of the epoch it picks.
        seed: run 0's seed (the recipe's when not given, else 0); run r trains with
            ``seed + r``. ``runs``: how many runs.
        subjects: the held-out subjects to train now (``None``: every fold).
        device, dtype: where and in what the parameters live.
        fold_batch: folds trained together as one vmapped model (``"auto"``: one at a time
            on CPU, on an accelerator as many as a memory estimate allows).
        workers: CPU fold processes (one torch thread each), or Ray CPUs.
        executor: ``local`` (this machine; a process pool when ``workers`` > 1 on CPU) or
            ``ray`` (a Ray cluster at ``address``, ``gpus_per_job`` of a GPU per job).
        checkpoints: ``selected`` (run 0's weights of the selected epoch, per fold) or
            ``none``; ``checkpoint_dtype``: their storage dtype.
        features: keep the final model's held-out features (t-SNE).
    """

    model: str
    recipe: Recipe
    num_classes: int
    overrides: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    selection: str = "last"
    seed: int = 0
    runs: int = 1
    subjects: tuple[str, ...] | None = None
    device: str = "cpu"
    dtype: str = "float32"
    fold_batch: int | str = "auto"
    workers: int = 1
    executor: str = "local"
    address: str | None = None
    gpus_per_job: float = 0.0
    checkpoints: str = "selected"
    checkpoint_dtype: str = "float32"
    features: bool = False

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @classmethod
    def create(cls, model: str, data: ViewData, *, epochs: int | None = None,
               lr: float | None = None, batch_size: int | str | None = None,
               shuffle: bool | None = None, precision: str | None = None,
               recipe: Recipe | None = None, folds: int | list[str] | None = None,
               num_classes: int | None = None, seed: int | None = None,
               model_options: dict[str, Any] | None = None, **settings: Any) -> TrainPlan:
        """A checked plan for ``model`` on ``data``. ``epochs``, ``lr``, ``batch_size`` (an
        int or ``"full"``), ``shuffle``, ``precision`` override the recipe's (``recipe``
        replaces it whole); ``folds``: the first N folds, or a list of held-out subjects;
        the other keywords are the attributes of the same name."""
        from mefeat.models import get_spec

        spec = get_spec(model)
        options = spec.check_options(model_options)
        base = recipe or spec.recipe
        if base is None:
            raise TrainingError(f"model {model!r} was registered without a recipe; register "
                                "it with recipe=... (mefeat.recipes.Recipe) or pass recipe=")
        r, overrides = base.with_overrides(epochs=epochs, lr=lr, batch_size=batch_size,
                                           shuffle=shuffle, precision=precision)
        if r.keyframe_jitter is not None and data.jitter is None:
            raise TrainingError(
                f"model {model!r}: its recipe jitters the key frames in training, which "
                "needs the aligned frames: load the data with mefeat.load_view(store, model), "
                "or train with recipe=spec.recipe.replace(keyframe_jitter=None) to turn it "
                "off")
        if data.jitter is not None and r.keyframe_jitter is None:
            raise TrainingError(f"model {model!r}: the data holds jittered key frames, but "
                                "the recipe has no keyframe_jitter")
        n_classes = num_classes or data.num_classes
        known = {f.name for f in fields(cls)} - {"model", "recipe", "num_classes", "overrides",
                                                  "model_options", "seed", "subjects"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TrainingError(f"unknown training setting(s) {unknown}; the settings are "
                                f"{sorted(known)} and the overrides epochs, lr, batch_size, "
                                "shuffle, precision, recipe, folds, num_classes, seed, "
                                "model_options")
        plan = cls(model=model, recipe=r, num_classes=n_classes, overrides=overrides,
                   model_options=options,
                   seed=seed if seed is not None else (r.seed if r.seed is not None else 0),
                   subjects=_subjects(data, folds), **settings)
        plan.check(data, spec.input_shapes)
        return plan

    def check(self, data: ViewData, shapes) -> None:
        """Refuse settings or data this plan cannot train, naming what is wrong."""
        for name, value, allowed in (("selection", self.selection, SELECTIONS),
                                     ("executor", self.executor, EXECUTORS),
                                     ("checkpoints", self.checkpoints, CHECKPOINTS),
                                     ("checkpoint dtype", self.checkpoint_dtype, tuple(DTYPES)),
                                     ("dtype", self.dtype, tuple(DTYPES))):
            if value not in allowed:
                raise TrainingError(f"{name} must be one of {allowed}, got {value!r}")
        for name, value in (("workers", self.workers), ("runs", self.runs)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainingError(f"{name} must be an int >= 1, got {value!r}")
        if not (self.fold_batch == "auto" or (isinstance(self.fold_batch, int)
                                              and self.fold_batch >= 1)):
            raise TrainingError(f"fold_batch must be 'auto' or an int >= 1, got "
                                f"{self.fold_batch!r}")
        if self.gpus_per_job and self.executor != "ray":
            raise TrainingError("gpus_per_job shares GPUs between Ray jobs; use executor ray")
        if self.address is not None and (self.executor != "ray" or not self.address.strip()):
            raise TrainingError(f"address {self.address!r} names a Ray cluster (host:port, "
                                "auto or ray://host:port) for executor ray; leave it out "
                                "otherwise")
        dev = check_device(self.device, here=self.executor != "ray")
        if self.executor != "ray":
            check_precision(self.recipe.precision, dev)
        _check_inputs(data, shapes, self.num_classes, self.model)

    def policy_rule(self):
        """The rule of the headline policy (whose epoch the checkpoints hold)."""
        return rule_of(self.selection, self.recipe.official)


def _subjects(data: ViewData, folds) -> tuple[str, ...] | None:
    every = sorted(set(map(str, data.subjects)))
    if folds is None:
        return None
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        if not 1 <= folds <= len(every):
            raise TrainingError(f"folds must lie in 1..{len(every)} (the data has "
                                f"{len(every)} subjects), got {folds}")
        return tuple(every[:folds])
    wanted = [str(f) for f in folds]
    missing = sorted(set(wanted) - set(every))
    if missing:
        raise TrainingError(f"folds {missing} are not subjects of the data (its subjects: "
                            f"{', '.join(every[:8])}{', …' if len(every) > 8 else ''})")
    if not wanted:
        raise TrainingError("no fold to run (folds= selected none)")
    return tuple(sorted(set(wanted)))


def _check_inputs(data: ViewData, shapes, num_classes: int, name: str) -> None:
    y, xs = data.labels, data.inputs
    n = y.shape[0]
    if y.ndim != 1:
        raise TrainingError(f"labels must have shape (N,), got {y.shape}")
    if n == 0:
        raise TrainingError("no samples to train on")
    if len(data.subjects) != n:
        raise TrainingError(f"{len(data.subjects)} subjects for {n} labels")
    if len(xs) != len(shapes):
        raise TrainingError(
            f"model {name!r} takes {len(shapes)} input(s) of shapes {shapes}, got {len(xs)}")
    for i, (x, shape) in enumerate(zip(xs, shapes, strict=True)):
        if x.shape[0] != n:
            raise TrainingError(f"input {i} has {x.shape[0]} samples, labels have {n}")
        if tuple(x.shape[1:]) != tuple(shape):
            raise TrainingError(
                f"input {i} has sample shape {tuple(x.shape[1:])}; model {name!r} expects "
                f"{tuple(shape)} (see its view)")
    if y.min() < 0 or y.max() >= num_classes:
        raise TrainingError(f"labels must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")


def available_devices() -> list[str]:
    """The devices this torch build and machine offer (``cpu``, ``cuda:0``...)."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.append("mps")
    return out


def check_device(device: str, *, here: bool = True) -> torch.device:
    """``device`` parsed, and (``here``) present on this machine; else a one-line refusal
    that lists the devices there are."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise TrainingError(f"device {device!r} is not a device name (cpu, cuda, cuda:1, mps); "
                            f"this machine has: {', '.join(available_devices())}") from None
    if not here or dev.type == "cpu":
        return dev
    have = available_devices()
    ok = (dev.type == "cuda" and torch.cuda.is_available()
          and (dev.index is None or dev.index < torch.cuda.device_count())) or \
        (dev.type == "mps" and "mps" in have)
    if not ok:
        build = "" if torch.cuda.is_available() or dev.type != "cuda" else \
            f" (this torch, {torch.__version__}, is built without CUDA)"
        raise TrainingError(f"device {device!r} is not on this machine{build}; it has: "
                            f"{', '.join(have)}")
    return dev


def check_precision(precision: str, dev: torch.device) -> None:
    """Refuse bf16 on a GPU without it; on a CPU without bf16 instructions (AVX512-BF16 or
    AMX), bf16 runs emulated, slower than fp32: say so once."""
    if precision == "fp32":
        return
    if dev.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise TrainingError(f"precision bf16 on {torch.cuda.get_device_name(dev)}: this GPU "
                            "has no bf16; train with --precision fp16 or fp32")
    if dev.type == "cpu":
        from mefeat._cpp import cpu_flags

        if not {"avx512_bf16", "amx_bf16"} & set(cpu_flags()):
            import logging

            logging.getLogger(__name__).warning(
                "precision %s on this CPU: it has no bf16 instructions (AVX512-BF16 or AMX), "
                "so bf16 runs emulated, slower than fp32", precision)

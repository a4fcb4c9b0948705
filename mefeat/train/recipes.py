"""A recipe executed: optimizer, learning-rate schedule, batches, augmentation, loss and
precision, as one fold's training loop (``fold``) and the batched path (``batched``) use
them.

Every field of :class:`mefeat.models.recipe.Recipe` is read here or by
``mefeat.train.selection`` (the epoch rule), ``mefeat.train.trainer`` (the seed) and the
views (key-frame jitter draws, ``mefeat.views.jitter``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mefeat.errors import MefeatError
from mefeat.models.recipe import (
    ClassBalancedSampler,
    ExponentialLR,
    HorizontalFlip,
    Optimizer,
    RandomCrop,
    Recipe,
    Rotation,
    StepLR,
    WarmupCosine,
)


class TrainingError(MefeatError):
    """Bad training inputs or options (shapes, labels, selection policy...)."""


# -- overrides -----------------------------------------------------------------------------


def apply_overrides(
    recipe: Recipe, *, epochs: int | None = None, lr: float | None = None,
    batch_size: int | str | None = None, shuffle: bool | None = None,
    precision: str | None = None,
) -> tuple[Recipe, dict[str, Any]]:
    """The recipe with command-line overrides applied, and the overrides as recorded."""
    changes: dict[str, Any] = {}
    if epochs is not None:
        if int(epochs) < 1:
            raise TrainingError(f"epochs must be >= 1, got {epochs}")
        changes["epochs"] = int(epochs)
    if lr is not None:
        if not lr > 0:
            raise TrainingError(f"lr must be > 0, got {lr}")
        changes["optimizer"] = recipe.optimizer.__class__(
            **{**vars(recipe.optimizer), "lr": float(lr)})
    if batch_size is not None:
        if batch_size == "full":
            changes["batch_size"] = None
        else:
            if int(batch_size) < 1:
                raise TrainingError(f"batch_size must be >= 1 or 'full', got {batch_size!r}")
            changes["batch_size"] = int(batch_size)
        if recipe.sampler is not None:
            raise TrainingError(
                "this recipe draws class-balanced batches of "
                f"{recipe.sampler.batch_size} (n_classes × n_samples); --batch-size cannot "
                "change them"
            )
    if shuffle is not None:
        if recipe.sampler is not None and shuffle:
            raise TrainingError("this recipe's sampler orders the batches; shuffle cannot be set")
        changes["shuffle"] = bool(shuffle)
    if precision is not None:
        changes["precision"] = precision
    try:
        out = recipe.replace(**changes)
    except MefeatError as exc:
        raise TrainingError(f"override: {exc}") from None
    recorded = {k: (v.lr if k == "optimizer" else v) for k, v in changes.items()}
    if "optimizer" in recorded:
        recorded["lr"] = recorded.pop("optimizer")
    if batch_size == "full":
        recorded["batch_size"] = "full"
    return out, recorded


# -- optimizer and schedule ----------------------------------------------------------------


def make_optimizer(params: Sequence[tuple[str, Tensor]], opt: Optimizer, *,
                   stacked: bool = False) -> torch.optim.Optimizer:
    """``torch.optim`` Adam/AdamW/SGD over named parameters.

    ``stacked``: the parameters carry a leading fold axis (the batched path), which
    ``decay_matrices_only`` does not count as a dimension.
    """
    tensors = [p for _, p in params]
    if opt.decay_matrices_only and opt.weight_decay:
        lead = 1 if stacked else 0
        decay = [p for n, p in params if p.ndim - lead >= 2 and not n.endswith(".bias")]
        rest = [p for n, p in params if not (p.ndim - lead >= 2 and not n.endswith(".bias"))]
        groups: Any = [{"params": decay, "weight_decay": opt.weight_decay},
                       {"params": rest, "weight_decay": 0.0}]
    else:
        groups = [{"params": tensors, "weight_decay": opt.weight_decay}]
    # fused=True: one kernel for the whole update (the same arithmetic as the per-tensor
    # loop, up to rounding; on 2 CPU cores 1.2-1.3x faster steps for Dual-Inception and
    # STSTNet). Both paths make the same choice.
    if opt.name == "adam":
        return torch.optim.Adam(groups, lr=opt.lr, betas=opt.betas, eps=opt.eps, fused=True)
    if opt.name == "adamw":
        return torch.optim.AdamW(groups, lr=opt.lr, betas=opt.betas, eps=opt.eps, fused=True)
    return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov,
                           fused=True)


class LRSchedule:
    """The recipe's schedule on an optimizer: call :meth:`after_step` after every optimizer
    step and :meth:`after_epoch` after every epoch (after its evaluation)."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Any, *, epochs: int,
                 steps_per_epoch: int) -> None:
        self.schedule = schedule
        self.per = getattr(schedule, "per", None)
        self.sched: torch.optim.lr_scheduler.LRScheduler | None = None
        if isinstance(schedule, StepLR):
            self.sched = torch.optim.lr_scheduler.StepLR(optimizer, schedule.step_size,
                                                         schedule.gamma)
        elif isinstance(schedule, ExponentialLR):
            self.sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, schedule.gamma)
        elif isinstance(schedule, WarmupCosine):
            total = epochs * steps_per_epoch
            warm = schedule.warmup_epochs * steps_per_epoch
            self.sched = torch.optim.lr_scheduler.LambdaLR(
                optimizer, [_WarmupCosineFactor(g["lr"], total, warm, schedule.floor)
                            for g in optimizer.param_groups])
        elif schedule is not None:
            raise TrainingError(f"no schedule {schedule!r}")

    def after_step(self) -> None:
        if self.per == "step":
            self.sched.step()

    def after_epoch(self, epoch: int) -> None:
        if self.per != "epoch":
            return
        until = getattr(self.schedule, "until_epoch", None)
        if until is None or epoch <= until:
            self.sched.step()


class _WarmupCosineFactor:
    """``LambdaLR`` factor of :class:`WarmupCosine`: ``lr(k) / lr0`` (picklable)."""

    def __init__(self, lr0: float, total: int, warmup: int, floor: float) -> None:
        self.lr0, self.total, self.warmup, self.floor = lr0, max(total, 1), warmup, floor

    def __call__(self, k: int) -> float:
        factor = 0.5 * (1 + math.cos(math.pi * k / self.total))
        if self.warmup and k <= self.warmup:
            factor *= k / self.warmup
        return self.floor / self.lr0 + factor


# -- batches -------------------------------------------------------------------------------


def steps_per_epoch(recipe: Recipe, n_train: int) -> int:
    """Optimizer steps in one epoch of a fold with ``n_train`` training samples."""
    if recipe.sampler is not None:  # the sampler's loop: while count + size < n
        return max(1, math.ceil(n_train / recipe.sampler.batch_size) - 1)
    if recipe.batch_size is None:
        return 1
    return max(1, math.ceil(n_train / recipe.batch_size))


def balanced_batches(labels: np.ndarray, sampler: ClassBalancedSampler,
                     rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of :class:`ClassBalancedSampler` batches: positions into ``labels``.

    Each batch draws ``n_classes`` classes without replacement (all of them when the fold's
    training set has fewer) and takes the next ``n_samples`` positions of each class's
    shuffled list, which is reshuffled once fewer than ``n_samples`` remain (SRMCL's
    ``BalancedBatchSampler``).
    """
    classes = np.unique(labels)
    if not len(classes):
        raise TrainingError("the class-balanced sampler got an empty training set")
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    used = dict.fromkeys(classes, 0)
    batches, count, size = [], 0, sampler.batch_size
    n_classes = min(sampler.n_classes, len(classes))
    while count + size < len(labels) or (not batches and count == 0):
        chosen = rng.choice(classes, n_classes, replace=False)
        batch = []
        for c in chosen:
            batch.extend(pools[c][used[c]:used[c] + sampler.n_samples].tolist())
            used[c] += sampler.n_samples
            if used[c] + sampler.n_samples > len(pools[c]):
                pools[c] = rng.permutation(pools[c])
                used[c] = 0
        batches.append(np.asarray(batch, np.int64))
        count += size
    return batches


# -- augmentation --------------------------------------------------------------------------


class Augmenter:
    """The recipe's train-time augmentation on a batch of model inputs.

    One random draw per sample serves every input tensor and every channel of that sample
    (the official code transforms one stacked tensor of all its frames). Inputs are
    ``(B, ..., H, W)`` and must share ``H, W``. Random numbers come from a CPU generator,
    so a fold's draws do not depend on the device.
    """

    def __init__(self, augmentations: Sequence[Any]) -> None:
        self.augmentations = tuple(augmentations)

    def __bool__(self) -> bool:
        return bool(self.augmentations)

    def __call__(self, xs: tuple[Tensor, ...], gen: torch.Generator) -> tuple[Tensor, ...]:
        if not self.augmentations:
            return xs
        hw = {tuple(x.shape[-2:]) for x in xs}
        if len(hw) != 1:
            raise TrainingError(f"augmentation needs inputs of one image size, got {sorted(hw)}")
        b = xs[0].shape[0]
        flat = [x.reshape(b, -1, *x.shape[-2:]) for x in xs]
        widths = [f.shape[1] for f in flat]
        y = torch.cat(flat, dim=1)
        for aug in self.augmentations:
            if isinstance(aug, HorizontalFlip):
                flip = (torch.rand(b, generator=gen) < aug.p).to(y.device)
                y = torch.where(flip[:, None, None, None], y.flip(-1), y)
            elif isinstance(aug, Rotation):
                angle = (torch.rand(b, generator=gen, dtype=torch.float64) * 2 - 1) * aug.degrees
                y = rotate(y, angle.to(y.device), fill=aug.fill)
            elif isinstance(aug, RandomCrop):
                h, w = y.shape[-2:]
                span = 2 * aug.padding + 1
                top = torch.randint(0, span, (b,), generator=gen)
                left = torch.randint(0, span, (b,), generator=gen)
                y = pad_crop(y, aug.padding, aug.padding_mode, top.to(y.device),
                             left.to(y.device))
            else:
                raise TrainingError(f"no augmentation {aug!r}")
        parts = torch.split(y, widths, dim=1)
        return tuple(p.reshape(x.shape) for p, x in zip(parts, xs, strict=True))


def rotate(x: Tensor, degrees: Tensor, *, fill: float = 0.0) -> Tensor:
    """Rotate each image of ``x`` (B, C, H, W) counter-clockwise by ``degrees[b]`` about its
    centre, nearest neighbour; pixels from outside the image are ``fill``."""
    theta = torch.deg2rad(degrees.double())
    cos, sin = torch.cos(theta), torch.sin(theta)
    h, w = x.shape[-2:]
    # affine_grid maps output to input positions in [-1, 1] coordinates; a counter-clockwise
    # image rotation by θ samples the input at R(-θ), with the aspect ratio undone.
    mat = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64, device=x.device)
    mat[:, 0, 0] = cos
    mat[:, 0, 1] = -sin * h / w
    mat[:, 1, 0] = sin * w / h
    mat[:, 1, 1] = cos
    grid = F.affine_grid(mat.to(x.dtype if x.is_floating_point() else torch.float32),
                         list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    if fill:
        inside = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="nearest",
                               padding_mode="zeros", align_corners=False)
        out = out + fill * (1 - inside)
    return out


def pad_crop(x: Tensor, padding: int, mode: str, top: Tensor, left: Tensor) -> Tensor:
    """Pad ``x`` (B, C, H, W) by ``padding`` (``"constant"`` 0 or ``"edge"``) and crop
    (H, W) at per-sample offsets ``top``, ``left`` in ``0..2·padding``."""
    if padding == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (padding,) * 4, mode="replicate" if mode == "edge" else "constant")
    rows = top[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = left[:, None] + torch.arange(w, device=x.device)  # (B, W)
    b = torch.arange(x.shape[0], device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


# -- loss and precision --------------------------------------------------------------------


def cross_entropy(logits: Tensor, target: Tensor, recipe: Recipe) -> Tensor:
    """Per-sample cross-entropy (with the recipe's label smoothing), in float32."""
    return F.cross_entropy(logits.float(), target, reduction="none",
                           label_smoothing=recipe.label_smoothing)


def model_loss(model: nn.Module, x: Any, target: Tensor, name: str) -> Tensor:
    """The model's own training loss (``Recipe.loss == "model"``)."""
    if not (hasattr(model, "forward_train") and hasattr(model, "loss")):
        raise TrainingError(
            f"model {name!r}: its recipe says loss='model', but the module has no "
            "forward_train(x) and loss(outputs, targets)"
        )
    return model.loss(model.forward_train(x), target)


class Precision:
    """The recipe's precision: an autocast context and, for fp16, a gradient scaler.

    fp16 on a CPU runs as bf16 without a scaler, as PyTorch Lightning does for
    ``precision=16`` on a CPU accelerator ("native AMP is not supported on CPU. Using
    precision='bf16' instead"): CPUs have no fast float16 kernels (an EDMDBN step measured
    95 s in fp16, 1.4 s in bf16, 2.5 s in fp32 on 2 cores).
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision == "fp16" and device.type == "cpu":
            precision = "bf16"
        self.precision = precision
        self.device = device
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and one optimizer step (scaled under fp16)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()


# -- what the batched path cannot run --------------------------------------------------------


def batching_blockers(recipe: Recipe) -> list[str]:
    """Recipe features that keep a model off the batched-folds path, with why."""
    why = []
    if recipe.sampler is not None:
        why.append("a class-balanced sampler gives each fold its own number of batches")
    if recipe.loss == "model":
        why.append("the model's own loss updates its memory in place")
    if recipe.augmentation:
        why.append("train-time augmentation draws per fold")
    if recipe.keyframe_jitter is not None:
        why.append("key-frame jitter rebuilds each fold's inputs every epoch")
    if recipe.precision == "fp16":
        why.append("fp16's gradient scaler would skip steps of every fold of a group at once")
    return why


def epoch_orders(n_train: int, recipe: Recipe, gen: torch.Generator) -> Iterator[Tensor]:
    """Positions into a fold's training list, one permutation (or the identity) an epoch."""
    while True:
        yield torch.randperm(n_train, generator=gen) if recipe.shuffle else torch.arange(n_train)

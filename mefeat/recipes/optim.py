"""The optimizer and the learning-rate schedules of a recipe, and how they run.

A schedule is a small frozen record registered in :data:`SCHEDULES`; its ``make(optimizer,
epochs, steps_per_epoch)`` returns the ``torch.optim.lr_scheduler`` scheduler, and ``per``
says whether the trainer steps it after every optimizer step or after every epoch (after
that epoch's evaluation, as the official loops do). ``until_epoch`` (where a schedule has
it) stops the stepping after that epoch. Adding a schedule is one class here and its test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .parts import Registry, need

OPTIMIZERS = ("adam", "adamw", "sgd")


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
        need(self.name in OPTIMIZERS, f"optimizer {self.name!r} is not one of {OPTIMIZERS}")
        need(isinstance(self.lr, (int, float)) and self.lr > 0,
             f"optimizer lr must be a number > 0, got {self.lr!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.name != "sgd":
            need(self.momentum == 0 and not self.nesterov,
                 f"momentum/nesterov are SGD arguments, not {self.name}'s")

    def make(self, params: Sequence[tuple[str, Tensor]], *,
             stacked: bool = False) -> torch.optim.Optimizer:
        """The optimizer over named parameters. ``stacked``: the parameters carry a leading
        fold axis (the batched path), which ``decay_matrices_only`` does not count."""
        tensors = [p for _, p in params]
        if self.decay_matrices_only and self.weight_decay:
            lead = 1 if stacked else 0

            def decays(name: str, p: Tensor) -> bool:
                return p.ndim - lead >= 2 and not name.endswith(".bias")

            groups: Any = [
                {"params": [p for n, p in params if decays(n, p)],
                 "weight_decay": self.weight_decay},
                {"params": [p for n, p in params if not decays(n, p)], "weight_decay": 0.0}]
        else:
            groups = [{"params": tensors, "weight_decay": self.weight_decay}]
        # fused=True: one kernel for the whole update (the same arithmetic as the per-tensor
        # loop, up to rounding; on 2 CPU cores 1.2-1.3x faster steps for Dual-Inception and
        # STSTNet). Both fold paths make the same choice.
        if self.name == "adam":
            return torch.optim.Adam(groups, lr=self.lr, betas=self.betas, eps=self.eps,
                                    fused=True)
        if self.name == "adamw":
            return torch.optim.AdamW(groups, lr=self.lr, betas=self.betas, eps=self.eps,
                                     fused=True)
        return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum,
                               nesterov=self.nesterov, fused=True)


# -- learning-rate schedules ---------------------------------------------------------------

SCHEDULES: Registry[type] = Registry("schedule")


@SCHEDULES.register
@dataclass(frozen=True)
class StepLR:
    """``torch.optim.lr_scheduler.StepLR(step_size, gamma)``, stepped after every epoch."""

    step_size: int
    gamma: float
    name: ClassVar[str] = "step"
    per: ClassVar[str] = "epoch"

    def __post_init__(self) -> None:
        need(self.step_size >= 1 and self.gamma > 0, f"StepLR({self.step_size}, {self.gamma})")

    def make(self, optimizer, epochs: int, steps_per_epoch: int):
        return torch.optim.lr_scheduler.StepLR(optimizer, self.step_size, self.gamma)


@SCHEDULES.register
@dataclass(frozen=True)
class ExponentialLR:
    """``torch.optim.lr_scheduler.ExponentialLR(gamma)``, stepped after epochs
    ``1..until_epoch`` only (``None``: after every epoch); constant afterwards."""

    gamma: float
    until_epoch: int | None = None
    name: ClassVar[str] = "exponential"
    per: ClassVar[str] = "epoch"

    def __post_init__(self) -> None:
        need(self.gamma > 0, f"ExponentialLR gamma must be > 0, got {self.gamma}")
        need(self.until_epoch is None or self.until_epoch >= 0,
             f"ExponentialLR until_epoch must be >= 0, got {self.until_epoch}")

    def make(self, optimizer, epochs: int, steps_per_epoch: int):
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, self.gamma)


@SCHEDULES.register
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
        need(self.warmup_epochs >= 0 and self.floor >= 0,
             f"WarmupCosine({self.warmup_epochs}, floor={self.floor})")

    def make(self, optimizer, epochs: int, steps_per_epoch: int):
        total, warm = epochs * steps_per_epoch, self.warmup_epochs * steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, [_WarmupCosineFactor(g["lr"], total, warm, self.floor)
                        for g in optimizer.param_groups])


class _WarmupCosineFactor:
    """``LambdaLR`` factor of :class:`WarmupCosine`: ``lr(k) / lr0`` (picklable)."""

    def __init__(self, lr0: float, total: int, warmup: int, floor: float) -> None:
        self.lr0, self.total, self.warmup, self.floor = lr0, max(total, 1), warmup, floor

    def __call__(self, k: int) -> float:
        factor = 0.5 * (1 + math.cos(math.pi * k / self.total))
        if self.warmup and k <= self.warmup:
            factor *= k / self.warmup
        return self.floor / self.lr0 + factor


class LRSchedule:
    """A recipe's schedule (``None``: constant) on an optimizer: call :meth:`after_step`
    after every optimizer step and :meth:`after_epoch` after every epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Any, *, epochs: int,
                 steps_per_epoch: int) -> None:
        self.schedule = schedule
        self.per = getattr(schedule, "per", None)
        self.sched = None if schedule is None else schedule.make(optimizer, epochs,
                                                                 steps_per_epoch)

    def after_step(self) -> None:
        if self.per == "step":
            self.sched.step()

    def after_epoch(self, epoch: int) -> None:
        if self.per != "epoch":
            return
        until = getattr(self.schedule, "until_epoch", None)
        if until is None or epoch <= until:
            self.sched.step()

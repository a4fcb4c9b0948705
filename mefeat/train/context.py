"""What a group of folds trains with (the data resident on the device, the recipe, the model
builder) and what it records while it trains (:class:`FoldRecorder`). Picklable, so worker
processes receive it whole."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mefeat.metrics import fold_score
from mefeat.recipes import Recipe, Selection
from mefeat.recipes.selection import FoldPicker
from mefeat.views.jitter import JitteredFrames


def fold_seed(seed: int, subject: str) -> int:
    """The seed of one fold: a stable hash of the run seed and the subject."""
    return zlib.crc32(f"{seed}/{subject}".encode()) & 0x7FFFFFFF


class Builder:
    """Builds fold models: picklable, so worker processes can build them too."""

    def __init__(self, name: str, num_classes: int, options: Mapping[str, Any],
                 dev: torch.device, dtype: torch.dtype) -> None:
        from mefeat.models import get_spec

        self.name, self.num_classes, self.options = name, num_classes, dict(options)
        self.dev, self.dtype = dev, dtype
        # A model registered from user code lives in the module that registered it; a
        # spawned worker imports that module before building.
        self.module = get_spec(name).builder.__module__

    def __call__(self, fseed: int) -> nn.Module:
        import importlib

        from mefeat.models import create_model, list_models

        if self.name not in list_models() and self.module not in ("__main__", "__mp_main__"):
            importlib.import_module(self.module)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fseed)
            model = create_model(self.name, num_classes=self.num_classes, **self.options)
        return model.to(device=self.dev, dtype=self.dtype)


@dataclass
class DeviceJitter:
    """A :class:`mefeat.views.jitter.JitteredFrames` bank with its frames on the training
    device: its draws are the bank's own (:meth:`JitteredFrames.draw`), its frames become
    model inputs there."""

    frames: JitteredFrames
    bank: Tensor  # frames.bank, (M, S, S[, 3]) uint8 on the device

    @classmethod
    def on(cls, frames: JitteredFrames, dev: torch.device) -> DeviceJitter:
        return cls(frames, torch.as_tensor(frames.bank, device=dev))

    def draw(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.frames.draw(samples, rng)

    def inputs(self, rows: np.ndarray) -> tuple[Tensor, ...]:
        frames = self.bank[torch.as_tensor(rows, device=self.bank.device)]  # (B, K, S, S[, 3])
        out = self.frames.to_inputs(frames)
        return out if isinstance(out, tuple) else (out,)


@dataclass
class FoldContext:
    """Everything a fold's training reads.

    ``checkpoint``: the rule whose pick becomes the fold's checkpoint (``None``: keep no
    weights); a per-fold rule is applied as the fold trains (:class:`FoldRecorder`), any
    other keeps the last epoch's weights. ``stop_after``: train only this many epochs
    (the schedule still runs as for the recipe's epochs).
    """

    name: str
    build: Builder
    xs: tuple[Tensor, ...]
    y: Tensor
    recipe: Recipe
    dev: torch.device
    seed: int
    num_classes: int
    jitter: DeviceJitter | None = None
    keep_features: bool = False
    checkpoint: Selection | None = None
    channels_last: bool = False  # the plain loop's models (CPU, ModelSpec.channels_last)
    stop_after: int | None = None
    datasets: np.ndarray | None = None  # each sample's dataset (the recipe's oversampling)

    @property
    def epochs(self) -> int:
        return self.stop_after or self.recipe.epochs

    def model_input(self, xs: Sequence[Tensor]) -> Tensor | tuple[Tensor, ...]:
        return xs[0] if len(xs) == 1 else tuple(xs)

    def devices(self) -> list[torch.device]:
        """Devices whose random state a fold's training forks."""
        return [self.dev] if self.dev.type == "cuda" else []


@dataclass
class FoldOutput:
    """What training one fold gave (in memory; ``mefeat.train.result.FoldResult`` is its
    record on disk)."""

    subject: str
    preds: np.ndarray  # (epochs, T) int16 held-out predictions after every epoch
    logits: np.ndarray  # (T, width) float32 of the last epoch
    history: dict[str, list[float]]  # train_loss, test_loss, test_acc, lr per epoch
    lr_steps: list[float] = field(default_factory=list)
    state: dict[str, Tensor] | None = None  # the checkpoint's weights (CPU)
    state_epoch: int | None = None
    features: np.ndarray | None = None
    seconds: float = 0.0


class FoldRecorder:
    """Per epoch, for K folds trained together: held-out predictions, held-out and training
    loss, the learning rate, and the weights of the epoch the checkpoint rule picks.

    Values stay on the device (one sync in :meth:`outputs`), except where a per-fold
    checkpoint rule needs each epoch's score on the host to decide whether to keep weights.
    """

    def __init__(self, ctx: FoldContext, test_idx: Sequence[np.ndarray]) -> None:
        k, t_max = len(test_idx), max(len(t) for t in test_idx)
        self.ctx, self.sizes = ctx, [len(t) for t in test_idx]
        self.preds = torch.full((ctx.epochs, k, t_max), -1, dtype=torch.int16, device=ctx.dev)
        self.test_loss = torch.zeros(ctx.epochs, k, device=ctx.dev)
        self.train_loss = torch.zeros(ctx.epochs, k, device=ctx.dev)
        self.lr: list[float] = []
        self.logits: Tensor | None = None
        rule = ctx.checkpoint
        self.pickers = [FoldPicker(rule) for _ in range(k)] \
            if rule is not None and rule.kind == "per-fold" else None
        self.labels = [ctx.y[torch.as_tensor(t, device=ctx.dev)] for t in test_idx]
        self.labels_np = [lab.cpu().numpy() for lab in self.labels]
        self.states: list[dict[str, Tensor] | None] = [None] * k
        self.state_epochs: list[int | None] = [None] * k

    def add_train_loss(self, epoch: int, per_fold: Tensor, weight: float = 1.0) -> None:
        """``per_fold``: (K,) mean loss of one step; an epoch's value is the mean of its
        steps (``weight`` = 1 / steps)."""
        self.train_loss[epoch - 1] += per_fold.detach().float() * weight

    def evaluate(self, epoch: int, logits: Tensor, states) -> None:
        """``logits``: (K, T, width) of ``epoch``; ``states()`` gives the K folds' current
        weights (called only when a fold's checkpoint is to be kept now)."""
        logits = logits.float()
        self.preds[epoch - 1] = logits.argmax(-1).to(torch.int16)
        for i, (lab, t) in enumerate(zip(self.labels, self.sizes, strict=True)):
            self.test_loss[epoch - 1, i] = torch.nn.functional.cross_entropy(
                logits[i, :t], lab) if t else torch.nan
        if epoch == self.ctx.epochs:
            self.logits = logits
        if self.pickers is not None:
            host = self.preds[epoch - 1].cpu().numpy()  # the sync a per-fold rule needs
            rule = self.ctx.checkpoint
            if epoch in set(rule.evaluated(self.ctx.recipe.epochs)):
                keep = [i for i, p in enumerate(self.pickers) if p.offer(epoch, fold_score(
                    rule.metric, self.labels_np[i], host[i, :self.sizes[i]],
                    self.ctx.num_classes))]
                if keep:
                    self._snapshot(epoch, keep, states)
        elif self.ctx.checkpoint is not None and epoch == self.ctx.epochs:
            self._snapshot(epoch, range(len(self.sizes)), states)

    def _snapshot(self, epoch: int, folds, states) -> None:
        current = states()
        for i in folds:
            self.states[i] = {k: v.detach().to("cpu", copy=True) for k, v in current[i].items()}
            self.state_epochs[i] = epoch

    def outputs(self, subjects: Sequence[str]) -> list[FoldOutput]:
        preds = self.preds.cpu().numpy()  # the one sync
        logits = self.logits.cpu().numpy()
        test_loss = self.test_loss.cpu().numpy()
        train_loss = self.train_loss.cpu().numpy()
        out = []
        for i, (subject, t) in enumerate(zip(subjects, self.sizes, strict=True)):
            p = preds[:, i, :t]
            labels = self.labels_np[i]
            acc = (p == labels[None]).mean(1) if t else np.full(len(p), np.nan)
            out.append(FoldOutput(
                subject=subject, preds=p, logits=logits[i, :t],
                history={"train_loss": train_loss[:, i].tolist(),
                         "test_loss": test_loss[:, i].tolist(),
                         "test_acc": acc.tolist(), "lr": list(self.lr)},
                state=self.states[i], state_epoch=self.state_epochs[i]))
        return out

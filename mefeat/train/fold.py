"""One LOSO fold trained by its recipe: the plain-module loop (no vmap), the reference that
the batched path must match.

Per epoch: the fold's training order (the same order every epoch, a fresh permutation, or
class-balanced batches), key-frame jitter draws and augmentation (training only), one
optimizer step a batch under the recipe's precision, the schedule stepped after every step
or epoch, and the held-out subject evaluated in ``eval()`` mode after every epoch
(:class:`~mefeat.train.context.FoldRecorder`). Nothing syncs inside the epoch loop unless a
per-fold checkpoint rule needs the epoch's score.

Random streams of fold ``s`` (fold seed ``f = fold_seed(seed, s)``): the model's
initialisation ``torch.manual_seed(f)``; the training order ``torch.Generator(f + 1)``;
dropout and other in-model randomness ``torch.manual_seed(f + 2)``; augmentation
``torch.Generator(f + 3)``; the sampler and key-frame jitter ``numpy default_rng([f, 1])``;
the oversampled training list (a recipe's ``oversample``) ``numpy default_rng([f, 5])``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mefeat.faults import fault
from mefeat.recipes.augment import Augmenter
from mefeat.recipes.loss import LOSSES, Precision
from mefeat.recipes.optim import LRSchedule
from mefeat.train.context import FoldContext, FoldOutput, FoldRecorder, fold_seed


def train_fold(ctx: FoldContext, fold, on_epoch: Callable[[int], None] | None = None
               ) -> list[FoldOutput]:
    """Train one fold; returns its output (a one-fold group). ``on_epoch(epoch)`` is called
    after every epoch."""
    subject, train_idx, test_idx = fold
    r = ctx.recipe
    fseed = fold_seed(ctx.seed, subject)
    model = ctx.build(fseed)
    if ctx.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = r.optimizer.make(list(model.named_parameters()))
    batches = _Batches(ctx, train_idx, fseed)
    schedule = LRSchedule(opt, r.schedule, epochs=r.epochs, steps_per_epoch=batches.steps)
    precision = Precision(r.precision, ctx.dev)
    loss_fn = LOSSES[r.loss]
    x_test = ctx.model_input([x[torch.as_tensor(test_idx, device=ctx.dev)] for x in ctx.xs])
    record = FoldRecorder(ctx, [test_idx])
    lr_steps: list[float] = []
    with torch.random.fork_rng(devices=ctx.devices()):
        torch.manual_seed(fseed + 2)  # dropout stream of this fold
        for epoch in range(1, ctx.epochs + 1):
            model.train()
            record.lr.append(opt.param_groups[0]["lr"])
            epoch_batches, n_steps = batches.epoch()
            for xb, yb in epoch_batches:
                if schedule.per == "step":
                    lr_steps.append(opt.param_groups[0]["lr"])
                with precision.autocast():
                    loss = loss_fn(model, xb, yb, r).mean()
                precision.step(loss, opt)
                record.add_train_loss(epoch, loss[None], 1.0 / n_steps)
                schedule.after_step()
            model.eval()
            with torch.no_grad(), precision.autocast():
                record.evaluate(epoch, model(x_test).float()[None],
                                lambda: [model.state_dict()])
            schedule.after_epoch(epoch)
            fault("train:epoch")
            if on_epoch is not None:
                on_epoch(epoch)
    out = record.outputs([subject])[0]
    out.lr_steps = lr_steps
    if ctx.keep_features:  # the final model's features of the held-out samples
        with torch.no_grad(), precision.autocast():
            out.features = model.forward_features(x_test).float().cpu().numpy()
    return [out]


class _Batches:
    """A fold's training batches, epoch by epoch: the recipe's order (the same every epoch,
    a fresh permutation, or the class-balanced sampler's), key-frame jitter draws and
    augmentation, each from the fold's own random streams."""

    def __init__(self, ctx: FoldContext, train_idx: np.ndarray, fseed: int) -> None:
        r = ctx.recipe
        train_idx = np.asarray(train_idx)
        if r.oversample is not None and ctx.datasets is not None and \
                r.oversample.applies(np.unique(ctx.datasets[train_idx])):
            labels = ctx.y.cpu().numpy()[train_idx]
            train_idx = train_idx[r.oversample.draw(labels, np.random.default_rng([fseed, 5]))]
        self.ctx, self.train_idx, self.n = ctx, train_idx, len(train_idx)
        self.steps = r.steps_per_epoch(self.n)
        self.size = r.batch_size or self.n
        self.augment = Augmenter(r.augmentation)
        self.order_gen = torch.Generator().manual_seed(fseed + 1)
        self.aug_gen = torch.Generator().manual_seed(fseed + 3)
        self.rng = np.random.default_rng([fseed, 1])
        self.tr = torch.as_tensor(train_idx, device=ctx.dev)
        self.labels = ctx.y.cpu().numpy()[train_idx]
        # The same batches every epoch and nothing drawn per epoch: gather them once.
        self.fixed = None
        if not (r.shuffle or r.sampler or self.augment or ctx.jitter):
            self.fixed = [(ctx.model_input([x[self.tr[p]] for x in ctx.xs]), ctx.y[self.tr[p]])
                          for p in self.positions()]

    def positions(self) -> list:
        """One epoch's batches as positions into the fold's training list."""
        r = self.ctx.recipe
        if r.sampler is not None:
            return r.sampler.batches(self.labels, self.rng)
        order = torch.randperm(self.n, generator=self.order_gen) if r.shuffle else \
            torch.arange(self.n)
        return [order[j * self.size:(j + 1) * self.size] for j in range(self.steps)]

    def epoch(self):
        """This epoch's batches (an iterable of (inputs, labels)) and their number."""
        if self.fixed is not None:
            return self.fixed, len(self.fixed)
        ctx = self.ctx
        rows = ctx.jitter.draw(self.train_idx, self.rng) if ctx.jitter else None
        positions = self.positions()
        return (self._batch(pos, rows) for pos in positions), len(positions)

    def _batch(self, pos, rows):
        ctx = self.ctx
        pos = torch.as_tensor(pos)
        idx = self.tr[pos.to(self.tr.device)]
        if rows is not None:
            xs = ctx.jitter.inputs(rows[pos.numpy()])
        else:
            xs = tuple(x[idx] for x in ctx.xs)
        if self.augment:
            xs = self.augment(xs, self.aug_gen)
        return ctx.model_input(xs), ctx.y[idx]

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
``torch.Generator(f + 3)``; the sampler and key-frame jitter ``numpy default_rng([f, 1])``.
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
    r, dev = ctx.recipe, ctx.dev
    fseed = fold_seed(ctx.seed, subject)
    model = ctx.build(fseed)
    if ctx.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = r.optimizer.make(list(model.named_parameters()))
    n_train = len(train_idx)
    steps = r.steps_per_epoch(n_train)
    schedule = LRSchedule(opt, r.schedule, epochs=r.epochs, steps_per_epoch=steps)
    precision = Precision(r.precision, dev)
    augment = Augmenter(r.augmentation)
    loss_fn = LOSSES[r.loss]
    order_gen = torch.Generator().manual_seed(fseed + 1)
    aug_gen = torch.Generator().manual_seed(fseed + 3)
    rng = np.random.default_rng([fseed, 1])
    tr = torch.as_tensor(train_idx, device=dev)
    te = torch.as_tensor(test_idx, device=dev)
    x_test = ctx.model_input([x[te] for x in ctx.xs])
    y_train_np = ctx.y.cpu().numpy()[train_idx]
    bs = r.batch_size or n_train
    record = FoldRecorder(ctx, [test_idx])

    def epoch_batches() -> list[np.ndarray] | list[torch.Tensor]:
        if r.sampler is not None:
            return r.sampler.batches(y_train_np, rng)
        order = torch.randperm(n_train, generator=order_gen) if r.shuffle else \
            torch.arange(n_train)
        return [order[j * bs:(j + 1) * bs] for j in range(steps)]

    # The same batches every epoch and nothing drawn per epoch: gather them once.
    fixed = None
    if not (r.shuffle or r.sampler or augment or ctx.jitter):
        fixed = [(ctx.model_input([x[tr[p]] for x in ctx.xs]), ctx.y[tr[p]])
                 for p in epoch_batches()]
    lr_steps: list[float] = []
    with torch.random.fork_rng(devices=ctx.devices()):
        torch.manual_seed(fseed + 2)  # dropout stream of this fold
        for epoch in range(1, ctx.epochs + 1):
            model.train()
            record.lr.append(opt.param_groups[0]["lr"])
            if fixed is not None:
                batches, n_steps = fixed, len(fixed)
            else:
                rows = ctx.jitter.draw(np.asarray(train_idx), rng) if ctx.jitter else None
                positions = epoch_batches()
                n_steps = len(positions)
                batches = (_batch(ctx, tr, pos, rows, augment, aug_gen) for pos in positions)
            for xb, yb in batches:
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


def _batch(ctx: FoldContext, tr: torch.Tensor, pos, rows, augment: Augmenter,
           gen: torch.Generator):
    """One training batch: positions ``pos`` into the fold's training list."""
    pos = torch.as_tensor(pos)
    idx = tr[pos.to(tr.device)]
    if rows is not None:
        xs = ctx.jitter.inputs(rows[pos.numpy()])
    else:
        xs = tuple(x[idx] for x in ctx.xs)
    if augment:
        xs = augment(xs, gen)
    return ctx.model_input(xs), ctx.y[idx]

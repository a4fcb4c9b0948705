"""One LOSO fold trained by its recipe: the plain-module loop (no vmap), the reference that
the batched path must match.

Per epoch: the fold's training order (the same order every epoch, a fresh permutation, or
class-balanced batches), key-frame jitter draws and augmentation (training only), one
optimizer step a batch under the recipe's precision, the schedule stepped after every step
or epoch, and the held-out subject evaluated in ``eval()`` mode after the epochs the
selection policies keep. Nothing syncs inside the epoch loop.

Random streams of fold ``s`` (fold seed ``f = fold_seed(seed, s)``): the model's
initialisation ``torch.manual_seed(f)``; the training order ``torch.Generator(f + 1)``;
dropout and other in-model randomness ``torch.manual_seed(f + 2)``; augmentation
``torch.Generator(f + 3)``; the sampler and key-frame jitter ``numpy default_rng([f, 1])``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mefeat.train.context import EpochRecord, FoldContext, fold_seed
from mefeat.train.recipes import (
    Augmenter,
    LRSchedule,
    Precision,
    balanced_batches,
    cross_entropy,
    make_optimizer,
    model_loss,
    steps_per_epoch,
)


def train_fold(ctx: FoldContext, fold, on_epoch: Callable[[], None] | None = None
               ) -> list[dict[str, Any]]:
    """Train one fold; returns ``[{"preds", "logits", "lr", ...}]`` (a one-fold group)."""
    subject, train_idx, test_idx = fold
    r, dev = ctx.recipe, ctx.dev
    fseed = fold_seed(ctx.seed, subject)
    model = ctx.build(fseed)
    if ctx.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(list(model.named_parameters()), r.optimizer)
    n_train = len(train_idx)
    steps = steps_per_epoch(r, n_train)
    schedule = LRSchedule(opt, r.schedule, epochs=r.epochs, steps_per_epoch=steps)
    precision = Precision(r.precision, dev)
    augment = Augmenter(r.augmentation)
    order_gen = torch.Generator().manual_seed(fseed + 1)
    aug_gen = torch.Generator().manual_seed(fseed + 3)
    rng = np.random.default_rng([fseed, 1])
    tr = torch.as_tensor(train_idx, device=dev)
    te = torch.as_tensor(test_idx, device=dev)
    x_test = ctx.model_input([x[te] for x in ctx.xs])
    y_train_np = ctx.y.cpu().numpy()[train_idx]
    bs = r.batch_size or n_train
    record = EpochRecord(ctx.keep, 1, len(test_idx), dev)

    def epoch_batches() -> list[np.ndarray] | list[torch.Tensor]:
        if r.sampler is not None:
            return balanced_batches(y_train_np, r.sampler, rng)
        order = torch.randperm(n_train, generator=order_gen) if r.shuffle else \
            torch.arange(n_train)
        return [order[j * bs:(j + 1) * bs] for j in range(steps)]

    # The same batches every epoch and nothing drawn per epoch: gather them once.
    fixed = None
    if not (r.shuffle or r.sampler or augment or ctx.jitter):
        fixed = [(ctx.model_input([x[tr[p]] for x in ctx.xs]), ctx.y[tr[p]])
                 for p in epoch_batches()]
    lrs: list[float] = []
    lr_steps: list[float] = []
    with torch.random.fork_rng(devices=ctx.devices()):
        torch.manual_seed(fseed + 2)  # dropout stream of this fold
        for epoch in range(1, r.epochs + 1):
            model.train()
            lrs.append(opt.param_groups[0]["lr"])
            if fixed is not None:
                batches = fixed
            else:
                rows = ctx.jitter.draw(np.asarray(train_idx), rng) if ctx.jitter else None
                batches = (_batch(ctx, tr, pos, rows, augment, aug_gen)
                           for pos in epoch_batches())
            for xb, yb in batches:
                if schedule.per == "step":
                    lr_steps.append(opt.param_groups[0]["lr"])
                with precision.autocast():
                    if r.loss == "model":
                        loss = model_loss(model, xb, yb, ctx.name)
                    else:
                        loss = cross_entropy(model(xb), yb, r).mean()
                precision.step(loss, opt)
                schedule.after_step()
            if record.wants(epoch):
                model.eval()
                with torch.no_grad(), precision.autocast():
                    record.update(epoch, model(x_test).float()[None])
            schedule.after_epoch(epoch)
            if on_epoch is not None:
                on_epoch()
    out = record.results([len(test_idx)])[0]
    out["lr"] = lrs
    if lr_steps:
        out["lr_steps"] = lr_steps
    if ctx.keep_features:  # the final model's features of the held-out samples
        model.eval()
        with torch.no_grad(), precision.autocast():
            out["features"] = model.forward_features(x_test).float().cpu().numpy()
    if ctx.keep_states:
        out["state"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
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

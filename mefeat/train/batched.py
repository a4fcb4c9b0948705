"""K LOSO folds trained as one batched model (``torch.vmap``), for accelerators.

The K models' parameters are stacked (``torch.func.stack_module_state``) and the model runs
under ``torch.vmap`` over ``torch.func.functional_call``. The loss is the *sum over folds of
each fold's mean loss*, so each fold's gradient is exactly its own; the optimizer works on
the stacked tensors, whose update is element-wise, hence per fold independent and the same
maths as K separate optimizers (same step counts and the same schedule, because only folds
with the same number of steps per epoch are batched together).

Folds have training sets of different sizes: batches are padded and a mask weights each
fold's loss; BatchNorm becomes :class:`mefeat.train.batchnorm.MaskedBatchNorm`. Dropout
draws per-fold masks (``randomness="different"``) from one stream per group, so a model with
dropout gives other (equally distributed) numbers than one fold at a time; without dropout
the two paths agree to rounding.

Recipe features: optimizer, weight-decay groups, schedules, label smoothing and bf16 run
here; a recipe with a sampler, the model's own loss, augmentation, key-frame jitter or fp16
trains one fold at a time (:func:`batching_blockers` says why, and the run records it).
A model that ``vmap`` cannot run is found by :func:`probe` and also trains one fold at a
time.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from mefeat.recipes import Recipe
from mefeat.recipes.loss import Precision, cross_entropy
from mefeat.recipes.optim import LRSchedule
from mefeat.train.batchnorm import batch_mask, mask_batchnorms
from mefeat.train.context import FoldContext, FoldOutput, FoldRecorder, fold_seed


def _stacked_call(template: nn.Module, n_inputs: int) -> Callable[..., Tensor]:
    from torch.func import functional_call

    def call(params, buffers, mask, *xs):
        with batch_mask(mask):
            x = xs[0] if n_inputs == 1 else tuple(xs)
            return functional_call(template, (params, buffers), (x,))

    return torch.vmap(call, in_dims=(0, 0, 0) + (0,) * n_inputs, randomness="different")


def _pad_index(idx_list, width: int, dev: torch.device) -> tuple[Tensor, Tensor]:
    k = len(idx_list)
    idx = np.zeros((k, width), dtype=np.int64)
    mask = np.zeros((k, width), dtype=np.float32)
    for i, a in enumerate(idx_list):
        idx[i, : len(a)] = a
        idx[i, len(a):] = a[0] if len(a) else 0
        mask[i, : len(a)] = 1.0
    return torch.as_tensor(idx, device=dev), torch.as_tensor(mask, device=dev)


def train_group(ctx: FoldContext, chunk, on_epoch: Callable[[int], None] | None = None
                ) -> list[FoldOutput]:
    """K folds with the same steps per epoch as one vmapped model."""
    from torch.func import stack_module_state

    r, k = ctx.recipe, len(chunk)
    models = [ctx.build(fold_seed(ctx.seed, f[0])) for f in chunk]
    params, buffers = stack_module_state(models)
    template = mask_batchnorms(copy.deepcopy(models[0]))
    del models
    vm = _stacked_call(template, len(ctx.xs))
    opt = r.optimizer.make(list(params.items()), stacked=True)
    precision = Precision(r.precision, ctx.dev)
    batches = _GroupBatches(ctx, chunk)
    schedule = LRSchedule(opt, r.schedule, epochs=r.epochs, steps_per_epoch=batches.steps)
    test_pad, test_mask = _pad_index([f[2] for f in chunk], max(len(f[2]) for f in chunk),
                                     ctx.dev)
    x_test = [x[test_pad] for x in ctx.xs]
    names = set(template.state_dict())

    def states() -> list[dict[str, Tensor]]:  # fold i's weights: slice i of the stacks
        return [{name: t[i] for name, t in (*params.items(), *buffers.items()) if name in names}
                for i in range(k)]

    record = FoldRecorder(ctx, [f[2] for f in chunk])
    with torch.random.fork_rng(devices=ctx.devices()):
        torch.manual_seed(fold_seed(ctx.seed, "|".join(f[0] for f in chunk)))
        for epoch in range(1, ctx.epochs + 1):
            template.train()
            record.lr.append(opt.param_groups[0]["lr"])
            for idx, mask in batches.epoch():
                with precision.autocast():
                    out = vm(params, buffers, mask, *[x[idx] for x in ctx.xs])
                per = cross_entropy(out.reshape(-1, out.shape[-1]), ctx.y[idx].reshape(-1),
                                    r.label_smoothing)
                # Sum over folds of each fold's mean loss: the folds' gradients stay apart.
                per_fold = (per.view(k, -1) * mask).sum(1) / mask.sum(1)
                precision.step(per_fold.sum(), opt)
                record.add_train_loss(epoch, per_fold, 1.0 / batches.steps)
                schedule.after_step()
            template.eval()
            with torch.no_grad(), precision.autocast():
                record.evaluate(epoch, vm(params, buffers, test_mask, *x_test).float(), states)
            schedule.after_epoch(epoch)
            if on_epoch is not None:
                on_epoch(epoch)
    return record.outputs([f[0] for f in chunk])


class _GroupBatches:
    """The batches of K folds trained together: each fold's epoch laid out as ``steps``
    batches of ``size`` positions into its own training list (shuffled by its own stream or
    in order), padded to the largest fold and masked."""

    def __init__(self, ctx: FoldContext, chunk) -> None:
        r = ctx.recipe
        self.r, self.k, self.dev = r, len(chunk), ctx.dev
        self.n_train = [len(f[1]) for f in chunk]
        n_max = max(self.n_train)
        self.size = min(r.batch_size or n_max, n_max)
        self.steps = r.steps_per_epoch(self.n_train[0])
        self.train_pad, _ = _pad_index([f[1] for f in chunk], n_max, ctx.dev)
        self.gens = [torch.Generator().manual_seed(fold_seed(ctx.seed, f[0]) + 1)
                     for f in chunk]
        width = self.steps * self.size
        mask = torch.zeros(self.k, width, device=ctx.dev)
        for i, nt in enumerate(self.n_train):
            mask[i, :nt] = 1.0
        self.mask = mask.view(self.k, self.steps, self.size)
        self.fixed = None if r.shuffle else self.positions()

    def positions(self) -> Tensor:
        """(K, steps, size) positions of one epoch."""
        pos = torch.zeros(self.k, self.steps * self.size, dtype=torch.long)
        for i, nt in enumerate(self.n_train):
            pos[i, :nt] = torch.randperm(nt, generator=self.gens[i]) if self.r.shuffle else \
                torch.arange(nt)
        return pos.to(self.dev, non_blocking=True).view(self.k, self.steps, self.size)

    def epoch(self):
        """(global sample indices (K, size), mask (K, size)) of each step of this epoch."""
        pos = self.fixed if self.fixed is not None else self.positions()
        for j in range(self.steps):
            yield self.train_pad.gather(1, pos[:, j]), self.mask[:, j]


def batching_blockers(recipe: Recipe) -> list[str]:
    """Recipe features that keep a model off the batched-folds path, with why."""
    why = []
    if recipe.sampler is not None:
        why.append("a class-balanced sampler gives each fold its own number of batches")
    if recipe.oversample is not None:
        why.append("oversampling gives each fold its own training list")
    if recipe.loss != "cross_entropy":
        why.append("the model's own loss updates its memory in place")
    if recipe.augmentation:
        why.append("train-time augmentation draws per fold")
    if recipe.keyframe_jitter is not None:
        why.append("key-frame jitter rebuilds each fold's inputs every epoch")
    if recipe.precision == "fp16":
        why.append("fp16's gradient scaler would skip steps of every fold of a group at once")
    return why


def probe(ctx: FoldContext, run_folds) -> tuple[bool, str]:
    """Can this model train under vmap? One forward/backward of two folds on two samples."""
    from torch.func import stack_module_state

    try:
        models = [ctx.build(fold_seed(ctx.seed, f"probe{i}")) for i in range(2)]
        params, buffers = stack_module_state(models)
        template = mask_batchnorms(copy.deepcopy(models[0]))
        vm = _stacked_call(template, len(ctx.xs))
        first = run_folds[0][1]
        idx = torch.as_tensor(np.stack([first[:2]] * 2) if len(first) >= 2 else [[0, 0]] * 2,
                              device=ctx.dev)
        mask = torch.ones(idx.shape, device=ctx.dev)
        precision = Precision(ctx.recipe.precision, ctx.dev)
        with torch.random.fork_rng(devices=ctx.devices()):
            template.train()
            with precision.autocast():
                out = vm(params, buffers, mask, *[x[idx] for x in ctx.xs])
            out.float().sum().backward()
            template.eval()
            with torch.no_grad(), precision.autocast():
                vm(params, buffers, mask, *[x[idx] for x in ctx.xs])
        if out.ndim != 3 or tuple(out.shape[:2]) != (2, idx.shape[1]) \
                or out.shape[2] < ctx.num_classes:
            return False, f"batched output has shape {tuple(out.shape)}"
        return True, ""
    except Exception as exc:  # any failure means: train this model one fold at a time
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def auto_fold_batch(ctx: FoldContext, run_folds) -> int:
    """Folds per group that fit a conservative memory budget."""
    model = ctx.build(0)
    n_params = sum(p.numel() for p in model.parameters())
    elt = torch.finfo(ctx.xs[0].dtype).bits // 8 if ctx.xs[0].is_floating_point() else 4
    # Activation size of one sample: the outputs of every leaf module (saved for backward).
    act = [0]

    def hook(_m, _i, o):
        if isinstance(o, Tensor):
            act[0] += o.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()
            model(ctx.model_input([x[:1] for x in ctx.xs]))
    finally:
        for h in handles:
            h.remove()
    n_max = max(len(f[1]) for f in run_folds)
    bs = min(ctx.recipe.batch_size or n_max, n_max)
    sample_bytes = sum(x[0].numel() for x in ctx.xs) * elt
    per_fold = n_params * 4 * 4 + bs * (act[0] * 3 * 4 + sample_bytes)
    if ctx.dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(ctx.dev)
        budget = 0.5 * free
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 << 30
        budget = 0.25 * total
    return int(max(1, min(len(run_folds), budget // max(per_fold, 1))))

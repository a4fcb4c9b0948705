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
trains one fold at a time (``recipes.batching_blockers`` says why, and the run records it).
A model that ``vmap`` cannot run is found by :func:`probe` and also trains one fold at a
time.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mefeat.train.batchnorm import batch_mask, mask_batchnorms
from mefeat.train.context import EpochRecord, FoldContext, fold_seed
from mefeat.train.recipes import LRSchedule, Precision, cross_entropy, make_optimizer
from mefeat.train.recipes import steps_per_epoch as _steps


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


def train_group(ctx: FoldContext, chunk, on_epoch: Callable[[], None] | None = None
                ) -> list[dict[str, Any]]:
    """K folds with the same steps per epoch as one vmapped model."""
    from torch.func import stack_module_state

    r, dev = ctx.recipe, ctx.dev
    k = len(chunk)
    fseeds = [fold_seed(ctx.seed, f[0]) for f in chunk]
    models = [ctx.build(fs) for fs in fseeds]
    params, buffers = stack_module_state(models)
    template = mask_batchnorms(copy.deepcopy(models[0]))
    del models
    vm = _stacked_call(template, len(ctx.xs))
    opt = make_optimizer(list(params.items()), r.optimizer, stacked=True)
    precision = Precision(r.precision, dev)

    n_train = [len(f[1]) for f in chunk]
    n_max = max(n_train)
    bs = min(r.batch_size or n_max, n_max)
    steps = _steps(r, n_train[0])
    schedule = LRSchedule(opt, r.schedule, epochs=r.epochs, steps_per_epoch=steps)
    width = steps * bs  # every fold's epoch laid out as `steps` batches of `bs`, padded
    train_pad, _ = _pad_index([f[1] for f in chunk], n_max, dev)
    test_sizes = [len(f[2]) for f in chunk]
    test_pad, test_mask = _pad_index([f[2] for f in chunk], max(test_sizes), dev)
    x_test = [x[test_pad] for x in ctx.xs]

    # Positions (into each fold's own training list) of one epoch, padded to `width`.
    gens = [torch.Generator().manual_seed(fs + 1) for fs in fseeds]
    pos_mask = torch.zeros(k, width, device=dev)
    for i, nt in enumerate(n_train):
        pos_mask[i, :nt] = 1.0
    pos_mask = pos_mask.view(k, steps, bs)

    def epoch_positions() -> Tensor:
        pos = torch.zeros(k, width, dtype=torch.long)
        for i, nt in enumerate(n_train):
            pos[i, :nt] = torch.randperm(nt, generator=gens[i]) if r.shuffle else \
                torch.arange(nt)
        return pos.to(dev, non_blocking=True).view(k, steps, bs)

    fixed = None if r.shuffle else epoch_positions()
    record = EpochRecord(ctx.keep, k, max(test_sizes), dev)
    lrs: list[float] = []
    with torch.random.fork_rng(devices=ctx.devices()):
        torch.manual_seed(fold_seed(ctx.seed, "|".join(f[0] for f in chunk)))
        for epoch in range(1, r.epochs + 1):
            template.train()
            lrs.append(opt.param_groups[0]["lr"])
            pos = fixed if fixed is not None else epoch_positions()
            for j in range(steps):
                idx = train_pad.gather(1, pos[:, j])  # (K, bs) global sample indices
                mask = pos_mask[:, j]
                with precision.autocast():
                    out = vm(params, buffers, mask, *[x[idx] for x in ctx.xs])
                per = cross_entropy(out.reshape(-1, out.shape[-1]), ctx.y[idx].reshape(-1), r)
                # Sum over folds of each fold's mean loss: the folds' gradients stay apart.
                loss = ((per.view(k, bs) * mask).sum(1) / mask.sum(1)).sum()
                precision.step(loss, opt)
                schedule.after_step()
            if record.wants(epoch):
                template.eval()
                with torch.no_grad(), precision.autocast():
                    record.update(epoch, vm(params, buffers, test_mask, *x_test).float())
            schedule.after_epoch(epoch)
            if on_epoch is not None:
                on_epoch()
    results = record.results(test_sizes)
    for res in results:
        res["lr"] = lrs
    if ctx.keep_states:  # fold i's weights are slice i of the stacked tensors
        names = set(template.state_dict())
        for i, res in enumerate(results):
            res["state"] = {name: t[i].detach().cpu()
                            for name, t in (*params.items(), *buffers.items()) if name in names}
    return results


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

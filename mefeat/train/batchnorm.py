"""Masked batch norm: BatchNorm for the batched-folds (vmap) path, whose padded samples
must not enter the batch statistics.

Folds have training sets of different sizes, so the batched path pads each fold's batch and
weights its loss with a mask. BatchNorm is the one common layer that mixes the samples of a
batch; :func:`mask_batchnorms` replaces every ``BatchNorm1d/2d/3d`` of a template module by
:class:`MaskedBatchNorm` (same parameter and buffer names, so ``functional_call`` feeds it
the stacked state of the original modules): statistics over the real samples only, running
statistics per fold, PyTorch's momentum and unbiased running variance.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import torch
from torch import Tensor, nn

_MASK = threading.local()


@contextlib.contextmanager
def batch_mask(mask: Tensor | None) -> Iterator[None]:
    """The sample mask that :class:`MaskedBatchNorm` layers read inside the block."""
    _MASK.value = mask
    try:
        yield
    finally:
        _MASK.value = None


class MaskedBatchNorm(nn.Module):
    """BatchNorm whose batch statistics ignore padded samples (mask from
    :func:`batch_mask`; without one it is plain batch norm)."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.eps = bn.eps
        self.momentum = bn.momentum
        self.affine = bn.affine
        self.track_running_stats = bn.track_running_stats
        if bn.affine:
            self.weight = nn.Parameter(bn.weight.detach().clone())
            self.bias = nn.Parameter(bn.bias.detach().clone())
        if bn.track_running_stats:
            self.register_buffer("running_mean", bn.running_mean.detach().clone())
            self.register_buffer("running_var", bn.running_var.detach().clone())
            self.register_buffer("num_batches_tracked", bn.num_batches_tracked.detach().clone())
        self.training = bn.training

    def forward(self, x: Tensor) -> Tensor:
        shape = [1, -1] + [1] * (x.dim() - 2)
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            mask = getattr(_MASK, "value", None)
            dims = [0, *range(2, x.dim())]
            per_sample = math.prod(x.shape[2:])
            if mask is None:
                count = x.shape[0] * per_sample
                mean = x.mean(dims)
                diff = x - mean.view(shape)
                var = (diff * diff).mean(dims)
            else:
                m = mask.to(x.dtype).view([-1] + [1] * (x.dim() - 1))
                count = mask.to(x.dtype).sum() * per_sample
                mean = (x * m).sum(dims) / count
                diff = x - mean.view(shape)
                var = (diff * diff * m).sum(dims) / count
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    if self.momentum is None:  # cumulative moving average, as PyTorch
                        mom = 1.0 / self.num_batches_tracked.to(mean.dtype)
                    else:
                        mom = self.momentum
                    unbiased = var.detach() * (count / (count - 1))
                    self.running_mean.mul_(1 - mom).add_(mom * mean.detach())
                    self.running_var.mul_(1 - mom).add_(mom * unbiased)
            y = diff * torch.rsqrt(var + self.eps).view(shape)
        else:
            y = (x - self.running_mean.view(shape)) * torch.rsqrt(self.running_var + self.eps).view(
                shape
            )
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def mask_batchnorms(module: nn.Module) -> nn.Module:
    """Replace, in place, every BatchNorm of ``module`` by a :class:`MaskedBatchNorm`."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, nn.SyncBatchNorm
        ):
            setattr(module, name, MaskedBatchNorm(child))
        else:
            mask_batchnorms(child)
    return module

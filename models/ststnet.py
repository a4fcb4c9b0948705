"""STSTNet: a shallow triple-stream CNN on one onset→apex optical-flow image.

Method: Liong, Gan, See, Khor, Huang, "Shallow Triple Stream Three-dimensional CNN (STSTNet)
for Micro-expression Recognition", IEEE FG 2019 (arXiv:1902.03634). Official code:
github.com/christy1206/STSTNet (``main.py``, PyTorch re-implementation of the Matlab original;
no licence file in the repository).

The input is one 28×28×3 image made of the horizontal flow, the vertical flow and the optical
strain, each min-max scaled to 0..255 per sample; the official code reads the PNG with
``cv2.imread`` (channels in the PNG's B, G, R order) and feeds the raw 0..255 values as floats.
Three parallel 3×3 convolutions (3, 5 and 8 filters, padding 2) each go through ReLU, batch
norm (after the ReLU, as in the official code), 3×3 max pooling with stride 3 and dropout; the
16 maps are concatenated, average-pooled 2×2 and classified by one linear layer. The parameter
names are the official ones, so the per-subject checkpoints of ``STSTNet_Weights/`` load as
they are (see ``mefeat.train.checkpoints.load_official_state_dict``).

Training fast path (CPU). In training mode the module computes the same function through
an exact rewrite that moves the work off the 30×30 maps: the three streams are one
16-filter convolution (they only differ in their filters); batch norm is a per-channel
affine map, increasing where its weight γ ≥ 0 and decreasing where γ < 0, so
``maxpool(BN(relu(y)))`` equals ``BN(maxpool(relu(y)))`` (γ ≥ 0) or ``BN(minpool(relu(y)))``
(γ < 0), with BN's batch statistics taken over the full map as before. Convolution, ReLU,
the statistics and the pooling are then one autograd node. Its preferred form is a small
C++ kernel (``ststnet_cpu.cpp``, built on first use with
``torch.utils.cpp_extension``, about 40 s, then cached) that never writes the 30×30 maps:
each sample's conv outputs live in registers while their sums and window maxima are taken,
and the backward pass recomputes them to form the weight gradient. Without a C++ compiler
(or with ``MEFEAT_CPU_KERNELS=0``) the node is built from PyTorch operators instead
(``_ReluStatsPool``: oneDNN convolution, then one pass for ReLU + statistics + pooling and
two for the backward). Running statistics are updated as ``F.batch_norm`` does. Dropout
draws its mask with ``torch.rand`` (same distribution as ``F.dropout``, another random
stream). Outputs and gradients match the plain forward to float rounding
(``tests/test_model_ststnet.py``); set ``fused_training = False`` to train through the plain
layers. Evaluation always uses the plain layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mefeat._cpp import Kernel, register_kernel
from mefeat.options import fraction
from mefeat.recipes import (
    Optimizer,
    Recipe,
    Selection,
)
from mefeat.views import View, uvs_image

from .registry import register

# The spatial size after conv (28+2·2-3+1 = 30), max pool (k3 s3 p1 → 10) and avg pool (→ 5).
_POOLED_SIDE = 5


class STSTNet(nn.Module):
    """Shallow triple-stream CNN (official layer names: conv1..3, bn1..3, fc)."""

    def __init__(
        self,
        *,
        num_classes: int = 3,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (3, 5, 8),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=2)
        self.conv2 = nn.Conv2d(in_channels, widths[1], kernel_size=3, padding=2)
        self.conv3 = nn.Conv2d(in_channels, widths[2], kernel_size=3, padding=2)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.bn2 = nn.BatchNorm2d(widths[1])
        self.bn3 = nn.BatchNorm2d(widths[2])
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2, padding=0)
        self.dropout = nn.Dropout(p=dropout)
        self.num_features = sum(widths) * _POOLED_SIDE * _POOLED_SIDE
        self.fc = nn.Linear(self.num_features, num_classes)
        self.fused_training = True

    def _stream(self, x: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
        # Official order: conv -> ReLU -> BN -> max pool -> dropout.
        return self.dropout(self.maxpool(bn(self.relu(conv(x)))))

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, 28, 28) flow image -> (B, 400) flattened pooled maps."""
        if self.training and self.fused_training and self._can_fuse(x):
            return self._forward_features_fused(x)
        streams = (
            self._stream(x, self.conv1, self.bn1),
            self._stream(x, self.conv2, self.bn2),
            self._stream(x, self.conv3, self.bn3),
        )
        x = self.avgpool(torch.cat(streams, dim=1))
        return x.flatten(1)

    def _can_fuse(self, x: Tensor) -> bool:
        wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
        bns = (self.bn1, self.bn2, self.bn3)
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.ndim == 4
            and not (wrapped is not None and wrapped(x))  # vmap / grad transforms
            and all(type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats
                    for bn in bns)
        )

    def _forward_features_fused(self, x: Tensor) -> Tensor:
        convs = (self.conv1, self.conv2, self.conv3)
        bns = (self.bn1, self.bn2, self.bn3)
        weight = torch.cat([c.weight for c in convs])
        bias = torch.cat([c.bias for c in convs])
        gamma = torch.cat([bn.weight for bn in bns])
        beta = torch.cat([bn.bias for bn in bns])
        sign = torch.where(gamma.detach() < 0, -1.0, 1.0)
        n = x.shape[0] * (x.shape[2] + 2) * (x.shape[3] + 2)  # positions of the conv maps
        if tuple(x.shape[1:]) == (3, 28, 28) and weight.shape[0] == 16 and _stage_kernel():
            pooled, mean, var = _CompiledStage.apply(x, weight, bias, sign)
        else:
            # Channels-last: oneDNN's convolution and PyTorch's max pool are vectorised over
            # channels there, and the (N·H·W, C) view makes the statistics a column sum.
            y = F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, bias,
                         padding=2)
            pooled, mean, var, _ = _ReluStatsPool.apply(y, sign)
        _update_running_stats(bns, mean.detach(), var.detach(), n)
        scale = gamma * torch.rsqrt(var + bns[0].eps)
        z = pooled * scale[:, None, None] + (beta - mean * scale)[:, None, None]
        p = self.dropout.p
        if p >= 1.0:
            z = z * 0.0
        elif p > 0.0:
            z = z * ((torch.rand_like(z) >= p) * (1.0 / (1.0 - p)))
        return self.avgpool(z).flatten(1)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


class _ReluStatsPool(torch.autograd.Function):
    """``relu`` -> batch mean / biased variance per channel -> 3×3 stride-3 pool (pad 1).

    ``forward(y, sign)``: ``y`` is the (B, C, H, W) channels-last conv output, overwritten
    by its ReLU (convolution backward does not need its output; saves a full-map pass);
    ``sign`` (C,) is +1 where the channel is max-pooled and -1 where it is min-pooled.
    Returns the pooled ReLU maps, the mean and the variance of the ReLU maps over
    (B, H, W), and the ReLU maps themselves (``y``, which autograd must know was changed).
    """

    @staticmethod
    def forward(ctx, y: Tensor, sign: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        ctx.set_materialize_grads(False)
        ctx.mark_dirty(y)
        r = y.relu_()
        c = r.shape[1]
        rows = r.permute(0, 2, 3, 1).reshape(-1, c)  # a view: r is channels-last
        n = rows.shape[0]
        mean = rows.sum(0) / n
        # Σr² from a GEMM: blocked accumulation keeps E[r²] - mean² accurate to float32
        # rounding, where a running sum of squares over 10⁵ terms would not.
        var = torch.mm(rows.T, rows).diagonal() / n - mean.square()
        flip = bool((sign < 0).any())
        src = r * sign[:, None, None] if flip else r
        pooled, index = F.max_pool2d_with_indices(src, 3, 3, 1)
        if flip:
            pooled = pooled * sign[:, None, None]
        ctx.save_for_backward(r, index, pooled, mean)
        return pooled, mean, var, r

    @staticmethod
    def backward(ctx, g_pooled, g_mean, g_var, g_relu):
        if g_relu is not None:
            raise RuntimeError("_ReluStatsPool: its ReLU maps are not differentiable outputs")
        r, index, pooled, mean = ctx.saved_tensors
        b, c, h, w = r.shape
        n = b * h * w
        rows = r.permute(0, 2, 3, 1).reshape(-1, c)
        # d/dr of mean and of E[r²] - mean², times ReLU's derivative [r > 0]:
        # a·[r > 0] + k·r, written as sign(r)·a + k·r (r >= 0 here).
        a = (g_mean - 2.0 * g_var * mean) / n
        k = 2.0 * g_var / n
        grad = rows.sign().mul_(a).addcmul_(rows, k)
        # The pooled gradient goes to each window's arg-max, if that ReLU was active.
        g = (g_pooled * (pooled > 0)).permute(0, 2, 3, 1).reshape(-1)
        where = index.permute(0, 2, 3, 1)  # (B, h', w', C), the order of the flat view
        base = (torch.arange(b, device=r.device) * (h * w))[:, None, None, None]
        flat = ((where + base) * c + torch.arange(c, device=r.device)).reshape(-1)
        grad.view(-1).index_add_(0, flat, g)
        return grad.view(b, h, w, c).permute(0, 3, 1, 2), None


KERNEL = register_kernel(Kernel("STSTNet", Path(__file__).with_name("ststnet_cpu.cpp"),
                                torch_extension=True))


def _stage_kernel():
    """The compiled first stage (``ststnet_cpu.cpp``), or None where it cannot be built."""
    return KERNEL.load()


class _CompiledStage(torch.autograd.Function):
    """conv3×3 (16 filters, padding 2) -> ReLU -> statistics -> pooling, by ``_stage_kernel``.

    ``forward(x, weight, bias, sign)``: ``x`` (B, 3, 28, 28); returns the pooled ReLU maps
    (B, 16, 10, 10) (max where ``sign`` is +1, min where -1), and the mean and biased
    variance of the ReLU maps per channel.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, sign: Tensor):
        kernel = _stage_kernel()
        xp = F.pad(x, (2, 2, 2, 2)).contiguous()  # float32: checked by _can_fuse
        w = weight.detach().reshape(weight.shape[0], -1).t().contiguous()  # (27, 16)
        b = bias.detach().contiguous()
        pooled, arg, sums, sumsq = kernel.forward(xp, w, b, sign.contiguous())
        n = x.shape[0] * 30 * 30
        mean64 = sums.sum(0) / n
        var = (sumsq.sum(0) / n - mean64.square()).float()  # float64 sums: no cancellation
        mean = mean64.float()
        ctx.save_for_backward(xp, w, b, arg, mean)
        ctx.set_materialize_grads(False)
        return pooled.permute(0, 3, 1, 2), mean, var

    @staticmethod
    def backward(ctx, g_pooled, g_mean, g_var):
        xp, w, b, arg, mean = ctx.saved_tensors
        n = xp.shape[0] * 30 * 30
        zeros = torch.zeros_like(mean)
        g_mean = zeros if g_mean is None else g_mean
        g_var = zeros if g_var is None else g_var
        a = ((g_mean - 2.0 * g_var * mean) / n).float()
        k = (2.0 * g_var / n).float()
        if g_pooled is None:
            g_pooled = torch.zeros(arg.shape[0], 16, 10, 10)
        gp = g_pooled.float().permute(0, 2, 3, 1).contiguous()  # (B, 10, 10, 16)
        grad_w, grad_b = _stage_kernel().backward(xp, w, b, gp, arg, a, k)
        return None, grad_w.t().reshape(-1, 3, 3, 3), grad_b, None


def _update_running_stats(bns, mean: Tensor, var: Tensor, n: int) -> None:
    """What ``F.batch_norm(training=True)`` does to the buffers of each stream's BN."""
    with torch.no_grad():
        unbiased = var * (n / max(n - 1, 1))
        start = 0
        for bn in bns:
            stop = start + bn.num_features
            bn.num_batches_tracked.add_(1)
            factor = bn.momentum if bn.momentum is not None else (
                1.0 / float(bn.num_batches_tracked))
            bn.running_mean.lerp_(mean[start:stop].to(bn.running_mean.dtype), factor)
            bn.running_var.lerp_(unbiased[start:stop].to(bn.running_var.dtype), factor)
            start = stop



# -- the view: the official "u_v_os" image (BGR = strain, v, u, each min-max scaled to 0..255)


def _inputs(a, landmarks, src, **options):
    return (uvs_image(a["flow_oa"], a["strain_oa"]),)


def _official_inputs(a, landmarks, **options):
    return (a["image"].astype(np.float32),)


VIEW = View("ststnet", ("flow_oa", "strain_oa"), _inputs, official=_official_inputs)


@register(
    "ststnet",
    view=VIEW,
    input_shapes=((3, 28, 28),),
    recipe=Recipe(
        optimizer=Optimizer("adam", lr=5e-5),  # main.py:88, :149
        epochs=800,  # :90 (the MATLAB original and the paper: 500)
        batch_size=256,  # :89
        shuffle=False,  # DataLoader(dataset_train, batch_size) (:155)
        official=Selection(
            "last", source="christy1206/STSTNet main.py:217 (the last epoch's predictions)"
        ),
        source="christy1206/STSTNet main.py:88-98, :149, :155",
    ),
    paper=(
        "Liong et al., Shallow Triple Stream Three-dimensional CNN (STSTNet) for "
        "Micro-expression Recognition, IEEE FG 2019, arXiv:1902.03634"
    ),
    code="github.com/christy1206/STSTNet (main.py; no licence file)",
    params=1_683,
    options={"dropout": fraction(0.5)},
)
def ststnet(*, num_classes: int = 3, dropout: float = 0.5) -> STSTNet:
    """STSTNet as in the official ``main.py`` (1,683 parameters with 3 classes)."""
    return STSTNet(num_classes=num_classes, dropout=dropout)

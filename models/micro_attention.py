"""Micro-attention: residual blocks with a parameter-light spatial attention (MA blocks).

Method: Wang, Peng, Bi, Chen, "Micro-attention for micro-expression recognition",
Neurocomputing 410:354-362, 2020, doi:10.1016/j.neucom.2020.06.005, arXiv:1811.02360.

This is the PyTorch re-implementation used as a baseline by OFF-TANet (Zhang, Liu, Zhou,
PRICAI 2021), ``models/micro_attention.py`` of github.com/ECNU-Cross-Innovation-Lab/
PRICAI2021-Off-TANet (GPL-3.0), layer for layer and with the same parameter names, so its
state dicts load unchanged. That file trains from scratch on optical flow (the paper's
ImageNet transfer learning and ResNet backbone are not part of it): a 7x7 stem, three MA
blocks each followed by a 2x2 max-pool, and a 4096-wide dense layer.

Input: ``(B, 3, 224, 224)`` = (u, v, optical strain), onset->apex, in pixels (not
rescaled).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mefeat.errors import ModelError
from mefeat.options import fraction, positive_int
from mefeat.recipes import Optimizer, StepLR

from ._layers import DenseHead
from ._offtanet_repo import offtanet_repository_recipe, repository_inputs, uvs_view
from .registry import register

__all__ = ["MABlock", "MicroAttention", "micro_attention"]


class MABlock(nn.Module):
    """Residual block whose output is re-weighted by a softmax over its spatial positions.

    Left path: two conv3x3-BN-ReLU (``convl_1``, ``convl_2``); shortcut: a 1x1 conv
    (``convm``). The attention map is the channel mean of a 1x1 conv (``convr``) over the
    concatenated [left1, left2, shortcut] maps, softmax-normalised over all H*W positions;
    the block returns ``y + y * attention`` with ``y = left2 + shortcut``.
    """

    def __init__(self, in_c: int, out_c: int) -> None:
        super().__init__()
        self.convl_1 = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_c),
            nn.ReLU(),
        )
        self.convl_2 = nn.Sequential(
            nn.Conv2d(out_c, out_c, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_c),
            nn.ReLU(),
        )
        self.convm = nn.Conv2d(in_c, out_c, kernel_size=1)
        self.convr = nn.Conv2d(out_c * 3, out_c * 3, kernel_size=1)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        left1 = self.convl_1(x)
        left2 = self.convl_2(left1)
        shortcut = self.convm(x)
        y = left2 + shortcut
        score = self.convr(torch.cat([left1, left2, shortcut], dim=1)).mean(dim=1)
        attention = self.softmax(score.flatten(1)).view(y.shape[0], 1, y.shape[2], y.shape[3])
        # Broadcasting over channels is what the official repeat-and-concatenate computes.
        return y + y * attention


class MicroAttention(DenseHead, nn.Module):
    """Micro-attention (official PyTorch layout: ``conv``, ``pool``, ``ma``, ``dense``).

    Args:
        num_classes: width of the last linear layer.
        img_size: side of the square input (the official code uses 224); must be a
            multiple of 32 (stride-2 stem, stride-2 pool, three 2x2 pools).
        drop_rate: dropout after the 4096-wide hidden layer.
    """

    display_name = "Micro-attention"

    def __init__(self, num_classes: int = 3, *, img_size: int = 224, drop_rate: float = 0.5):
        super().__init__()
        if num_classes < 1:
            raise ModelError(f"Micro-attention needs num_classes >= 1, got {num_classes}")
        if img_size < 32 or img_size % 32:
            raise ModelError(
                f"Micro-attention needs img_size to be a multiple of 32, got {img_size}"
            )
        self.img_size = img_size
        self.num_classes = num_classes
        self.num_features = 4096
        self.conv = nn.Sequential(nn.Conv2d(3, 32, kernel_size=7, stride=2, padding=3), nn.ReLU())
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.ma = nn.Sequential(
            MABlock(32, 64),
            nn.MaxPool2d(kernel_size=2, stride=2),
            MABlock(64, 128),
            nn.MaxPool2d(kernel_size=2, stride=2),
            MABlock(128, 256),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        # Index layout (0, 3 = linear layers) matches the official ``dense``.
        self.dense = nn.Sequential(
            nn.Linear(256 * (img_size // 32) ** 2, 4096),  # 7*7*256 at 224x224
            nn.ReLU(),
            nn.Dropout(drop_rate),
            nn.Linear(4096, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` (u, v, strain) -> ``(B, 4096)`` penultimate features."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, self.img_size, self.img_size):
            raise ModelError(
                f"Micro-attention expects input of shape (B, 3, {self.img_size}, "
                f"{self.img_size}) (u, v, strain), got {tuple(x.shape)}; use the "
                "'micro_attention' view"
            )
        y = self.ma(self.pool(self.conv(x)))
        return self.dense[:-1](y.flatten(1))



@register(
    "micro_attention",
    view=uvs_view("micro_attention", 224),
    input_shapes=((3, 224, 224),),
    recipe=offtanet_repository_recipe(
        Optimizer("sgd", lr=1e-3, momentum=0.9, weight_decay=5e-4), epochs=51, every=10,
        batch_size=10,
        schedule=StepLR(10, 0.1),
        lines="83-89",
    ),
    paper="Wang, Peng, Bi, Chen, Micro-attention for micro-expression recognition, "
    "Neurocomputing 410:354-362, 2020, doi:10.1016/j.neucom.2020.06.005, arXiv:1811.02360",
    code="github.com/ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet, "
    "models/micro_attention.py (licence: GPL-3.0)",
    params=53_384_195,
    channels_last=True,  # measured faster on CPU (2 cores): 1.2-1.6x a step
    official_inputs=repository_inputs(224, strain=True),
    options={"img_size": positive_int(224), "drop_rate": fraction(0.5)},
)
def micro_attention(
    *, num_classes: int = 3, img_size: int = 224, drop_rate: float = 0.5
) -> MicroAttention:
    """Micro-attention as in the OFF-TANet repository (53,384,195 parameters, 3 classes)."""
    return MicroAttention(num_classes, img_size=img_size, drop_rate=drop_rate)

"""Dual-Inception: two stacks of Inception blocks over the u and v onset->apex flow.

Method: Zhou, Mao, Xue, "Dual-Inception network for cross-database micro-expression
recognition", IEEE FG 2019 (MEGC 2019), pp. 642-646; the authors' own code
is github.com/xly135846/MEGC2019.

This is the PyTorch re-implementation used as a baseline by OFF-TANet (Zhang, Liu, Zhou,
PRICAI 2021), ``models/dual_inception.py`` of github.com/ECNU-Cross-Innovation-Lab/
PRICAI2021-Off-TANet (GPL-3.0), layer for layer and with the same parameter names, so its
state dicts load unchanged. As in that file the fourth branch of each Inception block is a
bare 1x1 convolution (no ReLU) and the dense part has no dropout.

Input: ``(B, 2, 28, 28)`` = (u, v) TV-L1 flow, onset->apex, in pixels (not rescaled);
channel 0 feeds ``icpt1``, channel 1 feeds ``icpt2``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mefeat.errors import ModelError
from mefeat.options import positive_int
from mefeat.recipes import Optimizer

from ._layers import DenseHead
from ._offtanet_repo import offtanet_repository_recipe, repository_inputs, uv_view
from .registry import register

__all__ = ["DualInception", "InceptionBlock", "dual_inception"]


class InceptionBlock(nn.Module):
    """Four parallel branches of ``out_c`` channels each, concatenated, then maxpool 2x2.

    Branches: 1x1 -> 5x5; 1x1 -> 3x3; maxpool 3x3 -> 1x1; 1x1 (linear). The output has
    ``4 * out_c`` channels at half the resolution.
    """

    def __init__(self, in_c: int, out_c: int) -> None:
        super().__init__()
        self.path1 = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(out_c, out_c, kernel_size=5, padding=2),
            nn.ReLU(),
        )
        self.path2 = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(out_c, out_c, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.path3 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(in_c, out_c, kernel_size=1),
            nn.ReLU(),
        )
        self.path4 = nn.Conv2d(in_c, out_c, kernel_size=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([self.path1(x), self.path2(x), self.path3(x), self.path4(x)], dim=1)
        return self.pool(y)


def _inception_stack() -> nn.Sequential:
    # 1 -> 4*6 = 24 -> 4*16 = 64 channels, side / 4.
    return nn.Sequential(InceptionBlock(1, 6), InceptionBlock(24, 16))


class DualInception(DenseHead, nn.Module):
    """Dual-Inception (official PyTorch layout: ``icpt1``, ``icpt2``, ``dense``).

    Args:
        num_classes: width of the last linear layer.
        img_size: side of the square flow maps (the official code uses 28); must be a
            multiple of 4 because of the two 2x2 poolings.
    """

    display_name = "Dual-Inception"

    def __init__(self, num_classes: int = 3, *, img_size: int = 28):
        super().__init__()
        if num_classes < 1:
            raise ModelError(f"Dual-Inception needs num_classes >= 1, got {num_classes}")
        if img_size < 4 or img_size % 4:
            raise ModelError(f"Dual-Inception needs img_size to be a multiple of 4, got {img_size}")
        self.img_size = img_size
        self.num_classes = num_classes
        self.num_features = 1024
        stream_width = 64 * (img_size // 4) ** 2  # 3136 at 28x28
        self.icpt1 = _inception_stack()
        self.icpt2 = _inception_stack()
        # Index layout (0, 2 = linear layers) matches the official ``dense``.
        self.dense = nn.Sequential(
            nn.Linear(2 * stream_width, 1024),
            nn.ReLU(),
            nn.Linear(1024, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 2, S, S)`` (u, v) -> ``(B, 1024)`` penultimate features."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (2, self.img_size, self.img_size):
            raise ModelError(
                f"Dual-Inception expects input of shape (B, 2, {self.img_size}, "
                f"{self.img_size}) (u, v flow), got {tuple(x.shape)}; use the "
                "'dual_inception' view"
            )
        u, v = torch.chunk(x, 2, dim=1)
        y = torch.cat((self.icpt1(u).flatten(1), self.icpt2(v).flatten(1)), dim=1)
        return self.dense[:-1](y)



@register(
    "dual_inception",
    view=uv_view("dual_inception"),
    input_shapes=((2, 28, 28),),
    # StepLR(9999, gamma=1) (train_arg.py:45): a constant learning rate.
    recipe=offtanet_repository_recipe(
        Optimizer("adam", lr=1e-3), epochs=501, every=20,
        lines="42-45",
    ),
    paper="Zhou, Mao, Xue, Dual-Inception network for cross-database micro-expression "
    "recognition, IEEE FG 2019 (MEGC 2019), pp. 642-646",
    code="github.com/ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet, "
    "models/dual_inception.py (licence: GPL-3.0)",
    params=6_449_867,
    channels_last=True,  # measured faster on CPU (2 cores): 1.2-1.6x a step
    official_inputs=repository_inputs(28, strain=False),
    options={"img_size": positive_int(28)},
)
def dual_inception(*, num_classes: int = 3, img_size: int = 28) -> DualInception:
    """Dual-Inception as in the OFF-TANet repository (6,449,867 parameters for 3 classes)."""
    return DualInception(num_classes, img_size=img_size)

"""Off-ApexNet: two small CNN streams over the horizontal and vertical onset->apex flow.

Method: Gan, Liong, Yau, Huang, Tan, "OFF-ApexNet on micro-expression recognition
system", Signal Processing: Image Communication 74:129-139, 2019,
doi:10.1016/j.image.2019.02.005, arXiv:1805.08699.

This is the PyTorch re-implementation used as a baseline by OFF-TANet (Zhang, Liu, Zhou,
PRICAI 2021), ``models/off_apexnet.py`` of github.com/ECNU-Cross-Innovation-Lab/
PRICAI2021-Off-TANet (GPL-3.0), layer for layer and with the same parameter names, so its
state dicts load unchanged. As in that file, the two conv layers of each stream have no
activation between them (the only non-linearities are in the dense part).

Input: ``(B, 2, 28, 28)`` = (u, v) TV-L1 flow, onset->apex, in pixels (not rescaled);
channel 0 feeds ``cnn1``, channel 1 feeds ``cnn2``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mefeat.errors import ModelError
from mefeat.options import fraction, positive_int
from mefeat.recipes import Optimizer

from ._layers import DenseHead
from ._offtanet_repo import offtanet_repository_recipe, repository_inputs, uv_view
from .registry import register

__all__ = ["OffApexNet", "offapexnet"]


class _FlowStream(nn.Module):
    """One stream: conv5x5(6) -> maxpool2 -> conv5x5(16) -> maxpool2 (no activation)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, stride=1, padding=2)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5, stride=1, padding=2)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool2(self.conv2(self.pool1(self.conv1(x))))


class OffApexNet(DenseHead, nn.Module):
    """Off-ApexNet (official PyTorch layout: ``cnn1``, ``cnn2``, ``dense``).

    Args:
        num_classes: width of the last linear layer.
        img_size: side of the square flow maps (the official code uses 28); must be a
            multiple of 4 because of the two 2x2 poolings.
        drop_rate: dropout after each of the two hidden dense layers.
    """

    display_name = "Off-ApexNet"

    def __init__(self, num_classes: int = 3, *, img_size: int = 28, drop_rate: float = 0.5):
        super().__init__()
        if num_classes < 1:
            raise ModelError(f"Off-ApexNet needs num_classes >= 1, got {num_classes}")
        if img_size < 4 or img_size % 4:
            raise ModelError(f"Off-ApexNet needs img_size to be a multiple of 4, got {img_size}")
        self.img_size = img_size
        self.num_classes = num_classes
        self.num_features = 1024
        stream_width = 16 * (img_size // 4) ** 2  # 784 at 28x28
        self.cnn1 = _FlowStream()
        self.cnn2 = _FlowStream()
        # Index layout (0, 3, 6 = linear layers) matches the official ``dense`` so that
        # official checkpoints load; the last layer is the classifier.
        self.dense = nn.Sequential(
            nn.Linear(2 * stream_width, 1024),
            nn.ReLU(),
            nn.Dropout(drop_rate),
            nn.Linear(1024, 1024),
            nn.ReLU(),
            nn.Dropout(drop_rate),
            nn.Linear(1024, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 2, S, S)`` (u, v) -> ``(B, 1024)`` penultimate features."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (2, self.img_size, self.img_size):
            raise ModelError(
                f"Off-ApexNet expects input of shape (B, 2, {self.img_size}, {self.img_size}) "
                f"(u, v flow), got {tuple(x.shape)}; use the 'offapexnet' view"
            )
        u, v = torch.chunk(x, 2, dim=1)
        y = torch.cat((self.cnn1(u).flatten(1), self.cnn2(v).flatten(1)), dim=1)
        return self.dense[:-1](y)



@register(
    "offapexnet",
    view=uv_view("offapexnet"),
    input_shapes=((2, 28, 28),),
    # StepLR(9999, gamma=1) (train_arg.py:55): a constant learning rate.
    recipe=offtanet_repository_recipe(
        Optimizer("adam", lr=1e-4), epochs=3000, every=200,
        lines="52-55",
    ),
    paper="Gan et al., OFF-ApexNet on micro-expression recognition system, Signal "
    "Processing: Image Communication 74:129-139, 2019, doi:10.1016/j.image.2019.02.005, "
    "arXiv:1805.08699",
    code="github.com/ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet, models/off_apexnet.py "
    "(licence: GPL-3.0)",
    params=2_664_475,
    channels_last=True,  # measured faster on CPU (2 cores): 1.2-1.6x a step
    official_inputs=repository_inputs(28, strain=False),
    options={"img_size": positive_int(28), "drop_rate": fraction(0.5)},
)
def offapexnet(*, num_classes: int = 3, img_size: int = 28, drop_rate: float = 0.5) -> OffApexNet:
    """Off-ApexNet as in the OFF-TANet repository (2,664,475 parameters for 3 classes)."""
    return OffApexNet(num_classes, img_size=img_size, drop_rate=drop_rate)

"""OFF-TANet: a 59k-parameter CNN over onset->apex optical flow with "triplet attention".

Method: Zhang, Liu, Zhou, "Off-TANet: a lightweight neural micro-expression recognizer
with optical flow features and integrated attention mechanism", PRICAI 2021, LNAI 13031,
pp. 266-279, doi:10.1007/978-3-030-89188-6_20.

Official code: ``models/off_tanet.py`` of github.com/ECNU-Cross-Innovation-Lab/
PRICAI2021-Off-TANet (GPL-3.0). This file follows it layer for layer with the same
parameter names, so the official state dicts (e.g. its ``LOSO1_60epoch.pth``) load
unchanged. Structure: a 7x7 stride-2 stem (conv -> ReLU -> BN, in that order), two
residual blocks with 2x2 max-pooling, an "enhanced residual" block whose inner branch runs
channel attention -> spatial attention -> 4-head self-attention (the triplet attention,
``net_type='ta'``), and a three-layer MLP. The paper's ablations are the other
``net_type`` values: ``'sa'`` (self-attention only), ``'cbam'`` (channel + spatial only),
``'res'`` (a plain residual block) and ``'bot'`` (a bottleneck-transformer block).

The self-attention is the official one, quirks kept: it multiplies the H x W maps of each
channel as matrices (``q @ k^T``, an H x H map), adds ``q @ P^T`` with a fixed sinusoidal
table ``P`` (not a learnt parameter, not in the state dict), takes a softmax over all H*H
entries of each channel and multiplies the result element-wise with ``v``; it therefore
needs square feature maps.

Input: ``(B, 3, 112, 112)`` = (u, v, optical strain), onset->apex, in pixels (not
rescaled).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mefeat.errors import ModelError
from mefeat.options import Option, fraction, positive_int
from mefeat.recipes import Optimizer, StepLR

from ._layers import DenseHead
from ._offtanet_repo import offtanet_repository_recipe, repository_inputs, uvs_view
from .registry import register

__all__ = ["NET_TYPES", "OffTANet", "offtanet"]

#: Choices of the third block: the paper's model ('ta') and its ablations.
NET_TYPES = ("ta", "sa", "cbam", "res", "bot")


class Residual(nn.Module):
    """Two conv3x3-BN-ReLU plus a 1x1 conv shortcut, then 2x2 max-pooling."""

    def __init__(self, in_c: int, out_c: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_c),
            nn.ReLU(),
            nn.Conv2d(out_c, out_c, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_c),
            nn.ReLU(),
        )
        self.botneck = nn.Conv2d(in_c, out_c, kernel_size=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.botneck(x) + self.conv(x))


def _position_table(fm_sz: int) -> Tensor:
    """The official fixed ``(fm_sz, fm_sz)`` table ``t[a, b] = s[a] + s[b]``.

    ``s[i]`` is sin (even i) or cos (odd i) of ``1 / 10000 ** ((i // 2) / fm_sz)``;
    computed in float64 and then cast, as the official NumPy code does.
    """
    s = [
        (math.sin if i % 2 == 0 else math.cos)(1 / (10000 ** (i // 2 / fm_sz)))
        for i in range(fm_sz)
    ]
    row = torch.tensor([s], dtype=torch.float64).float()
    return row + row.t()


class SelfAttention(nn.Module):
    """One head of the official per-channel matrix self-attention (see module docstring)."""

    def __init__(self, in_c: int, out_c: int, fm_sz: int, pos_bias: bool = False) -> None:
        super().__init__()
        self.w_q = nn.Conv2d(in_c, out_c, kernel_size=1)
        self.w_k = nn.Conv2d(in_c, out_c, kernel_size=1)
        self.w_v = nn.Conv2d(in_c, out_c, kernel_size=1)
        # The official table is a plain tensor attribute (not saved); a non-persistent
        # buffer keeps it out of the state dict too but lets it follow .to(device).
        # One (fm, fm) copy broadcasts exactly as the official per-channel/batch copies.
        self.register_buffer("pos_code", _position_table(fm_sz), persistent=False)
        self.softmax = nn.Softmax(dim=2)
        self.pos_bias = pos_bias

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.w_q(x), self.w_k(x), self.w_v(x)
        att = torch.matmul(q, k.transpose(-1, -2))
        if self.pos_bias:
            att = att + self.pos_code
        else:
            att = att + torch.matmul(q, self.pos_code.transpose(-1, -2))
        b, c, h, w = att.shape
        att = self.softmax(att.reshape(b, c, h * w)).view(b, c, h, w)
        return att * v


class MultiHeadSelfAttention(nn.Module):
    """``head_n`` independent heads of ``out_c`` channels, concatenated."""

    def __init__(
        self, in_c: int, out_c: int, head_n: int, fm_sz: int, pos_bias: bool = False
    ) -> None:
        super().__init__()
        self.sa_blocks = nn.ModuleList(
            SelfAttention(in_c, out_c, fm_sz, pos_bias=pos_bias) for _ in range(head_n)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([head(x) for head in self.sa_blocks], dim=1)


class ChannelAttention(nn.Module):
    """CBAM channel attention: shared 2-layer 1x1-conv MLP on avg- and max-pooled maps."""

    def __init__(self, in_planes: int, ratio: int = 4) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc1 = nn.Conv2d(in_planes, in_planes // ratio, 1, bias=False)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Conv2d(in_planes // ratio, in_planes, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        avg_out = self.fc2(self.relu1(self.fc1(self.avg_pool(x))))
        max_out = self.fc2(self.relu1(self.fc1(self.max_pool(x))))
        return self.sigmoid(avg_out + max_out)


class SpatialAttention(nn.Module):
    """CBAM spatial attention with a 3x3 conv over [channel mean, channel max]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        avg_out = torch.mean(x, dim=1, keepdim=True)
        max_out, _ = torch.max(x, dim=1, keepdim=True)
        return self.sigmoid(self.conv1(torch.cat([avg_out, max_out], dim=1)))


class EnhancedResidual(nn.Module):
    """The attention block: conv -> [attention] -> conv, a 1x1 shortcut, 2x2 max-pool.

    ``net_type`` 'ta': channel, spatial then self-attention (the paper's model); 'sa':
    self-attention only, whose 4 heads already give ``out_c`` channels, so ``conv2`` is
    skipped (the official code still builds it, and its parameters are counted);
    'cbam': channel and spatial attention only.
    """

    def __init__(self, in_c: int, out_c: int, fm_sz: int, net_type: str = "ta") -> None:
        super().__init__()
        self.net_type = net_type
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_c, in_c, kernel_size=3, padding=1),
            nn.BatchNorm2d(in_c),
            nn.ReLU(),
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_c),
            nn.ReLU(),
        )
        self.botneck = nn.Conv2d(in_c, out_c, kernel_size=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        if net_type in ("ta", "cbam"):
            self.spa = SpatialAttention()
            # ratio = in_c: the channel MLP has a single hidden unit, as in the official code.
            self.ca = ChannelAttention(in_c, ratio=in_c)
        if net_type == "ta":
            self.sa = MultiHeadSelfAttention(in_c, in_c // 4, head_n=4, fm_sz=fm_sz)
        elif net_type == "sa":
            self.sa = MultiHeadSelfAttention(in_c, out_c // 4, head_n=4, fm_sz=fm_sz)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.botneck(x)
        x = self.conv1(x)
        if self.net_type == "sa":
            x = self.sa(x)
        else:
            x = self.ca(x) * x
            x = self.spa(x) * x
            if self.net_type == "ta":
                x = self.sa(x)
            x = self.conv2(x)
        return self.pool(x + shortcut)


class BottleneckTransformer(nn.Module):
    """Ablation 'bot': two stacked multi-head self-attentions plus a 1x1 shortcut."""

    def __init__(self, in_c: int, out_c: int, fm_sz: int, head_n: int = 4) -> None:
        super().__init__()
        self.botneck = nn.Conv2d(in_c, out_c, kernel_size=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.sa = nn.Sequential(
            MultiHeadSelfAttention(in_c, out_c // head_n, head_n=head_n, fm_sz=fm_sz),
            MultiHeadSelfAttention(out_c, out_c // head_n, head_n=head_n, fm_sz=fm_sz),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.sa(x) + self.botneck(x))


class OffTANet(DenseHead, nn.Module):
    """OFF-TANet (official layout: ``conv1``, ``res1``, ``res2``, ``eres``, ``dense``).

    Args:
        num_classes: width of the last linear layer.
        net_type: the third block, one of ``NET_TYPES`` ('ta' is the paper's model).
        img_size: side of the square input (the official code uses 112); a multiple of 16.
        drop_rate: dropout after each of the two hidden dense layers.
    """

    display_name = "OFF-TANet"

    def __init__(
        self,
        num_classes: int = 3,
        *,
        net_type: str = "ta",
        img_size: int = 112,
        drop_rate: float = 0.5,
    ):
        super().__init__()
        if num_classes < 1:
            raise ModelError(f"OFF-TANet needs num_classes >= 1, got {num_classes}")
        if net_type not in NET_TYPES:
            raise ModelError(f"OFF-TANet net_type must be one of {NET_TYPES}, got {net_type!r}")
        if img_size < 16 or img_size % 16:
            raise ModelError(f"OFF-TANet needs img_size to be a multiple of 16, got {img_size}")
        self.net_type = net_type
        self.img_size = img_size
        self.num_classes = num_classes
        self.num_features = 64
        fm_sz = img_size // 8  # side of the maps entering the attention block (14)
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=7, stride=2, padding=3),
            nn.ReLU(),
            nn.BatchNorm2d(8),
        )
        self.res1 = Residual(8, 18)
        self.res2 = Residual(18, 28)
        if net_type == "res":
            self.eres: nn.Module = Residual(28, 8)
        elif net_type == "bot":
            self.eres = BottleneckTransformer(28, 8, fm_sz=fm_sz, head_n=4)
        else:
            self.eres = EnhancedResidual(28, 8, fm_sz=fm_sz, net_type=net_type)
        # Index layout (0, 3, 6 = linear layers) matches the official ``dense``.
        self.dense = nn.Sequential(
            nn.Linear(8 * (fm_sz // 2) ** 2, 64),  # 392 at 112x112
            nn.ReLU(),
            nn.Dropout(drop_rate),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Dropout(drop_rate),
            nn.Linear(64, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` (u, v, strain) -> ``(B, 64)`` penultimate features."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, self.img_size, self.img_size):
            raise ModelError(
                f"OFF-TANet expects input of shape (B, 3, {self.img_size}, {self.img_size}) "
                f"(u, v, strain), got {tuple(x.shape)}; use the 'offtanet' view"
            )
        x = self.eres(self.res2(self.res1(self.conv1(x))))
        return self.dense[:-1](x.flatten(1))



@register(
    "offtanet",
    view=uvs_view("offtanet", 112),
    input_shapes=((3, 112, 112),),
    recipe=offtanet_repository_recipe(
        Optimizer("adam", lr=1e-3), epochs=201, every=20,
        schedule=StepLR(60, 0.3),
        lines="20-32",
    ),
    paper="Zhang, Liu, Zhou, Off-TANet: a lightweight neural micro-expression recognizer "
    "with optical flow features and integrated attention mechanism, PRICAI 2021, LNAI 13031, "
    "pp. 266-279, doi:10.1007/978-3-030-89188-6_20",
    code="github.com/ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet, models/off_tanet.py "
    "(licence: GPL-3.0)",
    params=59_403,
    channels_last=True,  # measured faster on CPU (2 cores): 1.2-1.6x a step
    official_inputs=repository_inputs(112, strain=True),
    options={"net_type": Option("ta", choices=tuple(NET_TYPES)), "img_size": positive_int(112),
             "drop_rate": fraction(0.5)},
)
def offtanet(
    *, num_classes: int = 3, net_type: str = "ta", img_size: int = 112, drop_rate: float = 0.5
) -> OffTANet:
    """OFF-TANet (59,403 parameters for 3 classes; ``net_type`` selects the ablations)."""
    return OffTANet(num_classes, net_type=net_type, img_size=img_size, drop_rate=drop_rate)

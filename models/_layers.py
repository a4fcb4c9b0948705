"""Vision-transformer layers shared by MMNet, SRMCL and EDMDBN (timm's ViT, as the three
official code bases use it): stochastic depth, MLP, multi-head self-attention, pre-norm
block. Attribute names follow timm, so the official checkpoints' keys match.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mefeat.errors import ModelError


class DropPath(nn.Module):
    """Stochastic depth per sample (as in timm / the official ``PC_module.py``)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        # floor(keep + U[0,1)) draws the same random numbers as the official code, so a
        # seeded run reproduces it in training mode too.
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
        return x.div(keep) * mask


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6, GELU MLP); no drop path when 0."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DenseHead:
    """The classifier interface of models whose last layer is ``self.dense[-1]`` (the
    Off-TANet repository's models): features are the input of that layer."""

    display_name = "model"

    def forward_head(self, features: Tensor) -> Tensor:
        return self.dense[-1](features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last linear layer by a fresh one with ``num_classes`` outputs."""
        if num_classes < 1:
            raise ModelError(f"{self.display_name} needs num_classes >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.dense[-1] = nn.Linear(self.num_features, num_classes)

"""HTNet: a hierarchical transformer over four facial regions of an optical-flow image.

Method: Wang, Zhang, Luo, Sankaranarayana, "HTNet for micro-expression recognition",
Neurocomputing 602 (2024) 128196, doi:10.1016/j.neucom.2024.128196, arXiv:2307.14637.
Official code: github.com/wangzhifengharrison/HTNet (``Model.py``, ``main_HTNet.py``; no
licence file in the repository). The network is lucidrains' NesT (nested hierarchical
transformer) with convolutional 1×1 attention, as in the official ``Model.py``.

Input: one 28×28×3 image (raw 0..255 values as floats, channels in the PNG's B, G, R order as
``cv2.imread`` gives them) built by the data view from four 14×14 crops of the whole-face
STSTNet flow image (u, v, optical strain) around MTCNN landmarks: the region tiling happens in
the view, not here. The 28×28 image is cut into 7×7 patches (4×4 tokens); three hierarchy
levels work on 4×4, 2×2 and 1×1 blocks of tokens, with a 3×3 conv + layer norm + max pool
("aggregate") between levels.

Parameter names follow the official model, so an official ``state_dict`` loads unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mefeat.errors import ModelError

from .recipe import (
    Optimizer,
    Recipe,
    Selection,
)
from .registry import register


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channel axis of a (B, C, H, W) map (official ``LayerNorm``)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        var = torch.var(x, dim=1, unbiased=False, keepdim=True)
        mean = torch.mean(x, dim=1, keepdim=True)
        return (x - mean) / (var + self.eps).sqrt() * self.g + self.b


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mlp_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim * mlp_mult, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv2d(dim * mlp_mult, dim, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Multi-head self-attention over the H·W positions of a map, with 1×1 conv projections.

    As in the official code, ``dim_head = dim // heads`` so that ``inner_dim`` may be smaller
    than ``dim`` (255 for dim=256, heads=3).
    """

    def __init__(self, dim: int, heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        dim_head = dim // heads
        inner_dim = dim_head * heads
        self.heads = heads
        self.scale = dim_head**-0.5
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(dropout)
        self.to_qkv = nn.Conv2d(dim, inner_dim * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(inner_dim, dim, 1), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=1)

        def split_heads(t: Tensor) -> Tensor:
            # (B, heads*d, H, W) -> (B, heads, H*W, d); channel index = head*d + j.
            return t.reshape(b, self.heads, -1, h * w).transpose(-1, -2)

        q, k, v = split_heads(q), split_heads(k), split_heads(v)
        attn = self.dropout(self.attend(q @ k.transpose(-1, -2) * self.scale))
        out = (attn @ v).transpose(-1, -2).reshape(b, -1, h, w)
        return self.to_out(out)


def aggregate(dim: int, dim_out: int) -> nn.Sequential:
    """Block aggregation between hierarchy levels: conv, channel layer norm, 2× max pool."""
    return nn.Sequential(
        nn.Conv2d(dim, dim_out, 3, padding=1),
        ChannelLayerNorm(dim_out),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


class Transformer(nn.Module):
    """``depth`` pre-norm attention + feed-forward blocks on one block of tokens."""

    def __init__(
        self, dim: int, seq_len: int, depth: int, heads: int, mlp_mult: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        # One learned scalar per position, added to every channel (official NesT detail).
        self.pos_emb = nn.Parameter(torch.randn(seq_len))
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, Attention(dim, heads=heads, dropout=dropout)),
                    PreNorm(dim, FeedForward(dim, mlp_mult, dropout=dropout)),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = x + self.pos_emb[: h * w].reshape(1, 1, h, w)
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class PatchToChannels(nn.Module):
    """(B, C, H·p, W·p) -> (B, p·p·C, H, W) with channel order (row-in-patch, col, C)."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x: Tensor) -> Tensor:
        b, c, hh, ww = x.shape
        p = self.patch_size
        x = x.reshape(b, c, hh // p, p, ww // p, p)
        return x.permute(0, 3, 5, 1, 2, 4).reshape(b, p * p * c, hh // p, ww // p)


class GlobalMean(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(-2, -1))


def _to_blocks(x: Tensor, n: int) -> Tensor:
    # (B, C, n·h, n·w) -> (B·n·n, C, h, w): each of the n×n blocks becomes its own sample.
    b, c, hh, ww = x.shape
    x = x.reshape(b, c, n, hh // n, n, ww // n).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * n * n, c, hh // n, ww // n)


def _from_blocks(x: Tensor, n: int) -> Tensor:
    bnn, c, h, w = x.shape
    x = x.reshape(bnn // (n * n), n, n, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(bnn // (n * n), c, n * h, n * w)


class HTNet(nn.Module):
    """Hierarchical transformer network (official ``HTNet`` in ``Model.py``)."""

    def __init__(
        self,
        *,
        image_size: int = 28,
        patch_size: int = 7,
        num_classes: int = 3,
        dim: int = 256,
        heads: int = 3,
        num_hierarchies: int = 3,
        block_repeats: int | tuple[int, ...] = (2, 2, 10),
        mlp_mult: int = 4,
        channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ModelError(f"image_size {image_size} is not a multiple of patch {patch_size}")
        if isinstance(block_repeats, int):
            block_repeats = (block_repeats,) * num_hierarchies
        if len(block_repeats) != num_hierarchies:
            raise ModelError(
                f"block_repeats {block_repeats} needs one depth per hierarchy ({num_hierarchies})"
            )
        fmap_size = image_size // patch_size
        blocks = 2 ** (num_hierarchies - 1)
        # The sequence length inside a block is the same at every level.
        seq_len = (fmap_size // blocks) ** 2
        mults = [2**i for i in range(num_hierarchies)]
        layer_heads = [m * heads for m in mults]
        layer_dims = [m * dim for m in mults]
        self.num_features = layer_dims[-1]
        dims_out = [*layer_dims[1:], layer_dims[-1]]

        self.to_patch_embedding = nn.Sequential(
            PatchToChannels(patch_size),
            nn.Conv2d(channels * patch_size**2, layer_dims[0], 1),
        )
        self.layers = nn.ModuleList()
        for i in range(num_hierarchies):
            is_last = i == num_hierarchies - 1
            self.layers.append(
                nn.ModuleList(
                    [
                        Transformer(
                            layer_dims[i],
                            seq_len,
                            block_repeats[i],
                            layer_heads[i],
                            mlp_mult,
                            dropout,
                        ),
                        nn.Identity() if is_last else aggregate(layer_dims[i], dims_out[i]),
                    ]
                )
            )
        self.mlp_head = nn.Sequential(
            ChannelLayerNorm(self.num_features),
            GlobalMean(),
            nn.Linear(self.num_features, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, 28, 28) tiled flow image -> (B, 4·dim) normalised, mean-pooled features."""
        x = self.to_patch_embedding(x)
        n_levels = len(self.layers)
        for i, (transformer, agg) in enumerate(self.layers):
            n = 2 ** (n_levels - 1 - i)
            x = _from_blocks(transformer(_to_blocks(x, n)), n)
            x = agg(x)
        return self.mlp_head[1](self.mlp_head[0](x))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.mlp_head[2](features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.mlp_head[2] = nn.Linear(self.num_features, num_classes)


@register(
    "htnet",
    view="htnet",
    input_shapes=((3, 28, 28),),
    recipe=Recipe(
        optimizer=Optimizer("adam", lr=5e-5),  # main_HTNet.py:162, :240
        epochs=800,  # :164
        batch_size=256,  # :163
        shuffle=False,  # DataLoader(dataset_train, batch_size) (:244)
        selection=Selection(
            "per-fold", metric="acc", ties="latest",
            source="wangzhifengharrison/HTNet main_HTNet.py:295 (best <= val_acc: ties keep "
            "the later epoch; all 800 epochs run)",
        ),
        source="wangzhifengharrison/HTNet main_HTNet.py:162-171, :240, :244",
    ),
    paper=(
        "Wang, Zhang, Luo, Sankaranarayana, HTNet for micro-expression recognition, "
        "Neurocomputing 602 (2024) 128196, doi:10.1016/j.neucom.2024.128196, arXiv:2307.14637"
    ),
    code="github.com/wangzhifengharrison/HTNet (Model.py, main_HTNet.py; no licence file)",
    params=139_582_982,
    options={"depths": (2, 2, 10), "dim": 256, "heads": 3, "dropout": 0.0},
)
def htnet(
    *,
    num_classes: int = 3,
    depths: tuple[int, ...] = (2, 2, 10),
    dim: int = 256,
    heads: int = 3,
    dropout: float = 0.0,
) -> HTNet:
    """HTNet in the official configuration (28×28 input, 7×7 patches, 3 levels)."""
    return HTNet(
        num_classes=num_classes,
        dim=dim,
        heads=heads,
        num_hierarchies=len(depths),
        block_repeats=tuple(depths),
        dropout=dropout,
    )

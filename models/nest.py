"""NesT, the nested hierarchical transformer HTNet and CausalNet are built on.

lucidrains' NesT with convolutional 1×1 attention, as the official HTNet ``Model.py``
(github.com/wangzhifengharrison/HTNet) and CausalNet ``Models.py``
(github.com/tony19980810/CausalNet) use it: an image is cut into patches that become the
channels of a token map (``PatchToChannels`` + 1×1 conv), and each hierarchy level runs a
transformer inside each block of tokens (``to_blocks`` / ``from_blocks``), then aggregates
the blocks (3×3 conv, channel layer norm, 2× max pool). Parameter names follow the official
code, so official state dicts load unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mefeat.errors import ModelError

__all__ = [
    "Attention",
    "ChannelLayerNorm",
    "GemmConv2d",
    "FeedForward",
    "GlobalMean",
    "NestGeometry",
    "PatchToChannels",
    "PreNorm",
    "Transformer",
    "aggregate",
    "from_blocks",
    "nest_geometry",
    "nest_level",
    "official_formulation",
    "patch_embedding",
    "run_levels",
    "tap_layout",
    "to_blocks",
]


class GemmConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same function) computed as one matrix product on the
    CPU where oneDNN's convolution loses: a 1×1 convolution is ``F.linear`` over the channels,
    a 3×3 one (padding 1) on a map of P ≤ 4 positions is ``F.linear`` from all P·C inputs to
    all P·O outputs at once, its (P·O, P·C) weight laid out from the kernel's taps
    (:func:`tap_layout`).

    NesT's convolutions run on maps of 1×1 to 4×4 tokens with up to 4096 channels, where
    oneDNN's training path reorders the weights on every call: measured on 2 CPU cores, one
    CausalNet step spent 89 % of its time in ``mkldnn_convolution`` and its backward, the
    (32, 1024→4096, 1×1) layer 84 ms a forward and backward against 31 ms as a matrix
    product. On a 2×2 map the tap layout multiplies only the terms inside the map (4 of
    every 9 an im2col multiplies, the rest being the padding's zeros), with no im2col copies:
    the (872, 512→1024, 2×2, 3×3) layer measured on one thread 0.47 s forward and backward in
    float32 and 0.13 s in bf16, against 0.68 s and 0.40 s for the convolution and 1.09 s and
    0.39 s for an im2col (``F.unfold``) and ``F.linear``. On 4×4 maps it would multiply more
    terms than the convolution, which stays there. The results equal the convolution's to
    float rounding (another order of the same sums; ``tests/test_model_htnet.py`` bounds the
    difference); ``GemmConv2d.enabled = False`` restores the convolution everywhere
    (:func:`official_formulation` every official layer).
    """

    enabled = True

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size
        if not self.enabled or self.groups != 1 or self.stride != (1, 1) \
                or self.dilation != (1, 1):
            return super().forward(x)
        b, c, h, w = x.shape
        weight = self.weight.reshape(self.out_channels, -1)
        if k == (1, 1) and self.padding == (0, 0):
            if h * w == 1:
                return F.linear(x.reshape(b, c), weight, self.bias).reshape(b, -1, 1, 1)
            return F.linear(x.permute(0, 2, 3, 1), weight, self.bias).permute(0, 3, 1, 2)
        if k == (3, 3) and self.padding == (1, 1) and h * w <= 4:
            o, n = self.out_channels, h * w
            taps = tap_layout(h, w, weight.device, weight.dtype)
            # (O·C, 9) @ (9, P·P): every entry of the product is one kernel tap (or 0).
            dense = (weight.reshape(o * c, 9) @ taps).reshape(o, c, n, n)
            dense = dense.permute(0, 2, 1, 3).reshape(o * n, c * n)  # rows (o, p), cols (c, q)
            bias = None if self.bias is None else self.bias.repeat_interleave(n)
            return F.linear(x.reshape(b, c * n), dense, bias).reshape(b, o, h, w)
        return super().forward(x)


@functools.lru_cache(maxsize=32)
def tap_layout(h: int, w: int, device: torch.device | None = None,
               dtype: torch.dtype | None = None) -> Tensor:
    """(9, P·P) 0/1 matrix, P = h·w: entry (t, p·P + q) is 1 where output position p sees
    input position q through tap t of a 3×3 kernel with padding 1 (t = 3·di + dj with
    di = q_row - p_row + 1, dj = q_col - p_col + 1); a pair with no tap (more than one
    position apart) has none. ``weight.reshape(O·C, 9) @ tap_layout(h, w)`` lays a kernel
    out as the dense map from all inputs to all outputs of the h×w map."""
    n = h * w
    # Cached and shared: made outside any inference mode (an inference tensor could not be
    # saved for a later training step's backward), and never written to afterwards.
    with torch.inference_mode(False), torch.no_grad():
        layout = torch.zeros(9, n * n, dtype=dtype)
        for p in range(n):
            for q in range(n):
                di, dj = q // w - p // w + 1, q % w - p % w + 1
                if 0 <= di < 3 and 0 <= dj < 3:
                    layout[3 * di + dj, p * n + q] = 1.0
        return layout.to(device)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channel axis of a (B, C, H, W) map (official ``LayerNorm``).

    The official formula, ``(x - mean) / sqrt(var + eps) * g + b`` with the biased variance
    over the channels, is ``F.layer_norm`` over a channel-last view, which this computes in
    one fused kernel forward and backward: measured on one CPU thread, 5 to 12 times faster
    than the seven elementwise and reduction ops of the official code (a (13952, 256, 1, 1)
    map: 52 ms against 4.3 ms forward and backward), the same function to float rounding in
    float32 (under bf16 autocast each rounds at its own points: autocast picks layer norm's
    precision). ``ChannelLayerNorm.fused = False`` restores the official ops.
    """

    fused = True

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if not self.fused:
            var = torch.var(x, dim=1, unbiased=False, keepdim=True)
            mean = torch.mean(x, dim=1, keepdim=True)
            return (x - mean) / (var + self.eps).sqrt() * self.g + self.b
        b, c, h, w = x.shape
        g, beta = self.g.reshape(c), self.b.reshape(c)
        if h * w == 1:
            return F.layer_norm(x.reshape(b, c), (c,), g, beta, self.eps).reshape(b, c, 1, 1)
        return F.layer_norm(x.permute(0, 2, 3, 1), (c,), g, beta, self.eps).permute(0, 3, 1, 2)


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
            GemmConv2d(dim, dim * mlp_mult, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            GemmConv2d(dim * mlp_mult, dim, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Multi-head self-attention over the H·W positions of a map, with 1×1 conv projections.

    As in the official code, ``dim_head = dim // heads`` so that ``inner_dim`` may be smaller
    than ``dim`` (255 for dim=256, heads=3).

    On a map of one position (in the official configurations every block of HTNet's NesT,
    and of CausalNet's, holds one token) the softmax runs over a single key and is exactly 1,
    so the output is the value projection alone, and the query and key projections get
    exactly zero gradient either way: computed so, without the query and key products and
    the per-head matrix products (unless dropout is active, which draws on the attention
    weights).
    ``Attention.single_position_shortcut = False`` restores the official computation.
    """

    single_position_shortcut = True

    def __init__(self, dim: int, heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        dim_head = dim // heads
        inner_dim = dim_head * heads
        self.heads = heads
        self.scale = dim_head**-0.5
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(dropout)
        self.to_qkv = GemmConv2d(dim, inner_dim * 3, 1, bias=False)
        self.to_out = nn.Sequential(GemmConv2d(inner_dim, dim, 1), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if h * w == 1 and self.single_position_shortcut and \
                not (self.training and self.dropout.p > 0):
            inner = self.to_qkv.out_channels // 3
            v_weight = self.to_qkv.weight[2 * inner:].reshape(inner, c)
            return self.to_out(F.linear(x.reshape(b, c), v_weight).reshape(b, inner, 1, 1))
        q, k, v = self.to_qkv(x).chunk(3, dim=1)

        def split_heads(t: Tensor) -> Tensor:
            # (B, heads*d, H, W) -> (B, heads, H*W, d); channel index = head*d + j.
            return t.reshape(b, self.heads, -1, h * w).transpose(-1, -2)

        q, k, v = split_heads(q), split_heads(k), split_heads(v)
        attn = self.dropout(self.attend(q @ k.transpose(-1, -2) * self.scale))
        out = (attn @ v).transpose(-1, -2).reshape(b, -1, h, w)
        return self.to_out(out)


@contextlib.contextmanager
def official_formulation() -> Iterator[None]:
    """Within: every NesT layer computes as the official code does (convolutions, the
    seven-op layer norm, attention over a single position), for comparing the rewritten
    layers with it; restored on exit."""
    switches = ((GemmConv2d, "enabled"), (ChannelLayerNorm, "fused"),
                (Attention, "single_position_shortcut"))
    before = [getattr(cls, name) for cls, name in switches]
    try:
        for cls, name in switches:
            setattr(cls, name, False)
        yield
    finally:
        for (cls, name), value in zip(switches, before, strict=True):
            setattr(cls, name, value)


def aggregate(dim: int, dim_out: int) -> nn.Sequential:
    """Block aggregation between hierarchy levels: conv, channel layer norm, 2× max pool."""
    return nn.Sequential(
        GemmConv2d(dim, dim_out, 3, padding=1),
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


def to_blocks(x: Tensor, n: int) -> Tensor:
    """(B, C, n·h, n·w) -> (B·n·n, C, h, w): each of the n×n blocks becomes its own sample."""
    b, c, hh, ww = x.shape
    x = x.reshape(b, c, n, hh // n, n, ww // n).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * n * n, c, hh // n, ww // n)


def from_blocks(x: Tensor, n: int) -> Tensor:
    """The inverse of :func:`to_blocks`."""
    bnn, c, h, w = x.shape
    x = x.reshape(bnn // (n * n), n, n, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(bnn // (n * n), c, n * h, n * w)


@dataclass(frozen=True)
class NestGeometry:
    """Widths, heads and block sizes of a NesT encoder's levels."""

    fmap_size: int  # tokens per side after the patch embedding
    blocks: int  # blocks per side at the first level
    seq_len: int  # tokens in one block (the same at every level)
    depths: tuple[int, ...]
    dims: tuple[int, ...]
    heads: tuple[int, ...]
    dims_out: tuple[int, ...]


def nest_geometry(name: str, *, image_size: int, patch_size: int, num_hierarchies: int,
                  dim: int, heads: int, block_repeats: int | tuple[int, ...]) -> NestGeometry:
    """Check a NesT configuration and derive its levels: width and heads double per level."""
    if image_size % patch_size:
        raise ModelError(f"{name}: image_size {image_size} is not a multiple of patch size "
                         f"{patch_size}")
    if isinstance(block_repeats, int):
        block_repeats = (block_repeats,) * num_hierarchies
    depths = tuple(block_repeats)
    if len(depths) != num_hierarchies or min(depths) < 1:
        raise ModelError(f"{name}: depths {depths} needs one depth >= 1 per hierarchy level "
                         f"({num_hierarchies})")
    fmap_size = image_size // patch_size
    blocks = 2 ** (num_hierarchies - 1)
    mults = [2**i for i in range(num_hierarchies)]
    dims = tuple(m * dim for m in mults)
    return NestGeometry(fmap_size=fmap_size, blocks=blocks,
                        seq_len=(fmap_size // blocks) ** 2, depths=depths, dims=dims,
                        heads=tuple(m * heads for m in mults), dims_out=(*dims[1:], dims[-1]))


def patch_embedding(patch_size: int, channels: int, dim: int) -> nn.Sequential:
    """Patches to token channels, then a 1×1 conv to ``dim`` (official ``to_patch_embedding``)."""
    return nn.Sequential(PatchToChannels(patch_size),
                         GemmConv2d(channels * patch_size**2, dim, 1))


def nest_level(geom: NestGeometry, i: int, mlp_mult: int, dropout: float) -> nn.ModuleList:
    """Level ``i``: its transformer and the aggregation to the next level (none after the last)."""
    last = i == len(geom.dims) - 1
    return nn.ModuleList([
        Transformer(geom.dims[i], geom.seq_len, geom.depths[i], geom.heads[i], mlp_mult, dropout),
        nn.Identity() if last else aggregate(geom.dims[i], geom.dims_out[i]),
    ])


def run_levels(x: Tensor, levels: nn.ModuleList) -> Tensor:
    """A token map through every level: blocks of 2^(L-1-i) per side at level i."""
    n_levels = len(levels)
    for i, (transformer, agg) in enumerate(levels):
        n = 2 ** (n_levels - 1 - i)
        x = agg(from_blocks(transformer(to_blocks(x, n)), n))
    return x

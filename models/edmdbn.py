"""EDMDBN: the entire-detail motion dual-branch network.

Ma et al., "Entire-detail motion dual-branch network for micro-expression recognition",
Pattern Recognition Letters 2025 (openreview.net/forum?id=lNPiybh4hb); official code
github.com/likemby/EDMDBN (``models/long_short_fusenet.py`` = ``fusenet``,
``models/swin_transformer_3d2.py``; the repository carries no licence file).

Two Video-Swin branches with the same shape, whose last feature maps are added:

* entire ("long action") branch: the apex-minus-onset frame difference, as a one-frame clip;
* detail ("short action") branch: the differences of consecutive frames of the onset->apex
  clip resampled to ``num_frames`` + 1 frames (so ``num_frames`` difference frames).

Each branch is a 3-stage Video Swin Transformer (patch 8x4x4, window 8x7x7, embed 128,
depths 2-2-6, heads 4-8-16, MLP ratio 4, patch norm, stochastic depth 0.2) ending at
512 x 1 x 14 x 14, averaged over time. With ``accumulated_attention`` (the paper's
"Swin-Transformer module with accumulated attention", official flag ``--use_swin_CA``) each
stage multiplies its output by a sigmoid spatial attention map from the channel mean and
max (1x1x1 conv), itself multiplied by the previous stage's map after a 1x2x2 max-pool.
The sum of the two branches is flattened (100,352 values) and classified by one linear layer.

Input: one tensor (B, 3, num_frames + 2, 224, 224), ImageNet-normalised RGB, packed as the
official ``FuseNetTransform`` packs it along the time axis: index 0 = apex - onset,
1..num_frames = frame differences, last = the apex frame (used only by the optional
position-calibration branch, ``use_pos_vit``).

Faithfulness notes:

* The official ``fusenet`` builds the MMNet position-calibration ViT (``vit_pos``, 112 px
  input, 8x8 patches) even when ``--use_pos_vit`` is off; it is kept (official count and
  checkpoint keys) and used only when ``use_pos_vit=True``.
* In the official ``BasicLayer`` the attention module keeps a second reference to the
  stage's ``PatchMerging`` (``sa_atten.down``), so checkpoints list those weights twice;
  the same sharing is reproduced so that official checkpoints load with ``strict=True``.
* The Swin weights keep PyTorch's default initialisation: the official ``init_weights`` only
  re-initialises when a pretrained path is given, and the paper's runs use none
  (``use_2dpretrained: False``).
* Command-line ``--patch_size``/``--window_size``/``--drop_path`` never reach the official
  Swin branches (``custom_swin`` ignores them), so the values above are the ones in effect.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mefeat.errors import ModelError
from mefeat.recipes import (
    HorizontalFlip,
    Optimizer,
    Oversample,
    RandomCrop,
    Recipe,
    Rotation,
    Selection,
    WarmupCosine,
)
from mefeat.views import View, imagenet_rgb

from ._layers import DropPath as _DropPath
from ._layers import Mlp as _Mlp
from .mmnet import PositionCalibration
from .registry import register

__all__ = ["EDMDBN", "SwinTransformer3D", "edmdbn"]

_Size3 = tuple[int, int, int]


def _window_partition(x: Tensor, ws: _Size3) -> Tensor:
    """(B, D, H, W, C) -> (B * windows, ws0 * ws1 * ws2, C)."""
    b, d, h, w, c = x.shape
    x = x.view(b, d // ws[0], ws[0], h // ws[1], ws[1], w // ws[2], ws[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, ws[0] * ws[1] * ws[2], c)


def _window_reverse(windows: Tensor, ws: _Size3, b: int, d: int, h: int, w: int) -> Tensor:
    x = windows.view(b, d // ws[0], h // ws[1], w // ws[2], ws[0], ws[1], ws[2], -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


def _window_and_shift(size: _Size3, window: _Size3, shift: _Size3) -> tuple[_Size3, _Size3]:
    """Shrink the window to the feature size (and drop the shift) along short axes."""
    ws, ss = list(window), list(shift)
    for i in range(3):
        if size[i] <= window[i]:
            ws[i] = size[i]
            ss[i] = 0
    return (ws[0], ws[1], ws[2]), (ss[0], ss[1], ss[2])


def _shift_mask(dhw: _Size3, ws: _Size3, ss: _Size3, device: torch.device) -> Tensor:
    """Additive (0 / -100) mask that keeps shifted windows from mixing wrapped regions."""
    img = torch.zeros((1, *dhw, 1), device=device)
    cnt = 0
    spans = [(slice(-ws[i]), slice(-ws[i], -ss[i]), slice(-ss[i], None)) for i in range(3)]
    for sd in spans[0]:
        for sh in spans[1]:
            for sw in spans[2]:
                img[:, sd, sh, sw, :] = cnt
                cnt += 1
    win = _window_partition(img, ws).squeeze(-1)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class WindowAttention3D(nn.Module):
    """Window multi-head self-attention with a 3-D relative position bias."""

    def __init__(self, dim: int, window: _Size3, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        wd, wh, ww = window
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1), num_heads)
        )
        coords = torch.stack(
            torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij")
        ).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
        rel = rel + torch.tensor([wd - 1, wh - 1, ww - 1])
        rel = rel * torch.tensor([(2 * wh - 1) * (2 * ww - 1), 2 * ww - 1, 1])
        self.register_buffer("relative_position_index", rel.sum(-1))
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        # A window shrunk along time uses the leading block of the full index table.
        index = self.relative_position_index[:n, :n].reshape(-1)
        bias = self.relative_position_bias_table[index].reshape(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class SwinBlock3D(nn.Module):
    def __init__(
        self, dim: int, num_heads: int, window: _Size3, shift: _Size3, drop_path: float
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, window, num_heads)
        self.drop_path = _DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, dim * 4)

    def _attend(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, d, h, w, c = x.shape
        ws, ss = _window_and_shift((d, h, w), self.window, self.shift)
        x = self.norm1(x)
        pd, ph, pw = ((ws[i] - s % ws[i]) % ws[i] for i, s in enumerate((d, h, w)))
        x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
        _, dp, hp, wp, _ = x.shape
        shifted = any(s > 0 for s in ss)
        if shifted:
            x = torch.roll(x, shifts=(-ss[0], -ss[1], -ss[2]), dims=(1, 2, 3))
        out = self.attn(_window_partition(x, ws), mask if shifted else None)
        x = _window_reverse(out.view(-1, *ws, c), ws, b, dp, hp, wp)
        if shifted:
            x = torch.roll(x, shifts=ss, dims=(1, 2, 3))
        return x[:, :d, :h, :w, :]

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.drop_path(self._attend(x, mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 spatial merge: (B, D, H, W, C) -> (B, D, H/2, W/2, 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:4]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat(
            (x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]),
            dim=-1,
        )
        return self.reduction(self.norm(x))


class SpatialAttention3D(nn.Module):
    """Accumulated spatial attention of one stage (official ``SpatialAttention3D``)."""

    def __init__(self, down: nn.Module | None) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 1, kernel_size=1)
        # The official module stores the stage's PatchMerging here too (unused); sharing the
        # module keeps the official checkpoint keys ``sa_atten.down.*`` loadable.
        self.down = down

    def forward(self, x: Tensor, prev: Tensor | None) -> tuple[Tensor, Tensor]:
        pooled = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        attn = torch.sigmoid(self.conv(pooled))
        if prev is not None:
            attn = attn * F.max_pool3d(prev, kernel_size=(1, 2, 2), stride=(1, 2, 2))
        return x * attn, attn


class SwinStage3D(nn.Module):
    """Official ``BasicLayer``: blocks (alternately shifted), attention, patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: _Size3,
        drop_paths: list[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.window = window
        self.shift: _Size3 = (window[0] // 2, window[1] // 2, window[2] // 2)
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, num_heads, window, (0, 0, 0) if i % 2 == 0 else self.shift, p)
            for i, p in enumerate(drop_paths[:depth])
        )
        self.downsample = PatchMerging(dim) if downsample else None
        self.sa_atten = SpatialAttention3D(self.downsample)

    def forward(
        self, x: Tensor, prev: Tensor | None, use_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        _, _, d, h, w = x.shape
        ws, ss = _window_and_shift((d, h, w), self.window, self.shift)
        padded = tuple(-(-s // ws[i]) * ws[i] for i, s in enumerate((d, h, w)))
        mask = _shift_mask(padded, ws, ss, x.device)  # type: ignore[arg-type]
        x = x.permute(0, 2, 3, 4, 1)
        for blk in self.blocks:
            x = blk(x, mask)
        attn = None
        if use_attention:
            out, attn = self.sa_atten(x.permute(0, 4, 1, 2, 3), prev)
            x = out.permute(0, 2, 3, 4, 1)
        if self.downsample is not None:
            x = self.downsample(x)
        return x.permute(0, 4, 1, 2, 3), attn


class PatchEmbed3D(nn.Module):
    def __init__(self, patch: _Size3, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        d, h, w = x.shape[2:]
        p = self.patch
        # Zero-pad every axis up to a multiple of the patch (a 1-frame clip becomes 8).
        x = F.pad(x, (0, (-w) % p[2], 0, (-h) % p[1], 0, (-d) % p[0]))
        x = self.proj(x)
        b, c, d, h, w = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(b, c, d, h, w)


class SwinTransformer3D(nn.Module):
    """The official ``custom_swin(depth=3)``: (B, 3, T, 224, 224) -> (B, 512, T/8, 14, 14)."""

    def __init__(
        self,
        *,
        patch: _Size3 = (8, 4, 4),
        window: _Size3 = (8, 7, 7),
        embed_dim: int = 128,
        depths: tuple[int, ...] = (2, 2, 6),
        num_heads: tuple[int, ...] = (4, 8, 16),
        drop_path_rate: float = 0.2,
        accumulated_attention: bool = True,
    ) -> None:
        super().__init__()
        self.accumulated_attention = accumulated_attention
        self.patch_embed = PatchEmbed3D(patch, 3, embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads, strict=True)):
            start = sum(depths[:i])
            self.layers.append(
                SwinStage3D(
                    embed_dim * 2**i,
                    depth,
                    heads,
                    window,
                    rates[start : start + depth],
                    downsample=i < len(depths) - 1,
                )
            )
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        attn = None
        for layer in self.layers:
            x, attn = layer(x, attn, self.accumulated_attention)
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class EDMDBN(nn.Module):
    """EDMDBN / official ``LongShortActionFuseNet`` with both branches and feature addition.

    ``forward(x)`` with x (B, 3, num_frames + 2, 224, 224) (see the module docstring);
    ``forward_features`` returns the flattened (B, 100352) fused map.
    """

    def __init__(
        self,
        *,
        num_classes: int = 3,
        use_entire: bool = True,
        use_detail: bool = True,
        accumulated_attention: bool = True,
        use_pos_vit: bool = False,
        drop_path_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if not (use_entire or use_detail):
            raise ModelError("edmdbn: use_entire and use_detail cannot both be False")
        if num_classes < 1:
            raise ModelError(f"edmdbn: num_classes must be >= 1, got {num_classes}")
        self.use_entire = use_entire
        self.use_detail = use_detail
        self.use_pos_vit = use_pos_vit
        # Always built by the official model (count + checkpoints), used only on request.
        self.vit_pos = PositionCalibration(
            depth=2, num_heads=4, mlp_ratio=4.0, drop_path_rate=0.0, patch_size=8
        )

        def branch() -> SwinTransformer3D:
            return SwinTransformer3D(
                drop_path_rate=drop_path_rate, accumulated_attention=accumulated_attention
            )

        self.long_action_model = branch() if use_entire else None
        self.short_action_model = branch() if use_detail else None
        width = (self.long_action_model or self.short_action_model).num_features  # type: ignore[union-attr]
        self.num_features = width * 14 * 14
        self.head = nn.Sequential(nn.Dropout(p=0.0), nn.Linear(self.num_features, num_classes))

    def forward_features(self, x: Tensor) -> Tensor:
        if x.ndim != 5 or x.shape[1] != 3 or x.shape[2] < 3:
            raise ModelError(
                "edmdbn: expected (B, 3, num_frames + 2, H, W) = [apex - onset, frame "
                f"differences..., apex] along axis 2; got {tuple(x.shape)}"
            )
        entire, details, last = x[:, :, 0], x[:, :, 1:-1], x[:, :, -1]
        pos = None
        if self.use_pos_vit:
            small = F.interpolate(last, size=(112, 112), mode="bilinear", align_corners=False)
            pos = self.vit_pos(small).transpose(1, 2).reshape(x.shape[0], -1, 14, 14)
        out = None
        for model, clip in (
            (self.long_action_model, entire[:, :, None]),
            (self.short_action_model, details),
        ):
            if model is None:
                continue
            y = model(clip).mean(dim=2)
            if pos is not None:
                y = y + pos
            out = y if out is None else out + y
        assert out is not None  # guaranteed by the constructor check
        return out.flatten(1)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ModelError(f"edmdbn: num_classes must be >= 1, got {num_classes}")
        self.head[1] = nn.Linear(self.num_features, num_classes)



# -- the view: sampling strategy 3, the onset, apex and offset frames stretched to 9 frames
# by linear interpolation along time (merlib ``FixSequenceInterpolation``: trilinear,
# align_corners=False): frame i samples position (i + 0.5) * 3/9 - 0.5, clamped to [0, 2].


def _interp_weights(n_in: int, n_out: int) -> np.ndarray:
    w = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        pos = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = min(int(np.floor(pos)), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        frac = pos - lo
        w[i, lo] += 1 - frac
        w[i, hi] += frac
    return w


INTERP_WEIGHTS = _interp_weights(3, 9)


def _inputs(a, landmarks, src, **options):
    # EDMDBN's (3, 10, 224, 224), frames_mode 0 of its FuseNetTransform: [apex - onset,
    # the 8 consecutive differences of the 9 interpolated frames, apex]. (Normalising
    # before interpolating is the same: the weights of each frame sum to 1.)
    out = []
    for i, (o, p, f) in enumerate(a["keyframes"]):
        clip = a["clips"](i)
        key = np.stack([imagenet_rgb(clip[t]) for t in (o, p, f)])  # (3, C, S, S)
        frames = np.tensordot(INTERP_WEIGHTS, key, axes=1)  # (9, C, S, S)
        diffs = frames[1:] - frames[:-1]
        stack = np.concatenate([key[1:2] - key[:1], diffs, key[1:2]], axis=0)
        out.append(stack.transpose(1, 0, 2, 3).astype(np.float32))  # (C, 10, S, S)
    return (np.stack(out),)


# Colour frames: datasets/label_datasets.py reads them with --img_type rgb (its default).
VIEW = View("edmdbn", ("keyframes",), _inputs, frames=True, colour=True)


@register(
    "edmdbn",
    view=VIEW,
    input_shapes=((3, 10, 224, 224),),
    recipe=Recipe(
        # configure_optimizers (one_model_trainer.py:145-184); decay on weight matrices only
        # (models/utils/weight_lr_decay.py:23-35); yaml lr 1e-4, betas, weight_decay 1e-8.
        optimizer=Optimizer("adamw", lr=1e-4, weight_decay=1e-8, decay_matrices_only=True),
        epochs=60,  # configs/casme2/frames-fusenet-loso.yaml max_epochs
        batch_size=4,  # scripts/train_fuse_net_in_crosscd.py --batch_size=4
        shuffle=True,  # datasets/label_datasets.py:204-232
        # CosineWarmupScheduler (models/utils/lr_sched.py:27-50), per step, warmup 10 epochs.
        schedule=WarmupCosine(warmup_epochs=10, floor=1e-8),
        label_smoothing=0.1,  # one_model_trainer.py:76-78
        precision="fp16",  # yaml precision: 16
        # FuseNetTransform (datasets/transforms.py:40-46), one draw for the whole clip; its
        # Resize((224, 224)) is the view's resize.
        augmentation=(HorizontalFlip(0.5), Rotation(4), RandomCrop(4, padding_mode="edge")),
        seed=42,  # pl.seed_everything(42) (one_model_trainer.py:306)
        # configs/samm and configs/smic-hs-e: use_offline_aug and use_class_weight True
        # (CASME II: both False). The class weights are computed from the oversampled file,
        # where every class has the same count: 'balanced' gives 1 to each, a no-op.
        oversample=Oversample(
            ("samm", "smic", "smic-e"),
            source="likemby/EDMDBN configs/samm/frames-fusenet-loso.yaml, configs/smic-hs-e/"
            "frames-fusenet-loso.yaml (use_offline_aug: True); datasets/label_datasets.py:"
            "87-117 (each class drawn with replacement to the largest class's count, per "
            "fold), :161-162 (the fold's training file replaced by it), :74-85 and :174 (the "
            "class weights computed from that balanced file: all 1)",
        ),
        official=Selection(
            "per-fold", metric="uf1", ties="earliest", stop=(">", 0.99), patience=30,
            source="likemby/EDMDBN one_model_trainer.py:363-369 (ModelCheckpoint monitor uf1, "
            "max), :381-383 (EarlyStopping uf1, patience 30, stopping_threshold 0.99)",
        ),
        source="likemby/EDMDBN one_model_trainer.py, configs/casme2/frames-fusenet-loso.yaml, "
        "scripts/train_fuse_net_in_crosscd.py",
    ),
    paper="Ma et al., Entire-detail motion dual-branch network for micro-expression "
    "recognition, Pattern Recognition Letters 2025",
    code="github.com/likemby/EDMDBN (models/long_short_fusenet.py; no licence file)",
    params=50_616_747,
    options={
        "accumulated_attention": True,
        "use_pos_vit": False,
        "use_entire": True,
        "use_detail": True,
    },
)
def edmdbn(
    *,
    num_classes: int = 3,
    accumulated_attention: bool = True,
    use_pos_vit: bool = False,
    use_entire: bool = True,
    use_detail: bool = True,
) -> EDMDBN:
    """EDMDBN as ``scripts/train_fuse_net_in_all_dataset.py`` runs it, with ``--use_swin_CA``."""
    return EDMDBN(
        num_classes=num_classes,
        accumulated_attention=accumulated_attention,
        use_pos_vit=use_pos_vit,
        use_entire=use_entire,
        use_detail=use_detail,
    )

"""MMNet: the muscle-motion-guided two-branch network.

Li, Sui, Zhu, Zhao, "MMNet: Muscle Motion-Guided Network for Micro-Expression Recognition",
IJCAI 2022 (arXiv:2201.05297); official code github.com/muse1998/MMNet (``CASME2_3.py``,
``CA_block.py``, ``PC_module.py``; the repository carries no licence file).

The official protocol is CASME II alone, LOSO over its 25 subjects that hold a clip of the
three classes: label scheme ``casme2-3`` (happiness, surprise, negative = disgust,
repression, fear and sadness; ``mefeat extract ... --labels casme2-3``). On the MEGC 2019
composite MMNet runs as every baseline does, which its paper does not report.

MMNet eats two RGB frames, not optical flow:

* main branch: the apex-minus-onset frame difference goes through a strided 3x3 conv
  (``conv_act``, 3 -> 180 channels, 224 -> 112) and four continuous-attention (CA) blocks, a
  ResNet-18-like stack with one block per stage whose spatial attention map is carried from
  stage to stage (multiplied into the next stage's map after a 3x3/2 max-pool);
* position-calibration (PC) sub-branch: the onset frame, resized to 14x14, goes through a
  3-block ViT with 1x1 patches; its 196 tokens, seen as a 512x14x14 map, are *added* to the
  main branch's last 512x14x14 map; the sum is flattened (100,352 values) and classified by
  one linear layer.

Module names follow the official code, so an official ``state_dict`` loads as it is.

Deviations of the released code that this module makes explicit (builder options):

``act_groups`` (the ``groups`` bug). ``CASME2_3.py`` builds ``conv_act`` with ``groups=2``
on a 3-channel input; PyTorch refuses that (``in_channels must be divisible by groups``), so
the released 3-class script does not run as published. Its sibling ``CASME2_5.py`` uses
``groups=1``, and ``groups=1`` is the only value that gives the official parameter count
(9,974,531); it is the default. ``act_groups=3`` is the other value that PyTorch accepts:
each colour channel of the frame difference gets its own 60 filters (no mixing of R, G and
B in the first layer), 1,620 instead of 4,860 weights (9,971,291 parameters). A value that
does not divide 3 and 180 raises ``ModelError``. (The ``ResNet(groups=4)`` default in
``CA_block.py`` is dead code: it only reaches the second and later block of a stage and
MMNet has one block per stage.)

``head_width`` (default 5, the released head). The released 3-class script keeps the 5-way
``fc`` of the 5-class script (``nn.Linear(512*196, 5)``, ``CA_block.py`` L140), trains
cross-entropy over all five logits with labels 0..2 and predicts by the argmax over all five
(``CASME2_3.py`` L488, L548): a prediction of logit 3 or 4 is simply wrong. With
``head_width=5`` the fc has ``max(num_classes, head_width)`` rows and the model returns all of
them, so mefeat trains and predicts exactly so (its metrics count a prediction outside the
label scheme as wrong for the true class). It is the default because it is the published
method and the official parameter count. ``head_width=None`` gives a plain
``num_classes``-wide fc (3 classes: 9,773,825 parameters), the head a new 3-class model
would have.

``keep_unused`` (default True). The official ``MMNet`` holds parameters that ``forward``
never uses: ``pos`` (1x1 conv + BN), ``head1`` (Linear 12544 -> 38), ``timeembed``, and in
the PC branch ``cls_token``, ``head`` and ``to_Mask``. They count in the official parameter
count and appear in official checkpoints, so they are kept by default; ``False`` drops them
(same outputs; load official checkpoints with ``strict=False``).

``pos_resize_antialias`` (default False). The onset frame is shrunk 224 -> 14 with
torchvision's ``Resize`` on a tensor: bilinear, and without antialiasing in the torchvision
of 2022 that the published numbers came from (torchvision >= 0.17 antialiases by default).

No pretrained weights: ``CASME2_3.py`` builds ``MMNet()`` from scratch (its ``--pretrained``
branch refers to an undefined ``res18`` and is never taken by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mefeat.errors import ModelError
from mefeat.options import Option, positive_int
from mefeat.recipes import (
    ExponentialLR,
    HorizontalFlip,
    KeyframeJitter,
    Optimizer,
    RandomCrop,
    Recipe,
    Rotation,
    Selection,
)
from mefeat.views import IMAGENET_MEAN, IMAGENET_STD, View, imagenet_rgb

from ._layers import Block as _Block
from .registry import register

__all__ = ["MMNet", "mmnet"]

_ACT_CHANNELS = 180  # conv_act output width (90 * 2 in the official code)
_POS_DIM = 512  # PC-branch token width = main-branch last stage width
_POS_GRID = 14  # the PC branch sees the onset frame at 14 x 14


class _PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class PositionCalibration(nn.Module):
    """The PC sub-branch (official ``VisionTransformer_POS``): a ViT without class token.

    ``forward`` maps a (B, 3, 14 * patch_size, 14 * patch_size) image to (B, 196, dim)
    tokens (MMNet: 1x1 patches of a 14x14 image; EDMDBN reuses it with 8x8 patches of 112).
    """

    def __init__(
        self,
        *,
        dim: int = _POS_DIM,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        drop_path_rate: float = 0.3,
        patch_size: int = 1,
        keep_unused: bool = True,
    ) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(3, dim, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, _POS_GRID * _POS_GRID, dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(_Block(dim, num_heads, mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if keep_unused:
            # Never used in forward; kept for the official parameter count and checkpoints.
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.head = nn.Linear(dim, 5)
            self.to_Mask = nn.Sequential(nn.Linear(dim, 1), nn.Sigmoid())
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class CABlock(nn.Module):
    """Continuous-attention block: a basic residual block (3x3 then 1x1 conv) followed by a
    spatial attention map from channel mean and max, multiplied by the previous stage's map.

    ``forward(x, attn_prev)`` returns ``(out, attn)`` with ``attn`` of shape (B, 1, H, W).
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.attn = nn.Sequential(
            nn.Conv2d(2, 1, kernel_size=1, bias=False), nn.BatchNorm2d(1), nn.Sigmoid()
        )
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor, attn_prev: Tensor | None) -> tuple[Tensor, Tensor]:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)) + identity)
        pooled = torch.cat((out.mean(dim=1, keepdim=True), out.amax(dim=1, keepdim=True)), dim=1)
        attn = self.attn(pooled)
        if attn_prev is not None:
            attn = attn_prev * attn
        return out * attn, attn


class MainBranch(nn.Module):
    """The main branch after ``conv_act`` (official ``resnet18_pos_attention``): a 3x3 stem
    and one CA block per stage (128, 128, 256, 512 channels; 112 -> 14), then the fusion with
    the PC tokens and the linear classifier ``fc``.
    """

    def __init__(self, fc_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(_ACT_CHANNELS, 128, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        # Carries each stage's attention map down to the next stage's resolution.
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = ((128, 128, 1), (128, 128, 2), (128, 256, 2), (256, 512, 2))
        for i, (cin, cout, stride) in enumerate(widths, start=1):
            self.add_module(f"layer{i}", nn.Sequential(CABlock(cin, cout, stride)))
        self.num_features = _POS_DIM * _POS_GRID * _POS_GRID
        self.fc = nn.Linear(self.num_features, fc_out)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor, pos: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        attn: Tensor | None = None
        for i in range(1, 5):
            block = getattr(self, f"layer{i}")[0]
            x, attn = block(x, None if attn is None else self.maxpool(attn))
        return torch.flatten(x + pos, 1)


class MMNet(nn.Module):
    """MMNet (see the module docstring).

    ``forward((onset, apex))`` with both (B, 3, 224, 224), RGB, ImageNet-normalised;
    returns (B, max(num_classes, head_width)) logits. ``forward_features`` returns the
    fused, flattened (B, 100352) map that the linear classifier reads.
    """

    def __init__(
        self,
        *,
        num_classes: int = 3,
        act_groups: int = 1,
        head_width: int | None = 5,
        keep_unused: bool = True,
        pos_resize_antialias: bool = False,
    ) -> None:
        super().__init__()
        if act_groups < 1 or 3 % act_groups or _ACT_CHANNELS % act_groups:
            raise ModelError(
                f"mmnet: act_groups={act_groups} does not divide the 3 input channels and "
                f"the {_ACT_CHANNELS} output channels of conv_act; use 1 (default, the "
                "official parameter count) or 3 (one filter group per colour channel). The "
                "released CASME2_3.py says groups=2, which PyTorch refuses."
            )
        if num_classes < 1:
            raise ModelError(f"mmnet: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.head_width = head_width
        self.pos_resize_antialias = pos_resize_antialias
        self.conv_act = nn.Sequential(
            nn.Conv2d(3, _ACT_CHANNELS, 3, stride=2, padding=1, bias=False, groups=act_groups),
            nn.BatchNorm2d(_ACT_CHANNELS),
            nn.ReLU(inplace=True),
        )
        if keep_unused:
            # Built but never called by the official forward (count + checkpoint keys).
            self.pos = nn.Sequential(
                nn.Conv2d(3, _POS_DIM, 1, bias=False), nn.BatchNorm2d(_POS_DIM), nn.ReLU(True)
            )
        self.vit_pos = PositionCalibration(keep_unused=keep_unused)
        self.main_branch = MainBranch(self._fc_out(num_classes))
        if keep_unused:
            self.head1 = nn.Sequential(nn.Dropout(p=0.5), nn.Linear(112 * 112, 38, bias=False))
            self.timeembed = nn.Parameter(torch.zeros(1, 4, 111, 111))
        self.num_features = self.main_branch.num_features

    def _fc_out(self, num_classes: int) -> int:
        return num_classes if self.head_width is None else max(num_classes, self.head_width)

    def _split(self, x: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise ModelError(
                "mmnet: forward expects a pair (onset, apex) of (B, 3, 224, 224) tensors; "
                f"got {type(x).__name__}"
            )
        onset, apex = x
        if onset.shape != apex.shape or onset.ndim != 4 or onset.shape[1] != 3:
            raise ModelError(
                "mmnet: onset and apex must both be (B, 3, H, W) RGB tensors; got "
                f"{tuple(onset.shape)} and {tuple(apex.shape)}"
            )
        return onset, apex

    def forward_features(self, x: tuple[Tensor, Tensor]) -> Tensor:
        onset, apex = self._split(x)
        b = onset.shape[0]
        small = F.interpolate(
            onset,
            size=(_POS_GRID, _POS_GRID),
            mode="bilinear",
            align_corners=False,
            antialias=self.pos_resize_antialias,
        )
        pos = self.vit_pos(small).transpose(1, 2).reshape(b, _POS_DIM, _POS_GRID, _POS_GRID)
        # The main branch sees only the motion: apex minus onset.
        act = self.conv_act(apex - onset)
        return self.main_branch.features(act, pos)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.main_branch.fc(features)

    def forward(self, x: tuple[Tensor, Tensor]) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ModelError(f"mmnet: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.main_branch.fc = nn.Linear(self.num_features, self._fc_out(num_classes))



# -- the view: the onset and apex frames themselves, in colour (CASME2_3.py reads them with
# cv2.imread and reverses BGR to RGB; a grayscale source's frames are repeated over the three
# channels, as cv2.imread gives a grayscale file)


def _inputs(a, landmarks, src, **options):
    onset, apex = [], []
    for i, (o, p, _) in enumerate(a["keyframes"]):
        clip = a["clips"](i)
        onset.append(imagenet_rgb(clip[o]))
        apex.append(imagenet_rgb(clip[p]))
    return np.stack(onset), np.stack(apex)


def _jitter_inputs(frames):
    """(B, 2, 224, 224, 3) uint8 RGB onset/apex tensor -> MMNet's two inputs, as
    ``imagenet_rgb``."""
    mean = torch.as_tensor(IMAGENET_MEAN, device=frames.device)
    std = torch.as_tensor(IMAGENET_STD, device=frames.device)
    x = frames.permute(0, 1, 4, 2, 3).float() / 255.0  # (B, 2, 3, S, S)
    x = (x - mean) / std
    return x[:, 0].contiguous(), x[:, 1].contiguous()


VIEW = View("mmnet", ("keyframes",), _inputs, frames=True, jitter=_jitter_inputs,
            jitter_keys=("onset", "apex"), size=224, colour=True)


@register(
    "mmnet",
    view=VIEW,
    input_shapes=((3, 224, 224), (3, 224, 224)),
    recipe=Recipe(
        optimizer=Optimizer("adamw", lr=8e-4, weight_decay=0.7),  # CASME2_3.py:430-431
        epochs=99,  # for i in range(1, 100) (:445)
        batch_size=24,  # :407
        shuffle=True,  # :406-410
        # ExponentialLR(0.987) (:441), stepped after epochs 1..50 only (:497-500).
        schedule=ExponentialLR(0.987, until_epoch=50),
        # One draw for all frames, on the ImageNet-normalised stack (:230-244, :371-378).
        augmentation=(HorizontalFlip(0.5), Rotation(4), RandomCrop(4)),
        # onset: randint(onset, onset + int(0.2*(apex-onset)/4)) (:137); apex:
        # randint(apex - int(0.15*(apex-onset)/4), apex + int(0.15*(offset-apex)/4)) (:145-146)
        keyframe_jitter=KeyframeJitter(onset_after=0.2, apex_before=0.15, apex_after=0.15,
                                       divisor=4),
        official=Selection(
            "per-fold", metric="uf1", ties="latest", counting="best-acc-folds",
            source="muse1998/MMNet CASME2_3.py:553-584 (per-fold F1 over the classes present; "
            "AVG_F1 >= max_f1: ties keep the later epoch; F1_ALL from the pooled counts at "
            "those epochs, accuracy from each fold's max_corr over all epochs, num_sum)",
        ),
        source="muse1998/MMNet CASME2_3.py:391, :406-445, :497-500",
    ),
    paper="Li, Sui, Zhu, Zhao, MMNet: Muscle Motion-Guided Network for Micro-Expression "
    "Recognition, IJCAI 2022, arXiv:2201.05297",
    code="github.com/muse1998/MMNet (CASME2_3.py; no licence file)",
    params=9_974_531,
    options={
        "act_groups": positive_int(1),
        "head_width": Option(5, low=1, kind=int, nullable=True),
        "keep_unused": True,
        "pos_resize_antialias": False,
    },
)
def mmnet(
    *,
    num_classes: int = 3,
    act_groups: int = 1,
    head_width: int | None = 5,
    keep_unused: bool = True,
    pos_resize_antialias: bool = False,
) -> MMNet:
    """MMNet as in the released ``CASME2_3.py`` (made to run: ``act_groups=1``)."""
    return MMNet(
        num_classes=num_classes,
        act_groups=act_groups,
        head_width=head_width,
        keep_unused=keep_unused,
        pos_resize_antialias=pos_resize_antialias,
    )

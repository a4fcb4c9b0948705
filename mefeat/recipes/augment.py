"""Train-time augmentation of a recipe, and how it runs on a batch.

One random draw per sample serves every input tensor and every channel of the sample (the
official code stacks the frames into one tensor before transforming it). Each augmentation
is a frozen record registered in :data:`AUGMENTATIONS` with an ``apply(y, gen)`` on a
(B, C, H, W) batch; adding one is one class here and its test. Random numbers come from a
CPU generator, so a fold's draws do not depend on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .parts import RecipeError, Registry, need

AUGMENTATIONS: Registry[type] = Registry("augmentation")


@AUGMENTATIONS.register
@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror left-right with probability ``p`` (torchvision ``RandomHorizontalFlip``)."""

    p: float = 0.5
    name: ClassVar[str] = "hflip"

    def __post_init__(self) -> None:
        need(0 <= self.p <= 1, f"HorizontalFlip p must lie in [0, 1], got {self.p}")

    def apply(self, y: Tensor, gen: torch.Generator) -> Tensor:
        flip = (torch.rand(y.shape[0], generator=gen) < self.p).to(y.device)
        return torch.where(flip[:, None, None, None], y.flip(-1), y)


@AUGMENTATIONS.register
@dataclass(frozen=True)
class Rotation:
    """Rotate by an angle uniform in ``[-degrees, degrees]`` about the centre, nearest
    neighbour, new pixels ``fill`` (torchvision ``RandomRotation`` defaults)."""

    degrees: float
    fill: float = 0.0
    name: ClassVar[str] = "rotation"

    def __post_init__(self) -> None:
        need(self.degrees >= 0, f"Rotation degrees must be >= 0, got {self.degrees}")

    def apply(self, y: Tensor, gen: torch.Generator) -> Tensor:
        b = y.shape[0]
        angle = (torch.rand(b, generator=gen, dtype=torch.float64) * 2 - 1) * self.degrees
        return rotate(y, angle.to(y.device), fill=self.fill)


@AUGMENTATIONS.register
@dataclass(frozen=True)
class RandomCrop:
    """Pad by ``padding`` on every side (``"constant"`` 0 or ``"edge"``), then crop the
    input's own size at a uniform offset (torchvision ``RandomCrop(size, padding)``)."""

    padding: int
    padding_mode: str = "constant"
    name: ClassVar[str] = "random_crop"

    def __post_init__(self) -> None:
        need(self.padding >= 0, f"RandomCrop padding must be >= 0, got {self.padding}")
        need(self.padding_mode in ("constant", "edge"),
             f"RandomCrop padding_mode {self.padding_mode!r} is not 'constant' or 'edge'")

    def apply(self, y: Tensor, gen: torch.Generator) -> Tensor:
        b = y.shape[0]
        span = 2 * self.padding + 1
        top = torch.randint(0, span, (b,), generator=gen)
        left = torch.randint(0, span, (b,), generator=gen)
        return pad_crop(y, self.padding, self.padding_mode, top.to(y.device),
                        left.to(y.device))


class Augmenter:
    """The recipe's augmentations on a batch of model inputs ``(B, ..., H, W)`` that share
    ``H, W``, in order."""

    def __init__(self, augmentations: Sequence[Any]) -> None:
        self.augmentations = tuple(augmentations)

    def __bool__(self) -> bool:
        return bool(self.augmentations)

    def __call__(self, xs: tuple[Tensor, ...], gen: torch.Generator) -> tuple[Tensor, ...]:
        if not self.augmentations:
            return xs
        hw = {tuple(x.shape[-2:]) for x in xs}
        if len(hw) != 1:
            raise RecipeError(f"augmentation needs inputs of one image size, got {sorted(hw)}")
        b = xs[0].shape[0]
        flat = [x.reshape(b, -1, *x.shape[-2:]) for x in xs]
        widths = [f.shape[1] for f in flat]
        y = torch.cat(flat, dim=1)
        for aug in self.augmentations:
            y = aug.apply(y, gen)
        parts = torch.split(y, widths, dim=1)
        return tuple(p.reshape(x.shape) for p, x in zip(parts, xs, strict=True))


def rotate(x: Tensor, degrees: Tensor, *, fill: float = 0.0) -> Tensor:
    """Rotate each image of ``x`` (B, C, H, W) counter-clockwise by ``degrees[b]`` about its
    centre, nearest neighbour; pixels from outside the image are ``fill``."""
    theta = torch.deg2rad(degrees.double())
    cos, sin = torch.cos(theta), torch.sin(theta)
    h, w = x.shape[-2:]
    # affine_grid maps output to input positions in [-1, 1] coordinates; a counter-clockwise
    # image rotation by θ samples the input at R(-θ), with the aspect ratio undone.
    mat = torch.zeros(x.shape[0], 2, 3, dtype=torch.float64, device=x.device)
    mat[:, 0, 0] = cos
    mat[:, 0, 1] = -sin * h / w
    mat[:, 1, 0] = sin * w / h
    mat[:, 1, 1] = cos
    grid = F.affine_grid(mat.to(x.dtype if x.is_floating_point() else torch.float32),
                         list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    if fill:
        inside = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="nearest",
                               padding_mode="zeros", align_corners=False)
        out = out + fill * (1 - inside)
    return out


def pad_crop(x: Tensor, padding: int, mode: str, top: Tensor, left: Tensor) -> Tensor:
    """Pad ``x`` (B, C, H, W) by ``padding`` (``"constant"`` 0 or ``"edge"``) and crop
    (H, W) at per-sample offsets ``top``, ``left`` in ``0..2·padding``."""
    if padding == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (padding,) * 4, mode="replicate" if mode == "edge" else "constant")
    rows = top[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = left[:, None] + torch.arange(w, device=x.device)  # (B, W)
    b = torch.arange(x.shape[0], device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()

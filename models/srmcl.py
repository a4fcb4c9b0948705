"""SRMCL: self-expression reconstruction and memory contrastive learning for MER.

"Boosting Micro-expression Recognition via Self-expression Reconstruction and Memory
Contrastive Learning" (the repository does not name the venue; check it before citing);
official code github.com/pakchoi-php/SRMCL (``Model/VIT_SRMCL.py``, ``Model/memory.py``;
the repository carries no licence file and no training script, only test scripts).

The network is a small MAE-style ViT (16x16 patches, width 768, 3 encoder blocks, 16
heads, MLP ratio 2; a 3-block, width-512 decoder) that reads one 3-channel optical-flow
image, plus one extra transformer block (``last_blocks``) whose class token feeds the
classifier ``mlp_head`` (LayerNorm + Linear).

* Inference (official ``mask_ratio=0``): encoder -> ``last_blocks`` -> class token ->
  ``mlp_head``.
* Training (``forward_train``): the encoder output is masked ``mask_rounds`` (2) times in a
  row; in each round a random ``mask_ratio`` of the patch tokens is replaced by the learned
  ``mask_token`` (not re-encoded), and the decoder reconstructs the input patches from the
  round's tokens (self-expression reconstruction, MSE on the masked patches). The class
  token of ``last_blocks`` applied to the twice-masked sequence is classified, and also
  compared, L2-normalised, with one momentum-updated prototype per class (memory
  contrastive learning, cross-entropy over prototype similarities / 0.05).
* Loss (official ``Model.train_forward``):
  ``CE(logits, y) + 0.5 * reconstruction + 0.5 * memory_CE``.

Call it from a trainer as::

    out = model.forward_train(x)        # SRMCLOutput(logits, features, recon_loss)
    loss = model.loss(out, y)           # also updates the class prototypes (training)
    loss.backward()

``model(x)`` alone gives logits (masked path in training mode, clean path in eval mode), so a
plain cross-entropy trainer works too, without the two auxiliary losses.

Parameter count. The official count, 26,857,989, is that of the official ``Model`` built as
its test scripts build it: ``number_class`` left at its default 5, decoder included, the
frozen sin-cos position tables (``nn.Parameter(requires_grad=False)``) included, and
``bn_neck`` (a BatchNorm1d that ``forward`` never calls) included; the memory prototypes are
a buffer, not counted. ``head_width`` (default 5) keeps that 5-row ``mlp_head`` for any
``num_classes`` <= 5 and returns the first ``num_classes`` logits; ``head_width=None``
gives a ``num_classes``-row head (3 classes: 26,856,451). Module names follow the official
code (``backbone.*``, ``mlp_head``, ``bn_neck``, ``memory.features``), so official
checkpoints load directly.

Pretrained weights: the README points to ``best_model/pretrain.pt`` (Baidu drive only; not
in the repository). The builder initialises at random as the official ``Model`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mefeat.errors import ModelError
from mefeat.options import Option, fraction, positive_int
from mefeat.recipes import (
    ClassBalancedSampler,
    Optimizer,
    Recipe,
    Selection,
)
from mefeat.views import IMAGENET_MEAN, IMAGENET_STD, View, minmax_uint8, resize_maps

from ._layers import Block as _Block
from .registry import register

__all__ = [
    "SRMCL",
    "PrototypeMemory",
    "SRMCLOutput",
    "masked_patch_mse",
    "srmcl",
]


def sincos_pos_embed_2d(dim: int, grid: int, *, cls_token: bool = True) -> Tensor:
    """MAE's fixed 2-D sin-cos position table, (grid*grid [+1], dim); the cls row is zero.

    As in MAE, the first half of the channels encodes the column index and the second half
    the row index.
    """
    if dim % 4:
        raise ModelError(f"srmcl: embedding width {dim} must be divisible by 4")
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64),
        torch.arange(grid, dtype=torch.float64),
        indexing="ij",
    )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def table(pos: Tensor) -> Tensor:
        out = pos.reshape(-1, 1) * omega
        return torch.cat((out.sin(), out.cos()), dim=1)

    emb = torch.cat((table(cols), table(rows)), dim=1)
    if cls_token:
        emb = torch.cat((torch.zeros(1, dim, dtype=emb.dtype), emb), dim=0)
    return emb.float()


class _PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch
        self.num_patches = (img_size // patch) ** 2
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ModelError(
                f"srmcl: expected {self.img_size}x{self.img_size} inputs, got "
                f"{tuple(x.shape[-2:])}; resize in the view"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


def masked_patch_mse(target: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
    """MAE reconstruction loss: per-patch mean squared error, averaged over masked patches.

    Args:
        target: (B, L, P) patchified input.
        pred: (B, L, P) decoder output.
        mask: (B, L), 1 where the token was masked, 0 where kept.
    """
    per_patch = (pred - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


class SelfExpressionViT(nn.Module):
    """The official ``MaskedAutoencoderViT_SR``: encoder, ``last_blocks`` and decoder."""

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 3,
        num_heads: int = 16,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 3,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 2.0,
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.norm_pix_loss = norm_pix_loss
        self.patch_embed = _PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n = self.patch_embed.num_patches
        grid = int(math.isqrt(n))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Fixed sin-cos tables; Parameters (frozen) as in MAE, so they are in the count.
        self.pos_embed = nn.Parameter(
            sincos_pos_embed_2d(embed_dim, grid).unsqueeze(0), requires_grad=False
        )
        self.blocks = nn.ModuleList(_Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.last_blocks = _Block(embed_dim, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            sincos_pos_embed_2d(decoder_embed_dim, grid).unsqueeze(0), requires_grad=False
        )
        self.decoder_blocks = nn.ModuleList(
            _Block(decoder_embed_dim, decoder_num_heads, mlp_ratio) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # like a Linear, as MAE does
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, imgs: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, L, p*p*C), patch pixels in (row, col, channel) order."""
        p = self.patch_embed.patch_size
        b, c, h, w = imgs.shape
        x = imgs.reshape(b, c, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)

    def encode(self, imgs: Tensor) -> Tensor:
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def mask_round(self, x: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor]:
        """Replace a random ``mask_ratio`` of the patch tokens by ``mask_token``.

        Returns the new (B, 1+L, D) sequence and the (B, L) mask (1 = masked). The random
        draw (one ``torch.rand(B, L)``) matches the official ``random_masking``.
        """
        cls, tokens = x[:, :1, :], x[:, 1:, :]
        b, n, d = tokens.shape
        keep = int(n * (1 - mask_ratio))
        order = torch.argsort(torch.rand(b, n, device=x.device), dim=1)
        restore = torch.argsort(order, dim=1)
        kept = torch.gather(tokens, 1, order[:, :keep, None].expand(-1, -1, d))
        filled = torch.cat((kept, self.mask_token.expand(b, n - keep, -1)), dim=1)
        filled = torch.gather(filled, 1, restore[:, :, None].expand(-1, -1, d))
        mask = torch.ones(b, n, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, restore)
        return torch.cat((cls, filled), dim=1), mask

    def decode(self, x: Tensor) -> Tensor:
        """Reconstruct (B, L, p*p*C) patches from a (B, 1+L, D) encoder-width sequence."""
        # The official code normalises right after decoder_embed and again after the blocks.
        y = self.decoder_norm(self.decoder_embed(x)) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            y = blk(y)
        return self.decoder_pred(self.decoder_norm(y))[:, 1:, :]

    def recon_target(self, imgs: Tensor) -> Tensor:
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target


class PrototypeMemory(nn.Module):
    """Memory of one L2-normalised prototype per class (official ``ClusterMemory`` with
    ``CM_Mean``): logits = normalised features @ prototypes.T / ``temp``, cross-entropy
    against the labels; after each training step every class seen in the batch moves to
    ``momentum * old + (1 - momentum) * batch mean`` and is renormalised.

    The official code updates the prototypes inside ``backward``; here the update is done
    in ``forward`` (training mode, gradients on) on a copy-safe buffer, which gives the same
    numbers when each forward is followed by one backward.
    """

    def __init__(
        self, num_classes: int, dim: int, *, temp: float = 0.05, momentum: float = 0.1
    ) -> None:
        super().__init__()
        self.temp = temp
        self.momentum = momentum
        self.register_buffer("features", torch.zeros(num_classes, dim))

    def forward(self, features: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Return (loss, logits) for (B, D) features and (B,) integer targets."""
        if int(targets.max()) >= self.features.shape[0] or int(targets.min()) < 0:
            raise ModelError(
                f"srmcl: memory has {self.features.shape[0]} class prototypes but a target "
                f"is {int(targets.max())}; check the label scheme / num_classes"
            )
        feats = F.normalize(features, dim=1)
        logits = feats @ self.features.clone().t() / self.temp
        if self.training and torch.is_grad_enabled():
            self._update(feats.detach(), targets)
        return F.cross_entropy(logits, targets), logits

    @torch.no_grad()
    def _update(self, feats: Tensor, targets: Tensor) -> None:
        for c in targets.unique().tolist():
            mean = feats[targets == c].mean(dim=0)
            proto = self.features[c] * self.momentum + (1 - self.momentum) * mean
            self.features[c] = proto / proto.norm()


@dataclass
class SRMCLOutput:
    """What ``SRMCL.forward_train`` returns for ``SRMCL.loss``."""

    logits: Tensor  # (B, num_classes)
    features: Tensor  # (B, D) class token after last_blocks
    recon_loss: Tensor  # scalar, summed over the masking rounds


class SRMCL(nn.Module):
    """SRMCL (see the module docstring). Input: (B, 3, 224, 224) flow image."""

    def __init__(
        self,
        *,
        num_classes: int = 3,
        head_width: int | None = 5,
        embed_dim: int = 768,
        depth: int = 3,
        num_heads: int = 16,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 3,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 2.0,
        mask_ratio: float = 0.75,
        mask_rounds: int = 2,
        recon_weight: float = 0.5,
        memory_weight: float = 0.5,
        memory_temp: float = 0.05,
        memory_momentum: float = 0.1,
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ModelError(f"srmcl: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= mask_ratio < 1.0:
            raise ModelError(f"srmcl: mask_ratio must be in [0, 1), got {mask_ratio}")
        if mask_rounds < 1:
            raise ModelError(f"srmcl: mask_rounds must be >= 1, got {mask_rounds}")
        self.num_classes = num_classes
        self.head_width = head_width
        self.mask_ratio = mask_ratio
        self.mask_rounds = mask_rounds
        self.recon_weight = recon_weight
        self.memory_weight = memory_weight
        self.num_features = embed_dim
        self.backbone = SelfExpressionViT(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            mlp_ratio=mlp_ratio,
            norm_pix_loss=norm_pix_loss,
        )
        self.mlp_head = nn.Sequential(
            nn.LayerNorm(embed_dim), nn.Linear(embed_dim, self._head_out(num_classes))
        )
        # Built (and counted) by the official Model but never used in its forward.
        self.bn_neck = nn.BatchNorm1d(embed_dim)
        self.bn_neck.bias.requires_grad_(False)
        self.memory = PrototypeMemory(
            num_classes, embed_dim, temp=memory_temp, momentum=memory_momentum
        )
        # Official init: xavier-uniform Linears with zero bias, unit LayerNorms, everywhere.
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _head_out(self, num_classes: int) -> int:
        return num_classes if self.head_width is None else max(num_classes, self.head_width)

    def _masked_sequence(self, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Encoder output masked ``mask_rounds`` times; also each round's (tokens, mask)."""
        seq = self.backbone.encode(x)
        rounds = []
        for _ in range(self.mask_rounds):
            seq, mask = self.backbone.mask_round(seq, self.mask_ratio)
            rounds.append((seq, mask))
        return seq, rounds

    def forward_features(self, x: Tensor) -> Tensor:
        """Class token (B, D) after ``last_blocks``: masked path in training mode (when
        ``mask_ratio`` > 0), clean path in eval mode (the official test path)."""
        if self.training and self.mask_ratio > 0:
            seq, _ = self._masked_sequence(x)
        else:
            seq = self.backbone.encode(x)
        return self.backbone.last_blocks(seq)[:, 0]

    def forward_head(self, features: Tensor) -> Tensor:
        return self.mlp_head(features)[:, : self.num_classes]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: Tensor) -> SRMCLOutput:
        """The official training pass: masked rounds, reconstruction loss, logits."""
        if self.mask_ratio == 0:
            feats = self.backbone.last_blocks(self.backbone.encode(x))[:, 0]
            return SRMCLOutput(self.forward_head(feats), feats, x.new_zeros(()))
        seq, rounds = self._masked_sequence(x)
        recon = x.new_zeros(())
        if self.recon_weight:  # the decoder only serves this loss; skip it when unweighted
            target = self.backbone.recon_target(x)
            for s, m in rounds:
                recon = recon + masked_patch_mse(target, self.backbone.decode(s), m)
        feats = self.backbone.last_blocks(seq)[:, 0]
        return SRMCLOutput(self.forward_head(feats), feats, recon)

    def loss_terms(self, outputs: SRMCLOutput, targets: Tensor) -> dict[str, Tensor]:
        """The three losses and their weighted sum (key ``total``).

        Updates the memory prototypes when the model is in training mode.
        """
        cls = F.cross_entropy(outputs.logits.float(), targets)
        terms = {"cls": cls, "recon": outputs.recon_loss}
        total = cls + self.recon_weight * outputs.recon_loss
        if self.memory_weight:
            mem, _ = self.memory(outputs.features, targets)
            terms["memory"] = mem
            total = total + self.memory_weight * mem
        terms["total"] = total
        return terms

    def loss(self, outputs: SRMCLOutput, targets: Tensor) -> Tensor:
        """``CE + recon_weight * reconstruction + memory_weight * memory CE``."""
        return self.loss_terms(outputs, targets)["total"]

    def reset_classifier(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ModelError(f"srmcl: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        linear = nn.Linear(self.num_features, self._head_out(num_classes))
        self._init_weights(linear)
        self.mlp_head[1] = linear
        self.memory = PrototypeMemory(
            num_classes, self.num_features, temp=self.memory.temp, momentum=self.memory.momentum
        )



# -- the view: [flow u, flow v, magnitude] of onset→apex. The released code reads it from
# files whose scaling is not published: mefeat min-max scales each channel to [0, 1] per
# sample, then applies the ImageNet normalisation the official code applies.


def _inputs(a, landmarks, src, **options):
    uv = resize_maps(a["flow_oa"], 224, displacement=True)
    mag = resize_maps(a["mag_oa"], 224, displacement=True)
    img = minmax_uint8(np.concatenate([uv, mag], axis=1)) / 255.0
    return ((img - IMAGENET_MEAN) / IMAGENET_STD,)


VIEW = View("srmcl", ("flow_oa", "mag_oa"), _inputs)


@register(
    "srmcl",
    view=VIEW,
    input_shapes=((3, 224, 224),),
    # No training script was released and the paper's training section could not be read
    # (Bao et al., IEEE TAFFC 2024, doi:10.1109/TAFFC.2024.3397701): what the code fixes is
    # kept, every other choice is mefeat's and says so in `source`.
    recipe=Recipe(
        optimizer=Optimizer("adam", lr=1e-4),
        epochs=100,
        batch_size=None,
        # Dataloader/batchsize_balance.py: BalancedBatchSampler(n_classes, n_samples); the
        # sizes are not in the repository.
        sampler=ClassBalancedSampler(n_classes=3, n_samples=10),
        # Model/VIT_SRMCL.py:323-333: CE + 0.5 * reconstruction + 0.5 * memory contrastive
        # (the weights are the builder's recon_weight / memory_weight options).
        loss="model",
        official=Selection(
            "last", source="pakchoi-php/SRMCL: no training script, so no selection rule"
        ),
        source="pakchoi-php/SRMCL Model/VIT_SRMCL.py:312-334 (losses), "
        "Dataloader/batchsize_balance.py (sampler); optimizer, lr, epochs, sampler sizes and "
        "the constant schedule are mefeat's choices (the training script is not released and "
        "the paper's settings were not available)",
    ),
    paper="Boosting Micro-expression Recognition via Self-expression Reconstruction and "
    "Memory Contrastive Learning (venue not given by the official repository)",
    code="github.com/pakchoi-php/SRMCL (no licence file; no training script)",
    params=26_857_989,
    deviations=(
        "it starts from random weights: the official pre-trained weights "
        "(best_model/pretrain.pt) are published only on a Baidu drive, not in the repository",
        "each sample trains once: the official loader also reads offline-augmented copies of "
        "each clip (every *_img{apex}.npz, Dataloader/dataloader_casmeII.py), made by "
        "preprocessing code that is not released",
    ),
    options={
        "head_width": Option(5, low=1, kind=int, nullable=True),
        "mask_ratio": fraction(0.75),
        "mask_rounds": positive_int(2),
        "recon_weight": Option(0.5, low=0),
        "memory_weight": Option(0.5, low=0),
        "memory_temp": Option(0.05, low=0, low_open=True),
        "memory_momentum": Option(0.1, low=0, high=1),
    },
)
def srmcl(
    *,
    num_classes: int = 3,
    head_width: int | None = 5,
    mask_ratio: float = 0.75,
    mask_rounds: int = 2,
    recon_weight: float = 0.5,
    memory_weight: float = 0.5,
    memory_temp: float = 0.05,
    memory_momentum: float = 0.1,
) -> SRMCL:
    """SRMCL as the official test scripts build it (768/3/16 encoder, 512/3/16 decoder)."""
    return SRMCL(
        num_classes=num_classes,
        head_width=head_width,
        mask_ratio=mask_ratio,
        mask_rounds=mask_rounds,
        recon_weight=recon_weight,
        memory_weight=memory_weight,
        memory_temp=memory_temp,
        memory_momentum=memory_momentum,
    )

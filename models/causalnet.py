"""CausalNet: key-frame-error-robust micro-expression recognition from both motion phases.

Method: Zhang, Tang, Chen, "Rethinking Key-frame-based Micro-expression Recognition: A Robust
and Accurate Framework Against Key-frame Errors", ICCV 2025, pp. 12274-12283,
arXiv:2508.06640. Official code: github.com/tony19980810/CausalNet (``Models.py``,
``main_train.py``; MIT licence). This module follows ``Models.py`` layer for layer and keeps
its parameter names, so an official ``state_dict`` loads unchanged (checked against the
official code: identical logits).

Input: one tensor (B, 4, 3, 28, 28). Along axis 1, as the official scripts stack them:

0. onset→apex optical flow image (u, v, optical strain; file ``X .png``),
1. apex→offset optical flow image (``X_1 .png``),
2. onset→apex flow-direction map (HSV → BGR, supplement Algorithm 1; ``X_2 .png``),
3. apex→offset flow-direction map (``X_3 .png``).

Each image is the HTNet-style 2×2 tiling of four 14×14 crops of the 28×28 whole-face PNG,
raw 0..255 values in the B, G, R order that ``cv2.imread`` gives; the tiling and the reading
happen in the data view, not here. With the official fixed points the tiles are, as
``main_train.py`` cuts them (rows, cols of the PNG): top-left ``[2:16, 4:18]``, top-right
``[14:28, 3:17]``, bottom-left ``[3:17, 14:28]``, bottom-right ``[13:27, 14:28]``.

Network (names of the official modules in brackets):

* two NesT encoders (HTNet's hierarchical transformer, ``mefeat.models.htnet``): the *flow
  encoder* (``to_patch_embedding``, ``layers``) is shared by both flow images, the
  *direction encoder* (``to_patch_embedding1``, ``layers1``) by both direction maps. Each
  turns a 28×28 image into a 1×1 map of ``4·dim`` channels, which is read as four tokens of
  ``dim`` channels (the official ``reshape(b, d // 4, 2, 2)``: token ``n`` holds channels
  ``n, n+4, n+8, …``), the four positions of a 2×2 grid;
* Causal Motion Position Learning Module (``CrossAttention``): absolute positional cross
  attention between the two direction-map token sets, with the adjacency mask M (only
  regions at grid distance ≤ 1 attend to each other) and the distance penalty P; its output
  is added to the flow tokens of the same phase;
* Causal Attention Block (``cab``): spatial-temporal causal attention run forward
  (onset→apex then apex→offset) and backward (the phases swapped) with shared weights, and
  causal relation mining between the two directions' second outputs;
* head (``mlp_head``): two linear layers, no activation between them, on the 12 CAB tokens.

Quirks of the official code kept on purpose (they define the published model):

* the CMPLM depth is the *last* entry of ``block_repeats`` (a loop variable leaks into its
  constructor), so the official (3, 3, 9) gives nine CMPLM layers;
* the CMPLM scales its logits by ``dim**-0.5`` (full width), the CAB by ``dim_head**-0.5``;
* in the CMPLM the keys/values come from the *un-normalised* other stream, and the second
  stream attends to the already updated first stream;
* in the CAB the residuals of the spatial and temporal attention are taken around the
  layer-normed input, and the M/P weights are zeroed after the softmax without
  renormalising;
* with more than one CAB layer, the relation-mining output of the last layer alone is used
  (the relation-mining layers of the earlier CAB layers get no gradient).

The CMPLM and CAB width (256) and heads (8) and the head's hidden width (2048) are
constants in ``Models.py``. Here the token width is a quarter of the last encoder width
(4·dim / 4 = ``dim``, 256 in the official configuration), so that smaller configurations can
be built for tests and ablations; heads and hidden width stay 8 and 2048.

Ablation options (supplement, section 1): ``block_length`` (CAB layers; Fig. 1 studies 1, 2,
4 and 6; the official value is 1) and ``cross_attention`` (``"positional"``, the official
CMPLM, or ``"plain"``, the supplement's equations (1)-(2): the same layers, heads and scale
with M and P removed, so that the two differ in M and P only; same parameters).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from mefeat.errors import ModelError
from mefeat.options import Option, fraction, positive_int
from mefeat.recipes import (
    Optimizer,
    Recipe,
    Selection,
)
from mefeat.views import (
    View,
    direction_images,
    fallback_points,
    region_points,
    tile_regions,
    uvs_image,
)

from .nest import nest_geometry, nest_level, patch_embedding, run_levels
from .registry import register

CROSS_ATTENTION_KINDS = ("positional", "plain")

# The four tokens sit on a 2×2 grid, row-major: 0 = (0, 0), 1 = (0, 1), 2 = (1, 0), 3 = (1, 1).
_GRID = ((0, 0), (0, 1), (1, 0), (1, 1))


def region_adjacency(gamma: float) -> tuple[Tensor, Tensor]:
    """The CMPLM's adjacency mask M and distance penalty P over the 2×2 token grid.

    ``M[i, j] = 1`` when tokens i and j are at Euclidean grid distance ≤ 1 (the same or
    edge-neighbouring regions), else 0. ``P[i, j] = -(j + 1)·gamma`` where ``M[i, j] = 0``
    (the diagonal neighbours), else 0 — as ``Models.py`` builds them.

    Returns:
        (M, P), two float32 (4, 4) tensors.
    """
    mask = []
    penalty = []
    for pi in _GRID:
        row_m, row_p = [], []
        for j, pj in enumerate(_GRID):
            far = math.dist(pi, pj) > 1.0
            row_m.append(0.0 if far else 1.0)
            row_p.append(-(j + 1) * gamma if far else 0.0)
        mask.append(row_m)
        penalty.append(row_p)
    return torch.tensor(mask, dtype=torch.float32), torch.tensor(penalty, dtype=torch.float32)


def _split_heads(t: Tensor, heads: int) -> Tensor:
    # (B, N, heads·d) -> (B, heads, N, d)
    b, n, _ = t.shape
    return t.reshape(b, n, heads, -1).transpose(1, 2)


def _merge_heads(t: Tensor) -> Tensor:
    # (B, heads, N, d) -> (B, N, heads·d)
    b, _, n, _ = t.shape
    return t.transpose(1, 2).reshape(b, n, -1)


def _feed_forward(dim: int, mlp_mult: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(dim, dim * mlp_mult),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(dim * mlp_mult, dim),
        nn.Dropout(dropout),
    )


class _PositionalMixin(nn.Module):
    """Holds M and P as buffers (named as in ``Models.py``, so checkpoints carry them)."""

    def _register_adjacency(self, gamma: float) -> None:
        mask, penalty = region_adjacency(gamma)
        self.register_buffer("M_mask", mask)
        self.register_buffer("P_matrix", penalty)

    def _masked_softmax(self, logits: Tensor) -> Tensor:
        # Non-adjacent logits are zeroed, then penalised; their weights are zeroed again after
        # the softmax, so the penalty only enlarges the denominator of the adjacent weights.
        logits = logits * self.M_mask + self.P_matrix
        return logits.softmax(dim=-1) * self.M_mask


class PositionalCrossAttention(_PositionalMixin):
    """CMPLM attention (official ``AbsolutePositionalCrossAttention``).

    Queries from ``x``, keys and values from ``context`` (1×1 convolutions on tokens, i.e.
    linear layers). ``positional=False`` is the supplement's plain cross attention, eq. (2):
    the same layers and scale without M and P.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dropout: float = 0.0,
        gamma: float = 0.4,
        positional: bool = True,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.positional = positional
        # The official scale uses the full width, not the width of one head.
        self.scale = dim**-0.5
        self.gamma = gamma
        # Registered in both modes so that checkpoints of either mode load in the other.
        self._register_adjacency(gamma)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, dim * 2)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        q = _split_heads(self.to_q(x), self.heads)
        k, v = (_split_heads(t, self.heads) for t in self.to_kv(context).chunk(2, dim=-1))
        logits = q @ k.transpose(-1, -2) * self.scale
        attn = self._masked_softmax(logits) if self.positional else logits.softmax(dim=-1)
        return self.to_out(_merge_heads(attn @ v))


class MotionPositionModule(nn.Module):
    """Causal Motion Position Learning Module (official ``CrossTransformer``).

    Each layer: pre-norm cross attention of stream a on stream b, then of b on the updated a
    (one attention module shared by both directions), then a shared feed-forward block.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        mlp_mult: int,
        gamma: float,
        dropout: float = 0.0,
        positional: bool = True,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    nn.LayerNorm(dim),
                    PositionalCrossAttention(
                        dim, heads=heads, dropout=dropout, gamma=gamma, positional=positional
                    ),
                    _feed_forward(dim, mlp_mult, dropout),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 4, C) token sets of the two phases -> the two updated token sets."""
        for norm, attn, ff in self.layers:
            a_norm, b_norm = norm(a), norm(b)
            # As in Models.py: the context is not normalised, and b attends to the new a.
            a = a + attn(a_norm, b)
            b = b + attn(b_norm, a)
            a = ff(a) + a
            b = ff(b) + b
        return a, b


class SpatialTemporalCausalAttention(_PositionalMixin):
    """STCA of the Causal Attention Block (official ``SpatialTemporalCausalAttention``).

    Spatial: self attention among the four regions of one phase, with M and P. Temporal: each
    region of the later phase chooses, by a two-way softmax, between its own key/value and
    the key/value of the same region in the earlier phase.
    """

    def __init__(self, dim: int, heads: int = 8, dropout: float = 0.0, gamma: float = 0.4):
        super().__init__()
        self.heads = heads
        self.dim_head = dim // heads
        self.scale = self.dim_head**-0.5
        self.gamma = gamma
        self._register_adjacency(gamma)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, dim * 2)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))
        self.temp_to_q = nn.Linear(dim, dim)
        self.temp_to_kv = nn.Linear(dim, dim * 2)
        self.temp_to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def spatial_attention(self, x: Tensor) -> Tensor:
        q = _split_heads(self.to_q(x), self.heads)
        k, v = (_split_heads(t, self.heads) for t in self.to_kv(x).chunk(2, dim=-1))
        attn = self._masked_softmax(q @ k.transpose(-1, -2) * self.scale)
        return self.to_out(_merge_heads(attn @ v))

    def temporal_attention(self, earlier: Tensor, later: Tensor) -> Tensor:
        q = _split_heads(self.temp_to_q(later), self.heads)
        k_prev, v_prev = (
            _split_heads(t, self.heads) for t in self.temp_to_kv(earlier).chunk(2, dim=-1)
        )
        k_self, v_self = (
            _split_heads(t, self.heads) for t in self.temp_to_kv(later).chunk(2, dim=-1)
        )
        keys = torch.stack([k_prev, k_self], dim=3)  # (B, h, N, 2, d)
        values = torch.stack([v_prev, v_self], dim=3)
        weights = (torch.einsum("bhnd,bhnkd->bhnk", q, keys) * self.scale).softmax(dim=-1)
        out = torch.einsum("bhnk,bhnkd->bhnd", weights, values)
        return self.temp_to_out(_merge_heads(out))

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        x1 = self.spatial_attention(x1) + x1
        x2 = self.spatial_attention(x2) + x2
        x2 = self.temporal_attention(x1, x2) + x2
        return x1, x2


class CausalRelationMining(nn.Module):
    """CRM (official ``CausalRelationMining``): the forward pass's second-phase tokens query
    the backward pass's; values come from their sum, which is also added back before the
    output projection."""

    def __init__(self, dim: int, heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim // heads
        self.scale = self.dim_head**-0.5
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, y_for: Tensor, y_back: Tensor) -> Tensor:
        q = _split_heads(self.to_q(y_for), self.heads)
        k = _split_heads(self.to_k(y_back), self.heads)
        v = _split_heads(self.to_v(y_back + y_for), self.heads)
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        out = _merge_heads(attn @ v) + y_for + y_back
        return self.to_out(out)


class CausalAttentionBlock(nn.Module):
    """Causal Attention Block (official ``CausalAttentionBlock``), ``depth`` = block length.

    Forward direction: (onset→apex, apex→offset); backward: the two swapped. Both directions
    share the layer norm, the STCA and the feed-forward block of a layer.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        mlp_mult: int,
        gamma: float,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    nn.LayerNorm(dim),
                    SpatialTemporalCausalAttention(dim, heads=heads, dropout=dropout, gamma=gamma),
                    _feed_forward(dim, mlp_mult, dropout),
                    CausalRelationMining(dim, heads=heads, dropout=dropout),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """(B, 4, C) tokens of the two phases -> (B, 3, 4, C): relation, forward, backward."""
        y1_for, y2_for = x1, x2
        y1_back, y2_back = x2, x1
        y_long = x1  # replaced by the first layer; the block needs depth >= 1
        for norm, st_attn, ff, crm in self.layers:
            y1_for, y2_for = st_attn(norm(y1_for), norm(y2_for))
            y1_for = ff(y1_for) + y1_for
            y2_for = ff(y2_for) + y2_for
            y1_back, y2_back = st_attn(norm(y1_back), norm(y2_back))
            y1_back = ff(y1_back) + y1_back
            y2_back = ff(y2_back) + y2_back
            # Official: only the last layer's relation-mining output is kept.
            y_long = crm(y2_for, y2_back)
        return torch.stack([y_long, y1_for, y1_back], dim=1)


class CausalNet(nn.Module):
    """CausalNet (official ``CausalNet`` in ``Models.py``); see the module docstring."""

    def __init__(
        self,
        *,
        image_size: int = 28,
        patch_size: int = 7,
        num_classes: int = 3,
        dim: int = 256,
        heads: int = 3,
        num_hierarchies: int = 3,
        block_repeats: int | tuple[int, ...] = (3, 3, 9),
        mlp_mult: int = 4,
        channels: int = 3,
        dropout: float = 0.0,
        gamma: float = 0.5,
        block_length: int = 1,
        cross_attention: str = "positional",
        fusion_heads: int = 8,
        head_hidden: int = 2048,
    ) -> None:
        super().__init__()
        geom = nest_geometry("causalnet", image_size=image_size, patch_size=patch_size,
                             num_hierarchies=num_hierarchies, dim=dim, heads=heads,
                             block_repeats=block_repeats)
        block_repeats = geom.depths
        if geom.fmap_size != geom.blocks:
            # The encoders must end on a 1×1 map, whose channels become the 2×2 region grid.
            raise ModelError(
                f"causalnet: {image_size}/{patch_size} gives a {geom.fmap_size}×"
                f"{geom.fmap_size} token map; {num_hierarchies} hierarchy levels need it to be "
                f"{geom.blocks}×{geom.blocks} (the official 28/7 with 3 levels)"
            )
        if block_length < 1:
            raise ModelError(f"causalnet: block_length must be >= 1, got {block_length}")
        if cross_attention not in CROSS_ATTENTION_KINDS:
            raise ModelError(
                f"causalnet: cross_attention must be one of {CROSS_ATTENTION_KINDS}, "
                f"got {cross_attention!r}"
            )
        layer_dims = geom.dims
        if layer_dims[-1] % 4:
            raise ModelError(
                f"causalnet: the last encoder width {layer_dims[-1]} must split "
                "into 4 region tokens"
            )
        self.fusion_dim = layer_dims[-1] // 4
        if self.fusion_dim % fusion_heads:
            raise ModelError(
                f"causalnet: token width {self.fusion_dim} is not a multiple of "
                f"fusion_heads {fusion_heads}"
            )
        self.cross_attention = cross_attention
        self.block_length = block_length

        # Flow encoder (to_patch_embedding, layers), shared by the onset→apex and apex→offset
        # flow images; direction encoder (to_patch_embedding1, layers1), shared by the two
        # direction maps. Built in the official order (levels interleaved), so that the same
        # seed gives the same initial weights as Models.py.
        self.to_patch_embedding = patch_embedding(patch_size, channels, dim)
        self.to_patch_embedding1 = patch_embedding(patch_size, channels, dim)
        self.layers = nn.ModuleList()
        self.layers1 = nn.ModuleList()
        for i in range(num_hierarchies):
            self.layers.append(nest_level(geom, i, mlp_mult, dropout))
            self.layers1.append(nest_level(geom, i, mlp_mult, dropout))

        self.CrossAttention = MotionPositionModule(
            self.fusion_dim,
            block_repeats[-1],  # official: the last level's depth leaks into the CMPLM
            fusion_heads,
            mlp_mult,
            gamma,
            dropout,
            positional=cross_attention == "positional",
        )
        self.cab = CausalAttentionBlock(
            dim=self.fusion_dim,
            depth=block_length,
            heads=fusion_heads,
            mlp_mult=mlp_mult,
            gamma=gamma,
            dropout=dropout,
        )
        self.num_features = head_hidden
        self.mlp_head = nn.Sequential(
            nn.Linear(3 * 4 * self.fusion_dim, head_hidden),
            nn.Linear(head_hidden, num_classes),
        )

    @staticmethod
    def _encode(x: Tensor, embed: nn.Module, levels: nn.ModuleList) -> Tensor:
        """(B, 3, 28, 28) image -> (B, 4, C) region tokens."""
        x = run_levels(embed(x), levels)
        # (B, 4C, 1, 1) read as (B, C, 2, 2), tokens in row-major grid order.
        b = x.shape[0]
        return x.reshape(b, -1, 4).transpose(1, 2)

    def forward_tokens(self, x: Tensor) -> Tensor:
        """(B, 4, 3, 28, 28) -> the CAB's (B, 3, 4, C) tokens (relation, forward, backward)."""
        if x.dim() != 5 or x.shape[1] != 4:
            raise ModelError(
                "causalnet expects (batch, 4, 3, H, W): onset→apex flow, apex→offset flow, "
                f"onset→apex direction, apex→offset direction; got {tuple(x.shape)}"
            )
        # Both phases through each shared encoder in one batch (the official code makes two
        # calls): the encoder treats every sample on its own, so this is the same function,
        # with one weight gradient instead of two summed (fewer, larger matrix products).
        b = x.shape[0]
        flow = self._encode(x[:, :2].flatten(0, 1), self.to_patch_embedding, self.layers)
        dirs = self._encode(x[:, 2:].flatten(0, 1), self.to_patch_embedding1, self.layers1)
        flow_oa, flow_ao = flow.reshape(b, 2, *flow.shape[1:]).unbind(1)
        dir_oa, dir_ao = dirs.reshape(b, 2, *dirs.shape[1:]).unbind(1)
        dir_oa, dir_ao = self.CrossAttention(dir_oa, dir_ao)
        return self.cab(flow_oa + dir_oa, flow_ao + dir_ao)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 4, 3, 28, 28) -> (B, 2048): the head's hidden layer (input of the classifier)."""
        return self.mlp_head[0](self.forward_tokens(x).flatten(1))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.mlp_head[1](features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.mlp_head[1] = nn.Linear(self.num_features, num_classes)



# -- the view: four tiled images per sample (module docstring)


def _inputs(a, landmarks, src, crops="paper"):
    images = (uvs_image(a["flow_oa"], a["strain_oa"]), uvs_image(a["flow_ao"], a["strain_ao"]),
              direction_images(a["flow_oa"]), direction_images(a["flow_ao"]))
    if crops == "official":  # main_train.py's: transposed crops at HTNet's fixed points
        pts, official = fallback_points(len(images[0])), True
    else:
        pts, official = region_points(landmarks, src), False
    return (np.stack([tile_regions(x, pts, official=official) for x in images], axis=1),)


def _official_inputs(a, landmarks, crops="paper"):
    # The official code cuts every image at HTNet's fixed points (no per-sample landmarks).
    pts = fallback_points(len(a["image"]))
    names = ("image", "image_ao", "dir_oa", "dir_ao")
    return (np.stack([tile_regions(a[k].astype(np.float32), pts, official=True)
                      for k in names], axis=1),)


# ``crops``: "paper" (the default) around the onset frame's landmarks; "official" as the
# released main_train.py cuts them, at fixed points (on mefeat's own flows).
VIEW = View("causalnet", ("flow_oa", "strain_oa", "flow_ao", "strain_ao"), _inputs,
            official=_official_inputs,
            official_arrays=("image", "image_ao", "dir_oa", "dir_ao"), landmarks=True,
            options={"crops": ("paper", "official")})


@register(
    "causalnet",
    view=VIEW,
    input_shapes=((4, 3, 28, 28),),
    recipe=Recipe(
        optimizer=Optimizer("adam", lr=5e-5),  # main_train.py:141, :277
        epochs=200,  # :143
        # 256*4 (:142): larger than any MEGC 2019 LOSO training set, i.e. one full-batch step.
        batch_size=1024,
        shuffle=False,  # DataLoader(dataset_train, batch_size) (:286)
        seed=2025,  # :135-139, once for the run
        official=Selection(
            "per-fold", metric="acc", ties="earliest", stop=(">=", 1.0),
            counting="nonzero-folds",
            source="tony19980810/CausalNet main_train.py:347 (best < val_acc: ties keep the "
            "earlier epoch), :356-363 (val_acc >= 1 ends the fold after recording it; a "
            "fold whose accuracy never rose above 0 records an empty matrix), "
            "calculate_all_results.py (pools the recorded matrices)",
        ),
        source="tony19980810/CausalNet main_train.py:135-143, :150, :277, :286",
    ),
    paper=(
        "Zhang, Tang, Chen, Rethinking Key-frame-based Micro-expression Recognition: A Robust "
        "and Accurate Framework Against Key-frame Errors, ICCV 2025, pp. 12274-12283, "
        "arXiv:2508.06640"
    ),
    code="github.com/tony19980810/CausalNet (Models.py, main_train.py; MIT licence)",
    params=276_590_089,
    options={
        "depths": Option((3, 3, 9), low=1),
        "dim": Option(256, low=4),
        "heads": positive_int(3),
        "gamma": Option(0.5, low=0),
        "block_length": positive_int(1),  # the supplement's Fig. 1 studies 1, 2, 4, 6
        "cross_attention": Option("positional", choices=("positional", "plain")),
        "dropout": fraction(0.0),
    },
)
def causalnet(
    *,
    num_classes: int = 3,
    depths: tuple[int, ...] = (3, 3, 9),
    dim: int = 256,
    heads: int = 3,
    gamma: float = 0.5,
    block_length: int = 1,
    cross_attention: str = "positional",
    dropout: float = 0.0,
) -> CausalNet:
    """CausalNet in the official configuration (28×28 inputs, 7×7 patches, 3 levels)."""
    return CausalNet(
        num_classes=num_classes,
        dim=dim,
        heads=heads,
        num_hierarchies=len(depths),
        block_repeats=tuple(depths),
        gamma=gamma,
        block_length=block_length,
        cross_attention=cross_attention,
        dropout=dropout,
    )

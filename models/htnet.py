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

import numpy as np
from torch import Tensor, nn

from mefeat.options import Option, fraction, positive_int
from mefeat.recipes import (
    Optimizer,
    Recipe,
    Selection,
)
from mefeat.views import (
    View,
    apex_points,
    fallback_points,
    region_points,
    tile_regions,
    uvs_image,
)

from .nest import (
    ChannelLayerNorm,
    GlobalMean,
    nest_geometry,
    nest_level,
    patch_embedding,
    run_levels,
)
from .registry import register


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
        geom = nest_geometry("htnet", image_size=image_size, patch_size=patch_size,
                             num_hierarchies=num_hierarchies, dim=dim, heads=heads,
                             block_repeats=block_repeats)
        self.num_features = geom.dims[-1]
        self.to_patch_embedding = patch_embedding(patch_size, channels, geom.dims[0])
        self.layers = nn.ModuleList(nest_level(geom, i, mlp_mult, dropout)
                                    for i in range(num_hierarchies))
        self.mlp_head = nn.Sequential(
            ChannelLayerNorm(self.num_features),
            GlobalMean(),
            nn.Linear(self.num_features, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, 28, 28) tiled flow image -> (B, 4·dim) normalised, mean-pooled features."""
        x = run_levels(self.to_patch_embedding(x), self.layers)
        return self.mlp_head[1](self.mlp_head[0](x))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.mlp_head[2](features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.mlp_head[2] = nn.Linear(self.num_features, num_classes)



# -- the view: the "u_v_os" image (as STSTNet's), four 14-px crops around the eyes and mouth
# corners tiled 2×2


def _inputs(a, landmarks, src, crops="paper"):
    image = uvs_image(a["flow_oa"], a["strain_oa"])
    if crops == "official":  # main_HTNet.py's: transposed crops at the apex frame's points
        return (tile_regions(image, apex_points(a["clips"], a["keyframes"], src),
                             official=True),)
    return (tile_regions(image, region_points(landmarks, src)),)


def _official_inputs(a, landmarks, crops="paper"):
    # The imported official images: always cut as main_HTNet.py cuts them.
    image = a["image"].astype(np.float32)
    pts = fallback_points(len(image)) if landmarks is None else landmarks
    return (tile_regions(image, pts, official=True),)


# ``crops``: "paper" (the default) cuts the geometry the paper describes, around the onset
# frame's landmarks; "official" as the released main_HTNet.py does (on mefeat's own flows).
VIEW = View("htnet", ("flow_oa", "strain_oa", "keyframes"), _inputs,
            official=_official_inputs, official_arrays=("image",), landmarks=True,
            official_points=True, frames=True, options={"crops": ("paper", "official")})


@register(
    "htnet",
    view=VIEW,
    input_shapes=((3, 28, 28),),
    recipe=Recipe(
        optimizer=Optimizer("adam", lr=5e-5),  # main_HTNet.py:162, :240
        epochs=800,  # :164
        batch_size=256,  # :163
        shuffle=False,  # DataLoader(dataset_train, batch_size) (:244)
        official=Selection(
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
    options={"depths": Option((2, 2, 10), low=1), "dim": Option(256, low=4),
             "heads": positive_int(3), "dropout": fraction(0.0)},
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

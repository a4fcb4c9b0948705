"""The training recipe and input views of the OFF-TANet repository, shared by the four models
it trains.

ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet (one ``master`` branch) trains Off-ApexNet,
Dual-Inception, Micro-attention and OFF-TANet with one loop (``train.py``): a shuffled
DataLoader (L22), plain cross-entropy (L27), the scheduler stepped once per epoch after the
evaluation (L48), the held-out subject evaluated at epochs 0, N, 2N... (0-based), and the
reported epoch the one of best mean over folds of per-fold macro UAR (L65, L82-84). Each
model's block of ``train_arg.py`` (picked by ``model_name``, L13) sets the rest.
"""

from __future__ import annotations

import cv2
import numpy as np

from mefeat.recipes import Optimizer, Recipe, Selection, StepLR
from mefeat.views import InputProfile, View, offtanet_strain, resize_maps

REPO = "ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet"


def offtanet_repository_recipe(optimizer: Optimizer, *, epochs: int, every: int,
                               batch_size: int = 64, schedule: StepLR | None = None,
                               lines: str) -> Recipe:
    """The recipe of one model's ``train_arg.py`` block (``lines``)."""
    return Recipe(
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        schedule=schedule,
        official=Selection(
            "all-folds", metric="uar", ties="set-order", every=every, counting="fold-mean",
            source=f"{REPO} train.py:65 (per-fold macro UAR), :82-84 (the epoch of best mean "
            f"over folds), :85-87 (the figure: mean over folds of per-fold UAR, and of UF1 at "
            f"the same epoch, e2 being sorted by mean UAR too), train_arg.py:{lines}",
        ),
        source=f"{REPO} train_arg.py:{lines}, train.py:21-48",
    )


# -- the views -----------------------------------------------------------------------------


def uv_view(name: str, size: int = 28) -> View:
    """Off-ApexNet's and Dual-Inception's input: the onset→apex flow (u, v) at ``size``."""

    def inputs(a, landmarks, src, **options):
        return (resize_maps(a["flow_oa"], size, displacement=True),)

    def official(a, landmarks, **options):
        # Official PNG channels (BGR): 2 = u, 1 = v, min-max scaled; brought to 0..1.
        img = a["image"].astype(np.float32) / 255.0
        return (np.ascontiguousarray(img[:, [2, 1]]),)

    return View(name, ("flow_oa",), inputs, official=official)


def uvs_view(name: str, size: int) -> View:
    """OFF-TANet's and Micro-attention's input: (u, v, strain) at ``size``; the view option
    ``strain=offtanet`` takes the repository's Sobel strain instead of the optical strain."""

    def inputs(a, landmarks, src, strain="stored"):
        uv = resize_maps(a["flow_oa"], size, displacement=True)
        os_ = resize_maps(a["strain_oa"], size) if strain == "stored" else offtanet_strain(uv)
        return (np.concatenate([uv, os_], axis=1),)

    def official(a, landmarks, strain="stored"):
        # The official PNG (BGR = strain, v, u, each min-max scaled to 0..255) as
        # (u, v, strain) in 0..1, enlarged with bicubic interpolation (the OFF-TANet
        # repository resizes its frames with INTER_CUBIC before computing the flow).
        img = a["image"].astype(np.float32)[:, [2, 1, 0]] / 255.0
        big = np.stack([np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC)
                                  for c in im]) for im in img]).astype(np.float32)
        if strain == "offtanet":
            big[:, 2:3] = offtanet_strain(big[:, :2])
        return (big,)

    return View(name, ("flow_oa", "strain_oa"), inputs, official=official,
                options={"strain": ("stored", "offtanet")})


def repository_inputs(size: int, *, strain: bool) -> InputProfile:
    """What the repository's ``data.py`` feeds a model of input side ``size``: OpenCV's Dual
    TV-L1 (default parameters) from onset to apex on the frames resized to ``size`` with
    INTER_CUBIC, the raw signed displacements, and (``strain``) its 3×3 Sobel strain."""
    return InputProfile(
        source=f"{REPO} data.py:50-71 (frames resized with INTER_CUBIC, TV-L1 at that size, "
               "raw displacements, Sobel strain), train_arg.py img_sz",
        flow_size=size, view_options={"strain": "offtanet"} if strain else {})

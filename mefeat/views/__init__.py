"""Views: what each model eats, derived from a store variant on read, never stored twice.

A :class:`View` turns a variant's arrays (sample axis first) into a model's input tensors.
Each model declares its own view beside its builder and recipe (``models/``); this package
holds the shared building blocks (resizes, the official image's channels and scaling,
region tiling, direction images, ImageNet normalisation) and :func:`build_inputs`; reading a
view from a store is :mod:`mefeat.views.data`. A view knows two sources:

* mefeat's own extraction (flows at the stored size, e.g. 224 px): flows are *resized* to
  the model's size (displacements scaled with the image, so they stay in pixels of the
  smaller image), never recomputed on tiny images;
* the official 28×28 PNG features imported with ``mefeat import-features`` (variant
  attribute ``format`` = ``official-htnet`` or ``official-causalnet``): used as the
  official code reads them.

The official STSTNet/HTNet image ("u_v_os") holds, as OpenCV reads it (BGR), channel 0 =
optical strain, 1 = v, 2 = u, each min-max scaled to 0..255 per sample and fed to the model
as raw floats 0..255. ``uvs_image`` rebuilds that image from our own flows, quantised the
same way, so both sources give the model the same kind of input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from mefeat.errors import MefeatError
from mefeat.flow import direction_map

# -- building blocks ---------------------------------------------------------------------


def resize_maps(maps: np.ndarray, size: int, *, displacement: bool = False) -> np.ndarray:
    """Resize (N, C, H, W) maps to (N, C, size, size) by area averaging.

    ``displacement=True`` also scales the values by size/H, for flow components measured
    in pixels.
    """
    n, c, h, w = maps.shape
    if (h, w) == (size, size):
        return maps.astype(np.float32, copy=False)
    out = np.empty((n, c, size, size), np.float32)
    for i in range(n):
        for j in range(c):
            out[i, j] = cv2.resize(maps[i, j].astype(np.float32), (size, size),
                                   interpolation=cv2.INTER_AREA)
    if displacement:
        out *= size / h
    return out


def minmax_uint8(maps: np.ndarray) -> np.ndarray:
    """Per sample and channel, scale to 0..255 and round, as the official PNGs are.

    A constant channel becomes 0.
    """
    lo = maps.min(axis=(2, 3), keepdims=True)
    hi = maps.max(axis=(2, 3), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.rint((maps - lo) / span * 255.0).astype(np.float32)


def uvs_image(flow: np.ndarray, strain: np.ndarray, size: int = 28) -> np.ndarray:
    """The official "u_v_os" image from our flows: (N, 3, size, size), BGR = (os, v, u)."""
    uv = resize_maps(flow, size, displacement=True)
    os_ = resize_maps(strain, size)
    return minmax_uint8(np.concatenate([os_, uv[:, 1:2], uv[:, 0:1]], axis=1))


# HTNet's fallback points (28-px image) where its face detector finds no face:
# left eye, right eye, mouth left, mouth right (x, y).
HTNET_FALLBACK_POINTS = np.array(
    [[9.53, 11.06], [21.40, 10.92], [10.26, 22.12], [20.58, 22.26]], np.float32
)


def region_points(landmarks: np.ndarray, src_size: int, size: int = 28) -> np.ndarray:
    """(N, 4, 2) points (eye centres, mouth corners) of 68-point landmarks, at ``size``."""
    lm = landmarks.astype(np.float32) * (size / src_size)
    return np.stack([lm[:, 36:42].mean(1), lm[:, 42:48].mean(1), lm[:, 48], lm[:, 54]], 1)


def tile_regions(images: np.ndarray, points: np.ndarray, *, half: int = 7,
                 official: bool = False) -> np.ndarray:
    """HTNet/CausalNet region tiling: 2·half-px crops around four points, into one image.

    Points are (x, y), clamped to [half, size-half] and truncated to ints as in the
    official code; the output is [left eye | right eye] over [mouth left | mouth right].

    The released HTNet and CausalNet code index rows by x and columns by y, which
    transposes every crop centre (in face terms its layout becomes [left eye | left mouth]
    over [right eye | right mouth], boxes 2 px off). ``official=True`` reproduces that, as
    the imported official features need to give the published numbers; the default crops
    the geometry the papers describe.

    Args:
        images: (N, C, S, S); points: (N, 4, 2) as (x, y) in the same pixels.
    """
    n, c, s, _ = images.shape
    pts = np.clip(points, half, s - half).astype(int)
    out = np.empty((n, c, 4 * half, 4 * half), images.dtype)
    corners = ((0, 0), (0, 2 * half), (2 * half, 0), (2 * half, 2 * half))
    for i in range(n):
        for (x, y), (r, q) in zip(pts[i], corners, strict=True):
            row, col = (x, y) if official else (y, x)
            out[i, :, r:r + 2 * half, q:q + 2 * half] = images[i, :, row - half:row + half,
                                                               col - half:col + half]
    return out


def fallback_points(n: int) -> np.ndarray:
    """HTNet's fixed points for ``n`` samples, (n, 4, 2)."""
    return np.broadcast_to(HTNET_FALLBACK_POINTS, (n, 4, 2)).copy()


def apex_points(clips, keyframes: np.ndarray, src_size: int, size: int = 28) -> np.ndarray:
    """(N, 4, 2) region points of each clip's apex frame, at ``size``: the eye centres and
    mouth corners of dlib's 68 landmarks on the aligned apex frame, the points of MTCNN's
    five that ``main_HTNet.py`` crops around (it runs MTCNN on the apex image), or HTNet's
    fallback points where no single face is found there (as it falls back when MTCNN finds
    none). ``clips(i)``: sample i's aligned frames (T, S, S) at ``src_size``."""
    from mefeat.errors import FaceNotFoundError

    aligner = _aligner()
    out = fallback_points(len(keyframes))
    for i, (_, apex, _) in enumerate(np.asarray(keyframes)):
        try:
            landmarks = aligner.landmarks(clips(i)[int(apex)], where=f"sample {i} (apex)")
        except FaceNotFoundError:
            continue
        out[i] = region_points(landmarks[None], src_size, size)[0]
    return out


@functools.lru_cache(maxsize=1)
def _aligner():
    from mefeat.face import FaceAligner

    return FaceAligner()


# -- the views ---------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """A named recipe from variant arrays to model inputs.

    ``arrays`` are the variant arrays it reads from mefeat's own extraction;
    ``build(arrays, landmarks, size)`` makes the inputs from them, ``official(arrays,
    points)`` from an imported official variant (``None``: not supported); with
    ``official_points`` it crops at the variant's per-sample ``points`` and falls back to
    fixed points (said in a warning) where the variant has none.
    A view with ``frames=True`` (models that eat frames, not flow) also receives, under
    ``arrays["clips"]``, a function ``clip(i) -> (T, S, S) uint8`` giving sample i's
    aligned frames, and ``arrays["keyframes"]`` (N, 3); with ``colour=True`` the frames of a
    sample whose colour frames the store keeps are (T, S, S, 3) RGB (the others grayscale,
    as a colour reader of a grayscale file sees three equal channels).

    ``options`` are the view's named choices, ``{name: (default, other, ...)}``; the chosen
    values reach ``build`` and ``official`` as keyword arguments. ``jitter`` (frames views
    only) turns a (B, K, S, S) uint8 tensor of the key frames ``jitter_keys`` into the
    model's input tensors with the view's own arithmetic (key-frame jitter in training).
    """

    name: str
    arrays: tuple[str, ...]
    build: Callable[..., tuple[np.ndarray, ...]]
    official: Callable[..., tuple[np.ndarray, ...]] | None = None
    official_arrays: tuple[str, ...] = ("image",)
    frames: bool = False
    landmarks: bool = False  # reads the 68 onset landmarks (region tiling)
    official_points: bool = False  # official: crops at the variant's per-sample points
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    jitter: Callable | None = None
    jitter_keys: tuple[str, ...] = ()
    size: int | None = None  # side of the model input images (frames views)
    colour: bool = False  # frames views: reads the colour frames where the store keeps them

    def resolve_options(self, given: dict[str, str] | None) -> dict[str, str]:
        """The view's options with ``given`` applied; an unknown name or value is refused."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise MefeatError(f"view {self.name!r} has no option(s) {unknown}; its options: "
                              f"{ {k: list(v) for k, v in self.options.items()} or 'none'}")
        out = {}
        for name, values in self.options.items():
            value = given.get(name, values[0])
            if value not in values:
                raise MefeatError(f"view {self.name!r}: option {name}={value!r} is not one of "
                                  f"{list(values)}")
            out[name] = value
        return out


# ImageNet statistics, which MMNet, SRMCL and EDMDBN normalise their inputs with.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def imagenet_rgb(frame: np.ndarray, size: int = 224) -> np.ndarray:
    """A uint8 frame, grayscale (H, W) (repeated over the three channels) or RGB (H, W, 3),
    as a normalised 3-channel (3, size, size) float32."""
    if frame.shape[:2] != (size, size):
        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    if frame.ndim == 2:
        rgb = np.repeat(frame[None].astype(np.float32) / 255.0, 3, axis=0)
    else:
        rgb = frame.transpose(2, 0, 1).astype(np.float32) / 255.0
    return (rgb - IMAGENET_MEAN) / IMAGENET_STD




def build_inputs(view: View, arrays: dict, landmarks: np.ndarray, *, size: int,
                 frame_size: int, options: dict | None = None) -> tuple[np.ndarray, ...]:
    """A view's inputs from a variant's arrays (maps of ``size`` px) and the samples' 68
    onset landmarks in the aligned frames' pixels (``frame_size``): the landmarks are
    brought to the maps' pixels first (a variant made with ``extract --flow-size``)."""
    lm = np.asarray(landmarks, np.float32) * (size / frame_size)
    return view.build(arrays, lm, size, **(options or {}))


def direction_images(flow: np.ndarray, size: int = 28) -> np.ndarray:
    """Algorithm 1's direction maps of the flows resized to ``size``, (N, 3, size, size) BGR."""
    small = resize_maps(flow, size, displacement=True)
    return np.stack([direction_map(f.transpose(1, 2, 0)).transpose(2, 0, 1)
                     for f in small]).astype(np.float32)


def offtanet_strain(flow: np.ndarray) -> np.ndarray:
    """The optical strain of the OFF-TANet repository's ``data.py`` (L65-71), (N, 1, H, W).

    3x3 Sobel derivatives (unnormalised: 8x a per-pixel slope) and
    ``sqrt(ux² + uy² + 0.5 (vx + uy)²)``, with ``uy`` where the strain tensor has ``vy``.
    It is not the optical strain (:func:`mefeat.flow.optical_strain` is); offered to
    reproduce that repository's inputs (view option ``strain=offtanet``).
    """
    out = np.empty((flow.shape[0], 1) + flow.shape[2:], np.float32)
    for i, (u, v) in enumerate(flow.astype(np.float32)):
        ux = cv2.Sobel(u, cv2.CV_32F, 1, 0)
        uy = cv2.Sobel(u, cv2.CV_32F, 0, 1)
        vx = cv2.Sobel(v, cv2.CV_32F, 1, 0)
        out[i, 0] = np.sqrt(ux * ux + uy * uy + 0.5 * (vx + uy) * (vx + uy))
    return out


@dataclass(frozen=True)
class InputProfile:
    """The inputs a model's official code makes, as mefeat makes them: the store variant
    (ground-truth key frames, TV-L1 on the aligned frames resized to ``flow_size`` first, or at
    their own size) and the view's options. ``source``: where the official code says so.
    ``--selection official`` trains on them (``mefeat.run.train``)."""

    source: str
    flow_size: int | None = None
    view_options: dict[str, str] = field(default_factory=dict)

    def variants(self, align_size: int | None) -> list[str]:
        """The variant names that hold these inputs (at the aligned size: ``gt`` too)."""
        from mefeat.store import variant_name

        names = [variant_name("gt", "tvl1", self.flow_size)]
        if self.flow_size is None or self.flow_size == align_size:
            names.append("gt")
        return names

    def extract_command(self, store: str) -> str:
        size = f" --flow-size {self.flow_size}" if self.flow_size else ""
        return f"mefeat extract --store {store} --keyframes gt{size}"

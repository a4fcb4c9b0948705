"""``predict``: classify the micro-expression of a raw clip or video with a trained run.

A run directory is what ``mefeat train`` writes: ``checkpoints/run.json`` (the model, its
view and options, the classes, how the store's variant was made: key-frame policy, flow
method, parameters and size, the face alignment) and one safetensors checkpoint per
held-out subject. ``predict`` makes a clip's inputs the way ``extract`` and
:func:`mefeat.views.data.load_view` made the training inputs:

1. frames: a folder of images, sorted by the number in their names as the dataset readers
   sort them, read in grayscale (``mefeat.frames.read_clip``); or a video file, decoded
   with ``cv2.VideoCapture`` and converted with ``cv2.COLOR_BGR2GRAY``;
2. the face found on the onset frame and every frame aligned with that one transform
   (:class:`mefeat.face.FaceAligner` with the run's :class:`~mefeat.face.AlignConfig`);
3. key frames: a clip of at most ``window`` frames is one expression, its first frame the
   onset and its last the offset. A raw clip has no annotated apex, so the apex is always
   spotted (:func:`mefeat.keyframes.spot_apex`): with the run's method when the run was
   trained on a ``spot:METHOD`` variant, else with ``flowpeak``;
4. the variant's flow maps (:func:`mefeat.flow.features.clip_features` with its flow
   method, parameters and size), cast to the store's dtypes, and the model's view built
   from them as for a store of one sample;
5. the class probabilities: the mean of the folds' softmax outputs (or one fold's).

A longer video is searched for expressions (:mod:`mefeat.keyframes.intervals`): windows of
``window`` frames (default 64), ``window // 2`` apart, each aligned on its own first
frame; in each, the flowpeak motion score against the window's first frame (mean
drift-removed Farneback magnitude inside the face, in pixels of the 112-px face) marks an
interval where its peak exceeds ``threshold`` (default 0.1) and it falls back below half
the threshold on both sides (then out to the foot of the curve); overlapping intervals are
merged, and each is then aligned on its own onset, its apex spotted and classified as a
clip. The defaults: an expression is found whole when it is at most ``window // 2``
frames long; 64 frames hold a demo expression (22-34 frames) with rest frames around it,
or 0.3 s of 100-fps video (a micro-expression lasts up to 0.5 s: use ``window`` 200 for
200-fps recordings such as CASME II and SAMM). The demo's expressions peak at a score of
0.35-0.7 and its still frames score 0.015, so a threshold of 0.1 keeps clear of both. The
whole clip is held in memory as grayscale frames.

A run trained on imported official features (``official_format`` in run.json) cannot
predict: those are the published 28x28 images, not maps mefeat computes from frames.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mefeat.datasets._base import IMAGE_SUFFIXES, list_frames
from mefeat.errors import FaceNotFoundError, MefeatError, ModelError, SampleError
from mefeat.face import AlignConfig, FaceAligner
from mefeat.flow.features import clip_features
from mefeat.frames import read_clip
from mefeat.keyframes import SPOT_METHODS, spot_apex
from mefeat.keyframes.intervals import (
    Interval,
    curve_intervals,
    merge_intervals,
    motion_curve,
    window_starts,
)
from mefeat.report.predict import draw_prediction
from mefeat.store import cast_maps
from mefeat.views import build_inputs, get_view

DEFAULT_WINDOW = 64
DEFAULT_THRESHOLD = 0.1
DEFAULT_SPOT = "flowpeak"


class PredictError(MefeatError):
    """A clip or a run directory that ``predict`` cannot use."""


# -- the run -----------------------------------------------------------------------------


@dataclass
class Run:
    """A trained run read back from its directory, ready to classify view inputs."""

    path: Path
    info: dict[str, Any]
    classes: tuple[str, ...]
    folds: list[tuple[str, Any]]  # (held-out subject, model in eval mode)
    device: str = "cpu"

    @property
    def model(self) -> str:
        return self.info["model"]

    @property
    def align(self) -> AlignConfig:
        return AlignConfig(**self.info["align"])

    @property
    def flow(self) -> dict[str, Any]:
        return self.info["variant_settings"]["flow"]

    @property
    def spot_method(self) -> str:
        kf = self.info["variant_settings"].get("keyframes", {})
        if kf.get("policy") == "spot" and kf.get("method") in SPOT_METHODS:
            return kf["method"]
        return DEFAULT_SPOT

    @property
    def spot_note(self) -> str:
        kf = self.info["variant_settings"].get("keyframes", {})
        variant = self.info.get("variant", "?")
        if kf.get("policy") == "spot" and kf.get("method") == self.spot_method:
            return f"apex spotted by {self.spot_method}, as in the run's variant {variant!r}"
        return (f"apex spotted by {self.spot_method}: the run's variant {variant!r} took its "
                f"key frames from the annotation (policy {kf.get('policy', '?')}), which a "
                "raw clip does not have")

    def probabilities(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        """Mean softmax over the folds of (N, ...) view inputs: (N, C) float64."""
        import torch

        total = None
        with torch.no_grad():
            xs = tuple(torch.from_numpy(x).to(self.device) for x in inputs)
            for _, net in self.folds:
                logits = net(xs[0] if len(xs) == 1 else xs)
                p = torch.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float64)
                total = p if total is None else total + p
        return total / len(self.folds)


_NEEDED = ("model", "view", "classes", "variant_settings", "variant_size", "align")


def load_run(run_dir: str | os.PathLike, *, fold: str | None = None, device: str = "cpu",
             labels: str | None = None) -> Run:
    """Read ``run_dir/checkpoints/run.json`` and its fold checkpoints (or ``fold``'s only).

    ``labels``: a label scheme the run must have been trained on (its classes are compared).
    Raises :class:`PredictError` for a directory that is not a usable run.
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoints"
    meta_path = ckpt / "run.json"
    if not meta_path.is_file():
        raise PredictError(
            f"{run_dir}: no checkpoints/run.json; RUN_DIR must be the --out folder of "
            "`mefeat train` (which writes checkpoints/run.json and one checkpoint per fold)"
        )
    try:
        info = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PredictError(f"{meta_path}: not valid JSON ({exc}); restore it or train "
                           "again") from None
    if not isinstance(info, dict):
        raise PredictError(f"{meta_path}: expected a JSON object; restore it or train again")
    if info.get("official_format"):
        raise PredictError(
            f"{run_dir}: the run was trained on imported official features "
            f"({info['official_format']}, variant {info.get('variant')!r}): those are the "
            "published 28x28 images, which mefeat cannot compute from raw frames, so this "
            "run cannot predict on a clip; train on a variant made by `mefeat extract` "
            "(e.g. --variant gt of an extracted store) to predict"
        )
    missing = [k for k in _NEEDED if info.get(k) is None]
    if missing:
        raise PredictError(
            f"{meta_path}: lacks {missing} (how the run's features were made); it was written "
            "by an older mefeat: train the run again to predict with it"
        )
    classes = tuple(str(c) for c in info["classes"])
    if not classes:
        raise PredictError(f"{meta_path}: the run has no class names (its store had no label "
                           "scheme); extract with --labels SCHEME and train again")
    if int(info.get("num_classes", len(classes))) != len(classes):
        raise PredictError(f"{meta_path}: num_classes {info['num_classes']} but "
                           f"{len(classes)} classes {list(classes)}; restore it or train again")
    if labels is not None:
        from mefeat.datasets import get_scheme

        want = tuple(get_scheme(labels).classes)
        if want != classes:
            raise PredictError(
                f"{run_dir}: the run was trained on classes {list(classes)}, not on label "
                f"scheme {labels}'s {list(want)}; use a run trained with --labels {labels}"
            )
    files = _fold_files(ckpt)
    if fold is not None:
        files = _pick_fold(files, fold, ckpt)
    folds = [(subject, _load_fold(path, info, classes, meta_path, device))
             for subject, path in files]
    return Run(path=run_dir, info=info, classes=classes, folds=folds, device=device)


def _fold_files(ckpt: Path) -> list[tuple[str, Path]]:
    from mefeat.train.checkpoints import read_checkpoint_metadata

    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise PredictError(f"{ckpt}: no fold checkpoints (*.safetensors); train again with "
                           "checkpoints (`mefeat train` saves the last run's folds)")
    out = []
    for path in files:
        subject = read_checkpoint_metadata(path).get("subject", path.stem)
        out.append((str(subject), path))
    return out


def _pick_fold(files: list[tuple[str, Path]], fold: str, ckpt: Path) -> list[tuple[str, Path]]:
    exact = [(s, p) for s, p in files if fold in (s, p.stem)]
    found = exact or [(s, p) for s, p in files if fold == s.partition("/")[2]]
    if len(found) == 1:
        return found
    if found:
        raise PredictError(f"{ckpt}: --fold {fold!r} is ambiguous: {[s for s, _ in found]}; "
                           "name the dataset too (dataset/subject)")
    raise PredictError(f"{ckpt}: no fold {fold!r}; the run's folds: "
                       f"{[s for s, _ in files]}")


def _load_fold(path: Path, info: dict, classes: tuple[str, ...], meta_path: Path, device: str):
    from mefeat.models import create_model
    from mefeat.train.checkpoints import load_official_state_dict

    n = len(classes)
    net = create_model(info["model"], num_classes=n, **(info.get("model_options") or {}))
    state = load_official_state_dict(path)
    own = net.state_dict()
    for name, value in state.items():
        want = own.get(name)
        if want is None or tuple(want.shape) == tuple(value.shape):
            continue
        if want.ndim >= 1 and want.shape[0] == n and value.shape[0] != n:
            raise PredictError(
                f"{path}: its head has {value.shape[0]} outputs ({name} "
                f"{tuple(value.shape)}) but {meta_path} names {n} classes {list(classes)}; "
                "the checkpoints and run.json come from runs of different label schemes: "
                "restore the run.json written with these checkpoints, or train again"
            )
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path}: does not fit model {info['model']!r} with options "
                         f"{info.get('model_options') or {}}: {exc}") from None
    return net.to(device).eval()


# -- the clip ----------------------------------------------------------------------------


@dataclass
class Clip:
    """The raw frames of a clip or video: (T, H, W) uint8 grayscale."""

    path: Path
    frames: np.ndarray
    kind: str  # "frames" (a folder) or "video"
    fps: float | None = None


def read_frames(path: str | os.PathLike) -> Clip:
    """A folder of frames (sorted by the number in their names) or a video file."""
    path = Path(path)
    if path.is_dir():
        paths = [p for _, p in list_frames(path, key=str(path))]
        return Clip(path, read_clip(paths, key=str(path)), "frames")
    if not path.is_file():
        raise PredictError(f"{path}: no such file or folder; give a folder of frames or a "
                           "video file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise PredictError(f"{path}: one image is not a clip; give the folder of the clip's "
                           "frames or a video file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise PredictError(
                f"{path}: cannot be opened as a video (not a video, corrupt, or a codec "
                "OpenCV's FFmpeg does not read); convert it to mp4/avi or give a folder of "
                "frames"
            )
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if frame.ndim == 3:
                code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
                frame = cv2.cvtColor(frame, code)
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise PredictError(f"{path}: no frame could be decoded from the video (empty or "
                           "corrupt); re-encode it or give a folder of frames")
    return Clip(path, np.stack(frames), "video", fps)


# -- inputs and prediction ---------------------------------------------------------------


@lru_cache(maxsize=2)
def _aligner(config: AlignConfig) -> FaceAligner:
    # Loading dlib's models takes seconds; a process that predicts many clips loads them once.
    return FaceAligner(config)


@dataclass
class _Keyed:
    """One expression's key frames, view inputs and the pictures of the figure."""

    onset: int
    apex: int
    offset: int
    inputs: tuple[np.ndarray, ...] | None = None
    pictures: dict[str, np.ndarray] = field(default_factory=dict)
    score: float | None = None
    error: str | None = None


def view_inputs(run: Run, aligned: np.ndarray, landmarks: np.ndarray, onset: int, apex: int,
                offset: int) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
    """The run's model inputs for one aligned clip (a batch of one) and its flow maps.

    The maps are those of the run's variant (``clip_features`` with its flow method,
    parameters and size, cast to the store's dtypes); the view receives them as
    :func:`mefeat.views.data.load_view` hands a store's arrays to it.
    """
    flow = run.flow
    maps = clip_features(aligned, onset, apex, offset, flow["method"], flow.get("params") or {},
                         size=flow.get("size"))
    maps = cast_maps(maps)
    view = get_view(run.info["view"])
    opts = view.resolve_options(run.info.get("view_options"))
    arrays: dict[str, Any] = {k: maps[k][None] for k in view.arrays if k in maps}
    arrays["keyframes"] = np.array([[onset, apex, offset]], np.int32)
    if view.frames:
        arrays["clips"] = lambda i: aligned
    lm = landmarks[None] if view.landmarks else np.zeros((1, 68, 2), np.float32)
    inputs = build_inputs(view, arrays, lm, size=int(run.info["variant_size"]),
                          frame_size=run.align.size, options=opts)
    return tuple(np.ascontiguousarray(x, dtype=np.float32) for x in inputs), maps


def _keyed(run: Run, raw: np.ndarray, aligner: FaceAligner, start: int, where: str,
           figure: bool) -> _Keyed:
    """Align ``raw`` (one expression) on its first frame, spot the apex, make the inputs;
    indices in the result are ``start`` + positions in ``raw``."""
    aligned, landmarks = aligner.align(raw, 0, where=where)
    last = len(aligned) - 1
    apex = spot_apex(aligned, 0, last, run.spot_method)
    inputs, maps = view_inputs(run, aligned, landmarks, 0, apex, last)
    pictures = {}
    if figure:
        pictures = {"onset": aligned[0], "apex": aligned[apex], "offset": aligned[last],
                    "u": maps["flow_oa"][0], "v": maps["flow_oa"][1]}
    return _Keyed(start, start + apex, start + last, inputs, pictures)


def predict(
    clip: str | os.PathLike, run_dir: str | os.PathLike, *, fold: str | None = None,
    window: int = DEFAULT_WINDOW, stride: int | None = None,
    threshold: float = DEFAULT_THRESHOLD, device: str = "cpu", labels: str | None = None,
    out: str | os.PathLike | None = None, progress: bool = False,
) -> dict[str, Any]:
    """Classify ``clip`` (a folder of frames or a video) with the run in ``run_dir``.

    See the module docstring for the method and the defaults. ``stride``: between long-video
    windows (default ``window // 2``). ``out``: a PNG of the key frames, the onset→apex
    flow (u, v) and the probabilities of each expression.

    Returns a JSON-able dict: ``clip``, ``kind`` (frames or video), ``n_frames``, ``fps``,
    ``mode`` (``clip``: one expression, or ``video``: intervals searched), ``run``,
    ``model``, ``folds``, ``classes``, ``spot_method`` and ``spot_note``, and ``intervals``:
    one dict per expression with ``onset``, ``apex``, ``offset`` (frame indices),
    ``label``, ``probabilities`` (class name → probability) and, in video mode, ``score``
    (the peak motion score); a clip's one expression is also repeated at the top level.
    Video mode adds ``window``, ``stride``, ``threshold`` and ``skipped`` (windows or
    intervals with no face, and why).
    """
    if window < 8:
        raise PredictError(f"--window {window}: must be at least 8 frames")
    stride = window // 2 if stride is None else int(stride)
    if not 1 <= stride <= window:
        raise PredictError(f"stride {stride}: must lie in 1..{window} (the window)")
    if not threshold > 0:
        raise PredictError(f"--threshold {threshold}: must be a positive motion score")
    run = load_run(run_dir, fold=fold, device=device, labels=labels)
    src = read_frames(clip)
    n = len(src.frames)
    if n < 3:
        raise PredictError(
            f"{src.path}: {n} frame{'s' if n != 1 else ''}; a clip needs at least 3 (an onset, "
            "an apex between and an offset)"
        )
    aligner = _aligner(run.align)
    figure = out is not None
    result: dict[str, Any] = {
        "clip": str(src.path), "kind": src.kind, "n_frames": n, "fps": src.fps,
        "run": str(run.path), "model": run.model, "folds": [s for s, _ in run.folds],
        "classes": list(run.classes), "spot_method": run.spot_method,
        "spot_note": run.spot_note,
    }
    curves: list[tuple[int, np.ndarray]] = []
    if n <= window:
        result["mode"] = "clip"
        keyed = [_keyed(run, src.frames, aligner, 0, f"{src.path} (first frame)", figure)]
    else:
        result.update(mode="video", window=window, stride=stride, threshold=threshold)
        keyed, skipped, curves = _search(run, src, aligner, window, stride, threshold,
                                         figure, progress)
        result["skipped"] = skipped
    ok = [k.inputs for k in keyed if k.inputs is not None]
    probs = iter(run.probabilities(tuple(np.concatenate(parts) for parts in zip(*ok,
                                                                                strict=True)))
                 if ok else ())
    intervals = []
    for k in keyed:
        row: dict[str, Any] = {"onset": k.onset, "apex": k.apex, "offset": k.offset}
        if k.score is not None:
            row["score"] = round(k.score, 4)
        if k.inputs is None:
            row["error"] = k.error
        else:
            p = next(probs)
            row["label"] = run.classes[int(np.argmax(p))]
            row["probabilities"] = {c: float(v) for c, v in zip(run.classes, p, strict=True)}
        intervals.append(row)
    result["intervals"] = intervals
    if result["mode"] == "clip":
        result.update(intervals[0])
    if figure:
        draw_prediction(result, keyed, curves, out)
    return result


def _search(run: Run, src: Clip, aligner: FaceAligner, window: int, stride: int,
            threshold: float, figure: bool, progress: bool):
    """Video mode: the intervals of every window, merged, each keyed as a clip."""
    from tqdm import tqdm

    frames, n = src.frames, len(src.frames)
    skipped: list[dict[str, Any]] = []
    found: list[Interval] = []
    curves = []
    first_error: FaceNotFoundError | None = None
    for start in tqdm(window_starts(n, window, stride), desc="predict: windows", unit="window",
                      disable=not progress):
        stop = min(start + window, n)
        try:
            aligned, _ = aligner.align(frames[start:stop], 0,
                                       where=f"{src.path} (frame {start})")
        except FaceNotFoundError as exc:
            first_error = first_error or exc
            skipped.append({"window": [start, stop - 1], "reason": exc.reason})
            continue
        curve = motion_curve(aligned)
        curves.append((start, curve))
        found += [iv.shifted(start) for iv in
                  curve_intervals(curve, threshold=threshold, open_end=stop == n)]
    if not curves and first_error is not None:
        raise first_error  # no window has a face: the video's own fault
    keyed = []
    for iv in merge_intervals(found):
        where = f"{src.path} (frame {iv.onset})"
        try:
            k = _keyed(run, frames[iv.onset:iv.offset + 1], aligner, iv.onset, where, figure)
        except SampleError as exc:
            k = _Keyed(iv.onset, iv.peak, iv.offset, error=exc.reason)
            skipped.append({"interval": [iv.onset, iv.offset], "reason": exc.reason})
        k.score = iv.score
        keyed.append(k)
    return keyed, skipped, curves



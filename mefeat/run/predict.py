"""``predict``: classify the micro-expression of a raw clip or video with a trained run.

A run directory is what ``mefeat train`` writes: ``run.json`` (the run record: the model,
its view and options, the classes, how the store's variant was made: key-frame policy, flow
method, parameters and size, the face alignment) and one safetensors checkpoint per
held-out subject in ``checkpoints/``. ``predict`` makes a clip's inputs the way ``extract``
and :func:`mefeat.load_view` made the training inputs:

1. frames: a folder of images or a video file (:func:`mefeat.frames.read_frames`);
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

A longer video is searched for expressions (:func:`mefeat.keyframes.intervals.search_video`):
windows of
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

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.errors import MefeatError, SampleError
from mefeat.face import AlignConfig, FaceAligner
from mefeat.flow.features import clip_features
from mefeat.frames import read_frames
from mefeat.keyframes import SPOT_METHODS, spot_apex
from mefeat.keyframes.intervals import search_video
from mefeat.report.predict import draw_prediction
from mefeat.store import cast_maps
from mefeat.train import RunFolder, RunRecord
from mefeat.train.checkpoints import load_fold_model, read_checkpoint_metadata
from mefeat.train.plan import check_device
from mefeat.views import build_inputs

DEFAULT_WINDOW = 64
DEFAULT_THRESHOLD = 0.1
DEFAULT_SPOT = "flowpeak"


class PredictError(MefeatError):
    """A clip or a run directory that ``predict`` cannot use."""


# -- the run -----------------------------------------------------------------------------


@dataclass
class Run:
    """A trained run read back from its folder, ready to classify view inputs."""

    path: Path
    record: RunRecord
    folds: list[tuple[str, Any]]  # (held-out subject, model in eval mode)
    device: str = "cpu"

    @property
    def model(self) -> str:
        return self.record.model

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.record.classes)

    @property
    def align(self) -> AlignConfig:
        return AlignConfig(**self.record.store_settings["align"])

    @property
    def flow(self) -> dict[str, Any]:
        return self.record.store_settings["variant_settings"]["flow"]

    @property
    def spot_method(self) -> str:
        kf = self.record.store_settings["variant_settings"].get("keyframes", {})
        if kf.get("policy") == "spot" and kf.get("method") in SPOT_METHODS:
            return kf["method"]
        return DEFAULT_SPOT

    @property
    def spot_note(self) -> str:
        kf = self.record.store_settings["variant_settings"].get("keyframes", {})
        variant = self.record.data.get("variant", "?")
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


def load_run(run_dir: str | os.PathLike, *, fold: str | None = None, device: str = "cpu",
             labels: str | None = None) -> Run:
    """Read ``run_dir``'s run record and its fold checkpoints (or ``fold``'s only).

    ``labels``: a label scheme the run must have been trained on (its classes are compared).
    Raises :class:`PredictError` for a folder that is not a usable run.
    """
    run_dir = Path(run_dir)
    check_device(device)
    try:
        record = RunFolder(run_dir).record()
    except MefeatError as exc:
        raise PredictError(f"{exc} (RUN_DIR must be the --out folder of `mefeat train`)"
                           ) from None
    if record.official_format:
        raise PredictError(
            f"{run_dir}: the run was trained on imported official features "
            f"({record.official_format}, variant {record.data.get('variant')!r}): those are "
            "the published 28x28 images, which mefeat cannot compute from raw frames, so this "
            "run cannot predict on a clip; train on a variant made by `mefeat extract` "
            "(e.g. --variant gt of an extracted store) to predict"
        )
    missing = [k for k in ("variant_settings", "variant_size", "align")
               if record.store_settings.get(k) is None]
    if missing:
        raise PredictError(f"{run_dir}/run.json lacks {missing} (how the run's features were "
                           "made): it was not trained on a store variant; train on one")
    if not record.classes:
        raise PredictError(f"{run_dir}: the run has no class names (its store had no label "
                           "scheme); extract with --labels SCHEME and train again")
    if labels is not None:
        from mefeat.datasets import get_scheme

        want = list(get_scheme(labels).classes)
        if want != list(record.classes):
            raise PredictError(
                f"{run_dir}: the run was trained on classes {list(record.classes)}, not on "
                f"label scheme {labels}'s {want}; use a run trained with --labels {labels}"
            )
    files = _fold_files(run_dir / "checkpoints")
    if fold is not None:
        files = _pick_fold(files, fold, run_dir / "checkpoints")
    folds = [(subject, load_fold_model(path, record.model, num_classes=record.num_classes,
                                       options=record.model_options, device=device))
             for subject, path in files]
    return Run(path=run_dir, record=record, folds=folds, device=device)


def _fold_files(ckpt: Path) -> list[tuple[str, Path]]:
    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise PredictError(f"{ckpt}: no fold checkpoints (*.safetensors); train with "
                           "--checkpoints selected (the default)")
    return [(str(read_checkpoint_metadata(p).get("subject", p.stem)), p) for p in files]


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


# -- inputs and prediction ---------------------------------------------------------------


@lru_cache(maxsize=2)
def aligner_for(config: AlignConfig) -> FaceAligner:
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
                offset: int, colour: np.ndarray | None = None,
                ) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
    """The run's model inputs for one aligned clip (a batch of one) and its flow maps; a
    view that reads colour frames gets ``colour`` (the aligned RGB clip) where given.

    The maps are those of the run's variant (``clip_features`` with its flow method,
    parameters and size, cast to the store's dtypes); the view receives them as
    :func:`mefeat.views.data.load_view` hands a store's arrays to it.
    """
    flow = run.flow
    maps = clip_features(aligned, onset, apex, offset, flow["method"], flow.get("params") or {},
                         size=flow.get("size"))
    maps = cast_maps(maps)
    from mefeat.models import get_spec

    view = get_spec(run.model).view
    opts = view.resolve_options(run.record.view_options)
    arrays: dict[str, Any] = {k: maps[k][None] for k in view.arrays if k in maps}
    arrays["keyframes"] = np.array([[onset, apex, offset]], np.int32)
    if view.frames:
        arrays["clips"] = lambda i: colour if view.colour and colour is not None else aligned
    lm = landmarks[None] if view.landmarks else np.zeros((1, 68, 2), np.float32)
    inputs = build_inputs(view, arrays, lm, size=int(run.record.store_settings["variant_size"]),
                          frame_size=run.align.size, options=opts)
    return tuple(np.ascontiguousarray(x, dtype=np.float32) for x in inputs), maps


def keyed_clip(run: Run, raw: np.ndarray, aligner: FaceAligner, start: int, where: str,
               figure: bool, colour: np.ndarray | None = None) -> _Keyed:
    """Align ``raw`` (one expression; ``colour``: its RGB frames, where the run's view reads
    them) on its first frame, spot the apex, make the inputs; indices in the result are
    ``start`` + positions in ``raw``."""
    if colour is None:
        aligned, landmarks = aligner.align(raw, 0, where=where)
    else:
        aligned, landmarks, colour = aligner.align_with_colour(raw, colour, 0, where=where)
    last = len(aligned) - 1
    apex = spot_apex(aligned, 0, last, run.spot_method)
    inputs, maps = view_inputs(run, aligned, landmarks, 0, apex, last, colour)
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
    from mefeat.models import get_spec

    src = read_frames(clip, colour=get_spec(run.model).view.colour)
    n = len(src.frames)
    if n < 3:
        raise PredictError(
            f"{src.path}: {n} frame{'s' if n != 1 else ''}; a clip needs at least 3 (an onset, "
            "an apex between and an offset)"
        )
    aligner = aligner_for(run.align)
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
        keyed = [keyed_clip(run, src.frames, aligner, 0, f"{src.path} (first frame)", figure,
                            src.colour)]
    else:
        result.update(mode="video", window=window, stride=stride, threshold=threshold)
        keyed, result["skipped"], curves = _video(run, src, aligner, window, stride,
                                                  threshold, figure, progress)
    result["intervals"] = classified(run, keyed)
    if result["mode"] == "clip":
        result.update(result["intervals"][0])
    if figure:
        draw_prediction(result, keyed, curves, out)
    return result


def _video(run: Run, src, aligner: FaceAligner, window: int, stride: int, threshold: float,
           figure: bool, progress: bool):
    """The expressions of a long video, each aligned on its onset (its offset frame
    included), its apex spotted and its inputs made; the windows and intervals skipped."""
    found = search_video(src.frames, aligner, window=window, stride=stride,
                         threshold=threshold, where=str(src.path), progress=progress)
    keyed = []
    for iv in found.intervals:
        try:
            part = slice(iv.onset, iv.offset + 1)
            k = keyed_clip(run, src.frames[part], aligner, iv.onset,
                           f"{src.path} (frame {iv.onset})", figure,
                           None if src.colour is None else src.colour[part])
        except SampleError as exc:
            k = _Keyed(iv.onset, iv.peak, iv.offset, error=exc.reason)
            found.skipped.append({"interval": [iv.onset, iv.offset], "reason": exc.reason})
        k.score = iv.score
        keyed.append(k)
    return keyed, found.skipped, found.curves


def classified(run: Run, keyed: list[_Keyed]) -> list[dict[str, Any]]:
    """One row per expression: its key frames, score, and label and probabilities (the
    folds' mean softmax), or why it could not be classified."""
    ok = [k.inputs for k in keyed if k.inputs is not None]
    probs = iter(run.probabilities(tuple(np.concatenate(parts)
                                         for parts in zip(*ok, strict=True))) if ok else ())
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
    return intervals

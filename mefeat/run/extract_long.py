"""``extract-long``: long-video folders → aligned frames and ROI flow in a store's ``long/``.

For each video of a long-video reader (:mod:`mefeat.datasets.longvideo`):

1. **alignment on a schedule** (:mod:`mefeat.face.schedule`): dlib's landmarks on every
   ``every``-th frame (default: one a second) and the last; the transform in use is held
   until an anchor's own places the face more than ``tolerance`` aligned pixels away
   (default 2.5% of ``size``), and each frame takes the transform of the last anchor at or
   before it. Anchors without a face, or whose transform jumps from both neighbours by
   more than ``max_jump`` aligned pixels (default 5%), are replaced by their neighbours'
   interpolation; both are listed in the video's attributes (``repaired``), and the
   anchors where the transform changed in ``switches``;
2. **ROIs**: the median of the anchors' landmarks in aligned pixels places SoftNet's
   brow and mouth boxes, nose patch and eye masks (:func:`mefeat.flow.roi.roi_layout`);
3. **chunks** of ``chunk`` frames, in order: the frames read (grayscale), warped to
   ``size`` px, and for every ``k`` the flow from frame t to t+k (``flow`` method) turned
   into the 42x42x3 ROI image (:func:`mefeat.flow.roi.roi_image`; zeros where t+k is past
   the last frame), by ``workers`` processes a chunk each; this process writes each
   chunk's arrays, then its done mark. Only the chunks not done are computed, so a run
   killed anywhere resumes where it stopped.

The default ``k`` per dataset are SoftNet's (:data:`mefeat.keyframes.softnet.SOFTNET_K`):
CAS(ME)^2 6 (micro) and 18 (macro), SAMM Long Videos 37 and 174.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.datasets.longvideo import LongExpression, LongVideo, LongVideoSet
from mefeat.errors import FaceNotFoundError, MefeatError, SampleError
from mefeat.executors import run_jobs
from mefeat.face import AlignConfig, FaceAligner
from mefeat.face.align import similarity_from_landmarks, transform_points
from mefeat.face.schedule import anchor_frames, hold_transforms, repair_anchors, step_transforms
from mefeat.flow import compute_flow, prepare_flow
from mefeat.flow.roi import ROI_SIZE, roi_image, roi_layout
from mefeat.frames import read_gray
from mefeat.keyframes.softnet import SOFTNET_K
from mefeat.run.extract import detail_lines
from mefeat.signals import deferred_interrupts
from mefeat.store.long_videos import LongVideoStore


@dataclass
class LongExtractSummary:
    store: str
    done: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, list[dict]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"store {self.store}: long videos done {len(self.done)}, already done "
               f"{len(self.resumed)}, failed {len(self.failed)}"]
        out += detail_lines(self.failed, [])
        for key, items in sorted(self.repaired.items()):
            out += [f"  anchor  {key} frame {r['frame']}: {r['reason']}" for r in items]
        return out


def default_ks(dataset: str) -> list[int]:
    if dataset not in SOFTNET_K:
        raise MefeatError(f"no default k for {dataset!r}; pass --k")
    return sorted(SOFTNET_K[dataset].values())


def expression_record(e: LongExpression) -> dict[str, Any]:
    return {"name": e.name, "onset": e.onset, "apex": e.apex, "offset": e.offset,
            "kind": e.kind, "emotion": e.emotion, "source": e.source}


def extract_long(
    videos: LongVideoSet, store: str | os.PathLike, *, ks: Sequence[int] | None = None,
    size: int = 128, every: int | None = None, tolerance: float | None = None,
    max_jump: float | None = None,
    flow: str = "tvl1", flow_params: dict[str, Any] | None = None, chunk: int = 256,
    upsample: int = 1, workers: int = 1, progress: bool = False,
) -> LongExtractSummary:
    """Write every video of ``videos`` into ``store``'s ``long/`` group (module docstring).

    ``ks`` default to the dataset's (:data:`SOFTNET_K`); ``every`` to one anchor a second;
    ``tolerance`` to 2.5% and ``max_jump`` to 5% of ``size``. A video that cannot be read
    or has no face on any anchor is reported in ``failed`` and the others go on.
    """
    from tqdm import tqdm

    if chunk < 1 or size < 32:
        raise MefeatError(f"need --chunk >= 1 and --size >= 32, got {chunk}, {size}")
    aligner = FaceAligner(AlignConfig(size=size, upsample=upsample))
    prepare_flow(flow)
    summary = LongExtractSummary(str(store))
    by_video = videos.by_video()
    with LongVideoStore.create_or_resume(store) as ls:
        for video in tqdm(videos.videos, desc="extract-long: videos", unit="video",
                          disable=not progress):
            vks = sorted(set(ks)) if ks else default_ks(video.dataset)
            if any(k < 1 for k in vks):
                raise MefeatError(f"--k must be >= 1, got {vks}")
            config = {"size": size, "every": every or max(1, round(video.fps)),
                      "tolerance": tolerance if tolerance is not None else 0.025 * size,
                      "max_jump": max_jump if max_jump is not None else 0.05 * size,
                      "flow": flow, "flow_params": flow_params or {}, "ks": vks,
                      "chunk": chunk, "roi": "softnet", "upsample": upsample}
            meta = {"dataset": video.dataset, "subject": video.subject, "video": video.video,
                    "fps": video.fps, "folder": str(video.frames[0].parent),
                    "files": [p.name for p in video.frames],
                    "frame_numbers": list(video.frame_numbers),
                    "expressions": [expression_record(e) for e in by_video[video.key]]}
            lv = ls.require_video(video.key, meta, config, n_frames=video.n_frames,
                                  size=size, roi_size=ROI_SIZE, ks=vks, chunk=chunk)
            if lv.complete():
                summary.resumed.append(video.key)
                continue
            try:
                _extract_video(video, lv, aligner, config, workers=workers, progress=progress)
            except (SampleError, FaceNotFoundError) as exc:
                summary.failed[video.key] = str(exc)
                continue
            summary.done.append(video.key)
            if lv.group.attrs.get("repaired"):
                summary.repaired[video.key] = lv.group.attrs["repaired"]
    return summary


def _anchors(video: LongVideo, lv, aligner: FaceAligner, config: dict) -> None:
    anchors = anchor_frames(video.n_frames, config["every"])
    matrices, reasons, points = [], [], []
    for a in anchors:
        gray = read_gray(video.frames[a], key=video.key)
        try:
            lm = aligner.landmarks(gray, where=f"{video.key} frame {video.frame_numbers[a]}")
        except FaceNotFoundError as exc:
            matrices.append(None)
            reasons.append(exc.reason)
            continue
        m = similarity_from_landmarks(lm, aligner.config)
        matrices.append(m)
        reasons.append("")
        points.append(transform_points(lm, m))
    try:
        schedule = repair_anchors(anchors, matrices, reasons, size=config["size"],
                                  max_jump=config["max_jump"])
    except ValueError:
        raise FaceNotFoundError(video.key, f"no face found on any of its {len(anchors)} "
                                f"anchor frames (every {config['every']} frames); check "
                                "the frames or crop them") from None
    held, switches = hold_transforms(schedule.matrices, size=config["size"],
                                     tolerance=config["tolerance"])
    landmarks = np.median(np.stack(points), axis=0)
    try:
        rois = roi_layout(landmarks, config["size"])
    except ValueError as exc:
        raise FaceNotFoundError(video.key, str(exc)) from None
    with deferred_interrupts():
        lv.write_anchors(schedule.anchors, held,
                         {"repaired": schedule.repaired, "landmarks": landmarks.tolist(),
                          "switches": [int(schedule.anchors[i]) for i in switches],
                          "rois": rois})


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one chunk per process; the pool owns the cores


def chunk_arrays(index: int, paths: list[str], transforms: np.ndarray, layout: dict,
                 config: dict, length: int, key: str) -> tuple[int, np.ndarray, dict]:
    """Chunk ``index`` of a video: its ``length`` aligned frames and, for every k, the ROI
    images of the flows t -> t+k. ``paths`` are its frames and the ``max(k)`` after it
    (fewer at the end of the video), ``transforms`` theirs."""
    import cv2

    size = config["size"]
    aligned = np.stack([
        cv2.warpAffine(read_gray(Path(p), key=key), m, (size, size), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        for p, m in zip(paths, transforms, strict=True)])
    rois = {}
    for k in config["ks"]:
        out = np.zeros((length, ROI_SIZE, ROI_SIZE, 3), np.float32)
        for t in range(min(length, len(paths) - k)):  # t + k within the video
            f = compute_flow(aligned[t], aligned[t + k], config["flow"], **config["flow_params"])
            out[t] = roi_image(f, layout)
        rois[k] = out
    return index, aligned[:length], rois


def _extract_video(video: LongVideo, lv, aligner: FaceAligner, config: dict, *,
                   workers: int, progress: bool) -> None:
    from tqdm import tqdm

    if not lv.has_anchors():
        _anchors(video, lv, aligner, config)
    anchors, matrices = lv.anchors()
    layout = lv.group.attrs["rois"]
    n, c, ks = video.n_frames, config["chunk"], config["ks"]
    done = lv.chunks_done()
    jobs = []
    for i in (i for i in range(len(done)) if not done[i]):
        start, stop = i * c, min((i + 1) * c, n)
        span = np.arange(start, min(stop + max(ks), n))
        jobs.append((i, [str(video.frames[t]) for t in span],
                     step_transforms(anchors, matrices, span), layout, config, stop - start,
                     video.key))
    results = run_jobs(chunk_arrays, jobs, executor="process", workers=workers,
                       initializer=_worker_init if workers > 1 else None,
                       max_in_flight=2 * workers)
    for _, (i, frames, rois) in tqdm(results, total=len(jobs), unit="chunk", leave=False,
                                     desc=f"extract-long: {video.key}", disable=not progress):
        with deferred_interrupts():
            lv.write_chunk(i, frames, rois)

"""The built-in demo: a small CASME II-layout dataset made from a real face photograph.

``build_demo`` writes subjects (the astronaut photograph under other poses and lighting),
each with clips of one synthetic action (see ``mefeat.synth``) rising from onset to a known
apex and relaxing to offset, as JPEG frames ``sub01/EP01_01/img<N>.jpg`` and a coding
spreadsheet with the real CASME II columns, so the demo runs through the real reader.
``run_demo`` then runs the pipeline on it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mefeat.synth import ACTIONS, Pose, face_photo, make_clip, pose_image

# The demo's emotions are CASME II's own words, so its reader and label schemes apply.
_EMOTIONS = tuple(sorted(ACTIONS))
_WINDOW = 320  # side of the camera frame cut around the face, in pixels


@dataclass(frozen=True)
class DemoDataset:
    root: Path
    annotations: Path
    apex: dict[str, int]  # sample key -> true apex index into the clip's frames


def _subject_pose(i: int, rng: np.random.Generator) -> Pose:
    if i == 0:
        return Pose()
    return Pose(
        angle=float(rng.uniform(-8, 8)),
        scale=float(rng.uniform(0.9, 1.1)),
        shift=(float(rng.uniform(-15, 15)), float(rng.uniform(-15, 15))),
        gain=float(rng.uniform(0.8, 1.15)),
        gamma=float(rng.uniform(0.8, 1.25)),
        gradient=float(rng.uniform(-40, 40)),
    )


def _posed_subject(photo, s, rng, aligner, tries: int = 10):
    """A pose of the photograph in which dlib finds exactly one face, and its landmarks.

    Some poses make a weak second detection (the suit's patch); those are drawn again.
    """
    from mefeat.errors import FaceNotFoundError

    for _ in range(tries):
        image, _ = pose_image(photo, _subject_pose(s, rng))
        try:
            return image, aligner.landmarks(image, where=f"demo subject {s + 1}")
        except FaceNotFoundError:
            if s == 0:
                raise
    raise FaceNotFoundError(f"demo subject {s + 1}", f"no usable pose in {tries} tries")


def demo_face(photo, s: int, rng: np.random.Generator, aligner) -> tuple[np.ndarray, np.ndarray]:
    """Demo subject ``s``: the photograph in its pose and lighting, cut to the camera frame
    (``_WINDOW`` px around the face), and the face's 68 landmarks in that frame."""
    image, landmarks = _posed_subject(photo, s, rng, aligner)
    cx, cy = landmarks.mean(axis=0).astype(int)
    x0 = int(np.clip(cx - _WINDOW // 2, 0, image.shape[1] - _WINDOW))
    y0 = int(np.clip(cy - _WINDOW // 2, 0, image.shape[0] - _WINDOW))
    return image[y0:y0 + _WINDOW, x0:x0 + _WINDOW], landmarks - (x0, y0)


def build_demo(
    out: str | os.PathLike,
    *,
    subjects: int = 4,
    clips: int = 5,
    seed: int = 0,
    peak: float = 1.5,
    sigma: float = 18.0,
    noise: float = 0.5,
) -> DemoDataset:
    """Write the demo dataset under ``out/CASME2`` and return where things are."""
    from openpyxl import Workbook

    from mefeat.face import FaceAligner

    rng = np.random.default_rng(seed)
    root = Path(out) / "CASME2"
    root.mkdir(parents=True, exist_ok=True)
    photo = face_photo()
    aligner = FaceAligner()
    wb = Workbook()
    ws = wb.active
    ws.append(["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
               "Action Units", "Estimated Emotion"])
    apex_truth = {}
    for s in range(subjects):
        camera, lm = demo_face(photo, s, rng, aligner)
        subject = f"{s + 1:02d}"
        for c in range(clips):
            emotion = _EMOTIONS[(s + c) % len(_EMOTIONS)]
            n = int(rng.integers(22, 34))
            onset = int(rng.integers(1, 4))
            offset = n - 1 - int(rng.integers(0, 3))
            apex = int(rng.integers(onset + 5, offset - 4))
            first = int(rng.integers(1, 200))  # datasets number frames from the recording
            frames, _ = make_clip(camera, lm, emotion, n_frames=n, onset=onset, apex=apex,
                                  offset=offset, peak=peak, sigma=sigma, noise=noise,
                                  seed=seed * 1000 + s * 50 + c)
            clip = f"EP{c + 1:02d}_{s + 1:02d}"
            folder = root / f"sub{subject}" / clip
            folder.mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(frames):
                cv2.imwrite(str(folder / f"img{first + t}.jpg"), frame,
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
            ws.append([subject, clip, None, first + onset, first + apex, first + offset, None,
                       _AU[emotion], emotion])
            apex_truth[f"casme2/sub{subject}/{clip}"] = apex
    annotations = root / "CASME2-coding-demo.xlsx"
    wb.save(annotations)
    (Path(out) / "truth.json").write_text(json.dumps({"apex": apex_truth}, indent=1))
    return DemoDataset(root=root, annotations=annotations, apex=apex_truth)


_AU = {"surprise": "1+2", "happiness": "12", "disgust": "4+9", "repression": "14+15",
       "others": "4"}


def run_demo(
    out: str | os.PathLike, *, subjects: int = 4, clips: int = 5, workers: int = 2,
    train: bool = True,
) -> Iterator[str]:
    """Build the demo dataset, extract it, describe the store, draw a sample; yield lines."""
    from mefeat.report.figures import show_sample
    from mefeat.report.inspect import describe_store, format_description
    from mefeat.run.extract import extract

    out = Path(out)
    ds = build_demo(out, subjects=subjects, clips=clips)
    yield f"demo dataset: {len(ds.apex)} clips of {subjects} subjects in {ds.root}"
    store = out / "features.zarr"
    if store.exists():  # a second `mefeat demo` in the same folder (the same clips)
        yield f"resuming the existing store {store} (its samples are the demo's own)"
    summary = extract(ds.root, dataset="casme2", annotations=ds.annotations, store=store,
                      label_scheme="casme2-5", workers=workers)
    yield from summary.lines()
    yield format_description(describe_store(store))
    key = next(iter(ds.apex))
    show_sample(store, key, out=out / "sample.png")
    yield f"figure of {key}: {out / 'sample.png'}"
    if train:
        from mefeat.run.train import run_training

        # A short LOSO run of the smallest model: the demo has 4 subjects, 5 clips each,
        # so the numbers only show that the whole chain runs.
        m = run_training("ststnet", store, out=out / "train-ststnet", epochs=100)
        yield (f"ststnet LOSO on the demo ({m['selection']} epoch): UF1 {m['uf1']:.3f} "
               f"UAR {m['uar']:.3f} — {out / 'train-ststnet'}/metrics.json")

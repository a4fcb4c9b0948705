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
    train: bool = True, long_videos: int = 0, long_frames: int = 600,
) -> Iterator[str]:
    """Build the demo dataset, extract it, describe the store, draw a sample, train (with
    ``train``); then spot the expressions of ``long_videos`` synthetic long videos with
    MDMD and SoftNet (LOSO), recognising the micro-expressions with the trained run; yield
    lines."""
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
    if long_videos:
        yield from _spot_long_demo(out, long_videos, long_frames,
                                   out / "train-ststnet" if train else None)


def _spot_long_demo(out: Path, videos: int, frames: int, recognizer: Path | None):
    from mefeat.datasets.longvideo import read_long_videos
    from mefeat.run.extract_long import extract_long
    from mefeat.run.spot_long import spot_long

    demo = build_long_demo(out, videos=videos, frames=frames)
    yield (f"long videos: {videos} of {frames} frames (30 fps) in CAS(ME)^2's layout, "
           f"{demo.root}")
    store = out / "long.zarr"
    yield from extract_long(read_long_videos("casme-sq", demo.root), store,
                            flow="farneback").lines()
    for spotter in ("mdmd", "softnet"):
        m = spot_long(store, spotter=spotter, out=out / f"spot-{spotter}",
                      recognizer=recognizer)
        s = m["spotting"]
        line = (f"{spotter} spotting F1 (IoU >= 0.5): micro {s['micro']['f1']:.3f}, macro "
                f"{s['macro']['f1']:.3f}, overall {s['overall']['f1']:.3f}")
        if "str" in m:
            line += f"; STRS {m['str']['strs']:.3f}"
        yield f"{line} — {out / f'spot-{spotter}'}/metrics.json"


# -- long videos (MEGC spotting) ------------------------------------------------------------
# kind: (count, length range in frames, apex displacement range in px); None: a blink.
LONG_EVENTS = {"micro": (3, (9, 15), (1.2, 2.0)), "macro": (2, (30, 60), (3.0, 5.0)),
               None: (4, (5, 7), (3.0, 3.0))}


def long_demo_video(v: int, n_frames: int, aligner) -> tuple[np.ndarray, list]:
    """Long video ``v`` at 30 fps: its frames (T, 320, 320) uint8 and its events.

    A demo subject (:func:`demo_face`) with, in random order and at random gaps, 3
    micro-expressions (9-15 frames, 1.2-2 px at the apex), 2 macro-expressions (30-60
    frames, 3-5 px), 4 blinks (5-7 frames; distractors) and a slow head drift of 1 px
    (period 300 frames), grey noise 0.5.
    """
    from mefeat.synth import LongEvent, make_long_video

    rng = np.random.default_rng(1000 + v)
    camera, landmarks = demo_face(face_photo(), v, rng, aligner)
    wanted = [(kind, n) for kind, (count, _, _) in LONG_EVENTS.items() for n in range(count)]
    rng.shuffle(wanted)
    lengths = [int(rng.integers(*LONG_EVENTS[k][1], endpoint=True)) for k, _ in wanted]
    gap = (n_frames - 40 - sum(lengths)) // (len(wanted) + 1)
    if gap < 20:
        raise ValueError(f"{n_frames} frames are too few for {len(wanted)} events")
    events, t = [], 20
    actions = ("happiness", "surprise", "disgust", "repression", "others")
    for (kind, _), length in zip(wanted, lengths, strict=True):
        t += int(rng.integers(gap // 2, gap + 1))
        peak = float(rng.uniform(*LONG_EVENTS[kind][2]))
        action = "blink" if kind is None else actions[int(rng.integers(len(actions)))]
        apex = t + int(rng.integers(length // 3, 2 * length // 3 + 1))
        events.append(LongEvent(action, t, apex, t + length - 1, peak, kind))
        t += length
    frames = make_long_video(camera, landmarks, events, n_frames=n_frames, drift=1.0,
                             noise=0.5, seed=v)
    return frames, events


@dataclass(frozen=True)
class LongDemo:
    root: Path
    annotations: Path
    events: dict[str, list]  # video key (casme-sq/sNN/NN_0101) -> its LongEvents


def build_long_demo(out: str | os.PathLike, *, videos: int = 2, frames: int = 600,
                    aligner=None) -> LongDemo:
    """Long videos (:func:`long_demo_video`) in CAS(ME)^2's layout (``rawpic/sNN/
    NN_0101demo/img<N>.jpg`` and its three-sheet code workbook, see
    :class:`mefeat.datasets.longvideo.CasmeSq`), one video per subject, so the demo goes
    through the real reader. Expressions' emotions are CASME II's words (the short demo's)."""
    import openpyxl

    from mefeat.face import FaceAligner

    aligner = aligner or FaceAligner()
    root = Path(out) / "long-demo"
    code, rule1, events_of = [], [], {}
    for v in range(videos):
        number = 1 + v
        folder = root / "rawpic" / f"s{number:02d}" / f"{number:02d}_0101demo"
        video, events = long_demo_video(v, frames, aligner)
        if not (folder / f"img{frames}.jpg").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            for i, f in enumerate(video, 1):
                cv2.imwrite(str(folder / f"img{i}.jpg"), f, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rule1.append((number, f"s{number:02d}", number))
        n = 0
        for e in events:
            if e.kind is None:
                continue
            n += 1
            code.append((number, f"demo1_{n}", e.onset + 1, e.apex + 1, e.offset + 1,
                         _AU[e.action], e.action, f"{e.kind}-expression", None))
        events_of[f"casme-sq/s{number:02d}/{number:02d}_0101"] = events
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in (("CASFEcode_final", code), ("naming rule1", rule1),
                        ("naming rule2", [("0101", "demo1")])):
        ws = wb.create_sheet(title)
        for r in rows:
            ws.append(list(r))
    annotations = root / "CAS(ME)^2code_final.xlsx"
    wb.save(annotations)
    return LongDemo(root, annotations, events_of)

"""Spotting on synthetic long videos, scored as the MEGC challenge scores spotting (issue 27):
MDMD, the MEGC 2020 baseline (``mefeat.keyframes.mdmd``, CAS(ME)^2's k and length windows),
and mefeat's flow-peak interval search (``mefeat.keyframes.intervals.search_video``, as
``mefeat predict`` runs it on a video), each with its frames per second on this machine.

    python benchmarks/spot_synthetic.py                       # 4 videos of 600 frames
    python benchmarks/spot_synthetic.py --videos 1 --frames 300 --flow dis --json

Each video is a demo subject (``mefeat.demo.demo_face``: the astronaut photograph in its
own pose and lighting, 320-px camera frame) at 30 fps with, in random order and at random
gaps, 3 micro-expressions (9-15 frames, 1.2-2 px at the apex), 2 macro-expressions (30-60
frames, 3-5 px), 4 blinks (5-7 frames; distractors) and a slow head drift of 1 px (period
300 frames), grey noise 0.5. MDMD runs on the frames halved to 160 px (the baseline resizes
its face crops to 227 px); the flow-peak search on the camera frames, each window aligned by
dlib, its intervals typed by CAS(ME)^2's MDMD windows (micro up to 16 frames). The metric
is ``mefeat.keyframes.challenge.spotting_scores``: IoU >= 0.5, counts pooled over videos.
Results: ``--out`` (default ``benchmarks/results/spot_synthetic``), ``<name>.json``/``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def synthetic_video(v: int, n_frames: int, aligner):
    """Video ``v``: its frames (T, 320, 320) uint8 and its events
    (:func:`mefeat.demo.long_demo_video`)."""
    from mefeat.demo import long_demo_video

    return long_demo_video(v, n_frames, aligner)


def spot_mdmd(frames: np.ndarray, flow: str) -> list[tuple[int, int, str]]:
    from mefeat.keyframes.mdmd import MDMD_SETTINGS, mdmd_spot

    half = np.stack([cv2.resize(f, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
                     for f in frames])
    return [(a, b, kind) for kind in ("micro", "macro")
            for a, b in mdmd_spot(half, MDMD_SETTINGS["casme2"][kind], flow=flow)]


def spot_flowpeak(frames: np.ndarray, aligner) -> list[tuple[int, int, str]]:
    from mefeat.keyframes.intervals import search_video

    found = search_video(frames, aligner, window=64, stride=32, threshold=0.1)
    longest_micro = 16  # CAS(ME)^2's micro window in the MDMD evaluation
    return [(iv.onset, iv.offset, "micro" if iv.offset - iv.onset + 1 <= longest_micro
             else "macro") for iv in found.intervals]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--flow", default="farneback",
                        help="MDMD's flow: rlof (the baseline's, ~1 s a frame pair), or a "
                        "mefeat flow method (farneback, dis, tvl1)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "spot_synthetic")
    parser.add_argument("--name", default="cpu-vm")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    from mefeat.face import FaceAligner
    from mefeat.keyframes.challenge import Expression, spotting_scores
    from mefeat.provenance import environment

    aligner = FaceAligner()
    truth, spotted = [], {"mdmd": [], "flowpeak": []}
    seconds = {"mdmd": 0.0, "flowpeak": 0.0}
    for v in range(args.videos):
        frames, events = synthetic_video(v, args.frames, aligner)
        truth += [Expression(f"v{v}", e.onset, e.offset, e.kind) for e in events if e.kind]
        for name, spot in (("mdmd", lambda f: spot_mdmd(f, args.flow)),
                           ("flowpeak", lambda f: spot_flowpeak(f, aligner))):
            t0 = time.perf_counter()
            found = spot(frames)
            seconds[name] += time.perf_counter() - t0
            spotted[name] += [Expression(f"v{v}", a, b, kind) for a, b, kind in found]
    n = args.videos * args.frames
    result = {
        "videos": args.videos, "frames_per_video": args.frames, "fps_of_video": 30,
        "mdmd_flow": args.flow, "truth": {k: sum(e.kind == k for e in truth)
                                          for k in ("micro", "macro")},
        "spotters": {name: {"scores": spotting_scores(truth, spotted[name]),
                            "spotted": len(spotted[name]), "seconds": seconds[name],
                            "frames_per_second": n / seconds[name]} for name in spotted},
        "machine": platform.processor() or platform.machine(),
        "environment": environment(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(json.dumps(result, indent=1) if args.json else markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = [f"{result['videos']} synthetic videos of {result['frames_per_video']} frames "
             f"(30 fps), {result['truth']['micro']} micro- and {result['truth']['macro']} "
             f"macro-expressions; MDMD on {result['mdmd_flow']} flow.", "",
             "| spotter | micro P / R / F1 | macro P / R / F1 | overall TP / FP / FN | overall F1 "
             "| frames/s |", "|---|---|---|---|---|---|"]
    for name, r in result["spotters"].items():
        s = r["scores"]
        prf = {k: " / ".join(f"{s[k][m]:.3f}" for m in ("precision", "recall", "f1"))
               for k in ("micro", "macro")}
        o = s["overall"]
        lines.append(f"| {name} | {prf['micro']} | {prf['macro']} | {o['tp']} / {o['fp']} / "
                     f"{o['fn']} | {o['f1']:.3f} | {r['frames_per_second']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

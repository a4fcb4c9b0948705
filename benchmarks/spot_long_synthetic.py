"""Spot then recognise on synthetic long videos, through the commands' own code (issue 27):
``extract-long`` (alignment on a schedule + SoftNet's ROI flow, in chunks), then
``spot-long`` with MDMD, the flow-peak search and SoftNet (LOSO, p chosen on the training
subjects), each spotted micro-expression classified by STSTNet trained (LOSO, 100 epochs,
as ``mefeat demo``) on the short demo clips; the challenge's F1 and the STR score, with the
frames per second of each stage on this machine.

    python benchmarks/spot_long_synthetic.py                  # 4 videos of 600 frames
    python benchmarks/spot_long_synthetic.py --videos 6 --flow tvl1 --workers 2
    python benchmarks/spot_long_synthetic.py --device cuda --name gpu

The videos are ``mefeat.demo.long_demo_video`` (one demo subject each, 3 micro- and 2
macro-expressions, 4 blinks, a 1-px head drift) in CAS(ME)^2's layout, read by its reader.
Results: ``--out`` (default ``benchmarks/results/spot_long_synthetic``), ``<name>.json``
and ``.md``; the work folder (``--work``, default a temporary one) keeps the store, the
intervals and the timelines.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

SPOTTERS = ("mdmd", "flowpeak", "softnet")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--flow", default="farneback", help="extract-long's ROI flow")
    parser.add_argument("--workers", type=int, default=1, help="extract-long's processes")
    parser.add_argument("--device", default="cpu",
                        help="where SoftNet and the recogniser run (cuda where there is one)")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results"
                        / "spot_long_synthetic")
    parser.add_argument("--name", default="cpu-vm")
    args = parser.parse_args(argv)

    from mefeat.datasets.longvideo import read_long_videos
    from mefeat.demo import build_demo, build_long_demo
    from mefeat.provenance import environment
    from mefeat.run.extract import extract
    from mefeat.run.extract_long import extract_long
    from mefeat.run.spot_long import spot_long
    from mefeat.run.train import run_training

    work = args.work or Path(tempfile.mkdtemp(prefix="spot-long-"))
    short = build_demo(work, subjects=4, clips=5)
    extract(short.root, dataset="casme2", annotations=short.annotations,
            store=work / "short.zarr", label_scheme="casme2-5", workers=2)
    run = work / "train-ststnet"
    recogniser = run_training("ststnet", work / "short.zarr", out=run, epochs=100)
    demo = build_long_demo(work, videos=args.videos, frames=args.frames)
    frames = args.videos * args.frames
    t0 = time.perf_counter()
    extract_long(read_long_videos("casme-sq", demo.root), work / "long.zarr", flow=args.flow,
                 workers=args.workers)
    extract_s = time.perf_counter() - t0
    spotters = {}
    for name in SPOTTERS:
        t0 = time.perf_counter()
        m = spot_long(work / "long.zarr", spotter=name, out=work / f"spot-{name}",
                      recognizer=run, figures=False, device=args.device)
        seconds = time.perf_counter() - t0
        spotters[name] = {"spotting": m["spotting"], "str": m["str"], "seconds": seconds,
                          "folds": m.get("folds")}
    result = {"videos": args.videos, "frames_per_video": args.frames, "flow": args.flow,
              "workers": args.workers, "device": args.device,
              "recogniser": {"model": "ststnet", "uf1": recogniser["uf1"],
                             "uar": recogniser["uar"]},
              "extract_long": {"seconds": extract_s, "frames_per_second": frames / extract_s},
              "spotters": spotters, "work": str(work),
              "machine": platform.processor() or platform.machine(),
              "environment": environment()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))
    return result


def markdown(r: dict) -> str:
    lines = [f"{r['videos']} synthetic long videos of {r['frames_per_video']} frames (30 fps); "
             f"extract-long ({r['flow']} ROI flow, k 6 and 18) "
             f"{r['extract_long']['frames_per_second']:.1f} frames/s; recogniser STSTNet "
             f"(short demo LOSO UF1 {r['recogniser']['uf1']:.3f}).", "",
             "| spotter | micro TP/FP/FN, F1 | macro TP/FP/FN, F1 | overall F1 | STR analysis F1 "
             "| STRS | frames/s |", "|---|---|---|---|---|---|---|"]
    frames = r["videos"] * r["frames_per_video"]
    for name, s in r["spotters"].items():
        cell = {k: f"{v['tp']}/{v['fp']}/{v['fn']}, {v['f1']:.3f}"
                for k, v in s["spotting"].items()}
        lines.append(f"| {name} | {cell['micro']} | {cell['macro']} | "
                     f"{s['spotting']['overall']['f1']:.3f} | "
                     f"{s['str']['analysis']['f1']:.3f} | {s['str']['strs']:.3f} | "
                     f"{frames / s['seconds']:.1f} |")
    lines += ["", "frames/s of a spotter include recognising its micro-intervals (and, for "
              "softnet, training one model per subject and kind)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

"""Commands about long videos (MEGC spotting): extract-long, spot-long."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._choices import FLOWS, RegistryChoice, registry
from ._interrupt import kept_note, set_interrupt_note

LONG_READERS = RegistryChoice(registry("mefeat.datasets.longvideo", "LONG_READERS"))
LONG_SPOTTERS = RegistryChoice(registry("mefeat.run.spot_long", "SPOTTERS"))


@click.command("extract-long")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dataset", required=True, type=LONG_READERS, help="Reader of ROOT's layout.")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The dataset's annotation sheet (default: found under ROOT).")
@click.option("--store", required=True, type=click.Path(path_type=Path),
              help="Store to add the long videos to (a new folder ending in .zarr, or a store "
              "of short clips).")
@click.option("--k", "ks", multiple=True, type=click.IntRange(min=1),
              help="Frame gap of the ROI flow t -> t+k (repeatable; default: SoftNet's k of "
              "the dataset, micro and macro).")
@click.option("--flow", type=FLOWS, default="tvl1", show_default=True)
@click.option("--size", type=click.IntRange(min=32), default=128, show_default=True,
              help="Side of the aligned face (SoftNet's 128).")
@click.option("--every", type=click.IntRange(min=1),
              help="Frames between two face detections (default: one a second).")
@click.option("--tolerance", type=click.FloatRange(min=0),
              help="Aligned pixels the face may drift before the alignment changes to a new "
              "detection's (default: 2.5% of --size).")
@click.option("--chunk", type=click.IntRange(min=1), default=256, show_default=True,
              help="Frames written (and resumed) together.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes computing chunks (this process alone writes the store).")
def extract_long(root, dataset, annotations, store, ks, flow, size, every, tolerance, chunk,
                 workers):
    """Align long videos on a schedule and store their ROI flow, in chunks.

    The face is found once a second; the alignment changes only when the head has moved
    more than --tolerance, so a still face stays still.

    Re-running resumes at the first chunk not written.

    \b
    Example:
      mefeat extract-long demo/long-demo --dataset casme-sq --store demo/long.zarr \\
          --flow farneback --workers 2
    """
    set_interrupt_note(kept_note("long_store", store))
    from mefeat.datasets.longvideo import read_long_videos
    from mefeat.run.extract_long import extract_long as run

    videos = read_long_videos(dataset, root, annotations)
    for d in videos.dropped:
        click.echo(f"  skipped {d}")
    summary = run(videos, store, ks=ks or None, size=size, every=every, tolerance=tolerance,
                  flow=flow, chunk=chunk, workers=workers, progress=True)
    for line in summary.lines():
        click.echo(line)
    if not summary.done and not summary.resumed:
        click.echo("mefeat: error: no long video was extracted (reasons above)", err=True)
        raise SystemExit(1)


def _p(value: str) -> float | str:
    if value == "train":
        return value
    try:
        p = float(value)
    except ValueError:
        p = -1.0
    if not 0 <= p <= 1:
        raise click.BadParameter(f"{value!r}: 'train' or a number in 0..1 (SoftNet's 0.55)",
                                 param_hint="--p")
    return p


@click.command("spot-long")
@click.argument("store")
@click.option("--spotter", type=LONG_SPOTTERS, default="softnet", show_default=True)
@click.option("--recognizer", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A `mefeat train` run folder: classify every spotted micro-expression "
              "(by the fold that held its subject out, where the run has one) and score STR.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--p", "p", default="train", show_default=True,
              help="softnet's threshold factor: 'train' (chosen on each fold's training "
              "subjects) or a number (SoftNet's 0.55, chosen on the published results).")
@click.option("--mdmd-flow", type=FLOWS, default="farneback", show_default=True,
              help="mdmd's flow (the baseline's RLOF: rlof, ~1 s a frame pair).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True,
              help="softnet's epochs per fold (SoftNet's 10).")
@click.option("--device", default="cpu", show_default=True,
              help="Where softnet trains and the recogniser runs: cpu, cuda, cuda:1...")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def spot_long(store, spotter, recognizer, out, p, mdmd_flow, epochs, device, as_json):
    """Spot micro- and macro-expressions in the store's long videos (then recognise them).

    Writes OUT/intervals.csv, intervals.json, metrics.json and a timeline figure per video.

    \b
    Example:
      mefeat spot-long demo/long.zarr --spotter softnet --out demo/spot-softnet
      mefeat spot-long demo/long.zarr --spotter mdmd --recognizer demo/train-ststnet \\
          --out demo/spot-mdmd
    """
    set_interrupt_note(lambda: f"nothing is kept of an interrupted spot-long; {out} holds "
                       "only what an earlier run wrote")
    from mefeat.run.spot_long import spot_long as run

    m = run(store, spotter=spotter, out=out, recognizer=recognizer, p=_p(p),
            mdmd_flow=mdmd_flow, epochs=epochs, progress=True, device=device)
    if as_json:
        click.echo(json.dumps(m, indent=1))
        return
    click.echo(spotting_lines(m))
    click.echo(f"intervals, metrics and timelines: {out}")


def spotting_lines(m: dict) -> str:
    lines = [f"{m['spotter']} on {m['videos']} long videos (IoU >= 0.5):"]
    for kind, s in m["spotting"].items():
        lines.append(f"  {kind:<8} TP {s['tp']:>3}  FP {s['fp']:>3}  FN {s['fn']:>3}  "
                     f"P {s['precision']:.3f}  R {s['recall']:.3f}  F1 {s['f1']:.3f}")
    if "str" in m:
        a = m["str"]["analysis"]
        lines.append(f"  STR (micro, {m['recognizer']['model']}): spotting F1 "
                     f"{m['str']['spotting']['f1']:.3f}, analysis F1 {a['f1']:.3f} on "
                     f"{a['pairs']} true positives, STRS {m['str']['strs']:.3f}")
    return "\n".join(lines)


COMMANDS = [extract_long, spot_long]

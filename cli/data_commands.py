"""Commands about data: demo, extract, inspect, show, export."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._choices import (
    EXECUTORS,
    EXPORT_FORMATS,
    FLOWS,
    READERS,
    SCHEMES,
    LazyHelpOption,
    keyframes_help,
)
from ._interrupt import kept_note, set_interrupt_note


@click.command()
@click.argument("root", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dataset", type=READERS, help="Reader of ROOT's layout.")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The dataset's annotation file (spreadsheet or manifest CSV).")
@click.option("--store", "store", required=True, type=click.Path(path_type=Path),
              help="Output store (a folder ending in .zarr).")
@click.option("--labels", "label_scheme", type=SCHEMES,
              help="Label scheme, e.g. megc2019 (default: the reader's raw emotions).")
@click.option("--flow", type=FLOWS, default="tvl1", show_default=True)
@click.option("--flow-param", "flow_params", multiple=True, metavar="NAME=VALUE",
              help="A flow parameter, e.g. lambda_=0.15 (repeatable).")
@click.option("--flow-size", type=click.IntRange(min=8),
              help="Compute the flows on the aligned frames resized to this side (as the "
              "OFF-TANet repository does on 28-px frames); the variants are named gt-28px... "
              "[default: at the aligned size]")
@click.option("--size", type=click.IntRange(min=32), default=224, show_default=True,
              help="Side of the aligned face.")
@click.option("--keyframes", multiple=True, default=("gt",), show_default=True,
              cls=LazyHelpOption, help_from=keyframes_help)
@click.option("--colour/--no-colour", default=None,
              help="Also keep the aligned colour frames of colour sources, which MMNet and "
              "EDMDBN read (three times the frames' space).  [default: colour]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes (or Ray CPUs) computing clips.")
@click.option("--executor", type=EXECUTORS, default="process", show_default=True,
              help="Where clips are computed; this process alone writes the store.")
@click.option("--address", help="Ray cluster address (default: start a local Ray).")
@click.option("--strict", is_flag=True, help="Exit non-zero when any sample fails.")
def extract(root, dataset, annotations, store, label_scheme, flow, flow_params, flow_size,
            size, keyframes, colour, workers, executor, address, strict):
    """Align faces and compute optical-flow features into a Zarr store.

    Re-running resumes where a previous run stopped. Without ROOT, the --keyframes
    policies become new variants of the existing --store, made from the aligned frames
    already in it (no raw dataset, no face detection).

    \b
    Example:
      mefeat extract CASME2_RAW_selected --dataset casme2 \\
          --annotations CASME2-coding-20140508.xlsx \\
          --labels megc2019 --store casme2.zarr --workers 2
      mefeat extract --store casme2.zarr --keyframes noise:10:0 --keyframes spot:flowpeak
    """
    set_interrupt_note(kept_note("store", store))
    from mefeat.options import parse_assignments
    from mefeat.run.extract import add_variants
    from mefeat.run.extract import extract as run_extract

    params = parse_assignments(flow_params, what="flow-param")
    if root is None:
        given = [name for name, v in (("--dataset", dataset), ("--annotations", annotations),
                                      ("--labels", label_scheme), ("--colour/--no-colour", colour))
                 if v is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} describe a dataset at ROOT; without "
                                   "ROOT, extract adds variants to --store from its frames")
        summary = add_variants(store, keyframes=keyframes, flow=flow, flow_params=params,
                               flow_size=flow_size, workers=workers, executor=executor,
                               address=address)
    else:
        if dataset is None:
            raise click.UsageError("ROOT needs --dataset (the reader of its layout)")
        summary = run_extract(
            root, dataset=dataset, store=store, annotations=annotations,
            label_scheme=label_scheme, flow=flow, flow_params=params, flow_size=flow_size,
            size=size, keyframes=keyframes, colour=colour is not False, workers=workers,
            executor=executor, address=address,
        )
    for line in summary.lines():
        click.echo(line)
    if not summary.done and not summary.resumed:  # also when every row was skipped
        click.echo("mefeat: error: nothing was extracted: every sample failed or was skipped "
                   "(reasons above); fix them and run again", err=True)
        raise SystemExit(1)
    if summary.failed and strict:
        raise SystemExit(1)


@click.command()
@click.argument("store")  # a folder or any fsspec URL zarr accepts
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(store, as_json):
    """Counts by dataset, subject and label; variants; settings; failures.

    \b
    Example:
      mefeat inspect demo/features.zarr --json
    """
    from mefeat.report.inspect import describe_store, format_description

    info = describe_store(store)
    click.echo(json.dumps(info, indent=2) if as_json else format_description(info))


@click.command()
@click.argument("store")  # a folder or any fsspec URL zarr accepts
@click.argument("key")
@click.option("--variant", help="Feature variant [default: the store's only one, else gt].")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def show(store, key, variant, out):
    """Draw a sample's key frames, flows and direction maps (supplement Fig. 2/3).

    \b
    Example:
      mefeat show demo/features.zarr casme2/sub01/EP01_01 --out sample.png
    """
    from mefeat.report.figures import show_sample

    show_sample(store, key, variant=variant, out=out)
    click.echo(f"wrote {out}")


@click.command()
@click.argument("store")  # a folder or any fsspec URL zarr accepts
@click.option("--format", "fmt", type=EXPORT_FORMATS,
              default="h5", show_default=True,
              help="h5: every array of the store in HDF5. causalnet, htnet, ststnet: one "
              "variant as the folders the official code reads (28×28 PNGs, LOSO folds, CSV).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output: for h5 a file (default: the store's name with .h5), else a new "
              "or empty folder (default: the store's name with _<format>).")
@click.option("--variant", help="Variant to export as official folders [default: the "
              "store's only one, else gt]; h5 writes every variant.")
def export(store, fmt, out, variant):
    """Write the store to HDF5, or a variant as the official CausalNet/HTNet/STSTNet folders.

    The official layouts: causalnet and htnet write combined_3_class2_for_optical_flow.csv,
    datasets/STSNet_whole_norm_u_v_os/ (the PNGs, "<sub>_<clip> .png"; causalnet adds _1,
    _2, _3) and datasets/three_norm_u_v_os/<subject>/u_train|u_test/<label>/ (htnet also
    datasets/combined_datasets_whole/, the apex JPEGs, from a store with aligned frames);
    ststnet writes norm_u_v_os/<subject>/u_train|u_test/<label>/. Run the official script
    inside the folder. Imported official features are written as stored; mefeat's own
    flows are resized from the stored size to 28×28 with cv2.INTER_AREA (area averaging,
    as the views do), then each channel is min-max scaled to 0..255 per sample.

    \b
    Example:
      mefeat export demo/features.zarr --format h5 --out features.h5
      mefeat export casme2.zarr --format causalnet --variant gt --out CausalNet-gt
    """
    if fmt == "h5":
        from mefeat.store.export import to_hdf5

        if variant is not None:
            raise click.UsageError("--variant is for the official folder formats; h5 writes "
                                   "every variant")
        out = out or Path(store).with_suffix(".h5")
        if out.is_dir():
            raise click.UsageError(f"--out {out} is a folder; h5 writes one file")
        to_hdf5(store, out)
        click.echo(f"wrote {out}")
        return
    from mefeat.run.export_official import export_official

    out = out or Path(str(Path(store).with_suffix("")) + f"_{fmt}")
    set_interrupt_note(lambda: f"nothing was written to {out} (the partial folder is removed); "
                       "run the command again")
    summary = export_official(store, fmt=fmt, out=out, variant=variant)
    for line in summary.lines():
        click.echo(line)


@click.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the demo dataset, its store and its reports.")
@click.option("--subjects", type=click.IntRange(min=2), default=4, show_default=True,
              help="Subjects (LOSO needs two at least).")
@click.option("--clips", type=click.IntRange(min=1), default=5, show_default=True,
              help="Clips per subject.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--train/--no-train", default=True, show_default=True,
              help="Also train a small model under LOSO on the demo store.")
@click.option("--long-videos", type=click.IntRange(min=0), default=4, show_default=True,
              help="Long videos (one subject each) to spot expressions in (0: none; "
              "softnet's LOSO needs 2).")
@click.option("--long-frames", type=click.IntRange(min=600), default=600, show_default=True,
              help="Frames per long video (30 fps).")
def demo(out, subjects, clips, workers, train, long_videos, long_frames):
    """Build a small CASME II-layout dataset from a real face photo and run the pipeline.

    \b
    Example:
      mefeat demo --out demo
    """
    from mefeat.demo import run_demo

    if long_videos == 1:
        raise click.BadParameter("softnet's leave-one-subject-out needs 2 long videos or more "
                                 "(or 0 for none)", param_hint="--long-videos")
    for line in run_demo(out, subjects=subjects, clips=clips, workers=workers, train=train,
                         long_videos=long_videos, long_frames=long_frames):
        click.echo(line)


COMMANDS = [demo, extract, inspect, show, export]

"""Commands about data: demo, extract, inspect, show, export."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _parse_params(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r}: expected NAME=VALUE", param_hint="--flow-param")
        name, value = pair.split("=", 1)
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


@click.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="Reader: casme2, samm, smic, smic-e, mmew, "
              "casme3a, manifest.")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The dataset's annotation file (spreadsheet or manifest CSV).")
@click.option("--store", "store", required=True, type=click.Path(path_type=Path),
              help="Output store (a folder ending in .zarr).")
@click.option("--labels", "label_scheme", default=None,
              help="Label scheme, e.g. megc2019 (default: the reader's raw emotions).")
@click.option("--flow", type=click.Choice(["tvl1", "farneback", "dis"]), default="tvl1",
              show_default=True)
@click.option("--flow-param", "flow_params", multiple=True, metavar="NAME=VALUE",
              help="A flow parameter, e.g. lambda_=0.15 (repeatable).")
@click.option("--size", default=224, show_default=True, help="Side of the aligned face.")
@click.option("--keyframes", multiple=True, default=("gt",), show_default=True,
              help="Key-frame policy: gt, noise:STD:SEED[:all], spot:flowpeak|featdiff "
              "(repeatable; each makes a variant).")
@click.option("--workers", default=1, show_default=True, help="Processes computing clips.")
@click.option("--strict", is_flag=True, help="Exit non-zero when any sample fails.")
def extract(root, dataset, annotations, store, label_scheme, flow, flow_params, size,
            keyframes, workers, strict):
    """Align faces and compute optical-flow features into a Zarr store.

    Re-running resumes where a previous run stopped; a new --keyframes policy adds a
    variant from the aligned frames already in the store.

    \b
    Example:
      mefeat extract CASME2 --dataset casme2 --annotations CASME2-coding-20140508.xlsx \\
          --labels megc2019 --store casme2.zarr --workers 2
    """
    from mefeat.run.extract import extract as run_extract

    summary = run_extract(
        root, dataset=dataset, store=store, annotations=annotations, label_scheme=label_scheme,
        flow=flow, flow_params=_parse_params(flow_params), size=size, keyframes=keyframes,
        workers=workers,
    )
    for line in summary.lines():
        click.echo(line)
    if not summary.done and not summary.resumed:  # also when every row was skipped
        click.echo("error: nothing was extracted: every sample failed or was skipped (reasons "
                   "above); fix them and run again", err=True)
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
@click.option("--variant", default="gt", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def show(store, key, variant, out):
    """Draw a sample's key frames, flows and direction maps (supplement Fig. 2/3).

    \b
    Example:
      mefeat show demo/features.zarr demo/s01/EP01_01 --out sample.png
    """
    from mefeat.report.figures import show_sample

    show_sample(store, key, variant=variant, out=out)
    click.echo(f"wrote {out}")


@click.command()
@click.argument("store")  # a folder or any fsspec URL zarr accepts
@click.option("--format", "fmt", type=click.Choice(["h5"]), default="h5", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Output file (default: the store's name with .h5).")
def export(store, fmt, out):
    """Write the store's arrays to HDF5 (same names, same shapes).

    \b
    Example:
      mefeat export demo/features.zarr --format h5 --out features.h5
    """
    from mefeat.store.export import to_hdf5

    out = out or Path(store).with_suffix(".h5")
    to_hdf5(store, out)
    click.echo(f"wrote {out}")


@click.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the demo dataset, its store and its reports.")
@click.option("--subjects", default=4, show_default=True)
@click.option("--clips", default=5, show_default=True, help="Clips per subject.")
@click.option("--workers", default=2, show_default=True)
@click.option("--train/--no-train", default=True, show_default=True,
              help="Also train a small model under LOSO on the demo store.")
def demo(out, subjects, clips, workers, train):
    """Build a small CASME II-layout dataset from a real face photo and run the pipeline.

    \b
    Example:
      mefeat demo --out demo
    """
    from mefeat.demo import run_demo

    for line in run_demo(out, subjects=subjects, clips=clips, workers=workers, train=train):
        click.echo(line)


COMMANDS = [demo, extract, inspect, show, export]

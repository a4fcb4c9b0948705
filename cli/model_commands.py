"""Commands about models: models, import-features, train, evaluate, predict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ._choices import IMPORT_FORMATS, MODELS, PRECISIONS, SCHEMES, SELECTIONS


def _model_names() -> list[str]:
    from mefeat.models import list_models

    return list_models()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def models(as_json):
    """List the registered models with their parameter counts and inputs.

    \b
    Example:
      mefeat models --json
    """
    from mefeat.models import count_params, create_model, get_spec

    rows = []
    for name in _model_names():
        spec = get_spec(name)
        rows.append({"name": name, "params": count_params(create_model(name)),
                     "params_official": spec.params, "inputs": spec.inputs,
                     "recipe": spec.recipe and spec.recipe.as_dict(), "options": spec.options,
                     "paper": spec.paper,
                     "code": spec.code})
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        shapes = " + ".join("×".join(map(str, s)) for s in r["inputs"]["shapes"])
        click.echo(f"{r['name']:<16} {r['params']:>12,} params  view {r['inputs']['view']:<16}"
                   f" input {shapes}")


@click.command("import-features")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=IMPORT_FORMATS, required=True)
@click.option("--store", required=True, type=click.Path(path_type=Path))
@click.option("--points", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Optional CSV of HTNet's 28-px region points per image.")
@click.option("--strict", is_flag=True, help="Exit non-zero when any sample fails.")
def import_features(folder, fmt, store, points, strict):
    """Import the official 28×28 PNG features into a store variant.

    A sample whose image is missing, corrupt or of another size is reported and left out
    of the variant; running the same command again imports only what is still missing.

    \b
    Example:
      mefeat import-features ../shared/data/features/cde28_htnet --format htnet \\
          --store htnet.zarr --points ../shared/data/features/cde28_htnet_mtcnn_points.csv
    """
    from mefeat.run.import_features import import_features as run

    summary = run(folder, fmt=fmt, store=store, points=points)
    for line in summary.lines():
        click.echo(line)
    if not summary.imported:
        click.echo("error: nothing was imported: every sample failed (reasons above); fix "
                   "them and run again", err=True)
        raise SystemExit(1)
    if summary.failed and strict:
        raise SystemExit(1)


def _print_metrics(m: dict) -> None:
    from mefeat.report.train import summary_lines

    for line in summary_lines(m):
        click.echo(line)


@click.command()
@click.option("--model", required=True, type=MODELS)
@click.option("--store", required=True, help="Store: a folder or an fsspec URL.")
@click.option("--variant", help="Feature variant [default: the store's only one, else gt].")
@click.option("--epochs", type=int, help="Override the recipe's epochs per fold.")
@click.option("--lr", type=float, help="Override the recipe's learning rate.")
@click.option("--batch-size", help="Override the recipe's batch size (an int, or 'full').")
@click.option("--precision", type=PRECISIONS,
              help="Override the recipe's precision (bf16/fp16: autocast).")
@click.option("--runs", default=1, show_default=True, help="Repeats with seeds seed, seed+1…")
@click.option("--seed", type=int, help="Run seed [default: the recipe's, else 0].")
@click.option("--selection", type=SELECTIONS, default="last", show_default=True,
              help="Epoch selection: last; test-best or official pick on the test subject "
              "(optimistic, for reproduction) and are labelled so in every output; last is "
              "always reported beside them.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1…")
@click.option("--folds", type=int, help="Run only the first N folds (a quick look).")
@click.option("--option", "options", multiple=True, metavar="NAME=VALUE",
              help="Model option, e.g. block_length=2 (repeatable).")
@click.option("--view-option", "view_options", multiple=True, metavar="NAME=VALUE",
              help="View option, e.g. strain=offtanet (repeatable).")
@click.option("--workers", type=int, default=None,
              help="CPU only: folds trained in parallel processes, one thread each "
              "[default: every core].")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def train(model, store, variant, epochs, lr, batch_size, precision, runs, seed, selection,
          device, folds, options, view_options, workers, out):
    """Train a model under leave-one-subject-out by its recipe; write metrics and predictions.

    \b
    Example:
      mefeat train --model ststnet --store htnet.zarr --out runs/ststnet
    """
    from mefeat.options import parse_assignments
    from mefeat.run.train import run_training

    bs = None if batch_size is None else (batch_size if batch_size == "full" else
                                          _int(batch_size, "--batch-size"))
    m = run_training(model, store, out=out, variant=variant, epochs=epochs, lr=lr,
                     batch_size=bs, precision=precision, runs=runs, seed=seed,
                     selection=selection, device=device, folds=folds,
                     model_options=parse_assignments(options, what="option"),
                     view_options=parse_assignments(view_options, what="view-option"),
                     workers=workers if workers is not None else (os.cpu_count() or 1),
                     progress=True)
    _print_metrics(m)
    click.echo(f"wrote {out}/metrics.json, predictions.csv, confusion.png")


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an integer or 'full'",
                                 param_hint=name) from None


@click.command()
@click.option("--model", required=True, type=MODELS)
@click.option("--store", required=True, help="Store: a folder or an fsspec URL.")
@click.option("--variant", help="Feature variant [default: the store's only one, else gt].")
@click.option("--checkpoints", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with one checkpoint per held-out subject, named after it.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--option", "options", multiple=True, metavar="NAME=VALUE",
              help="Model option the checkpoints were trained with (repeatable).")
@click.option("--view-option", "view_options", multiple=True, metavar="NAME=VALUE",
              help="View option, e.g. strain=offtanet (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def evaluate(model, store, variant, checkpoints, device, options, view_options, out):
    """Evaluate per-subject checkpoints (.pth read weights-only, or .safetensors) under LOSO.

    \b
    Example:
      mefeat evaluate --model ststnet --store htnet.zarr \\
          --checkpoints STSTNet/STSTNet_Weights --out runs/ststnet-official
    """
    from mefeat.options import parse_assignments
    from mefeat.run.train import run_evaluation

    m = run_evaluation(model, store, checkpoints=checkpoints, out=out, variant=variant,
                       device=device, model_options=parse_assignments(options, what="option"),
                       view_options=parse_assignments(view_options, what="view-option"))
    _print_metrics(m)


@click.command()
@click.argument("clip", type=click.Path(exists=True, path_type=Path))
@click.option("--run", "run_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The --out folder of `mefeat train` (checkpoints/run.json and the folds).")
@click.option("--fold", help="Use only this held-out subject's checkpoint (e.g. "
              "casme2/sub01 or sub01) [default: the mean softmax of every fold].")
@click.option("--window", type=click.IntRange(min=8), default=64, show_default=True,
              help="A clip of at most this many frames is one expression (first frame "
              "onset, last offset); a longer video is searched in windows of this many "
              "frames, half a window apart (raise it for 200-fps video).")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=0.1,
              show_default=True, help="Long videos: the least peak motion score of an "
              "interval (mean drift-removed Farneback magnitude inside the face, in pixels "
              "of the 112-px face); an interval ends where the score falls below half of it.")
@click.option("--labels", type=SCHEMES,
              help="Refuse a run not trained on this label scheme's classes.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1…")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG of the key frames, the onset→apex flow (u, v) and the probabilities.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def predict(clip, run_dir, fold, window, threshold, labels, device, out, as_json):
    """Classify the micro-expression of CLIP (a folder of frames or a video) with a run.

    The face is found on the first frame and every frame aligned with the run's geometry;
    the apex is spotted (by the run's spot method for a spot:METHOD variant, else
    flowpeak); the run's variant's flows and the model's view are made as for a store; the
    label is the argmax of the folds' mean softmax. A video longer than --window is
    searched for expression intervals, each classified the same way.

    \b
    Example:
      mefeat predict demo/CASME2/sub01/EP01_01 --run demo/train-ststnet
      mefeat predict interview.mp4 --run demo/train-ststnet --json --out pred.png
    """
    from mefeat.report.predict import format_prediction
    from mefeat.run.predict import predict as run_predict

    result = run_predict(clip, run_dir, fold=fold, window=window, threshold=threshold,
                         labels=labels, device=device, out=out, progress=not as_json)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    for line in format_prediction(result):
        click.echo(line)
    if out is not None:
        click.echo(f"wrote {out}")


COMMANDS = [models, import_features, train, evaluate, predict]

"""Commands about models: models, import-features, train, evaluate, predict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ._choices import IMPORT_FORMATS, MODELS, PRECISIONS, SCHEMES, SELECTIONS
from ._interrupt import kept_note, set_interrupt_note


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
    from mefeat.models import get_spec

    rows = []
    for name in _model_names():
        spec = get_spec(name)
        rows.append({"name": name, "params": spec.count_params(),
                     "params_official": spec.params, "inputs": spec.inputs,
                     "recipe": spec.recipe and spec.recipe.to_dict(), "options": spec.options,
                     "paper": spec.paper, "code": spec.code,
                     "official_inputs": spec.official_inputs and {
                         "flow_size": spec.official_inputs.flow_size,
                         "view_options": spec.official_inputs.view_options,
                         "source": spec.official_inputs.source},
                     "deviations": list(spec.deviations)})
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
    set_interrupt_note(kept_note("store", store, f"official-{fmt}"))
    from mefeat.run.import_features import import_features as run

    summary = run(folder, fmt=fmt, store=store, points=points)
    for line in summary.lines():
        click.echo(line)
    if not summary.imported:
        click.echo("mefeat: error: nothing was imported: every sample failed (reasons above); fix "
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
@click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epochs per "
              "fold.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Override the recipe's learning rate.")
@click.option("--batch-size", help="Override the recipe's batch size (an int, or 'full').")
@click.option("--precision", type=PRECISIONS,
              help="Override the recipe's precision (bf16/fp16: autocast).")
@click.option("--runs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeats with seeds seed, seed+1…")
@click.option("--seed", type=click.IntRange(min=0), help="Run seed [default: the recipe's, "
              "else 0].")
@click.option("--selection", type=SELECTIONS, default="last", show_default=True,
              help="Epoch selection: last; test-best or official pick on the test subject "
              "(optimistic, for reproduction) and are labelled so in every output; last is "
              "always reported beside them. The checkpoints hold the selected epoch's weights.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1…")
@click.option("--folds", type=click.IntRange(min=1), help="Train only the first N folds (a "
              "quick look).")
@click.option("--subjects", help="Train only these held-out subjects, comma-separated "
              "(casme2/sub01,samm/006): machines can fill one run folder between them.")
@click.option("--option", "options", multiple=True, metavar="NAME=VALUE",
              help="Model option, e.g. block_length=2 (repeatable).")
@click.option("--view-option", "view_options", multiple=True, metavar="NAME=VALUE",
              help="View option, e.g. strain=offtanet (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="CPU: folds trained in parallel processes, one thread each [default: "
              "every core]; Ray: CPUs of a local Ray.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where folds train: this machine, or a Ray cluster.")
@click.option("--address", help="Ray cluster address (default: start a local Ray).")
@click.option("--gpus-per-job", type=click.FloatRange(min=0), default=0.0,
              show_default=True, help="GPU fraction per fold on Ray (implies --device cuda).")
@click.option("--checkpoints", type=click.Choice(["selected", "none"]), default="selected",
              show_default=True, help="Keep each fold's weights of the selected epoch "
              "(run 0), or none.")
@click.option("--checkpoint-dtype", type=click.Choice(["float32", "float16", "bfloat16"]),
              default="float32", show_default=True, help="How checkpoints are stored "
              "(half precision: half the disk).")
@click.option("--overwrite", is_flag=True, help="Replace a run folder that holds another run.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard event files of the "
              "per-epoch history (needs tensorboard).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The run folder: resumed when it holds this run.")
def train(model, store, variant, epochs, lr, batch_size, precision, runs, seed, selection,
          device, folds, subjects, options, view_options, workers, executor, address,
          gpus_per_job, checkpoints, checkpoint_dtype, overwrite, tensorboard, out):
    """Train a model under leave-one-subject-out by its recipe into a run folder.

    Each fold's predictions, per-epoch history and checkpoint are written to OUT as the
    fold ends; the same command again resumes the folds not yet done, and OUT holding a
    run with other settings is refused. The scores are those of the folds present.

    \b
    Example:
      mefeat train --model ststnet --store htnet.zarr --out runs/ststnet-htnet
      mefeat train --model causalnet --store causalnet.zarr --subjects samm/006 \\
          --out runs/causalnet-006
    """
    set_interrupt_note(kept_note("run_folder", out))
    from mefeat.options import parse_assignments
    from mefeat.run.train import run_training

    bs = None if batch_size is None else (batch_size if batch_size == "full" else
                                          _int(batch_size, "--batch-size"))
    if folds is not None and subjects is not None:
        raise click.UsageError("give --folds or --subjects, not both")
    if gpus_per_job and device == "cpu":
        device = "cuda"
    m = run_training(model, store, out=out, variant=variant,
                     view_options=parse_assignments(view_options, what="view-option"),
                     overwrite=overwrite, tensorboard=tensorboard, progress=True,
                     epochs=epochs, lr=lr, batch_size=bs, precision=precision, runs=runs,
                     seed=seed, selection=selection, device=device,
                     folds=[s.strip() for s in subjects.split(",")] if subjects else folds,
                     model_options=parse_assignments(options, what="option"),
                     workers=workers if workers is not None else (os.cpu_count() or 1),
                     executor=executor, address=address, gpus_per_job=gpus_per_job,
                     checkpoints=checkpoints, checkpoint_dtype=checkpoint_dtype)
    _print_metrics(m)
    written = [n for n in ("metrics.json", "predictions.csv", "history.csv", "confusion.png",
                           "learning_curves.png") if (out / n).is_file()]
    click.echo(f"wrote {out}/{', '.join(written)}")


def _int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an integer or 'full'",
                                 param_hint=name) from None
    if value < 1:
        raise click.BadParameter(f"{value} is not >= 1", param_hint=name)
    return value


@click.command()
@click.option("--store", required=True, help="Store: a folder or an fsspec URL.")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A run folder of `mefeat train`: its model, options and checkpoints.")
@click.option("--model", type=MODELS, help="The model of the checkpoints (without --run).")
@click.option("--variant", help="Feature variant [default: the run's, else the store's only "
              "one, else gt].")
@click.option("--checkpoints",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Without --run: a folder with one checkpoint per held-out subject, named "
              "after it.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--option", "options", multiple=True, metavar="NAME=VALUE",
              help="Model option the checkpoints were trained with (repeatable).")
@click.option("--view-option", "view_options", multiple=True, metavar="NAME=VALUE",
              help="View option, e.g. strain=offtanet (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def evaluate(store, run_dir, model, variant, checkpoints, device, options, view_options, out):
    """Score per-subject checkpoints under LOSO: a run's (--run), or official weights
    (.pth read weights-only, or .safetensors); folds without one are named and left out.

    \b
    Example:
      mefeat evaluate --run runs/ststnet-htnet --store htnet.zarr --out runs/ststnet-eval
      mefeat evaluate --model ststnet --store htnet.zarr \\
          --checkpoints STSTNet/STSTNet_Weights --out runs/ststnet-official
    """
    from mefeat.options import parse_assignments
    from mefeat.run.train import run_evaluation

    if run_dir is None and (model is None or checkpoints is None):
        raise click.UsageError("give --run RUN, or --model and --checkpoints")
    if run_dir is not None and (model or checkpoints or options or view_options):
        raise click.UsageError("--run names the model, its options and checkpoints; leave "
                               "--model, --checkpoints, --option and --view-option out")
    m = run_evaluation(store, out=out, run=run_dir, model=model, checkpoints=checkpoints,
                       variant=variant, device=device,
                       model_options=parse_assignments(options, what="option"),
                       view_options=parse_assignments(view_options, what="view-option"))
    _print_metrics(m)


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--selection", type=SELECTIONS, help="Rescore under this policy instead of the "
              "one the run was made with (said so in the report).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where the reports go [default: the run folder].")
def score(run, selection, out):
    """Score a run folder's finished folds (trains nothing), by the rule the run recorded.

    \b
    Example:
      mefeat score runs/ststnet-htnet
      mefeat score runs/htnet --selection last --out runs/htnet-last
    """
    from mefeat.run.train import run_score

    _print_metrics(run_score(run, selection=selection, out=out))


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


COMMANDS = [models, import_features, train, evaluate, score, predict]

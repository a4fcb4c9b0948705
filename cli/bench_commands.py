"""Commands about benchmarks: spot, bench."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._choices import EXECUTORS, FLOWS, SELECTIONS, SPOTTERS, LazyHelpOption, conditions_help
from ._interrupt import kept_note, set_interrupt_note


@click.command()
@click.argument("store")  # a folder or any fsspec URL zarr accepts
@click.option("--method", "methods", multiple=True, type=SPOTTERS,
              help="Spotting method(s) (default: all).")
@click.option("--within", default="1,2,5", show_default=True, help="Frame tolerances.")
@click.option("--json", "as_json", is_flag=True)
def spot(store, methods, within, as_json):
    """Spot the apex from the aligned frames; frame error against the annotated apex.

    \b
    Example:
      mefeat spot demo/features.zarr
    """
    from mefeat.keyframes import SPOT_METHODS
    from mefeat.run.spot import spot_store

    try:
        tol = tuple(int(x) for x in within.split(","))
    except ValueError:
        tol = ()
    if not tol or min(tol) < 0:
        raise click.BadParameter(f"{within!r} is not a comma-separated list of frame counts "
                                 ">= 0 (e.g. 1,2,5)", param_hint="--within")
    res = spot_store(store, methods=methods or tuple(SPOT_METHODS), within=tol)
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    click.echo(f"{res['clips']} clips with an annotated apex ({len(res['skipped'])} skipped)")
    for m, e in res["methods"].items():
        inside = "  ".join(f"±{k}: {100 * e[f'within_{k}']:.0f}%" for k in tol)
        click.echo(f"  {m:<9} mean error {e['mean_abs_error']:.2f} frames, median "
                   f"{e['median_abs_error']:.1f}, {inside}")


@click.command()
@click.argument("store")  # a folder or any fsspec URL zarr accepts
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--baselines", is_flag=True, help="Every registered model.")
@click.option("--models", "models", default=None, help="Comma-separated model names.")
@click.option("--conditions", cls=LazyHelpOption, help_from=conditions_help)
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1),
              help="Epochs per fold (default: each paper's).")
@click.option("--selection", type=SELECTIONS, default="last", show_default=True,
              help="Epoch selection applied to every job: last; test-best or official (each "
              "model's own rule) pick on the test subjects and are labelled so. Under official, "
              "a model with official inputs (`mefeat models --json`) trains on them.")
@click.option("--sweep", multiple=True, metavar="MODEL.OPTION=V1,V2",
              help="Extra models over an option, e.g. causalnet.block_length=1,2,4,6.")
@click.option("--spot-method", default="flowpeak", show_default=True, type=SPOTTERS)
@click.option("--variant", help="Use this variant as the GT column (e.g. an imported one).")
@click.option("--flow", type=FLOWS,
              help="Flow method of the variants (default: the one the store was made with); "
              "not of a model's official inputs under --selection official.")
@click.option("--executor", type=EXECUTORS, default="local", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes (or Ray CPUs).")
@click.option("--address", help="Ray cluster address (default: start a local Ray).")
@click.option("--gpus-per-job", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="GPU fraction per job on Ray, so small folds share a GPU.")
@click.option("--device", help="cpu, cuda, cuda:1… [default: cuda with --gpus-per-job > 0, "
              "else cpu]")
@click.option("--no-tsne", is_flag=True, help="Skip the t-SNE figure.")
def bench(store, out, baselines, models, conditions, runs, epochs, selection, sweep,
          spot_method, variant, flow, executor, workers, address, gpus_per_job, device, no_tsne):
    """Robustness benchmark: models × key-frame conditions × runs under LOSO (Table 4).

    Finished jobs are kept in OUT/jobs; running the same command again resumes.

    \b
    Example:
      mefeat bench demo/features.zarr --baselines --runs 3 --epochs 20 --out demo/bench
      mefeat bench demo/features.zarr --models causalnet --conditions gt \\
          --sweep causalnet.block_length=1,2,4,6 --out demo/fig1
    """
    set_interrupt_note(kept_note("bench", out))
    from mefeat.run.bench import run_bench

    names = None if baselines or not models else [m.strip() for m in models.split(",")]
    if not baselines and not models and not sweep:
        raise click.UsageError("say which models: --baselines, --models or --sweep")
    if sweep and not models and not baselines:
        names = []
    if device is None:
        device = "cuda" if gpus_per_job > 0 else "cpu"
    res = run_bench(store, out=out, models=names, sweep=sweep,
                    conditions=None if conditions is None else
                    [c.strip() for c in conditions.split(",")], runs=runs,
                    epochs=epochs, selection=selection, spot_method=spot_method,
                    variant=variant, flow=flow, executor=executor, workers=workers, address=address,
                    gpus_per_job=gpus_per_job, device=device, tsne=not no_tsne)
    click.echo(f"{res.jobs_run} jobs run, {res.jobs_resumed} already done")
    if res.excluded:
        click.echo(f"{len(res.excluded)} sample(s) left out of every condition, "
                   f"{res.n_samples} compared (list in {Path(out) / 'excluded.json'}):")
        for key, why in sorted(res.excluded.items())[:20]:
            click.echo(f"  {key}: {why}")
    click.echo((Path(out) / "table.md").read_text())


COMMANDS = [spot, bench]

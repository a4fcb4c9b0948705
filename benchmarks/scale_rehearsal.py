"""The flagship at its real size, on a short schedule: CausalNet and HTNet through `mefeat
train` on the full 442-sample MEGC 2019 composite imported from the official features, every
one of the 68 LOSO folds, with each fold's checkpoint streamed to the run folder.

Each pass runs in a fresh process (so its peak RSS is its own): 2 folds and 6 folds (both
with float32 checkpoints: the peak must not grow with the folds), then all folds (checkpoints
as ``--checkpoints`` says). It prints, per model: peak RSS of each pass (and peak GPU memory
on CUDA), bytes written, seconds per fold and per epoch, the projected time of the full
recipe (its epochs × 68 folds), and the achieved GFLOP/s: the model's forward + backward
FLOPs per training sample (``torch.utils.flop_counter``) × the samples trained, over the
fold's time (held-out evaluation and checkpoint writing included in the time, not in the
FLOPs), against a 2048² float32 matmul timed in the same process (the practical peak).

    python benchmarks/scale_rehearsal.py                        # both models, 1 epoch a fold
    python benchmarks/scale_rehearsal.py --models htnet --all-folds 10 --json
    python benchmarks/scale_rehearsal.py --device cuda --checkpoints none   # on a GPU

Results: ``--out`` (default ``benchmarks/results/scale_rehearsal``), ``<host>.json`` and
``.md``. On the 2-core development VM both models take about an hour and a quarter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "features"
FORMATS = {"causalnet": ("cde28_causalnet", "causalnet", None),
           "htnet": ("cde28_htnet", "htnet", "cde28_htnet_mtcnn_points.csv")}

# One pass: `mefeat train` in this (fresh) process, then its peak memory, as JSON.
PASS = """
import json, resource, sys, time
import torch
from mefeat.run.train import run_training
args = json.loads(sys.argv[1])
if args["device"].startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
m = run_training(args["model"], args["store"], out=args["out"], epochs=args["epochs"],
                 folds=args["folds"], workers=1, device=args["device"],
                 checkpoints=args["checkpoints"], checkpoint_dtype=args["dtype"])
out = {"wall_s": time.perf_counter() - t0, "fold_seconds": m["fold_seconds"],
       "folds": m["folds_scored"], "samples": m["samples_scored"], "uf1": m["uf1"],
       "uar": m["uar"], "checkpoint_bytes": m["checkpoints"]["bytes"],
       "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "torch_threads": torch.get_num_threads()}
if args["device"].startswith("cuda"):
    out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps(out))
"""


def matmul_gflops(device: str, n: int = 2048, dtype=torch.float32, repeats: int = 10) -> float:
    """GFLOP/s of an n×n matmul (the practical peak), best of ``repeats``."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 2):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def train_flops_per_sample(model: str, data, batch: int = 4) -> float:
    """Forward + backward FLOPs of one training sample (a batch of ``batch``, divided), as
    the official code computes it: NesT's rewritten layers (``official_formulation``) skip
    work the official layers do (the query and key products of single-position attention),
    which makes training faster, not the model's work smaller. (Code from before that
    rewrite, run by this script for a before/after comparison, has no such switch and
    counts the official operations anyway.)"""
    import contextlib

    from torch.utils.flop_counter import FlopCounterMode

    from mefeat.models import create_model, nest

    official = getattr(nest, "official_formulation", contextlib.nullcontext)
    net = create_model(model, num_classes=data.num_classes).train()
    xs = tuple(torch.from_numpy(x[:batch]) for x in data.inputs)
    with official(), FlopCounterMode(display=False) as counter:
        out = net(xs[0] if len(xs) == 1 else xs)
        torch.nn.functional.cross_entropy(out, torch.as_tensor(data.labels[:batch])).backward()
    return counter.get_total_flops() / batch


def import_store(model: str, data_dir: Path, store: Path) -> None:
    from mefeat.run.import_features import import_features

    folder, fmt, points = FORMATS[model]
    summary = import_features(data_dir / folder, fmt=fmt, store=store,
                              points=None if points is None else data_dir / points)
    if summary.failed:
        raise SystemExit(f"{folder}: {len(summary.failed)} samples failed to import")


def one_pass(model: str, store: Path, out: Path, *, epochs: int, folds: int | None,
             device: str, checkpoints: str, dtype: str) -> dict:
    args = {"model": model, "store": str(store), "out": str(out), "epochs": epochs,
            "folds": folds, "device": device, "checkpoints": checkpoints, "dtype": dtype}
    proc = subprocess.run([sys.executable, "-c", PASS, json.dumps(args)], capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"{model} pass of {folds} folds failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["bytes_written"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return res


def rehearse(model: str, *, data_dir: Path, device: str, epochs: int, all_folds: int | None,
             checkpoints: str, work: Path) -> dict:
    from mefeat.models import get_spec
    from mefeat.train import load_view

    store = work / f"{model}.zarr"
    import_store(model, data_dir, store)
    data = load_view(store, model)
    recipe = get_spec(model).recipe
    n_folds = len(set(data.subjects))
    row: dict = {"model": model, "params": get_spec(model).params, "samples": len(data.labels),
                 "folds_total": n_folds, "epochs_per_fold": epochs,
                 "recipe_epochs": recipe.epochs, "batch_size": recipe.batch_size}
    row["gflop_per_sample"] = train_flops_per_sample(model, data) / 1e9
    row["matmul_fp32_gflops"] = matmul_gflops(device)
    passes = {}
    for label, folds, ck, dtype in (("2 folds", 2, "selected", "float32"),
                                    ("6 folds", 6, "selected", "float32"),
                                    (f"{all_folds or n_folds} folds", all_folds,
                                     "none" if checkpoints == "none" else "selected",
                                     checkpoints if checkpoints != "none" else "float32")):
        print(f"  {model}: {label} (checkpoints {ck}, {dtype})", file=sys.stderr, flush=True)
        passes[label] = one_pass(model, store, work / f"{model}-run", epochs=epochs,
                                 folds=folds, device=device, checkpoints=ck, dtype=dtype)
        passes[label]["checkpoints"] = f"{ck} ({dtype})" if ck == "selected" else "none"
    row["passes"] = passes
    big = passes[f"{all_folds or n_folds} folds"]
    secs = list(big["fold_seconds"].values())
    row["s_per_fold"] = sum(secs) / len(secs)
    row["s_per_epoch"] = row["s_per_fold"] / epochs
    n_train = len(data.labels) - len(data.labels) / n_folds  # a fold's training samples
    row["achieved_gflops"] = row["gflop_per_sample"] * n_train * epochs / row["s_per_fold"]
    row["fraction_of_matmul"] = row["achieved_gflops"] / row["matmul_fp32_gflops"]
    row["projected_full_recipe_h"] = row["s_per_epoch"] * recipe.epochs * n_folds / 3600
    return row


def markdown(report: dict) -> str:
    lines = [f"# Scale rehearsal on {report['host']}", "",
             f"{report['cpu']}; device {report['device']}, torch {report['torch']}, "
             f"{report['threads']} threads; {report['epochs']} epoch(s) a fold.", "",
             "| model | pass | checkpoints | peak RSS (MiB) | peak GPU (MiB) | bytes written | "
             "s / fold |", "|---|---|---|---|---|---|---|"]
    for r in report["models"]:
        for label, p in r["passes"].items():
            secs = list(p["fold_seconds"].values())
            lines.append(f"| {r['model']} | {label} | {p['checkpoints']} | "
                         f"{p['peak_rss_mib']:.0f} | {p.get('peak_gpu_mib', float('nan')):.0f} "
                         f"| {p['bytes_written'] / 2**30:.2f} GiB | "
                         f"{sum(secs) / len(secs):.1f} |")
    lines += ["", "| model | GFLOP / sample (fwd+bwd) | s / epoch | achieved GFLOP/s | fp32 "
              "matmul GFLOP/s | fraction | full recipe, projected |",
              "|---|---|---|---|---|---|---|"]
    for r in report["models"]:
        lines.append(f"| {r['model']} | {r['gflop_per_sample']:.2f} | {r['s_per_epoch']:.1f} | "
                     f"{r['achieved_gflops']:.1f} | {r['matmul_fp32_gflops']:.0f} | "
                     f"{r['fraction_of_matmul']:.2f} | {r['recipe_epochs']} epochs × "
                     f"{r['folds_total']} folds: {r['projected_full_recipe_h']:.1f} h |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="causalnet,htnet")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared features folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=1, help="epochs a fold (short schedule)")
    ap.add_argument("--all-folds", type=int, default=None,
                    help="folds of the last pass (default: all 68)")
    ap.add_argument("--checkpoints", default="bfloat16",
                    choices=("float32", "float16", "bfloat16", "none"),
                    help="checkpoints of the last pass (the 2- and 6-fold passes: float32)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results"
                    / "scale_rehearsal")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from mefeat.provenance import environment

    env = environment()
    report = {"host": platform.node() or "host", "cpu": env["cpu"]["model"],
              "device": args.device, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "epochs": args.epochs,
              "environment": env, "models": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("MEFEAT_SCRATCH")) as tmp:
        for model in args.models.split(","):
            report["models"].append(rehearse(
                model.strip(), data_dir=args.data, device=args.device, epochs=args.epochs,
                all_folds=args.all_folds, checkpoints=args.checkpoints, work=Path(tmp)))
    write_report(args.out, f"{args.device.split(':')[0]}-{report['host']}", report,
                 markdown(report), as_json=args.json)
    return 0


def write_report(out: Path, name: str, report: dict, text: str, *, as_json: bool) -> None:
    """``out/<name>.json`` and ``.md``, and the report printed (JSON or the Markdown)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=str))
    (out / f"{name}.md").write_text(text)
    print(json.dumps(report, default=str) if as_json else text)


if __name__ == "__main__":
    sys.exit(main())

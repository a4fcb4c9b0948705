"""The GPU check in one command: every model's batched and one-at-a-time fold paths agree on
CUDA, and CausalNet and HTNet train LOSO folds at their official recipes, timed against the
official loops.

On one H100 / H200 it should finish inside about 15 minutes (the rehearsal included; not yet
measured on a GPU: ``--no-rehearsal`` leaves it out) and writes ``OUT/gpu_check.json`` and
``OUT/gpu_check.md``:

1. for every registered model, a few training steps on the batched fold path (vmap) and on
   the one-at-a-time path, both on CUDA, under plain SGD at the recipe's learning rate (the
   rest of the recipe as it is): their logits agree within the CPU tests' tolerance (rtol
   1e-4, atol 1e-5, TF32 off for this part) and nothing is NaN; a model whose recipe keeps
   it off the batched path says why;
2. CausalNet on the imported official CausalNet features by its recipe (Adam 5e-5, 200
   epochs, full batch): as many LOSO folds as fit in ``--causalnet-seconds`` (all 68 if
   they fit), seconds per fold against the official loop's 123.8 s (measured on one H200),
   UF1 / UAR under ``last`` and the official rule on those folds;
3. HTNet the same on the imported HTNet features with the per-sample MTCNN points
   (``--htnet-seconds``), against the official 0.14-0.16 s an epoch (800 epochs);
4. the scale rehearsal (``benchmarks/scale_rehearsal.py``): CausalNet and HTNet through
   ``mefeat train`` on all 68 folds, 1 epoch a fold, peak host and GPU memory at 2, 6 and
   68 folds, seconds per fold, achieved GFLOP/s against a float32 matmul;
5. long-video spotting (issue 27): synthetic long videos (4 of 600 frames; 2 in the smoke
   run) through ``extract-long`` (OpenCV's Farneback flow on the CPU: frames per second),
   then ``spot-long --spotter softnet`` (LOSO, one SoftNet per subject and kind) on the CPU
   and on the GPU: seconds, frames per second and the ratio, with each run's F1;
6. peak GPU memory, dtype, TF32 / bf16 settings, torch and CUDA versions;
7. training throughput (issue 29, ``benchmarks/train_throughput.py``): HTNet's and
   CausalNet's steady epochs by their recipes in float32 and in bf16 (autocast), GFLOP/s
   against the GPU's float32 and bf16 matmul peaks measured in the same process, and the
   bf16 / fp32 ratio (the smoke run: Off-ApexNet on the CPU, 6 timed epochs).

``--smoke`` runs the same steps on the CPU with 2 folds and 2 epochs, on a few light
models and on the samples of 4 subjects (CausalNet's full-batch step on 435 samples takes
45 s on 2 CPU cores); a default test runs it, so the script cannot rot while no GPU is at
hand.

    python benchmarks/gpu_check.py --out gpu-check            # on a GPU machine
    python benchmarks/gpu_check.py --smoke --out /tmp/smoke   # anywhere
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "features"
OFFICIAL = {  # the official loops on one H200, measured with their own scripts (issue 13)
    "causalnet": {"seconds_per_fold": 123.8, "epochs": 200, "uf1": 0.8976, "uar": 0.9020},
    "htnet": {"seconds_per_epoch": (0.14, 0.16), "epochs": 800, "uf1": 0.8603, "uar": 0.8475},
}
RTOL, ATOL = 1e-4, 1e-5  # tests/test_trainer.py's tolerance for the two paths
# Options that switch a model's dropout off, so that the two paths draw nothing different.
NO_DROPOUT = {"ststnet": {"dropout": 0.0}, "offapexnet": {"drop_rate": 0.0},
              "micro_attention": {"drop_rate": 0.0}, "offtanet": {"drop_rate": 0.0}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SMOKE_MODELS = ("ststnet", "offapexnet", "offtanet", "mmnet")  # batched, channels-last, skipped


def check_paths(device: torch.device, *, epochs: int, models=None) -> list[dict]:
    """Each model: a few steps on both fold paths, logits compared."""
    from mefeat.models import get_spec, list_models
    from mefeat.train import train_loso
    from mefeat.train.batched import batching_blockers

    zoo = models or [n for n in list_models()
                     if get_spec(n).builder.__module__.startswith("mefeat.models.")]
    rng = np.random.default_rng(0)
    rows = []
    for name in zoo:
        spec = get_spec(name)
        n = 12 if models is None else 6  # the smoke run: less of the same
        xs = tuple(rng.normal(size=(n, *s)).astype(np.float32) for s in spec.input_shapes)
        y = np.arange(n) % 3
        subjects = np.array([f"d/s{i % 3}" for i in range(n)], dtype=object)
        # Plain SGD at the recipe's learning rate: Adam turns the rounding noise of a bias
        # before a BatchNorm (whose true gradient is 0) into full-size steps, so two correct
        # paths drift apart under it (see tests/test_trainer.py's TinyNet).
        from mefeat.recipes import Optimizer

        recipe = spec.recipe.replace(keyframe_jitter=None, epochs=epochs,
                                     optimizer=Optimizer("sgd", lr=spec.recipe.optimizer.lr))
        row = {"model": name}
        kw = dict(recipe=recipe, batch_size=4, device=str(device), seed=0,
                  model_options=NO_DROPOUT.get(name, {}))
        t0 = time.perf_counter()
        one = train_loso(name, xs, y, subjects, fold_batch=1, **kw)
        _sync(device)
        row["one_at_a_time_s"] = time.perf_counter() - t0
        row["nan"] = bool(np.isnan(one.logits).any())
        blockers = batching_blockers(recipe)
        if blockers:
            row["batched"] = "skipped: " + "; ".join(blockers)
        else:
            t0 = time.perf_counter()
            bat = train_loso(name, xs, y, subjects, fold_batch=3, **kw)
            _sync(device)
            row["batched_s"] = time.perf_counter() - t0
            row["batched"] = bat.settings["fold_batching"]
            row["nan"] = row["nan"] or bool(np.isnan(bat.logits).any())
            diff = np.abs(bat.logits - one.logits)
            row["max_abs_diff"] = float(diff.max())
            row["agree"] = bool(np.allclose(bat.logits, one.logits, rtol=RTOL, atol=ATOL))
        rows.append(row)
        print(f"  {name}: {row}", file=sys.stderr, flush=True)
    return rows


def _import(folder: Path, fmt: str, store: Path, points: Path | None) -> None:
    from mefeat.run.import_features import import_features

    summary = import_features(folder, fmt=fmt, store=store, points=points)
    if summary.failed:
        raise SystemExit(f"{folder}: {len(summary.failed)} samples failed to import")


def loso_timing(model: str, store: Path, device: torch.device, *, budget_s: float,
                epochs: int | None, max_folds: int | None, subjects: int | None = None) -> dict:
    """As many folds of ``model`` as fit in ``budget_s``, by its recipe; timing and scores.
    ``subjects``: use only the samples of the first that many subjects (the smoke run)."""
    from mefeat.train import load_view, train_loso

    data = load_view(store, model)
    if subjects:
        data = data.subset(np.isin(data.subjects, sorted(set(data.subjects))[:subjects]))
    subjects = sorted(set(data.subjects))
    kw = dict(epochs=epochs, selection="official", device=str(device), seed=0)
    # A first group of folds sets the pace; the rest of the budget decides how many more.
    first = subjects[: min(len(subjects), max_folds or 8, 8)]
    t0 = time.perf_counter()
    res = train_loso(model, data, folds=first, **kw)
    _sync(device)
    spent = time.perf_counter() - t0
    per_fold = spent / len(first)
    more = int(max(0, budget_s - spent) // max(per_fold, 1e-9))
    rest = subjects[len(first): len(first) + more]
    if max_folds:
        rest = rest[: max(0, max_folds - len(first))]
    results = [res]
    if rest:
        t1 = time.perf_counter()
        results.append(train_loso(model, data, folds=rest, **kw))
        _sync(device)
        spent += time.perf_counter() - t1
    folds_run = len(first) + len(rest)
    out = {"model": model, "folds": folds_run, "folds_total": len(subjects),
           "epochs": res.epochs, "wall_s": spent, "s_per_fold": spent / folds_run,
           "fold_batching": res.settings["fold_batching"],
           "extrapolated_68_folds_min": spent / folds_run * len(subjects) / 60}
    import pandas as pd

    from mefeat.metrics import metrics_table

    for policy in ("last", "official"):
        preds = pd.concat([r.predictions_for(policy) for r in results])
        m = metrics_table(preds, data.num_classes)["overall"]
        out[policy] = {"uf1": m["uf1"], "uar": m["uar"], "acc": m["acc"]}
    return out


def official_seconds(model: str, epochs: int) -> float:
    """The official loop's seconds for one fold of ``epochs`` epochs (mid-range)."""
    off = OFFICIAL[model]
    if "seconds_per_fold" in off:
        return off["seconds_per_fold"] * epochs / off["epochs"]
    lo, hi = off["seconds_per_epoch"]
    return (lo + hi) / 2 * epochs


def spot_long_timing(device: torch.device, *, smoke: bool) -> dict:
    """Step 5 of the module docstring."""
    from mefeat.datasets.longvideo import read_long_videos
    from mefeat.demo import build_long_demo
    from mefeat.run.extract_long import extract_long
    from mefeat.run.spot_long import spot_long

    videos, epochs = (2, 1) if smoke else (4, 10)
    report: dict = {"videos": videos, "frames": videos * 600, "epochs": epochs, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        demo = build_long_demo(tmp, videos=videos, frames=600)
        store = Path(tmp) / "long.zarr"
        t0 = time.perf_counter()
        extract_long(read_long_videos("casme-sq", demo.root), store, flow="farneback")
        report["extract_long_fps"] = report["frames"] / (time.perf_counter() - t0)
        for dev in ["cpu"] if device.type == "cpu" else ["cpu", str(device)]:
            t0 = time.perf_counter()
            m = spot_long(store, spotter="softnet", out=Path(tmp) / f"spot-{dev}",
                          epochs=epochs, figures=False, device=dev)
            seconds = time.perf_counter() - t0
            report["runs"][dev] = {"seconds": seconds,
                                   "frames_per_second": report["frames"] / seconds,
                                   "overall_f1": m["spotting"]["overall"]["f1"]}
    return report


def throughput(device: torch.device, *, data: Path, smoke: bool) -> dict:
    """Step 7 of the module docstring."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scale_rehearsal import matmul_gflops
    from train_throughput import NoisyTiming, measure

    # Off-ApexNet's epoch is 0.16 s on one CPU core: 6 of them (and up to 3 tries) outweigh
    # a fold's noise on an otherwise idle machine.
    models, epochs = (("offapexnet",), 6) if smoke else (("htnet", "causalnet"), 2)
    report = {"matmul_fp32_gflops": matmul_gflops(str(device)),
              "matmul_bf16_gflops": matmul_gflops(str(device), dtype=torch.bfloat16)}
    report["models"], report["refused"] = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            try:
                report["models"].append(measure(m, data_dir=data, device=str(device),
                                                epochs=epochs, work=Path(tmp)))
            except NoisyTiming as e:  # said in the report; the other steps' figures stay
                report["refused"].append(str(e))
    return report


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device),
           "dtype": "float32",
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
           "tf32_cudnn": torch.backends.cudnn.allow_tf32,
           "float32_matmul_precision": torch.get_float32_matmul_precision(),
           "bf16_autocast": "only in recipes with precision bf16 (none by default)"}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return env


def markdown(report: dict) -> str:
    lines = ["# GPU check", "", f"Device: {report['environment'].get('gpu', 'cpu')}, torch "
             f"{report['environment']['torch']}, CUDA {report['environment']['cuda']}.", "",
             "## Fold paths", "", "| model | batched path | max abs diff | agree | NaN |",
             "|---|---|---|---|---|"]
    for r in report["paths"]:
        lines.append(f"| {r['model']} | {r['batched']} | {r.get('max_abs_diff', '—')} | "
                     f"{r.get('agree', '—')} | {r['nan']} |")
    lines += ["", "## LOSO at the official recipes", "",
              "| model | folds | s / fold | official loop | ratio | last UF1 / UAR | "
              "official UF1 / UAR | published UF1 / UAR |", "|---|---|---|---|---|---|---|---|"]
    for r in report["loso"]:
        off = OFFICIAL[r["model"]]
        ref = official_seconds(r["model"], r["epochs"])
        if "seconds_per_fold" in off:
            ref_text = f"{off['seconds_per_fold']:.1f} s / {off['epochs']}-epoch fold"
        else:
            lo, hi = off["seconds_per_epoch"]
            ref_text = f"{lo}-{hi} s / epoch"
        lines.append(
            f"| {r['model']} | {r['folds']}/{r['folds_total']} | {r['s_per_fold']:.2f} | "
            f"{ref_text} | {ref / r['s_per_fold']:.1f}× | {r['last']['uf1']:.4f} / "
            f"{r['last']['uar']:.4f} | {r['official']['uf1']:.4f} / {r['official']['uar']:.4f} "
            f"| {off['uf1']} / {off['uar']} |")
    for r in report.get("rehearsal", []):
        lines += ["", f"## Scale rehearsal: {r['model']}", "",
                  "| pass | peak RSS (MiB) | peak GPU (MiB) | s / fold |", "|---|---|---|---|"]
        for label, p in r["passes"].items():
            secs = list(p["fold_seconds"].values())
            lines.append(f"| {label} | {p['peak_rss_mib']:.0f} | "
                         f"{p.get('peak_gpu_mib', float('nan')):.0f} | "
                         f"{sum(secs) / len(secs):.2f} |")
        lines.append(f"\n{r['gflop_per_sample']:.2f} GFLOP a sample; {r['achieved_gflops']:.0f} "
                     f"GFLOP/s achieved against {r['matmul_fp32_gflops']:.0f} of a float32 "
                     f"matmul; full recipe projected {r['projected_full_recipe_h']:.2f} h.")
    if "spot_long" in report:
        r = report["spot_long"]
        lines += ["", "## Long-video spotting (softnet, LOSO)", "",
                  f"{r['videos']} synthetic long videos, {r['frames']} frames, {r['epochs']} "
                  f"epochs; extract-long {r['extract_long_fps']:.1f} frames/s (CPU).", "",
                  "| device | s | frames/s | overall F1 |", "|---|---|---|---|"]
        for dev, x in r["runs"].items():
            lines.append(f"| {dev} | {x['seconds']:.1f} | {x['frames_per_second']:.1f} | "
                         f"{x['overall_f1']:.3f} |")
    if "throughput" in report:
        t = report["throughput"]
        mm32, mm16 = t["matmul_fp32_gflops"], t["matmul_bf16_gflops"]
        lines += ["", "## Training throughput (steady epochs, fp32 and bf16)", "",
                  f"Matmul 2048²: {mm32:.0f} GFLOP/s float32, {mm16:.0f} GFLOP/s bf16.", "",
                  "| model | GFLOP / sample | fp32 s / epoch | fp32 GFLOP/s (fraction) | "
                  "bf16 s / epoch | bf16 GFLOP/s (fraction) | bf16 / fp32 |",
                  "|---|---|---|---|---|---|---|"]
        for r in t["models"]:
            f, b = r["fp32"], r["bf16"]
            lines.append(f"| {r['model']} | {r['gflop_per_sample']:.3f} | "
                         f"{f['s_per_epoch']:.3f} | {f['gflops']:.0f} ({f['gflops'] / mm32:.2f}) | "
                         f"{b['s_per_epoch']:.3f} | {b['gflops']:.0f} ({b['gflops'] / mm16:.2f}) | "
                         f"{r['bf16_speedup']:.2f}× |")
        lines += [f"- refused: {why}" for why in t.get("refused", [])]
    env = report["environment"]
    lines += ["", f"Peak GPU memory: {env.get('peak_memory_gib', 0):.2f} GiB; dtype "
              f"{env['dtype']}; TF32 matmul {env['tf32_matmul']}, cuDNN {env['tf32_cudnn']}; "
              f"wall {report['wall_s']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--data", type=Path, default=DATA, help="the shared features folder")
    ap.add_argument("--smoke", action="store_true", help="CPU, 2 folds, 2 epochs")
    ap.add_argument("--causalnet-seconds", type=float, default=180.0)
    ap.add_argument("--htnet-seconds", type=float, default=120.0)
    ap.add_argument("--no-rehearsal", dest="rehearsal", action="store_false",
                    help="skip the scale rehearsal (68 folds of CausalNet and HTNet, 1 epoch)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    if args.smoke:
        device, epochs, max_folds = torch.device("cpu"), 2, 2
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --smoke for the CPU version")
        device, epochs, max_folds = torch.device("cuda"), None, None
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"smoke": args.smoke}
    # The two paths are compared in full float32 (TF32 would round differently per shape).
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    report["paths"] = check_paths(device, epochs=2, models=SMOKE_MODELS if args.smoke else None)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    with tempfile.TemporaryDirectory() as tmp:
        cn, ht = Path(tmp) / "causalnet.zarr", Path(tmp) / "htnet.zarr"
        _import(args.data / "cde28_causalnet", "causalnet", cn, None)
        _import(args.data / "cde28_htnet", "htnet", ht, args.data / "cde28_htnet_mtcnn_points.csv")
        subjects = 4 if args.smoke else None
        report["loso"] = [
            loso_timing("causalnet", cn, device, budget_s=args.causalnet_seconds,
                        epochs=epochs, max_folds=max_folds, subjects=subjects),
            loso_timing("htnet", ht, device, budget_s=args.htnet_seconds, epochs=epochs,
                        max_folds=max_folds, subjects=subjects),
        ]
    for r in report["loso"]:
        r["official_s_per_fold"] = official_seconds(r["model"], r["epochs"])
        r["ratio_to_official"] = r["official_s_per_fold"] / r["s_per_fold"]
    if not args.smoke and args.rehearsal:
        # The scale rehearsal (benchmarks/scale_rehearsal.py): all 68 folds of CausalNet and
        # HTNet through `mefeat train`, 1 epoch a fold, peak memory against the folds.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from scale_rehearsal import rehearse

        with tempfile.TemporaryDirectory() as tmp:
            report["rehearsal"] = [
                rehearse(m, data_dir=args.data, device=str(device), epochs=1, all_folds=None,
                         checkpoints="none", work=Path(tmp)) for m in ("causalnet", "htnet")]
    report["spot_long"] = spot_long_timing(device, smoke=args.smoke)
    report["throughput"] = throughput(device, data=args.data, smoke=args.smoke)
    report["environment"] = environment(device)
    report["wall_s"] = time.perf_counter() - t_start
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

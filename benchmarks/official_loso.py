"""A full LOSO of one model by its recipe on an imported official feature folder, with UF1 /
UAR (overall and per dataset) under ``last`` and under the model's ``official`` epoch rule,
and the wall time.

Each fold is a bench job (``mefeat.run.bench.bench_job``) written to ``OUT/jobs`` as soon
as it finishes, so a killed run resumes where it stopped (run the same command again). The
scores come from the jobs' per-epoch held-out predictions (``mefeat.report.bench.score_run``).

    mefeat import-features ../shared/data/features/cde28_htnet --format htnet \\
        --store htnet.zarr --points ../shared/data/features/cde28_htnet_mtcnn_points.csv
    python benchmarks/official_loso.py --model dual_inception --store htnet.zarr \\
        --out runs/dual-inception --workers 2
    python benchmarks/official_loso.py --model offtanet --store htnet.zarr --folds 2 \\
        --epochs 3 --out /tmp/quick      # a quick look (first 2 folds, 3 epochs)
    python benchmarks/official_loso.py --model dual_inception --store htnet.zarr \\
        --out runs/dual-inception --score-done   # score the folds done so far, train none

Each fold it trains appends a line to ``OUT/fold_log.jsonl``: the fold, its seconds, when it
finished, the load average then, the cores, the workers, the versions
(``mefeat.provenance.versions``) and the git commit, so fold times from different machines
or busy hours can be told apart.

The published composite (MEGC 2019 CDE, 442 samples) figures it prints beside the result:
Dual-Inception UF1 0.7322 / UAR 0.7278 (Zhou et al., FG 2019, abstract); Off-ApexNet
0.7196 / 0.7096 (MEGC 2019 summary, as cited). OFF-TANet and Micro-attention published no
composite figure (their repository reports CASME + CASME II + CAS(ME)² with per-fold means);
the CausalNet supplement's Table 4 gives them only under noisy key frames.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PUBLISHED = {
    "dual_inception": (0.7322, 0.7278, "Zhou, Mao, Xue, FG 2019 (MEGC 2019), abstract"),
    "offapexnet": (0.7196, 0.7096, "MEGC 2019 composite results, as cited by later work"),
    "ststnet": (0.7353, 0.7605, "Liong et al., FG 2019, Table III"),
    "htnet": (0.8603, 0.8475, "Wang et al., Neurocomputing 2024, Table 2"),
    "causalnet": (0.8976, 0.9020, "tony19980810/CausalNet README (released weights)"),
}


def _commit() -> str | None:
    """The mefeat commit this script runs from (``+`` if the tree has changes), or None."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty.strip() else "")


def _summary(m: dict) -> dict:
    return {k: m[k] for k in ("uf1", "uar", "acc", "n")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--store", required=True, type=Path)
    ap.add_argument("--variant", default=None, help="default: the store's only variant")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--workers", type=int, default=1, help="fold processes (one thread each)")
    ap.add_argument("--folds", type=int, default=None, help="only the first N folds")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--score-done", action="store_true",
                    help="train nothing; score the folds whose job is already in OUT")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from mefeat.executors import run_jobs
    from mefeat.provenance import versions
    from mefeat.report.bench import score_run
    from mefeat.report.bench_plan import BenchJob, BenchModel, load_run, write_job
    from mefeat.run.bench import bench_job
    from mefeat.store import FeatureStore

    fs = FeatureStore.open(args.store)
    variant = fs.pick_variant(args.variant)
    folds = sorted({f"{d}/{s}" for d, s in zip(fs.column("dataset"), fs.column("subject"),
                                                strict=True)})
    all_folds = len(folds)
    folds = folds[: args.folds] if args.folds else folds
    model = BenchModel(args.model)
    jobs = [BenchJob(store=str(args.store), variant=variant, model=model, condition="gt",
                     run=0, fold=f, epochs=args.epochs, selection="official",
                     device=args.device) for f in folds]
    if args.score_done:
        jobs = [j for j in jobs if j.path(args.out).is_file()]
        if not jobs:
            ap.error(f"--score-done: no fold of {args.model} is done in {args.out}")
        folds = [j.fold for j in jobs]
    todo = [j for j in jobs if not j.path(args.out).is_file()]
    host = {"versions": versions(), "commit": _commit(), "cpus": os.cpu_count(),
            "workers": args.workers}
    t0 = time.perf_counter()
    for i, result in run_jobs(bench_job, [(j,) for j in todo],
                              executor="process" if args.workers > 1 else "local",
                              workers=args.workers):
        write_job(todo[i].path(args.out), result)
        with (args.out / "fold_log.jsonl").open("a") as f:
            f.write(json.dumps({"fold": todo[i].fold, "seconds": round(result["seconds"], 1),
                                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                "load_avg": os.getloadavg(), **host}) + "\n")
        print(f"fold {todo[i].fold}: {result['seconds']:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    done = load_run(args.out, model, "gt", 0, folds)
    classes = fs.attrs.get("classes") or []
    num_classes = len(classes) or int(fs.column("label").max()) + 1
    out = {"model": args.model, "variant": variant, "folds": len(folds), "of_folds": all_folds,
           "epochs": done[0]["epochs"], "wall_seconds_this_call": wall,
           "fold_seconds_total": sum(j["seconds"] for j in done),
           "fold_batching": done[0]["fold_batching"], "recipe": done[0]["recipe"]}
    for policy in ("last", "official"):
        table = score_run(done, policy, num_classes)
        out[policy] = {**_summary(table["overall"]),
                       "per_dataset": {d: _summary(m) for d, m in table["per_dataset"].items()}}
    if args.model in PUBLISHED:
        uf1, uar, src = PUBLISHED[args.model]
        out["published"] = {"uf1": uf1, "uar": uar, "source": src}
    (args.out / "result.json").write_text(json.dumps(out, indent=1))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.model} on {variant}: {len(folds)} of {all_folds} folds × {out['epochs']} "
              "epochs, "
              f"{out['fold_seconds_total']:.0f} s of fold training ({wall:.0f} s this call)")
        for policy in ("last", "official"):
            v = out[policy]
            print(f"  {policy:<8} UF1 {v['uf1']:.4f}  UAR {v['uar']:.4f}  ACC {v['acc']:.4f}")
            for name, d in v["per_dataset"].items():
                print(f"    {name:<8} UF1 {d['uf1']:.4f}  UAR {d['uar']:.4f}  ACC {d['acc']:.4f}"
                      f"  ({d['n']} samples)")
        if "published" in out:
            p = out["published"]
            print(f"  published UF1 {p['uf1']:.4f}  UAR {p['uar']:.4f}  ({p['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

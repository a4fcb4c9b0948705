"""Two finished runs of the same samples side by side: does a setting change the science?

UF1, UAR and accuracy of each run (pooled, MEGC 2019), overall and per dataset, their fold
training time, how many samples the two runs predict alike, and a paired bootstrap over
held-out subjects of the differences B - A: each dataset's subjects drawn with replacement
(the composite keeps its 24 CASME II, 28 SAMM and 16 SMIC subjects in every draw), both
runs scored on the same draw, so the interval says how far the difference could move with
other subjects (the sampling spread of the benchmark itself; the spread between seeds of
one setting is not in it).

    python benchmarks/compare_runs.py benchmarks/results/bf16_check/htnet-fp32 \\
        benchmarks/results/bf16_check/htnet-bf16
    python benchmarks/compare_runs.py RUN_A RUN_B --draws 2000 --json

Both folders are `mefeat train` run folders, or `mefeat score --out` folders, of one run
each over the same samples and classes (their ``predictions.csv`` and ``metrics.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from mefeat.metrics import metrics, metrics_table

METRICS = ("uf1", "uar", "acc")


def read_run(folder: Path) -> dict:
    """The predictions of a run folder by sample key, with its classes, policy and times."""
    try:
        m = json.loads((folder / "metrics.json").read_text())
        with (folder / "predictions.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        runs = {r["run"] for r in rows}
        if len(runs) != 1:
            raise SystemExit(f"{folder}: predictions.csv holds {len(runs)} runs; "
                             "compare folders of one run each")
        rows.sort(key=lambda r: r["key"])
        return {
            "folder": str(folder),
            "classes": m["classes"],
            "selection": m["selection"],
            "epochs": m["epochs"],
            "partial": m["partial"],
            "precision": m["settings"].get("precision_run"),
            "fold_seconds": sum(m["fold_seconds"].values()),
            "keys": [r["key"] for r in rows],
            "dataset": np.array([r["dataset"] for r in rows]),
            "subject": np.array([r["subject"] for r in rows]),
            "label": np.array([int(r["label"]) for r in rows]),
            "prediction": np.array([int(r["prediction"]) for r in rows]),
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        what = f"no field {e}" if isinstance(e, KeyError) else str(e)
        raise SystemExit(f"{folder}: not a finished run folder ({what})") from None


def scores(run: dict, num_classes: int) -> dict:
    """UF1, UAR and accuracy of the run's pooled predictions, overall and per dataset."""
    table = metrics_table({c: run[c] for c in ("label", "prediction", "dataset")},
                          num_classes)
    pick = lambda m: {k: m[k] for k in METRICS}  # noqa: E731
    return {"overall": pick(table["overall"]),
            "per_dataset": {d: pick(m) for d, m in table["per_dataset"].items()}}


def paired_bootstrap(a: dict, b: dict, num_classes: int, draws: int, seed: int) -> dict:
    """Differences B - A over ``draws`` resamplings of the held-out subjects, each dataset's
    among its own: their 2.5 and 97.5 percentiles, and the share of draws with B below A."""
    strata = []  # per dataset: the sample indices of each of its subjects
    for d in np.unique(a["dataset"]):
        subjects = np.unique(a["subject"][a["dataset"] == d])
        strata.append([np.flatnonzero(a["subject"] == s) for s in subjects])
    rng = np.random.default_rng(seed)
    diffs = {k: np.empty(draws) for k in METRICS}
    for n in range(draws):
        idx = np.concatenate([members[i] for members in strata
                              for i in rng.integers(0, len(members), len(members))])
        ta, pa, pb = a["label"][idx], a["prediction"][idx], b["prediction"][idx]
        ma, mb = metrics(ta, pa, num_classes), metrics(ta, pb, num_classes)
        for k in METRICS:
            diffs[k][n] = mb[k] - ma[k]
    return {k: {"low": float(np.percentile(diffs[k], 2.5)),
                "high": float(np.percentile(diffs[k], 97.5)),
                "b_below_a": float(np.mean(diffs[k] < 0))}
            for k in METRICS} | {"subjects": sum(map(len, strata)), "draws": draws,
                                 "seed": seed}


def compare(a: dict, b: dict, draws: int, seed: int) -> dict:
    if a["keys"] != b["keys"] or not np.array_equal(a["label"], b["label"]):
        raise SystemExit(f"{a['folder']} and {b['folder']} do not hold the same samples")
    if a["classes"] != b["classes"]:
        raise SystemExit(f"{a['folder']} and {b['folder']} use other classes")
    if not np.array_equal(a["subject"], b["subject"]):
        raise SystemExit(f"{a['folder']} and {b['folder']} hold out other subjects")
    for run in (a, b):
        if run["partial"]:
            raise SystemExit(f"{run['folder']}: the run is partial (folds or runs missing)")
    c = len(a["classes"])
    out = {"runs": [{"folder": run["folder"], "precision": run["precision"],
                     "selection": run["selection"], "epochs": run["epochs"],
                     "fold_seconds": run["fold_seconds"]} | scores(run, c)
                    for run in (a, b)]}
    out["same_prediction"] = int(np.sum(a["prediction"] == b["prediction"]))
    out["samples"] = len(a["keys"])
    out["bootstrap"] = paired_bootstrap(a, b, c, draws, seed)
    score_a, score_b = (r["overall"] for r in out["runs"])
    for k in METRICS:
        out["bootstrap"][k]["difference"] = score_b[k] - score_a[k]
    return out


def markdown(res: dict) -> str:
    datasets = list(res["runs"][0]["per_dataset"])
    head = ("| run | precision | selection | epochs | UF1 | UAR | acc | "
            + " | ".join(f"{d} UF1 / UAR" for d in datasets) + " | fold training |")
    lines = [head, "|" + "---|" * (8 + len(datasets))]
    for r in res["runs"]:
        o, per = r["overall"], r["per_dataset"]
        secs = r["fold_seconds"]
        lines.append(
            f"| {Path(r['folder']).name} | {r['precision']} | {r['selection']} | {r['epochs']} "
            f"| {o['uf1']:.4f} | {o['uar']:.4f} | {o['acc']:.4f} | "
            + " | ".join(f"{per[d]['uf1']:.4f} / {per[d]['uar']:.4f}" for d in datasets)
            + f" | {secs:.0f} s |")
    bs = res["bootstrap"]
    lines.append("")
    lines.append(f"Same prediction: {res['same_prediction']} of {res['samples']} samples "
                 f"({res['same_prediction'] / res['samples']:.0%}).")
    lines.append(f"B - A, paired bootstrap over the {bs['subjects']} held-out subjects, "
                 f"drawn within each dataset ({bs['draws']} draws, seed {bs['seed']}): "
                 "95 % interval, share of draws with B below A")
    for k in METRICS:
        v = bs[k]
        lines.append(f"- {k.upper()}: {v['difference']:+.4f} [{v['low']:+.4f}, "
                     f"{v['high']:+.4f}], {v['b_below_a']:.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--draws", type=int, default=10000, help="bootstrap draws (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.draws < 1:
        ap.error("--draws must be at least 1")
    res = compare(read_run(args.run_a), read_run(args.run_b), args.draws, args.seed)
    print(json.dumps(res, indent=1) if args.json else markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

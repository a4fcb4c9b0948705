"""Training throughput against the hardware: per model, the forward + backward GFLOP of a
training sample (``torch.utils.flop_counter``), the GFLOP/s one LOSO fold of ``train_loso``
achieves on the imported official composite in float32 and in bf16 (autocast), the GFLOP/s
of a 2048² matmul in float32 and bf16 timed in the same process (the practical peaks), the
fractions, and the projected time of a full LOSO by the recipe on this machine.

    python benchmarks/train_throughput.py                       # 1 thread, five models
    python benchmarks/train_throughput.py --models htnet --threads 2 --json
    python benchmarks/train_throughput.py --device cuda         # the same figures on a GPU

A fold is the first subject's (casme2/sub01, 439 training samples) trained by the model's
recipe; an epoch's time is the difference between a fold of 2 + ``--epochs`` epochs
(default 2; CausalNet's epoch is one full-batch step) and one of 2 epochs, its
held-out evaluation included (the steady state: a fold's set-up and first epochs cost more,
see ``fold_throughput``), and what the 2-epoch fold takes beyond two such epochs is counted
once a fold in the projected LOSO. GFLOP per sample counts the official code's
operations (``train_flops_per_sample``), so that GFLOP/s measure speed at fixed work. Results:
``--out`` (default ``benchmarks/results/train_throughput``), ``<device>-<host>.json``/``.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_rehearsal import (  # noqa: E402
    DATA,
    import_store,
    matmul_gflops,
    train_flops_per_sample,
    write_report,
)

MODELS = ("offapexnet", "dual_inception", "offtanet", "htnet", "causalnet")
STORE_OF = {"causalnet": "causalnet"}  # the others read the HTNet images (STSTNet's too)
BASE_EPOCHS = 2  # epochs of a fold before the timed ones (see fold_throughput)
TRIES = 3  # pairs of folds timed before a timing is refused as noise (see fold_throughput)


class NoisyTiming(SystemExit):
    """The longer fold took no longer than the shorter one in every try."""


def fold_throughput(model: str, data, *, device: str, epochs: int, precision: str,
                    base: int = BASE_EPOCHS) -> dict:
    """Seconds an epoch of one fold takes in its steady state: a fold of ``base`` epochs and
    one of ``base`` + ``epochs`` epochs, timed after a warm-up fold, differ by ``epochs``
    steady epochs and nothing else. Both hold the fold's set-up (building and initialising
    the model, gathering the data) and its first epochs, which cost more than the rest: the
    optimizer's state and the activations' memory are new to the process then (CausalNet's
    second step, 15 s in bf16 against 7–8 s for each later one, took 600 000 page faults).
    What the ``base``-epoch fold takes beyond ``base`` steady epochs is counted once a fold
    in the projected LOSO. A pair in which the longer fold took no longer than the shorter
    (the machine's noise beyond the epochs timed) is timed again, up to ``TRIES`` pairs; then
    the timing is refused (:class:`NoisyTiming`) rather than reported negative."""
    from mefeat.train import train_loso

    first = sorted(set(data.subjects))[0]

    def fold_seconds(n_epochs: int) -> tuple[float, dict]:
        res = train_loso(model, data, epochs=n_epochs, folds=[first], device=device,
                         workers=1, precision=precision)
        return res.fold_seconds[first], res.settings

    fold_seconds(1)  # warm-up: kernels, allocator, first-call costs
    for _ in range(TRIES):
        start, _ = fold_seconds(base)
        more, settings = fold_seconds(base + epochs)
        if more > start:
            break
    else:
        raise NoisyTiming(f"{model} {precision}: in {TRIES} tries, a fold of {base + epochs} "
                          f"epochs took no longer than one of {base} (last {more:.3f} s, "
                          f"{start:.3f} s): the machine's noise exceeds the epochs timed; give "
                          "more --epochs")
    per_epoch = (more - start) / epochs
    n_train = int((data.subjects != first).sum())
    return {"seconds": more - start, "n_train": n_train, "epochs": epochs,
            "s_per_epoch": per_epoch, "s_fold_start": max(start - base * per_epoch, 0.0),
            "base_epochs": base, "precision_run": settings["precision_run"]}


def measure(model: str, *, data_dir: Path, device: str, epochs: int, work: Path) -> dict:
    from mefeat.models import get_spec
    from mefeat.train import load_view

    fmt = STORE_OF.get(model, "htnet")
    store = work / f"{fmt}.zarr"
    if not store.exists():
        import_store(fmt, data_dir, store)
    data = load_view(store, model)
    recipe = get_spec(model).recipe
    gflop = train_flops_per_sample(model, data) / 1e9
    row: dict = {"model": model, "gflop_per_sample": gflop, "recipe_epochs": recipe.epochs,
                 "folds": len(set(data.subjects))}
    for precision in ("fp32", "bf16"):
        r = fold_throughput(model, data, device=device, epochs=epochs, precision=precision)
        r["gflops"] = gflop * r["n_train"] * r["epochs"] / r["seconds"]
        r["projected_loso_h"] = (r["s_fold_start"] + r["s_per_epoch"] * recipe.epochs) \
            * row["folds"] / 3600
        row[precision] = r
    row["bf16_speedup"] = row["fp32"]["seconds"] / row["bf16"]["seconds"]
    return row


def markdown(report: dict) -> str:
    mm32, mm16 = report["matmul_fp32_gflops"], report["matmul_bf16_gflops"]
    lines = [f"# Training throughput on {report['host']}", "",
             f"{report['cpu']} ({', '.join(report['vector_extensions'])}); device "
             f"{report['device']}, torch {report['torch']}, {report['threads']} thread(s). "
             f"Matmul 2048²: {mm32:.0f} GFLOP/s float32, {mm16:.0f} GFLOP/s bf16.", "",
             "| model | GFLOP / sample | fp32 GFLOP/s | fraction of fp32 matmul | bf16 GFLOP/s "
             "| bf16 speed-up | full LOSO fp32 | full LOSO bf16 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["models"]:
        lines.append(
            f"| {r['model']} | {r['gflop_per_sample']:.3f} | {r['fp32']['gflops']:.1f} | "
            f"{r['fp32']['gflops'] / mm32:.2f} | {r['bf16']['gflops']:.1f} | "
            f"{r['bf16_speedup']:.2f}× | {r['fp32']['projected_loso_h']:.1f} h | "
            f"{r['bf16']['projected_loso_h']:.1f} h |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--data", type=Path, default=DATA, help="the shared features folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2,
                    help="timed epochs beyond the first two (default: 2)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results"
                    / "train_throughput")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be at least 1")
    from mefeat.provenance import environment

    torch.set_num_threads(args.threads)
    env = environment()
    report = {"host": platform.node() or "host", "cpu": env["cpu"]["model"],
              "vector_extensions": env["cpu"]["vector_extensions"], "device": args.device,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "commit": env["commit"],
              "matmul_fp32_gflops": matmul_gflops(args.device),
              "matmul_bf16_gflops": matmul_gflops(args.device, dtype=torch.bfloat16),
              "environment": env, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            model = model.strip()
            t0 = time.perf_counter()
            report["models"].append(measure(model, data_dir=args.data, device=args.device,
                                            epochs=args.epochs, work=Path(tmp)))
            print(f"  {model}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    write_report(args.out, f"{args.device.split(':')[0]}-{report['host']}-{report['threads']}t",
                 report, markdown(report), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

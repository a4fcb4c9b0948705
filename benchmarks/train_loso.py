"""Time mefeat's LOSO trainer against a loop written like the official training scripts.

Both run in this process, on the same data: the 442 MEGC2019 composite clips as the
28×28 onset→apex flow images that HTNet's repository ships (``<sub>_<clip> .png``, note the
space, plus ``combined_3_class2_for_optical_flow.csv``), read with ``cv2.imread`` (BGR, as
the official code reads them) and scaled to 0..1.

The reference loop follows STSTNet's ``main.py`` (github.com/christy1206/STSTNet): one fold
at a time, a ``DataLoader`` over a ``TensorDataset`` iterated every epoch, float32,
``.item()`` statistics every batch, evaluation on the held-out subject every epoch, the last
epoch's predictions kept. mefeat's side is ``mefeat.train.train_loso`` with
``selection="last"``.

    python benchmarks/train_loso.py --model ststnet --device cpu --folds 2 --epochs 100
    python benchmarks/train_loso.py --model ststnet --device cuda --json

``--folds K`` runs the first K folds (sorted subjects) on both sides and extrapolates both
wall times to all folds by the share of training samples the K folds hold.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "features" / "cde28_htnet"
CSV_NAME = "combined_3_class2_for_optical_flow.csv"


def read_htnet_pngs(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3, 28, 28) float32 in 0..1 (BGR channel order), labels (N,), subjects (N,).

    Subject = ``dataset/sub``. The lead will route this through the feature store.
    """
    import cv2
    import pandas as pd

    table = pd.read_csv(root / CSV_NAME, dtype=str)
    xs, ys, subjects = [], [], []
    for row in table.itertuples(index=False):
        path = root / f"{row.sub}_{row.filename_o} .png"
        img = cv2.imread(str(path))  # BGR, as the official code
        if img is None:
            raise FileNotFoundError(f"{path} is missing or unreadable")
        xs.append(img.transpose(2, 0, 1).astype(np.float32) / 255.0)
        ys.append(int(row.label))
        subjects.append(f"{row.dataset}/{row.sub}")
    return (
        np.ascontiguousarray(np.stack(xs)),
        np.asarray(ys, dtype=np.int64),
        np.asarray(subjects, dtype=object),
    )


def reference_loso(model_name, x, y, subjects, folds, *, epochs, device, seed):
    """One fold at a time, like the official scripts. Returns (preds per index, seconds)."""
    from torch.utils.data import DataLoader, TensorDataset

    from mefeat.models import create_model, get_spec

    recipe = get_spec(model_name).recipe
    if recipe.optimizer.name != "adam" or recipe.schedule or recipe.augmentation:
        raise SystemExit(f"the reference loop is the Adam loop of STSTNet's main.py; "
                         f"{model_name}'s recipe is another")
    bs = recipe.batch_size or len(x)
    dev = torch.device(device)
    loss_fn = torch.nn.CrossEntropyLoss()
    preds = {}
    t0 = time.perf_counter()
    for k, (_, tr, te) in enumerate(folds):
        torch.manual_seed(seed + k)
        model = create_model(model_name, num_classes=3).to(dev)
        opt = torch.optim.Adam(
            model.parameters(), lr=recipe.optimizer.lr, weight_decay=recipe.optimizer.weight_decay
        )
        train_dl = DataLoader(
            TensorDataset(torch.Tensor(x[tr]), torch.as_tensor(y[tr])), batch_size=bs
        )
        test_dl = DataLoader(
            TensorDataset(torch.Tensor(x[te]), torch.as_tensor(y[te])), batch_size=bs
        )
        for _epoch in range(epochs):
            model.train()
            train_loss, correct, seen = 0.0, 0, 0
            for xb, yb in train_dl:
                opt.zero_grad()
                xb, yb = xb.to(dev), yb.to(dev)
                out = model(xb)
                loss = loss_fn(out, yb)
                loss.backward()
                opt.step()
                train_loss += loss.data.item() * xb.size(0)
                correct += (torch.max(out, 1)[1] == yb).sum().item()
                seen += xb.shape[0]
            model.eval()
            val_loss, val_correct = 0.0, 0
            for xb, yb in test_dl:
                xb, yb = xb.to(dev), yb.to(dev)
                out = model(xb)
                val_loss += loss_fn(out, yb).data.item() * xb.size(0)
                val_correct += (torch.max(out, 1)[1] == yb).sum().item()
        # Like main.py: the predictions of the last epoch's evaluation.
        for i, p in zip(te, torch.max(out, 1)[1].tolist(), strict=True):
            preds[int(i)] = int(p)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return preds, time.perf_counter() - t0


def peak_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="ststnet")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--folds", type=int, default=None, help="run only the first K folds")
    ap.add_argument("--epochs", type=int, default=None, help="default: the model spec's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference-runs", type=int, default=1,
                    help="run the reference loop this many times (seeds seed, seed+1, ...) "
                    "to show the spread of its UF1; timings use the mean")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--fold-batch", default="auto")
    ap.add_argument("--workers", type=int, default=None,
                    help="mefeat's CPU fold processes (default: --threads); the reference "
                    "loop is one process with --threads intra-op threads, as users run it")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    from mefeat.metrics import metrics
    from mefeat.models import get_spec
    from mefeat.train import loso_folds, train_loso

    torch.set_num_threads(args.threads)
    x, y, subjects = read_htnet_pngs(args.data.resolve())
    all_folds = loso_folds(subjects)
    folds = all_folds[: args.folds] if args.folds else all_folds
    epochs = args.epochs or get_spec(args.model).recipe.epochs
    # Share of the full run's training work that the chosen folds hold.
    share = sum(len(f[1]) for f in folds) / sum(len(f[1]) for f in all_folds)
    test_idx = np.concatenate([f[2] for f in folds])
    fold_batch = int(args.fold_batch) if args.fold_batch.isdigit() else args.fold_batch
    workers = (args.workers or args.threads) if args.device == "cpu" else 1

    # Warm both sides up (the first optimiser imports torch._dynamo, ~4 s; first kernels
    # build their primitives), so neither timing pays one-time costs.
    train_loso(
        args.model, x, y, subjects, epochs=1, device=args.device, folds=1, fold_batch=fold_batch
    )
    reference_loso(
        args.model, x, y, subjects, folds[:1], epochs=1, device=args.device, seed=args.seed
    )

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train_loso(
        args.model,
        x,
        y,
        subjects,
        epochs=epochs,
        selection="last",
        seed=args.seed,
        device=args.device,
        folds=[f[0] for f in folds],
        fold_batch=fold_batch,
        workers=workers,
    )
    mefeat_s = time.perf_counter() - t0
    mefeat_peak = peak_mib(args.device)
    p_mefeat = res.predictions.set_index("index").loc[test_idx, "prediction"].to_numpy()

    ref_runs = []
    for r in range(max(1, args.reference_runs)):
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        ref_preds, seconds = reference_loso(
            args.model, x, y, subjects, folds, epochs=epochs, device=args.device,
            seed=args.seed + r,
        )
        p_ref = np.asarray([ref_preds[int(i)] for i in test_idx])
        ref_runs.append((seconds, metrics(y[test_idx], p_ref, 3)))
    ref_peak = peak_mib(args.device)
    reference_s = float(np.mean([t for t, _ in ref_runs]))
    m_ref = ref_runs[0][1]
    ref_uf1 = [m["uf1"] for _, m in ref_runs]

    m_mefeat = metrics(y[test_idx], p_mefeat, 3)
    n_samples = sum(len(f[1]) for f in folds) * epochs
    out = {
        "model": args.model,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "folds_run": len(folds),
        "folds_total": len(all_folds),
        "epochs": epochs,
        "mefeat_s": mefeat_s,
        "reference_s": reference_s,
        "ratio": reference_s / mefeat_s,
        "mefeat_s_all_folds": mefeat_s / share,
        "reference_s_all_folds": reference_s / share,
        "mefeat_samples_per_s": n_samples / mefeat_s,
        "reference_samples_per_s": n_samples / reference_s,
        "mefeat_peak_mib": mefeat_peak,
        "reference_peak_mib": ref_peak,
        "peak_memory_note": (
            "CUDA max_memory_allocated per side"
            if args.device.startswith("cuda")
            else "process max RSS so far (mefeat ran first)"
        ),
        "uf1_mefeat": m_mefeat["uf1"],
        "uf1_reference": m_ref["uf1"],
        "uf1_reference_runs": ref_uf1,
        "reference_s_runs": [t for t, _ in ref_runs],
        "uf1_within_reference_spread": bool(min(ref_uf1) <= m_mefeat["uf1"] <= max(ref_uf1)),
        "uar_mefeat": m_mefeat["uar"],
        "uar_reference": m_ref["uar"],
        "fold_batching": res.settings["fold_batching"],
        "workers": workers,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"model {args.model} on {args.device} ({out['torch_threads']} threads), "
            f"{len(folds)}/{len(all_folds)} folds, {epochs} epochs"
        )
        print(
            f"  mefeat     {mefeat_s:9.2f} s  ({out['mefeat_s_all_folds']:9.1f} s for all folds)"
            f"  {out['mefeat_samples_per_s']:9.0f} samples/s  peak {mefeat_peak:8.0f} MiB"
            f"  UF1 {m_mefeat['uf1']:.4f}  [{res.settings['fold_batching']}]"
        )
        print(
            f"  reference  {reference_s:9.2f} s  ({out['reference_s_all_folds']:9.1f} s for all "
            f"folds)  {out['reference_samples_per_s']:9.0f} samples/s  peak {ref_peak:8.0f} MiB"
            f"  UF1 {m_ref['uf1']:.4f}"
        )
        if len(ref_runs) > 1:
            print(f"  reference UF1 over {len(ref_runs)} runs: "
                  + ", ".join(f"{u:.4f}" for u in ref_uf1)
                  + f"  (mefeat within the spread: {out['uf1_within_reference_spread']})")
        print(f"  speed-up   {out['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

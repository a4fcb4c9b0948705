"""``bench``: models × key-frame conditions × runs × LOSO folds, as the CausalNet
supplement's Table 4 (robust MER under key-frame errors and a spotted apex).

Each job trains one model on one fold of one variant with one seed and is written to
``out/jobs/...json`` the moment it finishes, so an interrupted bench resumes and never
recomputes a finished job. Run r of a noisy condition uses the noise seed r (three runs =
three independent draws of the key-frame errors, and three training seeds); the spotted
and ground-truth variants are the same in every run, only the training seed changes.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.errors import MefeatError
from mefeat.run.executors import run_jobs


@dataclass(frozen=True)
class Condition:
    """A column of Table 4: which key frames the variant is made with, in run ``r``."""

    name: str
    label: str
    std: float | None  # key-frame error STD for the plot; None for spotting

    def policy(self, run: int, spot_method: str) -> str:
        if self.name == "gt":
            return "gt"
        if self.name == "spot":
            return f"spot:{spot_method}"
        return f"noise:{int(self.std)}:{run}"


CONDITIONS = {
    "gt": Condition("gt", "GT", 0.0),
    "std10": Condition("std10", "STD=10", 10.0),
    "std20": Condition("std20", "STD=20", 20.0),
    "std30": Condition("std30", "STD=30", 30.0),
    "spot": Condition("spot", "Spotting", None),
}


@dataclass(frozen=True)
class BenchModel:
    """A model of the bench: a registry name and options (a sweep makes several)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def tag(self) -> str:
        if not self.options:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in self.options) + "]"


def parse_sweep(spec: str) -> list[BenchModel]:
    """``causalnet.block_length=1,2,4,6`` → four models with that option."""
    try:
        target, values = spec.split("=", 1)
        name, option = target.split(".", 1)
    except ValueError:
        raise MefeatError(f"--sweep {spec!r}: expected MODEL.OPTION=V1,V2,...") from None
    out = []
    for raw in values.split(","):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.append(BenchModel(name, ((option, value),)))
    return out


@dataclass
class BenchResult:
    out: Path
    jobs_total: int
    jobs_run: int
    jobs_resumed: int
    table: list[dict[str, Any]] = field(default_factory=list)


@functools.lru_cache(maxsize=8)
def _view(store: str, variant: str, view: str):
    from mefeat.views.data import load_view

    return load_view(store, variant=variant, view=view)


def bench_job(store: str, variant: str, model: str, options: tuple, seed: int, fold: str,
              epochs: int | None, selection: str, device: str, features: bool) -> dict:
    """Train ``model`` on one LOSO fold of one variant; predictions (and features)."""
    from mefeat.models import get_spec
    from mefeat.train.trainer import train_loso

    t0 = time.perf_counter()
    data = _view(store, variant, get_spec(model).view)
    num_classes = data.num_classes
    res = train_loso(model, data.inputs, data.labels, data.subjects, epochs=epochs,
                     selection=selection, seed=seed, device=device, folds=[fold],
                     model_options=dict(options), num_classes=num_classes,
                     **({"return_features": True} if features else {}))
    idx = np.asarray(res.predictions["index"])
    out = {
        "fold": fold, "variant": variant, "model": model, "options": dict(options),
        "seed": seed, "selection": selection, "epochs": res.epochs,
        "keys": [str(data.keys[i]) for i in idx],
        "datasets": [str(data.datasets[i]) for i in idx],
        "labels": [int(data.labels[i]) for i in idx],
        "predictions": [int(p) for p in res.predictions["prediction"]],
        "seconds": time.perf_counter() - t0,
    }
    feats = getattr(res, "features", None)
    if features and feats is not None:
        out["features"] = np.asarray(feats)[idx].astype(float).round(5).tolist()
    return out


def _job_path(out: Path, model: BenchModel, cond: str, run: int, fold: str) -> Path:
    safe = model.tag.replace("/", "_")
    return out / "jobs" / safe / cond / f"run{run}" / (fold.replace("/", "_") + ".json")


def _write_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)  # a reader sees the whole file or none


def _check_same_settings(out: Path, settings: dict[str, Any]) -> None:
    """Finished jobs are reused only under the settings that made them."""
    path = out / "bench.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    diffs = [f"{k}: {old.get(k)!r} there, {v!r} now" for k, v in settings.items()
             if old.get(k) != v]
    if diffs:
        raise MefeatError(
            f"{out} holds a bench made with other settings ({'; '.join(diffs)}); "
            "use another --out or the same settings"
        )


def ensure_variants(store: str, specs: Sequence[str], *, workers: int = 1) -> dict[str, str]:
    """Make the key-frame variants a bench needs (from the store's aligned frames)."""
    from mefeat.keyframes import parse_policy
    from mefeat.run.extract import extract
    from mefeat.store import FeatureStore

    fs = FeatureStore.open(store)
    names = {spec: parse_policy(spec).name for spec in specs}
    if any(v.startswith("official-") for v in fs.variants()):
        raise MefeatError(
            f"{store} holds imported official features, no aligned frames to make key-frame "
            "variants from; bench it with --conditions gt --variant official-..."
        )
    # Always through extract: it finishes variants that an interrupted run left partial,
    # and costs nothing (no face models loaded) when every sample is done.
    extract(None, dataset=fs.config.get("dataset", ""), store=store, keyframes=list(specs),
            workers=workers, progress=False)
    return names


def run_bench(
    store: str | os.PathLike,
    *,
    out: str | os.PathLike,
    models: Sequence[str] | None = None,
    sweep: Sequence[str] = (),
    conditions: Sequence[str] = tuple(CONDITIONS),
    runs: int = 3,
    epochs: int | None = None,
    selection: str = "last",
    device: str = "cpu",
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    gpus_per_job: float = 0.0,
    spot_method: str = "flowpeak",
    variant: str | None = None,
    tsne: bool = True,
    progress: bool = True,
) -> BenchResult:
    """Run (or resume) a bench and write its table, plot and t-SNE figure into ``out``."""
    from tqdm import tqdm

    from mefeat.models import list_models
    from mefeat.report.bench import write_bench_reports

    store, out = str(store), Path(out)
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise MefeatError(f"unknown condition(s) {unknown}; choose from {list(CONDITIONS)}")
    bench_models = [BenchModel(m) for m in (list_models() if models is None else models)]
    for s in sweep:
        bench_models += parse_sweep(s)
    specs = {(c, r): CONDITIONS[c].policy(r, spot_method) for c in conditions for r in range(runs)}
    if variant is not None:  # one given variant stands for the GT column (imported stores)
        if set(conditions) != {"gt"}:
            raise MefeatError("--variant serves the gt condition only; add --conditions gt")
        variants = {k: variant for k in specs}
    else:
        names = ensure_variants(store, sorted(set(specs.values())), workers=workers)
        variants = {k: names[s] for k, s in specs.items()}

    from mefeat.models import get_spec

    folds = sorted(set(_view(store, variants[(conditions[0], 0)],
                             get_spec(bench_models[0].name).view).subjects))
    jobs, paths, resumed = [], [], 0
    for m in bench_models:
        for c in conditions:
            for r in range(runs):
                for fold in folds:
                    path = _job_path(out, m, c, r, fold)
                    if path.is_file():
                        resumed += 1
                        continue
                    want_features = tsne and c == "gt" and r == 0
                    jobs.append((store, variants[(c, r)], m.name, m.options, r, fold, epochs,
                                 selection, device, want_features))
                    paths.append(path)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"store": store, "epochs": epochs, "selection": selection,
                "spot_method": spot_method, "device": device}
    _check_same_settings(out, settings)
    (out / "bench.json").write_text(json.dumps({
        **settings, "models": [m.tag for m in bench_models], "conditions": list(conditions),
        "runs": runs, "variants": {f"{c}/run{r}": v for (c, r), v in variants.items()},
    }, indent=1))
    bar = tqdm(total=len(jobs), desc="bench", unit="job", disable=not progress)
    for i, result in run_jobs(bench_job, jobs, executor=executor, workers=workers,
                              address=address, gpus_per_job=gpus_per_job):
        _write_atomic(paths[i], result)
        bar.update()
    bar.close()
    table = write_bench_reports(out, bench_models, conditions, runs, folds)
    return BenchResult(out=out, jobs_total=len(jobs) + resumed, jobs_run=len(jobs),
                       jobs_resumed=resumed, table=table)

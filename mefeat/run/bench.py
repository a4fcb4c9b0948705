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
    n_samples: int = 0  # compared in every condition
    excluded: dict[str, str] = field(default_factory=dict)  # other samples: key -> why


@functools.lru_cache(maxsize=8)
def _view(store: str, variant: str, view: str, same_as: tuple[str, ...] = ()):
    """The view of ``variant``, kept to the samples done in every variant of ``same_as``."""
    from dataclasses import replace

    from mefeat.views.data import load_view

    data = load_view(store, variant=variant, view=view)
    if not same_as:
        return data
    keep = np.isin(data.keys.astype(str), sorted(common_samples(store, same_as)[0]))
    return replace(data, inputs=tuple(x[keep] for x in data.inputs), labels=data.labels[keep],
                   keys=data.keys[keep], subjects=data.subjects[keep],
                   datasets=data.datasets[keep])


@functools.lru_cache(maxsize=8)
def common_samples(store: str, variants: tuple[str, ...]) -> tuple[frozenset[str], dict]:
    """The samples that every variant of ``variants`` holds, and every other sample of the
    store with why it is left out (``{key: reason}``, from the store's error column).

    Conditions are compared on the same samples: a clip that one key-frame condition could
    not make (a spotter that needs a longer clip, a failed flow) leaves every condition,
    and says so, instead of silently changing one column's sample set.
    """
    from mefeat.store import FeatureStore

    fs = FeatureStore.open(store)
    keys, errors = fs.column("key"), fs.column("error")
    done = {v: fs.variant(v).done() for v in variants}
    common = frozenset(str(k) for k, *flags in zip(keys, *done.values(), strict=True)
                       if all(flags))
    left_out = {}
    for i, key in enumerate(map(str, keys)):
        if key not in common:
            why = {v: _why(errors[i], v) for v in variants if not done[v][i]}
            if len(why) == len(variants) > 1 and len(set(why.values())) == 1:
                left_out[key] = f"no features in any variant of the bench: {why[variants[0]]}"
            else:
                left_out[key] = "; ".join(f"no features in variant {v}: {w}"
                                          for v, w in why.items())
    return common, left_out


def _why(error: str, variant: str) -> str:
    """The part of a sample's error message about ``variant`` (extract writes them as
    ``variant NAME: reason; variant OTHER: reason``), else the whole message."""
    tag = f"variant {variant}: "
    if tag in error:
        rest = error.split(tag, 1)[1]
        return rest.split("; variant ", 1)[0]
    return error or "not extracted (see `mefeat inspect`)"


def bench_job(store: str, variant: str, model: str, options: tuple, seed: int, fold: str,
              epochs: int | None, selection: str, device: str, features: bool,
              same_as: tuple[str, ...] = ()) -> dict:
    """Train ``model`` on one LOSO fold of one variant; predictions (and features).

    With ``same_as``, only the samples that every one of those variants holds are used,
    so that all conditions of a bench see the same samples.
    """
    from mefeat.models import get_spec
    from mefeat.train.trainer import train_loso

    t0 = time.perf_counter()
    data = _view(store, variant, get_spec(model).view, tuple(same_as))
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
    # Benches written before these settings were recorded: they used TV-L1 always, and
    # their sample set is not known.
    if settings.get("flow") is not None:
        old.setdefault("flow", "tvl1")
    old.setdefault("samples", settings.get("samples"))
    diffs = [f"{k}: {old.get(k)!r} there, {v!r} now" for k, v in settings.items()
             if old.get(k) != v]
    if diffs:
        raise MefeatError(
            f"{out} holds a bench made with other settings ({'; '.join(diffs)}); "
            "use another --out or the same settings"
        )


def store_flow(store: str, flow: str | None = None) -> tuple[str, dict[str, Any]]:
    """The flow method (and its parameters) of the store's variants, or refuse.

    ``flow=None`` takes the one method the store's variants were made with; a named
    ``flow`` must be one of them (its parameters come from the store).
    """
    from mefeat.store import FeatureStore

    fs = FeatureStore.open(store)
    made: dict[str, list[dict]] = {}
    for name in fs.variants():
        spec = fs.variant(name).attrs.get("settings", {}).get("flow")
        if spec and spec.get("params", {}) not in made.setdefault(spec["method"], []):
            made[spec["method"]].append(spec.get("params", {}))
    if not made:  # aligned frames only: bench makes every variant, with the default flow
        return flow or "tvl1", {}
    if flow is None:
        if len(made) > 1:
            raise MefeatError(
                f"{store} holds variants made with several flow methods "
                f"({', '.join(sorted(made))}); say which one the bench uses with --flow"
            )
        flow = next(iter(made))
    if flow not in made:
        raise MefeatError(
            f"{store} has no variant made with the {flow} flow (its variants use "
            f"{', '.join(sorted(made))}); bench with --flow {sorted(made)[0]}, or first run "
            f"`mefeat extract` on the dataset again with --store {store} --flow {flow} (it "
            "re-uses the aligned frames)"
        )
    if len(made[flow]) > 1:
        raise MefeatError(
            f"{store} holds {flow} variants made with different flow parameters "
            f"({made[flow]}); bench a store whose variants share one flow setting"
        )
    return flow, made[flow][0]


def ensure_variants(store: str, specs: Sequence[str], *, workers: int = 1,
                    flow: str | None = None) -> dict[str, str]:
    """Make the key-frame variants a bench needs (from the store's aligned frames), with
    the store's flow method (see :func:`store_flow`); returns {policy spec: variant}."""
    from mefeat.keyframes import parse_policy
    from mefeat.run.extract import extract, variant_name
    from mefeat.store import FeatureStore

    fs = FeatureStore.open(store)
    if any(v.startswith("official-") for v in fs.variants()):
        raise MefeatError(
            f"{store} holds imported official features, no aligned frames to make key-frame "
            "variants from; bench it with --conditions gt --variant official-..."
        )
    method, params = store_flow(store, flow)
    names = {spec: variant_name(parse_policy(spec).name, method) for spec in specs}
    # Always through extract: it finishes variants that an interrupted run left partial,
    # and costs nothing (no face models loaded) when every sample is done.
    extract(None, dataset=fs.config.get("dataset", ""), store=store, keyframes=list(specs),
            flow=method, flow_params=params, workers=workers, progress=False)
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
    flow: str | None = None,
    tsne: bool = True,
    progress: bool = True,
) -> BenchResult:
    """Run (or resume) a bench and write its table, plot and t-SNE figure into ``out``.

    Every condition is scored on the same samples: those that all its variants hold; the
    others are listed with why in ``out/excluded.json``, the table notes and
    ``BenchResult.excluded``. ``flow`` picks the flow method of the variants (default: the
    one the store was extracted with).
    """
    from tqdm import tqdm

    from mefeat.models import list_models
    from mefeat.report.bench import write_bench_reports

    store, out = str(store), Path(out)
    # The store may have changed since an earlier bench in this process (more variants).
    _view.cache_clear()
    common_samples.cache_clear()
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
        if flow is not None:
            raise MefeatError("--flow picks the variants that bench makes; with --variant the "
                              "given variant is used as it is: leave --flow out")
        variants = {k: variant for k in specs}
        method = None
    else:
        method = store_flow(store, flow)[0]
        names = ensure_variants(store, sorted(set(specs.values())), workers=workers, flow=method)
        variants = {k: names[s] for k, s in specs.items()}

    from mefeat.store import FeatureStore

    same_as = tuple(sorted(set(variants.values())))
    common, excluded = common_samples(store, same_as)
    if not common:
        raise MefeatError(f"{store}: no sample has features in every variant of the bench "
                          f"({', '.join(same_as)}); see `mefeat inspect {store}`")
    t = FeatureStore.open(store).table()
    folds = sorted({f"{d}/{s}" for k, d, s in zip(t["key"], t["dataset"], t["subject"],
                                                  strict=True) if str(k) in common})
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
                                 selection, device, want_features, same_as))
                    paths.append(path)
    out.mkdir(parents=True, exist_ok=True)
    from mefeat.store.feature_store import fingerprint

    settings = {"store": store, "epochs": epochs, "selection": selection,
                "spot_method": spot_method, "device": device, "flow": method,
                "samples": fingerprint(sorted(common))}
    _check_same_settings(out, settings)
    (out / "bench.json").write_text(json.dumps({
        **settings, "models": [m.tag for m in bench_models], "conditions": list(conditions),
        "runs": runs, "variants": {f"{c}/run{r}": v for (c, r), v in variants.items()},
        "n_samples": len(common), "excluded": len(excluded),
    }, indent=1))
    (out / "excluded.json").write_text(json.dumps(excluded, indent=1))
    bar = tqdm(total=len(jobs), desc="bench", unit="job", disable=not progress)
    for i, result in run_jobs(bench_job, jobs, executor=executor, workers=workers,
                              address=address, gpus_per_job=gpus_per_job):
        _write_atomic(paths[i], result)
        bar.update()
    bar.close()
    table = write_bench_reports(out, bench_models, conditions, runs, folds,
                                n_samples=len(common), excluded=excluded)
    return BenchResult(out=out, jobs_total=len(jobs) + resumed, jobs_run=len(jobs),
                       jobs_resumed=resumed, table=table, n_samples=len(common),
                       excluded=excluded)

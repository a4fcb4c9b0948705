"""``bench``: models × key-frame conditions × runs × LOSO folds, as the CausalNet
supplement's Table 4 (robust MER under key-frame errors and a spotted apex).

Each :class:`~mefeat.report.bench_plan.BenchJob` trains one model by its recipe on one fold
of one variant with one seed and is written to ``out/jobs/...json`` the moment it finishes,
so an interrupted bench resumes and never recomputes a finished job. Run r of a noisy
condition uses the noise seed r (three runs = three independent draws of the key-frame
errors, and three training seeds); the spotted and ground-truth variants are the same in
every run, only the training seed changes. The conditions are the key-frame policies' bench
columns (``mefeat.keyframes.bench_columns``).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.errors import MefeatError
from mefeat.executors import run_jobs
from mefeat.faults import fault
from mefeat.keyframes import bench_columns
from mefeat.report.bench_plan import BenchJob, BenchModel, parse_sweep, write_job
from mefeat.store import FeatureStore

__all__ = ["BenchResult", "bench_job", "common_samples", "run_bench", "store_flow"]


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
def _view(store: str, variant: str, model: str, same_as: tuple[str, ...] = (),
          view_options: tuple[tuple[str, str], ...] = ()):
    """``model``'s view of ``variant`` (with its recipe's jitter bank and ``view_options``),
    kept to the samples done in every variant of ``same_as``."""
    from mefeat.train import load_view

    data = load_view(store, model, variant=variant, options=dict(view_options) or None)
    if not same_as:
        return data
    return data.subset(np.isin(data.keys.astype(str),
                               sorted(common_samples(store, same_as)[0])))


@functools.lru_cache(maxsize=8)
def common_samples(store: str, variants: tuple[str, ...]) -> tuple[frozenset[str], dict]:
    """The samples that every variant of ``variants`` holds, and every other sample of the
    store with why it is left out (``{key: reason}``, from each variant's errors).

    Conditions are compared on the same samples: a clip that one key-frame condition could
    not make (a spotter that needs a longer clip, a failed flow) leaves every condition,
    and says so, instead of silently changing one column's sample set.
    """
    fs = FeatureStore.open(store)
    keys, sample_errors = fs.column("key"), fs.column("error")
    done = {v: fs.variant(v).done() for v in variants}
    why_not = {v: fs.variant(v).errors() for v in variants}
    common = frozenset(str(k) for k, *flags in zip(keys, *done.values(), strict=True)
                       if all(flags))
    left_out = {}
    for i, key in enumerate(map(str, keys)):
        if key in common:
            continue
        why = {v: why_not[v][i] or sample_errors[i] or "not extracted (see `mefeat inspect`)"
               for v in variants if not done[v][i]}
        if len(why) == len(variants) > 1 and len(set(why.values())) == 1:
            left_out[key] = f"no features in any variant of the bench: {why[variants[0]]}"
        else:
            left_out[key] = "; ".join(f"no features in variant {v}: {w}" for v, w in why.items())
    return common, left_out


def bench_job(job: BenchJob) -> dict:
    """Train ``job.model`` by its recipe on one LOSO fold of one variant; the fold's record
    (held-out predictions after every epoch, history, features) and the recipe that ran.

    The job's seed is the recipe's seed (0 where it has none) plus the run index, so run 0
    trains as the official script seeds it and the runs differ."""
    import time

    from mefeat.models import get_spec
    from mefeat.train import train_loso

    t0 = time.perf_counter()
    fault("bench:job:start")
    data = _view(job.store, job.variant, job.model.name, tuple(job.same_as),
                 tuple(job.view_options))
    recipe_seed = get_spec(job.model.name).recipe.seed or 0
    res = train_loso(job.model.name, data, epochs=job.epochs, selection=job.selection,
                     seed=recipe_seed + job.run, device=job.device, folds=[job.fold],
                     model_options=dict(job.model.options), features=job.features)
    (fold,) = res.folds
    out = {**fold.to_dict(), "fold": job.fold, "variant": job.variant,
           "model": job.model.name, "options": dict(job.model.options),
           "view_options": dict(job.view_options),
           "condition": job.condition, "run": job.run, "selection": job.selection,
           "recipe": res.settings["recipe"], "overrides": res.settings["overrides"],
           "seconds": time.perf_counter() - t0}
    if not job.features:
        out.pop("features")
    return out


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


def store_flow(fs: FeatureStore, flow: str | None = None) -> tuple[str, dict[str, Any]]:
    """The flow method (and its parameters) of the store's variants, or refuse.

    ``flow=None`` takes the one method the store's variants were made with; a named
    ``flow`` must be one of them (its parameters come from the store).
    """
    made: dict[str, list[dict]] = {}
    for name in fs.variants():
        spec = fs.variant(name).attrs.get("settings", {}).get("flow")
        if spec and "size" in spec:  # flow on resized frames: one model's official inputs
            continue
        if spec and spec.get("params", {}) not in made.setdefault(spec["method"], []):
            made[spec["method"]].append(spec.get("params", {}))
    if not made:  # aligned frames only: bench makes every variant, with the default flow
        return flow or "tvl1", {}
    if flow is None:
        if len(made) > 1:
            raise MefeatError(
                f"{fs.path} holds variants made with several flow methods "
                f"({', '.join(sorted(made))}); say which one the bench uses with --flow"
            )
        flow = next(iter(made))
    if flow not in made:
        raise MefeatError(
            f"{fs.path} has no variant made with the {flow} flow (its variants use "
            f"{', '.join(sorted(made))}); bench with --flow {sorted(made)[0]}, or first run "
            f"`mefeat extract --store {fs.path} --flow {flow} --keyframes gt` (it re-uses the "
            "aligned frames)"
        )
    if len(made[flow]) > 1:
        raise MefeatError(
            f"{fs.path} holds {flow} variants made with different flow parameters "
            f"({made[flow]}); bench a store whose variants share one flow setting"
        )
    return flow, made[flow][0]


def _ensure_variants(store: str, fs: FeatureStore, specs: Sequence[str], *, workers: int,
                     method: str, params: dict, flow_size: int | None = None) -> dict[str, str]:
    """Make the key-frame variants a bench needs from the store's aligned frames;
    returns {policy spec: variant}."""
    from mefeat.keyframes import parse_policy
    from mefeat.run.extract import add_variants
    from mefeat.store import variant_name

    if any(v.startswith("official-") for v in fs.variants()):
        raise MefeatError(
            f"{store} holds imported official features, no aligned frames to make key-frame "
            "variants from; bench it with --conditions gt --variant official-..."
        )
    # Always through extract: it finishes variants that an interrupted run left partial,
    # and costs nothing (no face models loaded) when every sample is done.
    add_variants(store, keyframes=list(specs), flow=method, flow_params=params,
                 flow_size=flow_size, workers=workers, progress=False)
    return {spec: variant_name(parse_policy(spec).name, method, flow_size) for spec in specs}


def run_bench(
    store: str | os.PathLike,
    *,
    out: str | os.PathLike,
    models: Sequence[str] | None = None,
    sweep: Sequence[str] = (),
    conditions: Sequence[str] | None = None,
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
    one the store was extracted with). ``selection`` is applied to every job's per-epoch
    predictions (``official``: each model's own rule); under ``official`` without
    ``variant``, a model that declares its official inputs trains on them in every condition
    (TV-L1 on frames resized to its side, made here from the aligned frames, and its view
    options), the others on the store's flow.
    """
    from mefeat.models import list_models
    from mefeat.recipes.selection import check_policy
    from mefeat.report.bench import write_bench_reports
    from mefeat.store import fingerprint

    store, out = str(store), Path(out)
    check_policy(selection)
    # The store may have changed since an earlier bench in this process (more variants).
    _view.cache_clear()
    common_samples.cache_clear()
    conditions = _conditions(conditions)
    bench_models = [BenchModel(m) for m in (list_models() if models is None else models)]
    for s in sweep:
        bench_models += parse_sweep(s)
    fs = FeatureStore.open(store)
    inputs = _model_inputs(bench_models, selection, variant)
    plain = [m for m in bench_models if m.tag not in inputs]  # on the store's flow
    if plain:
        variants, method = _condition_variants(store, fs, conditions, runs, spot_method,
                                               variant, flow, workers)
    elif flow is not None:
        raise MefeatError("--flow picks the flow of the models without official inputs; "
                          "every model here trains on its own under --selection official: "
                          "leave --flow out")
    else:  # nothing to make from the store's flow
        variants, method = {}, None
    per_model = {m.tag: variants for m in plain}
    for size in sorted({size for size, _ in inputs.values()}):
        official = _condition_variants(store, fs, conditions, runs, spot_method, None, "tvl1",
                                       workers, flow_size=_resized(fs, size))[0]
        per_model.update({tag: official for tag, (s, _) in inputs.items() if s == size})
    same_as = tuple(sorted({v for vs in per_model.values() for v in vs.values()}))
    common, excluded = common_samples(store, same_as)
    if not common:
        raise MefeatError(f"{store}: no sample has features in every variant of the bench "
                          f"({', '.join(same_as)}); see `mefeat inspect {store}`")
    t = fs.table()
    folds = sorted({f"{d}/{s}" for k, d, s in zip(t["key"], t["dataset"], t["subject"],
                                                  strict=True) if str(k) in common})
    every = [BenchJob(store=store, variant=per_model[m.tag][(c, r)], model=m, condition=c,
                      run=r, fold=fold, epochs=epochs, selection=selection, device=device,
                      features=tsne and c == "gt" and r == 0, same_as=same_as,
                      view_options=inputs.get(m.tag, (None, ()))[1])
             for m in bench_models for c in conditions for r in range(runs) for fold in folds]
    jobs = [j for j in every if not j.path(out).is_file()]
    resumed = len(every) - len(jobs)
    settings = {"store": store, "epochs": epochs, "selection": selection,
                "spot_method": spot_method, "device": device, "flow": method,
                "samples": fingerprint(sorted(common))}
    _check_same_settings(out, settings)
    _write_plan(out, {**settings, "models": [m.tag for m in bench_models],
                      "conditions": conditions, "runs": runs,
                      "variants": {f"{c}/run{r}": v for (c, r), v in variants.items()},
                      "official_inputs": {tag: {
                          "flow_size": size, "view_options": dict(opts),
                          "variants": {f"{c}/run{r}": v for (c, r), v in per_model[tag].items()}}
                          for tag, (size, opts) in inputs.items()},
                      "n_samples": len(common), "excluded": len(excluded)}, excluded)
    _run_jobs(jobs, out, executor=executor, workers=workers, address=address,
              gpus_per_job=gpus_per_job, progress=progress)
    classes = tuple(fs.attrs.get("classes", []))
    num_classes = len(classes) or int(fs.column("label").max()) + 1
    table = write_bench_reports(out, bench_models, conditions, runs, folds, selection=selection,
                                num_classes=num_classes, classes=classes,
                                n_samples=len(common), excluded=excluded,
                                inputs={tag: {"flow_size": size, "view_options": dict(opts)}
                                        for tag, (size, opts) in inputs.items()})
    return BenchResult(out=out, jobs_total=len(jobs) + resumed, jobs_run=len(jobs),
                       jobs_resumed=resumed, table=table, n_samples=len(common),
                       excluded=excluded)


def _conditions(conditions: Sequence[str] | None) -> list[str]:
    columns = bench_columns()
    conditions = list(columns) if conditions is None else list(conditions)
    unknown = [c for c in conditions if c not in columns]
    if unknown:
        raise MefeatError(f"unknown condition(s) {unknown}; choose from {list(columns)}")
    return conditions


def _model_inputs(models: Sequence[BenchModel], selection: str,
                  variant: str | None) -> dict[str, tuple[int, tuple[tuple[str, str], ...]]]:
    """Under ``official`` (and no ``--variant``), the official inputs of each model that
    declares them (:class:`~mefeat.views.InputProfile`): ``{tag: (flow size, view options)}``.
    Every profile today is OpenCV's Dual TV-L1 with its default parameters on the aligned
    frames resized to the model's side; a model without a profile gets no entry and trains on
    the store's flow, as under the other selections."""
    from mefeat.models import get_spec

    if selection != "official" or variant is not None:
        return {}
    inputs = {}
    for m in models:
        profile = get_spec(m.name).official_inputs
        if profile is not None:
            if profile.flow_size is None:
                raise MefeatError(f"{m.name}: its official inputs have no flow size, which bench "
                                  "cannot make yet; bench it with --selection last")
            inputs[m.tag] = (profile.flow_size, tuple(sorted(profile.view_options.items())))
    return inputs


def _resized(fs: FeatureStore, size: int) -> int | None:
    """``size``, or ``None`` where the store's own variants already are TV-L1 with its default
    parameters at that side (aligned at ``size``): they serve, nothing is computed twice."""
    try:
        own = store_flow(fs)
    except MefeatError:  # several flows: the resized variants are unambiguous
        return size
    return None if own == ("tvl1", {}) and fs.config.get("align", {}).get("size") == size else size


def _condition_variants(store: str, fs: FeatureStore, conditions: list[str], runs: int,
                        spot_method: str, variant: str | None, flow: str | None,
                        workers: int, *, flow_size: int | None = None,
                        ) -> tuple[dict[tuple[str, int], str], str | None]:
    """The variant of each (condition, run), made from the aligned frames where missing, and
    the flow method they share (``None`` for a given ``variant``). ``flow_size``: TV-L1 with
    its default parameters on the frames resized to that side (a model's official inputs)."""
    columns = bench_columns()
    specs = {(c, r): columns[c].spec(r, spot_method) for c in conditions for r in range(runs)}
    if variant is not None:  # one given variant stands for the GT column (imported stores)
        if set(conditions) != {"gt"}:
            raise MefeatError("--variant serves the gt condition only; add --conditions gt")
        if flow is not None:
            raise MefeatError("--flow picks the variants that bench makes; with --variant the "
                              "given variant is used as it is: leave --flow out")
        return {k: variant for k in specs}, None
    method, params = ("tvl1", {}) if flow_size is not None else store_flow(fs, flow)
    names = _ensure_variants(store, fs, sorted(set(specs.values())), workers=workers,
                             method=method, params=params, flow_size=flow_size)
    return {k: names[s] for k, s in specs.items()}, method


def _run_jobs(jobs: list[BenchJob], out: Path, *, progress: bool, **executor) -> None:
    """Run the jobs, each result written the moment it comes back."""
    from tqdm import tqdm

    results = run_jobs(bench_job, [(j,) for j in jobs], **executor)
    with tqdm(total=len(jobs), desc="bench", unit="job", disable=not progress) as bar:
        for i, result in results:
            fault("bench:job:write")
            write_job(jobs[i].path(out), result)
            fault("bench:job:written")
            bar.update()


def _write_plan(out: Path, plan: dict[str, Any], excluded: dict[str, str]) -> None:
    """``bench.json`` (what the bench is) and ``excluded.json`` (the samples left out)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(plan, indent=1))
    (out / "excluded.json").write_text(json.dumps(excluded, indent=1))

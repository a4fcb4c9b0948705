"""``extract``: dataset folder → aligned frames and flow variants in a feature store.

Clips are processed by a process pool (one clip a task: read, detect, align, flows) and
written by this process alone, so the store has one writer; each sample's arrays are
written before its ``done`` flag, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from mefeat.datasets import get_scheme, read_dataset
from mefeat.datasets._sample import Dropped, Sample
from mefeat.errors import MefeatError, SampleError, StoreError
from mefeat.executors import check_executor, run_jobs
from mefeat.face import AlignConfig, FaceAligner
from mefeat.flow import prepare_flow
from mefeat.flow.features import clip_features
from mefeat.flow.maps import DIRECTION_RULE
from mefeat.frames import check_keyframes, read_clip, read_colour_clip
from mefeat.keyframes import KeyFrames, parse_policy
from mefeat.provenance import environment
from mefeat.signals import deferred_interrupts
from mefeat.store import FeatureStore, annotations_fingerprint, cast_maps, variant_name


@dataclass
class ExtractSummary:
    """What one ``extract`` run did."""

    store: str
    done: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    dropped: list[Dropped] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"store {self.store}: variants {', '.join(self.variants)}",
            f"done {len(self.done)}, already done {len(self.resumed)}, "
            f"failed {len(self.failed)}, skipped by the reader/label scheme {len(self.dropped)}",
        ]
        return out + detail_lines(self.failed, self.dropped)


def detail_lines(failed: dict[str, str], dropped: Sequence[Dropped]) -> list[str]:
    """A run summary's detail: each failed sample with why, then each row left out."""
    return ([f"  failed  {key}: {why}" for key, why in sorted(failed.items())]
            + [f"  skipped {d}" for d in dropped])


# -- worker side ---------------------------------------------------------------------------
_ALIGNER: FaceAligner | None = None


def _worker_init(align: dict[str, Any]) -> None:
    global _ALIGNER
    cv2.setNumThreads(1)  # one clip per process; let the executor own the cores
    config = AlignConfig(**align)
    # Loading the landmark model takes a second: a process that extracts again with the
    # same alignment keeps its aligner.
    if _ALIGNER is None or _ALIGNER.config != config:
        _ALIGNER = FaceAligner(config)


@dataclass
class _Task:
    index: int
    key: str
    frames: tuple[Path, ...]
    gt: tuple[int, int, int]
    store_path: str | None  # set when the aligned frames are already in the store
    # (variant, policy spec, method, params, flow size or None)
    variants: list[tuple[str, str, str, dict, int | None]]
    colour: bool = False  # also keep the aligned colour frames of a colour source


def _work(task: _Task) -> tuple[int, Any, Any, dict, dict[str, str], str | None]:
    """Align (or read) one clip and compute the requested variants. Never raises for a
    sample's own fault: returns ``(index, (frames, colour frames or None), landmarks,
    results, variant errors, clip error)``, so the pool goes on."""
    try:
        onset, apex, offset = task.gt
        colour = None
        if task.store_path is None:
            clip = read_clip(task.frames, key=task.key)
            check_keyframes(task.key, len(clip), onset, apex, offset)
            assert _ALIGNER is not None
            source = read_colour_clip(task.frames, key=task.key) if task.colour else None
            if source is None:
                aligned, landmarks = _ALIGNER.align(clip, onset, where=task.key)
            else:
                aligned, landmarks, colour = _ALIGNER.align_with_colour(clip, source, onset,
                                                                        where=task.key)
        else:
            aligned, _ = FeatureStore.open(task.store_path).read_frames(task.key)
            landmarks = None
        results, errors = {}, {}
        for name, spec, method, params, flow_size in task.variants:
            # One variant's failure (a spotter that needs a longer clip...) must not cost
            # the clip's aligned frames or its other variants.
            try:
                kf = parse_policy(spec).apply(task.key, len(aligned), KeyFrames(*task.gt),
                                              aligned)
                maps = clip_features(aligned, kf.onset, kf.apex, kf.offset, method, params,
                                     size=flow_size)
                results[name] = ((kf.onset, kf.apex, kf.offset), maps)
            except MefeatError as exc:
                errors[name] = exc.reason if isinstance(exc, SampleError) else str(exc)
        frames_out = (aligned, colour) if task.store_path is None else None
        return task.index, frames_out, landmarks, results, errors, None
    except SampleError as exc:
        return task.index, None, None, {}, {}, exc.reason
    except MefeatError as exc:
        return task.index, None, None, {}, {}, str(exc)


def _run_tasks(tasks: Sequence[_Task], workers: int, align: dict, executor: str,
               address: str | None) -> Iterator[tuple]:
    if not tasks:  # everything resumed or skipped: no need to load the face models
        return
    if workers > 1 or executor == "ray":
        # Build the compiled kernels the flow methods use once, here, rather than in every
        # worker at the same time.
        for method in {v[2] for t in tasks for v in t.variants}:
            prepare_flow(method)
    # Keep a bounded number of clips in flight: results hold whole aligned clips.
    for _, result in run_jobs(_work, [(t,) for t in tasks], executor=executor,
                              workers=workers, address=address, initializer=_worker_init,
                              initargs=(align,), max_in_flight=2 * max(workers, 1)):
        yield result


# -- main side -----------------------------------------------------------------------------
def load_samples(
    dataset: str, root: str | os.PathLike, annotations: str | None, label_scheme: str | None
) -> tuple[list[Sample], list[Dropped]]:
    """Read a dataset and apply a label scheme; every row left out is returned with why."""
    result = read_dataset(dataset, root, annotations=annotations)
    samples, dropped = list(result.samples), list(result.dropped)
    if label_scheme:
        samples, more = get_scheme(label_scheme).apply(samples)
        dropped += list(more)
    return samples, dropped


def extract(
    root: str | os.PathLike,
    *,
    dataset: str,
    store: str | os.PathLike,
    annotations: str | os.PathLike | None = None,
    label_scheme: str | None = None,
    flow: str = "tvl1",
    flow_params: dict[str, Any] | None = None,
    flow_size: int | None = None,
    size: int = 224,
    keyframes: Sequence[str] = ("gt",),
    colour: bool = True,
    workers: int = 1,
    executor: str = "process",
    address: str | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """Extract aligned frames and the flow variants of ``keyframes`` into ``store``.

    ``colour``: where a clip's frames are in colour, also keep its aligned colour frames (RGB,
    warped as the grayscale ones), which the models that read colour frames (MMNet, EDMDBN)
    take; three times the frames' space. A store is made with colour or without it.

    Re-running resumes: samples already done are not computed again, and a new key-frame
    policy re-uses the aligned frames in the store instead of detecting faces again
    (:func:`add_variants` does that without the raw dataset). ``flow_size``: compute the
    flows on the frames resized to this size (``mefeat.flow.features``; variant names end
    in ``-{size}px``) instead of at the aligned size. ``executor``: where the clips
    are computed (``mefeat.executors``: ``process`` with ``workers`` processes, or ``ray``
    at ``address``); this process alone writes the store.
    """
    samples, dropped = load_samples(dataset, root, annotations, label_scheme)
    align = AlignConfig(size=size)
    config = {
        "dataset": dataset,
        # the annotations as read, not the file's bytes: a re-saved spreadsheet with the same
        # content resumes the store, a changed one is refused naming the samples
        "annotations": annotations_fingerprint(samples),
        "label_scheme": label_scheme,
        "align": align.as_dict(),
        # stores made before colour frames existed hold none: the key only when asked
        **({"colour": True} if colour else {}),
    }
    classes = list(get_scheme(label_scheme).classes) if label_scheme else None
    return _extract(store, samples, dropped, config, align, flow=flow,
                    flow_params=flow_params, flow_size=flow_size, keyframes=keyframes,
                    workers=workers, executor=executor, address=address, progress=progress,
                    new_attrs={"dropped": [vars(d) for d in dropped],
                                                  **({"classes": classes} if classes else {})})


def add_variants(
    store: str | os.PathLike,
    *,
    keyframes: Sequence[str],
    flow: str = "tvl1",
    flow_params: dict[str, Any] | None = None,
    flow_size: int | None = None,
    workers: int = 1,
    executor: str = "process",
    address: str | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """Add (or finish) the flow variants of ``keyframes`` from the aligned frames already in
    ``store``: no raw dataset, no face detection. Samples without aligned frames are
    reported, not retried."""
    existing = FeatureStore.open(store)
    config, samples = existing.config, existing.samples()
    if "align" not in config:
        raise StoreError(f"{store} holds imported features, no aligned frames to make flow "
                         "variants from; extract from the dataset folder (ROOT) instead")
    dropped = [Dropped(**d) for d in existing.attrs.get("dropped", [])]
    return _extract(store, samples, dropped, config, AlignConfig(**config["align"]),
                    flow=flow, flow_params=flow_params, flow_size=flow_size,
                    keyframes=keyframes, workers=workers, executor=executor, address=address,
                    progress=progress, new_attrs=None)


def _extract(store, samples, dropped, config, align, *, flow, flow_params, flow_size,
             keyframes, workers, executor, address, progress, new_attrs) -> ExtractSummary:
    check_executor(executor, address=address)
    root_given = new_attrs is not None
    flow_params = dict(flow_params or {})
    if flow_size is not None and not 8 <= int(flow_size) <= align.size:
        raise MefeatError(f"--flow-size {flow_size}: must lie in 8..{align.size} (the aligned "
                          "face's size)")
    policies = [parse_policy(k) for k in keyframes]
    summary = ExtractSummary(store=str(store), dropped=dropped)
    # Variants added to a store are made for the store's own samples (no check against them).
    with FeatureStore.create_or_resume(
        store, samples if root_given else None, config, provenance=environment()
    ) as fs:
        if new_attrs:
            fs.set_info(**new_attrs)
        variants = {}
        for pol in policies:
            name = variant_name(pol.name, flow, flow_size)
            settings = _variant_settings(pol, flow, flow_params, flow_size)
            variants[name] = (pol, fs.require_variant(name, settings, flow_size or align.size))
        summary.variants = list(variants)
        tasks = _tasks(fs, samples, variants, summary, flow=flow, flow_params=flow_params,
                       flow_size=flow_size, root_given=root_given)
        results = _run_tasks(tasks, workers, vars(align), executor, address)
        _write_results(fs, samples, variants, summary, results, len(tasks), progress)
    return summary


def _variant_settings(pol, flow: str, flow_params: dict, flow_size: int | None) -> dict:
    flow_spec = {"method": flow, "params": flow_params}
    if flow_size is not None:
        flow_spec["size"] = flow_size
    return {"keyframes": pol.params, "flow": flow_spec, "maps": {"direction": DIRECTION_RULE}}


def _tasks(fs, samples, variants, summary, *, flow, flow_params, flow_size,
           root_given) -> list[_Task]:
    """The clips that still need work, and what each needs; done ones are counted."""
    done_masks = {name: var.done() for name, (_, var) in variants.items()}
    tasks = []
    status, errors = fs.column("status"), fs.column("error")
    for i, s in enumerate(samples):
        todo = [(n, p.spec, flow, flow_params, flow_size) for n, (p, _) in variants.items()
                if not done_masks[n][i]]
        cached = fs.has_frames(s.key)
        if cached and not todo:
            if status[i] != "done":  # killed after its done flags, before its status
                fs.set_status(i, "done")
            summary.resumed.append(s.key)
            continue
        if not root_given and not cached:
            summary.failed[s.key] = errors[i] or "no aligned frames in the store"
            continue
        tasks.append(_Task(i, s.key, s.frames, (s.onset, s.apex, s.offset),
                           str(fs.path) if cached else None, todo,
                           colour=bool(fs.config.get("colour"))))
    return tasks


def _write_results(fs, samples, variants, summary, results, total: int,
                   progress: bool) -> None:
    """Write each clip's frames and variants as its result comes back."""
    from tqdm import tqdm

    with tqdm(total=total, desc="extract", unit="clip", disable=not progress) as bar:
        _write_each(fs, samples, variants, summary, results, bar)


def _write_each(fs, samples, variants, summary, results, bar) -> None:
    for index, frames, landmarks, maps_of, var_errors, clip_error in results:
        key = samples[index].key
        if clip_error is not None:  # the clip itself failed (reading, detection...)
            fs.set_status(index, "done" if fs.has_frames(key) else "failed", clip_error)
            summary.failed[key] = clip_error
            bar.update()
            continue
        # One step an interrupt cannot cut: the store's counts agree with its variants.
        with deferred_interrupts():
            if frames is not None:
                fs.write_frames(key, frames[0], landmarks, colour=frames[1])
            for name, (kf, maps) in maps_of.items():
                variants[name][1].write_sample(index, kf, cast_maps(maps))
            # A variant that could not be made keeps its reason in that variant; the
            # sample's status is its clip's: done once its frames are aligned.
            for name, reason in var_errors.items():
                variants[name][1].write_failure(index, reason)
            fs.set_status(index, "done")
        if var_errors:
            summary.failed[key] = "; ".join(f"variant {n}: {e}" for n, e in var_errors.items())
        else:
            summary.done.append(key)
        bar.update()

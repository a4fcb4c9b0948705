"""``extract``: dataset folder → aligned frames and flow variants in a feature store.

Clips are processed by a process pool (one clip a task: read, detect, align, flows) and
written by this process alone, so the store has one writer; each sample's arrays are
written before its ``done`` flag, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mefeat.datasets import get_scheme, read_dataset
from mefeat.datasets._sample import Dropped, Sample
from mefeat.errors import MefeatError, SampleError
from mefeat.face import AlignConfig, FaceAligner
from mefeat.flow import prepare_flow
from mefeat.frames import check_keyframes, read_clip
from mefeat.keyframes import KeyFrames, parse_policy
from mefeat.provenance import file_sha256, versions
from mefeat.run.features import clip_features
from mefeat.store import FeatureStore


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


def variant_name(policy_name: str, flow: str) -> str:
    """Variant names: the key-frame policy, plus the flow method when not TV-L1."""
    return policy_name if flow == "tvl1" else f"{policy_name}-{flow}"


# -- worker side ---------------------------------------------------------------------------
_ALIGNER: FaceAligner | None = None


def _worker_init(align: dict[str, Any], pool: bool = False) -> None:
    global _ALIGNER
    cv2.setNumThreads(1)  # one clip per process; let the pool own the cores
    _ALIGNER = FaceAligner(AlignConfig(**align))
    if pool:
        _exit_with_parent()


def _exit_with_parent() -> None:
    """End this pool worker when the process that started it dies (e.g. SIGKILL).

    An idle worker waits on its task queue forever, and nothing tells it that the main
    process is gone: without this, every killed extraction would leave its workers behind.
    """
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        # join() waits on a pipe that only the parent holds open: it returns when the
        # parent is gone, even if that happened before this worker finished starting.
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="mefeat-parent-watch", daemon=True).start()


@dataclass
class _Task:
    index: int
    key: str
    frames: tuple[Path, ...]
    gt: tuple[int, int, int]
    store_path: str | None  # set when the aligned frames are already in the store
    variants: list[tuple[str, str, str, dict]]  # (variant, policy spec, method, params)


def _work(task: _Task) -> tuple[int, Any, Any, dict, str | None]:
    """Align (or read) one clip and compute the requested variants. Never raises for a
    sample's own fault: returns its message instead, so the pool goes on."""
    try:
        onset, apex, offset = task.gt
        if task.store_path is None:
            clip = read_clip(task.frames, key=task.key)
            check_keyframes(task.key, len(clip), onset, apex, offset)
            assert _ALIGNER is not None
            aligned, landmarks = _ALIGNER.align(clip, onset, where=task.key)
        else:
            aligned, _ = FeatureStore.open(task.store_path).read_frames(task.key)
            landmarks = None
        results, errors = {}, {}
        for name, spec, method, params in task.variants:
            # One variant's failure (a spotter that needs a longer clip...) must not cost
            # the clip's aligned frames or its other variants.
            try:
                kf = parse_policy(spec).apply(task.key, len(aligned), KeyFrames(*task.gt),
                                              aligned)
                maps = clip_features(aligned, kf.onset, kf.apex, kf.offset, method, params)
                results[name] = ((kf.onset, kf.apex, kf.offset), maps)
            except MefeatError as exc:
                errors[name] = exc.reason if isinstance(exc, SampleError) else str(exc)
        frames_out = aligned if task.store_path is None else None
        error = "; ".join(f"variant {n}: {e}" for n, e in errors.items()) or None
        return task.index, frames_out, landmarks, results, error
    except SampleError as exc:
        return task.index, None, None, {}, exc.reason
    except MefeatError as exc:
        return task.index, None, None, {}, str(exc)


def _run_tasks(tasks: Sequence[_Task], workers: int, align: dict) -> Iterator[tuple]:
    if not tasks:  # everything resumed or skipped: no need to load the face models
        return
    if workers <= 1:
        _worker_init(align)
        for t in tasks:
            yield _work(t)
        return
    # Build the compiled kernels the flow methods use once, here, rather than in every
    # worker at the same time.
    for method in {m for t in tasks for _, _, m, _ in t.variants}:
        prepare_flow(method)
    # "spawn", not fork: OpenCV's and zarr's threads in this process may hold locks at the
    # moment of a fork, which would deadlock the child (seen after building the demo).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(align, True)) as pool:
        pending: set[Future] = set()
        queue = iter(tasks)
        # Keep a bounded number of clips in flight: results hold whole aligned clips.
        for t in queue:
            pending.add(pool.submit(_work, t))
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(_work, nxt))


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
    root: str | os.PathLike | None,
    *,
    dataset: str,
    store: str | os.PathLike,
    annotations: str | os.PathLike | None = None,
    label_scheme: str | None = None,
    flow: str = "tvl1",
    flow_params: dict[str, Any] | None = None,
    size: int = 224,
    keyframes: Sequence[str] = ("gt",),
    workers: int = 1,
    progress: bool = True,
) -> ExtractSummary:
    """Extract aligned frames and the flow variants of ``keyframes`` into ``store``.

    Re-running resumes: samples already done are not computed again, and a new key-frame
    policy re-uses the aligned frames in the store instead of detecting faces again.
    With ``root=None`` the samples and settings come from an existing store: that adds
    variants without the raw dataset.
    """
    from tqdm import tqdm

    flow_params = dict(flow_params or {})
    policies = [parse_policy(k) for k in keyframes]
    if root is None:  # variants for an existing store, from its aligned frames
        existing = FeatureStore.open(store)
        config, samples = existing.config, existing.samples()
        dropped = [Dropped(**d) for d in existing.attrs.get("dropped", [])]
        align = AlignConfig(**config["align"])
    else:
        samples, dropped = load_samples(dataset, root, annotations, label_scheme)
        align = AlignConfig(size=size)
        config = {
            "dataset": dataset,
            "annotations_sha256": file_sha256(annotations),
            "label_scheme": label_scheme,
            "align": align.as_dict(),
        }
    summary = ExtractSummary(store=str(store), dropped=dropped)
    with FeatureStore.create_or_resume(
        store, samples, config, provenance=versions()
    ) as fs:
        if root is not None:
            fs.group.attrs["dropped"] = [vars(d) for d in dropped]
            if label_scheme:
                fs.group.attrs["classes"] = list(get_scheme(label_scheme).classes)
        variants = {}
        for pol in policies:
            name = variant_name(pol.name, flow)
            settings = {"keyframes": pol.params, "flow": {"method": flow, "params": flow_params}}
            variants[name] = (pol, fs.require_variant(name, settings, align.size))
        summary.variants = list(variants)
        done_masks = {name: var.done() for name, (_, var) in variants.items()}

        tasks = []
        status, errors = fs.column("status"), fs.column("error")
        for i, s in enumerate(samples):
            todo = [(n, p.spec, flow, flow_params) for n, (p, _) in variants.items()
                    if not done_masks[n][i]]
            cached = fs.has_frames(s.key)
            if cached and not todo:
                if status[i] != "done":  # killed after its done flags, before its status
                    fs.set_status(i, "done")
                summary.resumed.append(s.key)
                continue
            if root is None and not cached:
                summary.failed[s.key] = errors[i] or "no aligned frames in the store"
                continue
            tasks.append(_Task(i, s.key, s.frames, (s.onset, s.apex, s.offset),
                               str(fs.path) if cached else None, todo))

        bar = tqdm(total=len(tasks), desc="extract", unit="clip", disable=not progress)
        for index, frames, landmarks, results, error in _run_tasks(tasks, workers, vars(align)):
            key = samples[index].key
            aligned = frames is not None or fs.has_frames(key)
            if aligned:
                if frames is not None:
                    fs.write_frames(key, frames, landmarks)
                for name, (kf, maps) in results.items():
                    variants[name][1].write_sample(index, kf, _cast(maps))
            if error is not None:
                # the status is the clip's: "done" once its frames are aligned; a variant
                # that could not be made is named in the error column and the summary
                fs.set_status(index, "done" if aligned else "failed", error)
                summary.failed[key] = error
            else:
                fs.set_status(index, "done")
                summary.done.append(key)
            bar.update()
        bar.close()
    return summary


def _cast(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from mefeat.store.feature_store import MAPS

    return {k: v.astype(MAPS[k][1], copy=False) for k, v in maps.items()}

"""Executors: run a list of independent jobs in this process, a process pool, or on Ray.

A job is ``fn(*args)`` with picklable arguments; results come back as they finish, so the
caller can write each one at once (an interrupted bench loses only jobs in flight).
Nothing else in mefeat knows which executor runs it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from mefeat.errors import MefeatError

EXECUTORS = ("local", "process", "ray")


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    *,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    gpus_per_job: float = 0.0,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(job index, fn(*jobs[i]))`` in order of completion."""
    if executor == "local" or (executor == "process" and workers <= 1):
        for i, args in enumerate(jobs):
            yield i, fn(*args)
    elif executor == "process":
        # spawn, not fork: OpenCV's and torch's thread pools are not fork-safe.
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_one_thread)
        try:
            futures = {pool.submit(fn, *args): i for i, args in enumerate(jobs)}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield futures[fut], fut.result()
        finally:
            # A failed job or an interrupted consumer must not leave hours of queued jobs
            # running whose results nobody will write.
            pool.shutdown(wait=True, cancel_futures=True)
    elif executor == "ray":
        yield from _run_ray(fn, jobs, address=address, gpus_per_job=gpus_per_job,
                            workers=workers)
    else:
        raise MefeatError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")


def _one_thread() -> None:
    # Each worker process owns one core: intra-op threads would only fight each other.
    import torch

    torch.set_num_threads(1)


def _run_ray(fn, jobs, *, address, gpus_per_job, workers) -> Iterator[tuple[int, Any]]:
    try:
        import ray
    except ImportError:
        raise MefeatError("--executor ray needs Ray: pip install 'mefeat[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        # address=None starts a local Ray instance; "auto" or "ray://host:port" joins one.
        ray.init(address=address, num_cpus=None if address else max(workers, 1),
                 include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_job)(fn)
        refs = {remote.remote(*args): i for i, args in enumerate(jobs)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()

"""Executors: run a list of independent jobs in this process, a process pool, or on Ray.

A job is ``fn(*args)`` with picklable arguments; results come back as they finish, so the
caller can write each one at once (an interrupted run loses only jobs in flight). ``extract``
(clips), ``import-features``, ``bench`` (folds) and the trainer's CPU fold processes all run
through :func:`run_jobs`; nothing else in mefeat knows which executor runs it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from mefeat.errors import MefeatError
from mefeat.signals import Terminated

EXECUTORS = ("local", "process", "ray")


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    *,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    gpus_per_job: float = 0.0,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    max_in_flight: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(job index, fn(*jobs[i]))`` pairs in order of completion (the arguments are checked
    here, the jobs run as the pairs are taken).

    ``initializer(*initargs)`` runs once in each worker process (and once here for the
    local executor). ``max_in_flight`` bounds the jobs submitted but not yet collected (for
    jobs whose results are large, such as aligned clips).
    """
    check_executor(executor, address=address, gpus_per_job=gpus_per_job)
    if executor == "local" or (executor == "process" and workers <= 1):
        return _run_here(fn, jobs, initializer, initargs)
    if executor == "process":
        return _run_pool(fn, jobs, workers, initializer, initargs, max_in_flight)
    return _run_ray(fn, jobs, address=address, gpus_per_job=gpus_per_job, workers=workers,
                    initializer=initializer, initargs=initargs, max_in_flight=max_in_flight)


def check_executor(executor: str, *, address: str | None = None,
                   gpus_per_job: float = 0.0) -> None:
    """Refuse an executor that does not exist, or settings it does not use."""
    if executor not in EXECUTORS:
        raise MefeatError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    if gpus_per_job and executor != "ray":
        raise MefeatError("--gpus-per-job shares GPUs between Ray jobs; use --executor ray")
    if address is not None and (executor != "ray" or not address.strip()):
        raise MefeatError(f"--address {address!r}: names a Ray cluster (host:port, auto or "
                          "ray://host:port) for --executor ray; leave it out otherwise")


def _run_here(fn, jobs, initializer, initargs) -> Iterator[tuple[int, Any]]:
    if initializer is not None:
        initializer(*initargs)
    for i, args in enumerate(jobs):
        yield i, fn(*args)


def _pool_init(initializer, initargs) -> None:
    import sys

    # Each worker process owns one core: intra-op threads would only fight each other.
    # (Set before torch is imported, if it ever is: extract's workers never import it.)
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    # Ctrl-C reaches the whole process group: the parent stops the workers itself, so they
    # print no traceback of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    if initializer is not None:
        initializer(*initargs)


def _exit_with_parent() -> None:
    """End this pool worker when the process that started it dies (e.g. SIGKILL).

    An idle worker waits on its task queue forever, and nothing tells it that the main
    process is gone: without this, every killed run would leave its workers behind.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        # join() waits on a pipe that only the parent holds open: it returns when the
        # parent is gone, even if that happened before this worker finished starting.
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="mefeat-parent-watch", daemon=True).start()


def _run_pool(fn, jobs, workers, initializer, initargs, max_in_flight):
    # spawn, not fork: OpenCV's, zarr's and torch's threads in this process may hold locks
    # at the moment of a fork, which would deadlock the child.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_init,
                               initargs=(initializer, initargs))
    limit = max_in_flight or len(jobs)
    try:
        queue = iter(enumerate(jobs))
        futures = {}
        for i, args in queue:
            futures[pool.submit(fn, *args)] = i
            if len(futures) >= limit:
                break
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = futures.pop(fut)
                yield i, fut.result()
                nxt = next(queue, None)
                if nxt is not None:
                    futures[pool.submit(fn, *nxt[1])] = nxt[0]
    except (KeyboardInterrupt, Terminated, GeneratorExit):
        # Interrupted: the jobs in flight are dropped at once (their results were never
        # written), not waited for.
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        # A failed job or a consumer that stopped must not leave hours of queued jobs
        # running whose results nobody will write.
        pool.shutdown(wait=True, cancel_futures=True)


class _RayTask:
    """``fn`` with its worker initializer, run once per Ray worker process."""

    _initialised: set = set()

    def __init__(self, fn, initializer, initargs) -> None:
        self.fn, self.initializer, self.initargs = fn, initializer, initargs

    def __call__(self, *args):
        key = (id(self.initializer), repr(self.initargs))
        if self.initializer is not None and key not in _RayTask._initialised:
            self.initializer(*self.initargs)
            _RayTask._initialised.add(key)
        return self.fn(*args)


def _run_ray(fn, jobs, *, address, gpus_per_job, workers, initializer, initargs,
             max_in_flight) -> Iterator[tuple[int, Any]]:
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
        if gpus_per_job > 0 and not ray.cluster_resources().get("GPU", 0):
            raise MefeatError(
                f"--gpus-per-job {gpus_per_job}: the Ray cluster "
                f"({address or 'started here'}) has no GPU, so no job could ever start; "
                "leave --gpus-per-job out (and train on the CPU), or join a cluster with GPUs "
                "(--address)"
            )
        task = _RayTask(fn, initializer, initargs)

        def call(*args):
            return task(*args)

        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_job)(call)
        limit = max_in_flight or len(jobs)
        queue = iter(enumerate(jobs))
        refs = {}
        for i, args in queue:
            refs[remote.remote(*args)] = i
            if len(refs) >= limit:
                break
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                i = refs.pop(ref)
                yield i, ray.get(ref)
                nxt = next(queue, None)
                if nxt is not None:
                    refs[remote.remote(*nxt[1])] = nxt[0]
    finally:
        if started_here:
            ray.shutdown()

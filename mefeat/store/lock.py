"""The writer lock: one process writes a store at a time (an advisory ``flock``)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mefeat.errors import StoreError

from .layout import check_local_target

# File descriptors of the writer locks this process holds; a forked child closes its copies.
_HELD_LOCKS: set[int] = set()
_AT_FORK_REGISTERED = False


def _close_locks_in_child() -> None:
    # flock belongs to the open file, shared by every forked copy of the descriptor: a pool
    # worker that kept its copy would keep the store locked after the writer was killed,
    # and the resume would be refused. The child never writes, so it lets go of its copies.
    for fd in _HELD_LOCKS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


class WriterLock:
    """An exclusive advisory lock so that two extractions never write one store at once."""

    def __init__(self, root: Path):
        self.path = root / ".mefeat-writer.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        global _AT_FORK_REGISTERED
        if not _AT_FORK_REGISTERED:
            os.register_at_fork(after_in_child=_close_locks_in_child)
            _AT_FORK_REGISTERED = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"{self.path.parent}: another mefeat process (pid {holder}) is writing this "
                "store; wait for it to finish (it resumes where it stops) or use another --store"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        _HELD_LOCKS.add(fd)

    def release(self) -> None:
        if self._fd is not None:
            _HELD_LOCKS.discard(self._fd)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None




def lock_local(path: str) -> WriterLock | None:
    """Refuse a local ``path`` that is a file or another folder, then take its writer lock;
    ``None`` for a URL (no lock there)."""
    if "://" in path:
        return None
    check_local_target(Path(path))
    lock = WriterLock(Path(path))
    lock.acquire()
    return lock


class HoldsLock:
    """A writer that holds a :class:`WriterLock` (``_lock``) until :meth:`close`, also as a
    context manager."""

    _lock: WriterLock | None = None

    def close(self) -> None:
        if self._lock:
            self._lock.release()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

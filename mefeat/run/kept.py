"""What an interrupted command kept, in one line (``mefeat: interrupted: …``)."""

from __future__ import annotations

import os
from pathlib import Path

AGAIN = "the same command goes on from there"


def run_folder(out: str | os.PathLike) -> str:
    """The folds a training run folder holds."""
    from mefeat.train import RunFolder

    folder = RunFolder(out)
    if not folder.record_file.is_file():
        return f"nothing was kept in {out}; run the command again"
    record = folder.record()
    done = [len(folder.done(r)) for r in range(record.runs)]
    runs = f" ({', '.join(f'run {r}: {d}' for r, d in enumerate(done))})" \
        if record.runs > 1 else ""
    return (f"{sum(done)} of {len(record.subjects) * record.runs} folds are kept in {out}"
            f"{runs}; {AGAIN}")


def store(path: str | os.PathLike, variant: str | None = None) -> str:
    """The samples a store (and one of its variants) holds."""
    from mefeat.store import FeatureStore

    if not Path(path).exists():
        return f"nothing was written to {path}; run the command again"
    fs = FeatureStore.open(path)
    status = fs.column("status")
    text = f"{int((status == 'done').sum())} of {len(status)} samples are done in {path}"
    names = [variant] if variant else fs.variants()
    for name in names:
        if name in fs.variants():
            text += f", variant {name}: {int(fs.variant(name).done().sum())}"
    return f"{text}; {AGAIN}"


def bench(out: str | os.PathLike) -> str:
    """The finished jobs of a bench."""
    jobs = list((Path(out) / "jobs").rglob("*.json"))
    return f"{len(jobs)} finished jobs are kept in {out}; {AGAIN}"


def long_store(path: str | os.PathLike) -> str:
    """The chunks of long videos a store holds."""
    from mefeat.errors import StoreError
    from mefeat.store.long_videos import LongVideoStore

    try:
        ls = LongVideoStore.open(path)
    except StoreError:
        return f"no long video was written to {path}; run the command again"
    videos = list(ls)
    chunks = sum(int(v.chunks_done().sum()) for v in videos)
    whole = sum(v.complete() for v in videos)
    return (f"{whole} long videos complete and {chunks} chunks done in {path}; {AGAIN}")

"""The plan of a robustness bench: its models, key-frame conditions, runs and folds, one
:class:`BenchJob` per (model, condition, run, fold), and where each job's result lies.

``mefeat.run.bench`` makes and runs the jobs; ``mefeat.report.bench`` reads their results
back through this module, so the report never imports the orchestration.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mefeat.errors import MefeatError
from mefeat.options import parse_value


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
    return [BenchModel(name, ((option, parse_value(raw)),)) for raw in values.split(",")]


@dataclass(frozen=True)
class BenchJob:
    """One model trained on one LOSO fold of one condition's variant, in one run.

    Run ``r`` trains with the recipe's seed plus ``r``; a noisy condition's variant of run
    ``r`` is made with noise seed ``r``. ``same_as``: the variants whose common samples every
    condition is scored on. ``view_options``: the model's view options (its official inputs
    under ``official``).
    """

    store: str
    variant: str
    model: BenchModel
    condition: str
    run: int
    fold: str
    epochs: int | None
    selection: str
    device: str
    features: bool = False
    same_as: tuple[str, ...] = field(default=())
    view_options: tuple[tuple[str, str], ...] = field(default=())

    def path(self, out: Path) -> Path:
        return job_path(out, self.model, self.condition, self.run, self.fold)


def job_path(out: Path, model: BenchModel, condition: str, run: int, fold: str) -> Path:
    safe = model.tag.replace("/", "_")
    return Path(out) / "jobs" / safe / condition / f"run{run}" / (fold.replace("/", "_")
                                                                   + ".json")


def write_job(path: Path, payload: dict) -> None:
    """Write a job's result atomically: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def load_run(out: Path, model: BenchModel, condition: str, run: int,
             folds: list[str]) -> list[dict] | None:
    """Every fold's job result of one (model, condition, run); ``None`` until all exist."""
    jobs = []
    for fold in folds:
        path = job_path(out, model, condition, run, fold)
        if not path.is_file():
            return None  # an unfinished run is not scored
        jobs.append(json.loads(path.read_text()))
    return jobs

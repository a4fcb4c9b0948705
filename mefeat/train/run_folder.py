"""The run folder: the state of a training run on disk, written as its work ends.

::

    RUN/
      run.json                      the RunRecord: what this run is (written first)
      folds/run0/casme2_sub01.json  one FoldResult per finished fold (written last)
      checkpoints/casme2_sub01.safetensors   run 0's fold weights (before its fold file)
      metrics.json, predictions.csv, history.csv, confusion.png, learning_curves.png
                                    the scores of the folds present (mefeat.report.train)

Every file is written atomically (a temporary file, then a rename), and a fold counts as
done only once its ``FoldResult`` is there, after its checkpoint; so a run killed at any
moment resumes by training the folds without one, and nothing half-written is ever read.
A folder holding another run (other settings) is refused with the setting that differs, or
replaced on request (``overwrite``); two runs are never mixed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mefeat.files import write_atomic
from mefeat.store import config_diff
from mefeat.train.errors import TrainingError
from mefeat.train.result import FoldResult

RECORD_VERSION = 2


@dataclass(frozen=True)
class RunRecord:
    """What a run is: everything that decides its numbers, and what made it.

    Attributes:
        model, view: the registered model and the name of its view.
        model_options, view_options: the builder's and the view's options.
        classes: the label scheme's class names (empty: unnamed); ``num_classes``.
        recipe: ``Recipe.to_dict()`` of the recipe that ran (overrides applied), which
            scoring applies, whatever the registry says later; ``overrides``: what the
            command line changed.
        selection: the headline policy (and whose epoch the checkpoints hold).
        seed: run 0's seed (run r: ``seed + r``); ``runs``: how many runs.
        subjects: every held-out subject of the data (the LOSO folds); ``n_samples``.
        data: where the data came from (store, variant, their fingerprints, the samples').
        official_format: the imported official format, if the data is one.
        store_settings: how the variant was made (key frames, flow, size, alignment).
        checkpoints: ``"selected"`` (run 0's weights of the selected epoch) or ``"none"``;
            ``checkpoint_dtype``: how they are stored.
        warnings: what a reader of the scores must know (failed samples, fallbacks).
        environment: ``mefeat env``'s record of the machine that started the run.
    """

    model: str
    view: str
    recipe: dict[str, Any]
    selection: str
    seed: int
    subjects: list[str]
    n_samples: int
    num_classes: int
    classes: list[str] = field(default_factory=list)
    model_options: dict[str, Any] = field(default_factory=dict)
    view_options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    runs: int = 1
    data: dict[str, Any] = field(default_factory=dict)
    official_format: str | None = None
    store_settings: dict[str, Any] = field(default_factory=dict)
    checkpoints: str = "selected"
    checkpoint_dtype: str = "float32"
    warnings: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    version: int = RECORD_VERSION

    # the settings two runs must share to be one run (not what made it, nor how many runs)
    _NOT_IDENTITY = ("runs", "environment", "warnings", "version")

    def identity(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in self._NOT_IDENTITY}
        data = dict(out.pop("data"))
        data.pop("store", None)  # the same store may be read from another path
        out["data"] = data
        out["recipe"] = _normal_recipe(out["recipe"], self.model)
        return json.loads(json.dumps(out, default=str))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)

    @classmethod
    def from_json(cls, text: str, *, path: Path | str = "run.json") -> RunRecord:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TrainingError(f"{path}: not valid JSON ({exc}); restore it, or train into "
                                "a new --out") from None
        if not isinstance(data, dict) or "version" not in data:
            raise TrainingError(
                f"{path}: not a run record of this mefeat (no version); it was written by an "
                "older mefeat: train again into a new --out (its checkpoints can still be "
                "scored with `mefeat evaluate --model ... --checkpoints ...`)")
        if data["version"] > RECORD_VERSION:
            raise TrainingError(f"{path}: written by a newer mefeat (run record version "
                                f"{data['version']}); upgrade mefeat to read it")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise TrainingError(f"{path}: not a complete run record ({exc}); restore it, or "
                                "train into a new --out") from None


def _normal_recipe(recipe: dict[str, Any], model: str) -> dict[str, Any]:
    """A recorded recipe in today's full form (a field added since, at its default, is the
    same recipe)."""
    from mefeat.recipes import Recipe, RecipeError

    try:
        return Recipe.from_dict(recipe, model=model).to_dict()
    except RecipeError:
        return recipe


def fold_stem(subject: str) -> str:
    return subject.replace("/", "_")


class RunFolder:
    """A run's folder (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def record_file(self) -> Path:
        return self.path / "run.json"

    def record(self) -> RunRecord:
        if not self.record_file.is_file():
            old = self.path / "checkpoints" / "run.json"
            if old.is_file():
                raise TrainingError(
                    f"{self.path}: a run folder of an older mefeat (checkpoints/run.json, "
                    "record version 1); train again into a new --out to use it here")
            raise TrainingError(f"{self.path}: no run.json; give the --out folder of "
                                "`mefeat train`")
        return RunRecord.from_json(self.record_file.read_text(), path=self.record_file)

    def begin(self, record: RunRecord, *, overwrite: bool = False) -> RunRecord:
        """Start ``record`` here, or resume it: a folder holding another run is refused
        (naming the settings that differ) unless ``overwrite``, which empties it first."""
        if self.path.exists() and any(self.path.iterdir()):
            if overwrite:
                shutil.rmtree(self.path)
            elif not self.record_file.is_file():
                raise TrainingError(
                    f"{self.path} is not empty and holds no run (no run.json); train into "
                    "another --out, or --overwrite to replace what is there")
            else:
                old = self.record()
                diffs = config_diff(old.identity(), record.identity(), held="the folder's run has",
                                    asked="this one")
                if diffs:
                    raise TrainingError(
                        f"{self.path} holds another run ({'; '.join(diffs[:6])}); train into "
                        "another --out, give the same settings to resume it, or --overwrite "
                        "to replace it")
                if record.runs > old.runs:  # more runs of the same run: it grows
                    write_atomic(self.record_file, RunRecord(**{
                        **asdict(old), "runs": record.runs}).to_json())
                return self.record()
        write_atomic(self.record_file, record.to_json())
        return record

    def fold_file(self, run: int, subject: str) -> Path:
        return self.path / "folds" / f"run{run}" / f"{fold_stem(subject)}.json"

    def checkpoint_file(self, subject: str) -> Path:
        return self.path / "checkpoints" / f"{fold_stem(subject)}.safetensors"

    def done(self, run: int) -> set[str]:
        """Subjects of run ``run`` whose fold is done."""
        folder = self.path / "folds" / f"run{run}"
        if not folder.is_dir():
            return set()
        return {json.loads(p.read_text())["subject"] for p in folder.glob("*.json")}

    def write_fold(self, result: FoldResult) -> None:
        """The fold's result, last: from now on it counts as done."""
        write_atomic(self.fold_file(result.run, result.subject), json.dumps(result.to_dict()))

    def folds(self, run: int, subjects: list[str] | None = None) -> list[FoldResult]:
        """The finished folds of run ``run`` (of ``subjects``), in subject order."""
        out = []
        for subject in sorted(subjects if subjects is not None else self.done(run)):
            path = self.fold_file(run, subject)
            if path.is_file():
                out.append(FoldResult.from_dict(json.loads(path.read_text())))
        return out


def folder_results(folder: RunFolder, *, selection: str | None = None) -> list:
    """The :class:`~mefeat.train.result.LosoResult` of every run of a folder, of the folds
    present, by the recipe the run recorded (``selection``: another headline policy)."""
    from mefeat.recipes import Recipe
    from mefeat.train.result import LosoResult

    record = folder.record()
    recipe = Recipe.from_dict(record.recipe, model=record.model)
    return [LosoResult(model=record.model, selection=selection or record.selection,
                       recipe=recipe, num_classes=record.num_classes,
                       folds=folder.folds(r, record.subjects), subjects=record.subjects,
                       n_samples=record.n_samples,
                       settings={"recipe": record.recipe, "overrides": record.overrides,
                                 "seed": record.seed + r})
            for r in range(record.runs)]

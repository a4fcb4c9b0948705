"""Label schemes: raw emotion (or official membership) → class id.

Class lists are fixed, sorted constants; a class's id is its index in that tuple.

- ``megc2019``: the 3-class composite of the MEGC 2019 cross-database challenge (See, Yap,
  Li, Hong, Wang, "MEGC 2019 - The Second Facial Micro-Expressions Grand Challenge",
  IEEE FG 2019, doi:10.1109/FG.2019.8756611). Membership and labels come from the official
  ground-truth CSV shipped as package data (``data/combined_3class_gt.csv``: 442 clips, 68
  subjects; CASME II 145, SMIC 164, SAMM 133), coded negative=0, positive=1, surprise=2.
- ``casme2-5``: CASME II happiness, disgust, repression, surprise, others (Yan et al. 2014;
  sadness and fear are left out, as in the literature).
- ``casme2-3``: CASME II happiness, surprise and negative = disgust, repression, fear and
  sadness; others left out (MMNet's ``CASME2_3.py`` protocol, Li et al., IJCAI 2022).
- ``samm-5``: SAMM anger, contempt, happiness, surprise, others (the 5-class SAMM protocol
  used since Davison et al., arXiv:1708.07549; disgust, fear, sadness are left out).
- ``mmew-3`` / ``mmew-5``: MMEW negative/positive/surprise (234 clips) and disgust,
  fear, happiness, others, surprise (279 clips) (Ben et al., IEEE TPAMI 2022).
- ``smic-3``: SMIC's own negative/positive/surprise, for ``smic`` and ``smic-e``.

``apply`` works on any frozen dataclass with ``dataset, subject, clip, emotion, label,
extra`` fields: reader Samples, or annotation Rows (so schemes can be checked on the
spreadsheets alone).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from mefeat.datasets._sample import Dropped
from mefeat.errors import AnnotationError, MefeatError

T = TypeVar("T")
THREE_CLASSES = ("negative", "positive", "surprise")

# Raw emotion (lower case, as the readers give it) → 3-class name, per dataset. Emotions
# absent from a map are outside the 3-class scheme.
CASME2_TO_3 = {
    "disgust": "negative",
    "repression": "negative",
    "happiness": "positive",
    "surprise": "surprise",
}
SAMM_TO_3 = {
    "anger": "negative",
    "contempt": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sadness": "negative",
    "happiness": "positive",
    "surprise": "surprise",
}
SMIC_TO_3 = {c: c for c in THREE_CLASSES}
MMEW_TO_3 = {
    "anger": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sadness": "negative",
    "happiness": "positive",
    "surprise": "surprise",
}


def _identity(classes: Iterable[str]) -> dict[str, str]:
    return {c: c for c in classes}


@dataclass(frozen=True)
class LabelScheme:
    """A fixed, sorted class list and the rule that gives each clip its class.

    ``mapping[dataset][raw emotion] = class name``; a dataset or emotion not in it is
    dropped with the reason.
    """

    name: str
    classes: tuple[str, ...]
    mapping: Mapping[str, Mapping[str, str]]
    description: str = ""

    def __post_init__(self) -> None:
        if tuple(sorted(self.classes)) != self.classes:
            raise ValueError(f"scheme {self.name}: classes must be sorted, got {self.classes}")
        for ds, m in self.mapping.items():
            bad = set(m.values()) - set(self.classes)
            if bad:
                raise ValueError(f"scheme {self.name}: {ds} maps to unknown classes {bad}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, class_name: str) -> int:
        """The id of a class name."""
        return self.classes.index(class_name)

    def _label(self, item: Any) -> int | str:
        """The class id of ``item``, or the reason it is left out."""
        m = self.mapping.get(item.dataset)
        if m is None:
            return f"dataset '{item.dataset}' is not covered by the {self.name} scheme"
        cls = m.get(item.emotion)
        if cls is None:
            return f"emotion '{item.emotion}' not in the {self.name} scheme ({self.classes})"
        return self.index(cls)

    def apply(self, items: Iterable[T]) -> tuple[list[T], list[Dropped]]:
        """Label ``items`` (``label`` = class id, ``extra["class"]`` = its name).

        Returns the labelled items, in input order, and a Dropped record for every item
        left out, with why.
        """
        kept: list[T] = []
        dropped: list[Dropped] = []
        for item in items:
            got = self._label(item)
            if isinstance(got, str):
                dropped.append(_dropped(item, f"{self.name}: {got}"))
                continue
            kept.append(_labelled(item, got, self.classes[got]))
        return kept, dropped


def _dropped(item: Any, reason: str) -> Dropped:
    source = getattr(item, "source", "") or item.extra.get("source", "")
    return Dropped(item.dataset, item.subject, item.clip, reason, source)


def _labelled(item: T, label: int, name: str, **more: Any) -> T:
    return replace(item, label=label, extra={**item.extra, "class": name, **more})


# --- MEGC 2019 ---------------------------------------------------------------------------

MEGC_DATASETS = {"casme2": "casme2", "samm": "samm", "smic": "smic", "smic-e": "smic"}
_MEGC_TO_3 = {"casme2": CASME2_TO_3, "samm": SAMM_TO_3, "smic": SMIC_TO_3}


def _canon(dataset: str, subject: str, clip: str) -> tuple[str, int, str]:
    """One spelling for both sides: GT writes SAMM "6"/SMIC "s01", readers "006"/"s1"."""
    digits = re.sub(r"\D", "", subject)
    if not digits:
        raise AnnotationError(f"{dataset}/{subject}/{clip}: subject has no number")
    if dataset == "smic":
        clip = re.sub(r"^s0*(\d+)_", lambda m: f"s{int(m.group(1))}_", clip, flags=re.I)
    return dataset, int(digits), clip.lower()


def default_gt_path() -> Path:
    """The official MEGC 2019 3-class ground truth shipped with mefeat."""
    from importlib.resources import files

    return Path(str(files("mefeat.datasets") / "data" / "combined_3class_gt.csv"))


@dataclass(frozen=True)
class Megc2019Scheme(LabelScheme):
    """The MEGC 2019 composite: membership and labels from the official ground truth.

    A clip is kept only if the ground-truth CSV lists it, and its label is the CSV's
    (negative=0, positive=1, surprise=2) even where the dataset's own emotion disagrees;
    such clips carry ``extra["label_note"]`` (SMIC-E s18_sur_03 is "negative" in its
    sheet but surprise in MEGC 2019).
    """

    gt_path: Path | None = None
    _gt: dict = field(default_factory=dict, compare=False, repr=False)

    def ground_truth(self) -> dict[tuple[str, int, str], tuple[str, str, str, int]]:
        """``canonical key → (dataset, subject, clip, label)`` as the CSV writes them."""
        if not self._gt:
            path = self.gt_path or default_gt_path()
            if not path.is_file():
                raise AnnotationError(f"MEGC 2019 ground truth {path} is missing; reinstall mefeat")
            with open(path, newline="", encoding="utf-8-sig") as fh:
                for i, r in enumerate(csv.reader(fh), start=1):
                    if not r or not "".join(r).strip():
                        continue
                    if len(r) != 4 or r[3].strip() not in ("0", "1", "2"):
                        raise AnnotationError(
                            f"{path} line {i}: expected dataset,subject,clip,label(0-2): {r}"
                        )
                    ds, subj, clip, lab = (x.strip() for x in r)
                    self._gt[_canon(ds, subj, clip)] = (ds, subj, clip, int(lab))
        return self._gt

    def apply(self, items: Iterable[T]) -> tuple[list[T], list[Dropped]]:
        gt = self.ground_truth()
        kept: list[T] = []
        dropped: list[Dropped] = []
        seen: dict[tuple, str] = {}
        for item in items:
            gt_ds = MEGC_DATASETS.get(item.dataset)
            if gt_ds is None:
                dropped.append(
                    _dropped(item, f"megc2019: dataset '{item.dataset}' is not in the composite")
                )
                continue
            key = _canon(gt_ds, item.subject, item.clip)
            three = _MEGC_TO_3[gt_ds].get(item.emotion)
            if key not in gt:
                if three is None:
                    why = f"emotion '{item.emotion}' not in the 3-class scheme"
                else:
                    why = "not in the MEGC2019 composite (official ground truth)"
                dropped.append(_dropped(item, f"megc2019: {why}"))
                continue
            if key in seen:
                dropped.append(_dropped(item, f"megc2019: same clip as {seen[key]}"))
                continue
            seen[key] = item.key
            ds, subj, clip, label = gt[key]
            more: dict[str, Any] = {"megc2019": f"{ds},{subj},{clip}"}
            if three != self.classes[label]:
                more["label_note"] = (
                    f"emotion '{item.emotion}' but the MEGC2019 ground truth says "
                    f"'{self.classes[label]}'"
                )
            kept.append(_labelled(item, label, self.classes[label], **more))
        return kept, dropped

    def missing(self, items: Iterable[Any]) -> list[tuple[str, str, str, int]]:
        """Ground-truth clips that none of ``items`` matches, as the CSV writes them."""
        gt = self.ground_truth()
        found = {
            _canon(MEGC_DATASETS[i.dataset], i.subject, i.clip)
            for i in items
            if i.dataset in MEGC_DATASETS
        }
        return [v for k, v in gt.items() if k not in found]


# --- registry ----------------------------------------------------------------------------

CASME2_5 = ("disgust", "happiness", "others", "repression", "surprise")
CASME2_3 = ("happiness", "negative", "surprise")
# MMNet CASME2_3.py:94-110: these six emotions kept; all but happiness and surprise negative
CASME2_TO_3 = {"happiness": "happiness", "surprise": "surprise", "disgust": "negative",
               "repression": "negative", "fear": "negative", "sadness": "negative"}
SAMM_5 = ("anger", "contempt", "happiness", "others", "surprise")
MMEW_5 = ("disgust", "fear", "happiness", "others", "surprise")


def _build(name: str) -> LabelScheme:
    if name == "megc2019":
        return Megc2019Scheme(
            "megc2019",
            THREE_CLASSES,
            _MEGC_TO_3 | {"smic-e": SMIC_TO_3},
            "MEGC 2019 composite (CASME II + SMIC + SAMM), official ground truth",
        )
    if name == "casme2-5":
        return LabelScheme(name, CASME2_5, {"casme2": _identity(CASME2_5)}, "CASME II 5-class")
    if name == "casme2-3":
        return LabelScheme(name, CASME2_3, {"casme2": CASME2_TO_3},
                           "CASME II 3-class (MMNet's protocol)")
    if name == "samm-5":
        return LabelScheme(name, SAMM_5, {"samm": _identity(SAMM_5)}, "SAMM 5-class")
    if name == "mmew-3":
        return LabelScheme(name, THREE_CLASSES, {"mmew": MMEW_TO_3}, "MMEW 3-class")
    if name == "mmew-5":
        return LabelScheme(name, MMEW_5, {"mmew": _identity(MMEW_5)}, "MMEW 5-class")
    if name == "smic-3":
        return LabelScheme(
            name, THREE_CLASSES, {"smic": SMIC_TO_3, "smic-e": SMIC_TO_3}, "SMIC 3-class"
        )
    raise KeyError(name)


SCHEMES = ("casme2-3", "casme2-5", "megc2019", "mmew-3", "mmew-5", "samm-5", "smic-3")


def get_scheme(name: str) -> LabelScheme:
    """The label scheme called ``name`` (one of :data:`SCHEMES`)."""
    if name not in SCHEMES:
        raise MefeatError(f"unknown label scheme {name!r}; choose one of {', '.join(SCHEMES)}")
    return _build(name)


def list_schemes() -> list[str]:
    return list(SCHEMES)

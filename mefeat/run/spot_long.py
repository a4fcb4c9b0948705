"""``spot-long``: spot expression intervals in a store's long videos, then recognise them.

Spotters (``SPOTTERS``), all on what ``extract-long`` stored:

- ``mdmd``: MDMD, the MEGC 2020 baseline (:mod:`mefeat.keyframes.mdmd`), training-free,
  on the aligned frames with the dataset's k and interval lengths (CAS(ME)^2's for 30-fps
  datasets, SAMM's for SAMM Long Videos), p = 0.01; its flow is ``mdmd_flow`` (the
  baseline's RLOF takes about 1 s a frame pair, so the default is Farneback);
- ``flowpeak``: mefeat's motion-peak interval search
  (:func:`mefeat.keyframes.intervals.curve_intervals`, as ``mefeat predict`` runs it on a
  video, :func:`~mefeat.keyframes.intervals.search_windows`) over windows of the aligned
  frames (2.1 s, half of it apart), with predict's threshold (0.1);
  an interval is micro when no longer than MDMD's micro range for the dataset;
- ``softnet``: the SoftNet CNN trained leave-one-subject-out on the ROI flow
  (:mod:`mefeat.train.spotting`), one model per kind and held-out subject, p chosen inside
  the training folds (``p="train"``) or fixed.

With a ``recognizer`` (a ``mefeat train`` run folder), every spotted micro-interval is cut
from the video's own frames (the files listed at extraction), aligned on its onset, its
apex spotted and classified as ``mefeat predict`` classifies a clip. Honest folds: when the
run was trained on the short clips of the same people (SAMM for SAMM Long Videos, CAS(ME)^3
part A for its long videos, :data:`SHORT_OF`) and has a fold that held the video's subject
out, only that fold's model classifies it (the others saw the person in training);
otherwise (another dataset, another person) the mean of all folds.

Scores (:mod:`mefeat.keyframes.challenge`): spotting P/R/F1 per kind and overall at
IoU >= 0.5, counts pooled over every video; with a recognizer, the STR scores of the
micro-expressions (ground-truth emotions that are none of the run's classes count as no
class, reported in ``unmapped``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mefeat.errors import MefeatError, SampleError
from mefeat.frames import read_clip, read_colour_clip
from mefeat.keyframes.challenge import Expression, spotting_scores, str_scores
from mefeat.keyframes.intervals import search_windows
from mefeat.keyframes.mdmd import MDMD_SETTINGS, effective_k, mdmd_features, mdmd_intervals
from mefeat.keyframes.softnet import SOFTNET_K
from mefeat.report.spot_long import draw_timeline
from mefeat.store.long_videos import LongVideo, LongVideoStore

SPOTTERS = ("mdmd", "flowpeak", "softnet")
KINDS = ("micro", "macro")


def mdmd_setting(dataset: str, kind: str):
    return MDMD_SETTINGS["samm" if dataset == "samm-long" else "casme2"][kind]


def _row(lv: LongVideo, onset: int, peak: int, offset: int, kind: str,
         score: float | None, **extra: Any) -> dict[str, Any]:
    numbers = lv.meta["frame_numbers"]
    return {"video": lv.key, "subject": lv.meta["subject"], "onset": int(onset),
            "apex": int(peak), "offset": int(offset), "kind": kind,
            "onset_frame": numbers[onset], "offset_frame": numbers[offset],
            "score": None if score is None else round(float(score), 5), **extra}


def spot_mdmd(lv: LongVideo, flow: str) -> tuple[list[dict], dict[str, np.ndarray]]:
    frames = lv.frames()
    rows, curves = [], {}
    for kind in KINDS:
        setting = mdmd_setting(lv.meta["dataset"], kind)
        k = effective_k(len(frames), setting.k)
        features = mdmd_features(frames, k, flow=flow)
        curve = np.full(len(frames), np.nan)
        curve[k:k + len(features)] = features
        curves[kind] = curve
        for a, b in mdmd_intervals(features, k, setting):
            inside = curve[a:b + 1]
            peak = a + int(np.nanargmax(inside)) if np.isfinite(inside).any() else (a + b) // 2
            rows.append(_row(lv, a, peak, b, kind, None))
    return rows, curves


def spot_flowpeak(lv: LongVideo) -> tuple[list[dict], dict[str, np.ndarray]]:
    from mefeat.run.predict import DEFAULT_THRESHOLD

    window = max(16, round(2.1 * float(lv.meta["fps"])))
    frames = lv.frames()
    found = search_windows(lambda start, stop: frames[start:stop], len(frames),
                           window=window, stride=window // 2, threshold=DEFAULT_THRESHOLD)
    curve = np.zeros(len(frames))
    for start, c in found.curves:  # the windows overlap: the higher score of a frame
        curve[start:start + len(c)] = np.maximum(curve[start:start + len(c)], c)
    longest = mdmd_setting(lv.meta["dataset"], "micro").longest
    rows = [_row(lv, iv.onset, iv.peak, iv.offset,
                 "micro" if iv.offset - iv.onset + 1 <= longest else "macro", iv.score)
            for iv in found.intervals]
    return rows, {"motion": curve}


def spot_softnet(videos: list[LongVideo], *, p: float | str, epochs: int, progress: bool,
                 device: str = "cpu"):
    from mefeat.train.spotting import SpotVideo, softnet_loso

    subjects = sorted({lv.meta["subject"] for lv in videos})
    if len(subjects) < 2:
        raise MefeatError(f"softnet trains leave-one-subject-out: it needs the long videos "
                          f"of 2 subjects or more, the store has {subjects}; use mdmd or "
                          "flowpeak")
    rows: list[dict] = []
    curves: dict[str, dict[str, np.ndarray]] = {lv.key: {} for lv in videos}
    folds: dict[str, list[dict]] = {}
    by_key = {lv.key: lv for lv in videos}
    for kind in KINDS:
        ks = {SOFTNET_K.get(lv.meta["dataset"], {}).get(kind) for lv in videos}
        if len(ks) != 1 or None in ks:
            raise MefeatError(f"softnet: the videos' datasets need one k for {kind} (SoftNet's "
                              f"per dataset); they give {sorted(map(str, ks))}")
        k = ks.pop()
        spot_videos = [SpotVideo(lv.key, lv.meta["subject"], lv.roi(k),
                                 [(e["onset"], e["offset"]) for e in lv.meta["expressions"]
                                  if e["kind"] == kind]) for lv in videos]
        result = softnet_loso(spot_videos, k, kind, p=p, epochs=epochs, progress=progress,
                              device=device)
        folds[kind] = [{"subject": f.subject, "p": f.p, "k": k} for f in result]
        for f in result:
            for key, intervals in f.intervals.items():
                curves[key][kind] = f.curves[key]
                rows += [_row(by_key[key], a, peak, b, kind, score, fold=f.subject)
                         for a, peak, b, score in intervals]
    return rows, curves, folds


# The short-clip dataset recorded from the same people as a long-video dataset: a run
# trained on it has a fold per subject, named ``<dataset>/<subject>`` like the long video's.
SHORT_OF = {"samm-long": "samm", "casme3a-long": "casme3a"}


def recogniser_fold(held_out: set[str], dataset: str, subject: str) -> str | None:
    """The run's fold that held ``subject`` of long-video ``dataset`` out (``None``: the
    run never trained on that person, so every fold may classify the video)."""
    name = f"{SHORT_OF.get(dataset, dataset)}/{subject}"
    return name if name in held_out else None


def recognise(rows: list[dict], videos: dict[str, LongVideo], run) -> dict[str, Any]:
    """Label every micro row in place (``label``, ``probabilities`` or ``error``) with
    ``run`` (:func:`mefeat.run.predict.load_run`); the run's classes and the fold used per
    subject."""
    from mefeat.models import get_spec
    from mefeat.run.predict import aligner_for, classified, keyed_clip

    colour = get_spec(run.model).view.colour
    aligner = aligner_for(run.align)
    held_out = {s for s, _ in run.folds}
    used: dict[str, str] = {}
    for row in rows:
        if row["kind"] != "micro":
            continue
        lv = videos[row["video"]]
        fold = recogniser_fold(held_out, lv.meta["dataset"], lv.meta["subject"])
        fold_run = run if fold is None else replace(run, folds=[f for f in run.folds
                                                              if f[0] == fold])
        used[lv.meta["subject"]] = fold or "all folds (mean)"
        folder = Path(lv.meta["folder"])
        paths = [folder / name for name in lv.meta["files"][row["onset"]:row["offset"] + 1]]
        try:
            raw = read_clip(paths, key=lv.key)
            rgb = read_colour_clip(paths, key=lv.key) if colour else None
            keyed = keyed_clip(fold_run, raw, aligner, row["onset"],
                               f"{lv.key} (frame {row['onset_frame']})", False, rgb)
        except SampleError as exc:
            row["error"] = exc.reason
            continue
        out = classified(fold_run, [keyed])[0]
        row["label"] = out["label"]
        row["probabilities"] = {c: round(v, 5) for c, v in out["probabilities"].items()}
    return {"run": str(run.path), "model": run.model, "classes": list(run.classes),
            "folds_used": used}


def spot_long(store: str | os.PathLike, *, spotter: str, out: str | os.PathLike,
              recognizer: str | os.PathLike | None = None, p: float | str = "train",
              mdmd_flow: str = "farneback", epochs: int = 10, figures: bool = True,
              progress: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Spot (and recognise) every long video of ``store``; write ``intervals.csv``,
    ``intervals.json``, ``metrics.json`` and ``timeline/<video>.png`` under ``out``; return
    the metrics. ``device``: where SoftNet trains and the recogniser runs (the flows were
    computed by ``extract-long``; MDMD's and flow-peak's are OpenCV's, on the CPU)."""
    from mefeat.train.plan import check_device

    if spotter not in SPOTTERS:
        raise MefeatError(f"unknown spotter {spotter!r}; choose one of {list(SPOTTERS)}")
    device = str(check_device(device))
    ls = LongVideoStore.open(store)
    videos = [ls.video(k) for k in ls.keys()]
    unfinished = [lv.key for lv in videos if not lv.complete()]
    if unfinished:
        raise MefeatError(f"{store}: long videos not fully extracted: {unfinished[:3]}; run "
                          "`mefeat extract-long` again to finish them")
    if not videos:
        raise MefeatError(f"{store} holds no long videos; add them with `mefeat extract-long`")
    run = None
    if recognizer is not None:  # read (and refused) before the spotting's work
        from mefeat.run.predict import load_run

        run = load_run(recognizer, device=device)
    rows: list[dict] = []
    curves: dict[str, dict[str, np.ndarray]] = {}
    metrics: dict[str, Any] = {"store": str(store), "spotter": spotter,
                               "videos": len(videos)}
    if spotter == "softnet":
        rows, curves, metrics["folds"] = spot_softnet(videos, p=p, epochs=epochs,
                                                      progress=progress, device=device)
        metrics["p"] = p
    else:
        from tqdm import tqdm

        for lv in tqdm(videos, desc=spotter, unit="video", disable=not progress):
            got, curves[lv.key] = (spot_mdmd(lv, mdmd_flow) if spotter == "mdmd"
                                   else spot_flowpeak(lv))
            rows += got
        if spotter == "mdmd":
            metrics["mdmd_flow"] = mdmd_flow
    truth = [Expression(lv.key, e["onset"], e["offset"], e["kind"], e["emotion"])
             for lv in videos for e in lv.meta["expressions"]]
    spotted = [Expression(r["video"], r["onset"], r["offset"], r["kind"]) for r in rows]
    metrics["spotting"] = spotting_scores(truth, spotted)
    if run is not None:
        info = recognise(rows, {lv.key: lv for lv in videos}, run)
        classes = info["classes"]
        micro_truth = [t._replace(label=t.label if t.label in classes else None)
                       for t in truth if t.kind == "micro"]
        labelled = [Expression(r["video"], r["onset"], r["offset"], "micro", r.get("label"))
                    for r in rows if r["kind"] == "micro"]
        metrics["recognizer"] = info
        metrics["str"] = str_scores(micro_truth, labelled, classes=classes)
        metrics["str"]["unmapped"] = sorted({t.label for t in truth if t.kind == "micro"
                                             and t.label not in classes}, key=str)
    write_outputs(Path(out), rows, metrics, curves, videos, truth, figures)
    return metrics


def write_outputs(out: Path, rows: list[dict], metrics: dict, curves: dict,
                  videos: list[LongVideo], truth: list[Expression], figures: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r["video"], r["onset"], r["kind"]))
    (out / "intervals.json").write_text(json.dumps(rows, indent=1))
    columns = ["video", "subject", "onset", "apex", "offset", "kind", "onset_frame",
               "offset_frame", "score", "fold", "label", "error"]
    with open(out / "intervals.csv", "w", newline="") as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if figures:
        for lv in videos:
            draw_timeline(out / "timeline" / f"{lv.key.replace('/', '__')}.png", lv.key,
                          lv.n_frames, curves.get(lv.key, {}),
                          [t for t in truth if t.video == lv.key],
                          [r for r in rows if r["video"] == lv.key])

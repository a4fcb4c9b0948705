"""Dataset annotation parsers and label schemes on the real spreadsheets.

The spreadsheets in ../shared/data/annotations are parsed as they are; the MEGC 2019
composite counts are the official ones (442 clips, 68 subjects).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from mefeat.datasets import (
    READERS,
    Smic,
    casme2,
    get_reader,
    get_scheme,
    list_schemes,
    mmew,
    read_dataset,
    samm,
    smic,
)
from mefeat.datasets._base import Row, build_sample
from mefeat.datasets.labels import default_gt_path
from mefeat.errors import AnnotationError, MefeatError
from mefeat.frames import frame_number

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ANN = SHARED / "annotations"
CASME2_XLSX = ANN / "CASME2-coding-20140508.xlsx"
SAMM_XLSX = ANN / "SAMM_Micro_FACS_Codes_v2.xlsx"
SMICE_XLSX = ANN / "SMIC-HS-E_annotation.xlsx"

needs_sheets = pytest.mark.skipif(
    not (CASME2_XLSX.is_file() and SAMM_XLSX.is_file() and SMICE_XLSX.is_file()),
    reason="real annotation spreadsheets not in ../shared/data/annotations",
)


@pytest.fixture(scope="module")
def rows():
    if not CASME2_XLSX.is_file():
        pytest.skip("real annotation spreadsheets not available")
    return {
        "casme2": casme2.parse_annotations(CASME2_XLSX),
        "samm": samm.parse_annotations(SAMM_XLSX),
        "smic-e": smic.parse_annotations(SMICE_XLSX),
    }


def by_key(rs):
    return {r.key: r for r in rs}


# --- real spreadsheets: counts and quirks -----------------------------------------------


@needs_sheets
def test_row_and_subject_counts(rows):
    assert len(rows["casme2"]) == 255
    assert len(rows["samm"]) == 159
    assert len(rows["smic-e"]) == 157
    assert len({r.subject for r in rows["casme2"]}) == 26
    assert len({r.subject for r in rows["samm"]}) == 29
    assert len({r.subject for r in rows["smic-e"]}) == 16
    for rs in rows.values():
        assert len({r.key for r in rs}) == len(rs)  # keys are unique


@needs_sheets
def test_casme2_quirks(rows, tmp_path):
    k = by_key(rows["casme2"])
    first = k["casme2/sub01/EP02_01f"]
    assert (first.onset, first.apex, first.offset) == (46, 59, 86)
    assert first.emotion == "happiness" and first.action_units == ("12",)
    assert first.folder == ("sub01", "EP02_01f")
    assert k["casme2/sub01/EP19_05f"].action_units == ("4", "L10")
    # ApexFrame "/": the row has no apex; the reader's one missing-apex rule makes it the
    # middle frame, flagged in the sample
    slash = k["casme2/sub04/EP12_01f"]
    assert slash.apex is None and slash.extra["apex_cell"] == "/"
    assert [r.key for r in rows["casme2"] if r.apex is None] == ["casme2/sub04/EP12_01f"]
    folder = tmp_path / "sub04" / "EP12_01f"
    folder.mkdir(parents=True)
    for i in range(261, 322):
        (folder / f"img{i}.jpg").write_bytes(b"")
    s = build_sample(slash, tmp_path, pattern=casme2.FRAME_PATTERNS["raw"])
    assert s.apex_frame == 261 + (321 - 261) // 2 == 291 and s.apex == 30
    assert s.extra["apex_rule"].startswith("no apex in the annotation (cell '/')")
    assert Counter(r.emotion for r in rows["casme2"]) == {
        "others": 99, "disgust": 63, "happiness": 32, "repression": 27,
        "surprise": 25, "sadness": 7, "fear": 2,
    }  # fmt: skip


def test_casme2_subject_forms():
    assert casme2.subject_id("01") == casme2.subject_id(1) == casme2.subject_id("sub01") == "sub01"
    with pytest.raises(AnnotationError, match="not a CASME II subject"):
        casme2.subject_id("x1", source="f.xlsx row 3")


@needs_sheets
def test_samm_quirks(rows):
    r0 = rows["samm"][0]
    assert r0.key == "samm/006/006_1_2"
    assert r0.source.endswith("row 15")  # header on row 14, 13 rows of notes above
    assert (r0.onset, r0.apex, r0.offset) == (5562, 5588, 5632)
    k = by_key(rows["samm"])
    odd = k["samm/007/007_6_1"]
    assert odd.extra["au_raw"] == "(R6 or R12)+R15"
    assert odd.action_units == ("(R6 or R12)", "R15")
    assert k["samm/007/007_6_5"].action_units == ("(R6 or R12)", "R15")  # spaces dropped
    emotions = Counter(r.emotion for r in rows["samm"])
    assert emotions["others"] == 26 and "other" not in emotions
    assert all(r.onset <= r.apex <= r.offset for r in rows["samm"])


@needs_sheets
def test_smic_e_quirks(rows):
    k = by_key(rows["smic-e"])
    r = k["smic-e/s20/s20_ne_06"]
    assert (r.onset, r.apex, r.offset) == (17668815, None, 17668835)  # no apex in the sheet
    assert r.extra["second_interval"] == (17668855, 17668883)
    assert k["smic-e/s1/s1_ne_01"].subject == "s1"
    conflicts = [x.key for x in rows["smic-e"] if "emotion_conflict" in x.extra]
    assert conflicts == ["smic-e/s18/s18_sur_03"]


# --- MEGC 2019 composite ----------------------------------------------------------------


@needs_sheets
def test_megc2019_casme2_and_samm_exact(rows):
    scheme = get_scheme("megc2019")
    assert scheme.classes == ("negative", "positive", "surprise")
    for ds, total, counts in (("casme2", 145, (88, 32, 25)), ("samm", 133, (92, 26, 15))):
        kept, dropped = scheme.apply(rows[ds])
        assert len(kept) == total
        c = Counter(s.label for s in kept)
        assert (c[0], c[1], c[2]) == counts
        assert len(kept) + len(dropped) == len(rows[ds])  # every row accounted for
    kept, dropped = scheme.apply(rows["casme2"])
    reasons = Counter(d.reason for d in dropped)
    assert reasons["megc2019: emotion 'others' not in the 3-class scheme"] == 99
    assert reasons["megc2019: not in the MEGC2019 composite (official ground truth)"] == 2
    not_in = {d.clip for d in dropped if "composite" in d.reason}
    assert not_in == {"EP12_01f", "EP09_05f"}  # no apex / onset == apex
    assert all(d.source for d in dropped)
    # label coding: happiness -> positive (1), disgust -> negative (0)
    k = by_key(kept)
    assert k["casme2/sub01/EP02_01f"].label == 1
    assert k["casme2/sub01/EP19_05f"].label == 0


@needs_sheets
def test_megc2019_smic_e_is_157_of_164(rows):
    scheme = get_scheme("megc2019")
    kept, dropped = scheme.apply(rows["smic-e"])
    assert len(kept) == 157 and dropped == []
    c = Counter(s.label for s in kept)
    assert (c[0], c[1], c[2]) == (65, 51, 41)
    missing = scheme.missing(rows["casme2"] + rows["samm"] + rows["smic-e"])
    assert sorted(m[2] for m in missing) == [
        "s01_ne_02", "s02_sur_05", "s03_ne_03", "s03_ne_20", "s04_ne_05", "s04_ne_06",
        "s09_sur_02",
    ]  # fmt: skip
    # s18_sur_03: "negative" in the SMIC-E sheet, surprise in MEGC 2019; the GT wins
    s18 = by_key(kept)["smic-e/s18/s18_sur_03"]
    assert s18.label == 2 and "label_note" in s18.extra


def _tiny_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((4, 4), 128, np.uint8))
    assert ok
    return buf.tobytes()


@needs_sheets
def test_megc2019_full_composite_442(rows, tmp_path):
    """CASME II + SAMM from their sheets, SMIC from a SMIC-HS tree: exactly 442 / 68."""
    jpeg = _tiny_jpeg()
    names = {0: "negative", 1: "positive", 2: "surprise"}
    n_smic = 0
    for line in default_gt_path().read_text().splitlines():
        ds, subj, clip, lab = line.strip().split(",")
        if ds != "smic":
            continue
        # The HS release writes s1/s1_ne_01 where the GT writes s01/s01_ne_01.
        s = f"s{int(subj[1:])}"
        clip = s + clip[len(subj) :]
        d = tmp_path / "HS" / s / "micro" / names[int(lab)] / clip
        d.mkdir(parents=True)
        for i in (100, 101, 102):
            (d / f"image{i}.jpg").write_bytes(jpeg)
        n_smic += 1
    assert n_smic == 164
    smic_samples, smic_dropped = Smic(tmp_path).read()
    assert len(smic_samples) == 164 and smic_dropped == []
    assert smic_samples[0].apex_frame == 101  # middle frame

    scheme = get_scheme("megc2019")
    kept, _ = scheme.apply(rows["casme2"] + rows["samm"] + smic_samples)
    assert len(kept) == 442
    assert len({(s.dataset, s.subject) for s in kept}) == 68
    per = Counter((s.dataset, s.label) for s in kept)
    assert [per["smic", i] for i in range(3)] == [70, 51, 43]
    assert [per["casme2", i] for i in range(3)] == [88, 32, 25]
    assert [per["samm", i] for i in range(3)] == [92, 26, 15]
    assert scheme.missing(kept) == []


def test_megc2019_drops_other_datasets_and_duplicates():
    scheme = get_scheme("megc2019")
    a = Row("mmew", "S01", "c1", 1, 2, 3, "happiness")
    b = Row("smic", "s1", "s1_ne_01", None, None, None, "negative")
    c = Row("smic-e", "s1", "s1_ne_01", 1, None, 3, "negative")
    kept, dropped = scheme.apply([a, b, c])
    assert [k.key for k in kept] == ["smic/s1/s1_ne_01"]
    assert "not in the composite" in dropped[0].reason
    assert "same clip as smic/s1/s1_ne_01" in dropped[1].reason


# --- per-dataset schemes ----------------------------------------------------------------


@needs_sheets
def test_five_class_schemes(rows):
    s = get_scheme("casme2-5")
    assert s.classes == ("disgust", "happiness", "others", "repression", "surprise")
    kept, dropped = s.apply(rows["casme2"])
    assert len(kept) == 246 and len(dropped) == 9
    assert Counter(k.extra["class"] for k in kept)["repression"] == 27
    assert all(s.classes[k.label] == k.emotion for k in kept)
    s = get_scheme("samm-5")
    assert s.classes == ("anger", "contempt", "happiness", "others", "surprise")
    kept, _ = s.apply(rows["samm"])
    c = Counter(k.extra["class"] for k in kept)
    assert c == {"anger": 57, "contempt": 12, "happiness": 26, "others": 26, "surprise": 15}
    kept, dropped = s.apply(rows["casme2"])
    assert kept == [] and "not covered" in dropped[0].reason


@needs_sheets
def test_mmnet_casme2_three_class_protocol(rows):
    # CASME2_3.py keeps happiness (0), surprise (1) and, as negative (2), repression, disgust,
    # fear and sadness; its LOSO list leaves out sub18, whose three clips are all 'others'.
    s = get_scheme("casme2-3")
    kept, dropped = s.apply(rows["casme2"])
    counts = Counter(k.extra["class"] for k in kept)
    assert counts == {"happiness": 32, "surprise": 25, "negative": 63 + 27 + 7 + 2}
    assert {d.reason.split("'")[1] for d in dropped} == {"others"}
    assert len({k.subject for k in kept}) == 25
    assert not any(k.subject in ("18", "sub18") for k in kept)


MMEW_EMOTIONS = {
    "happiness": 36, "surprise": 89, "disgust": 72, "fear": 16, "sadness": 13,
    "anger": 8, "others": 66,
}  # fmt: skip


def test_mmew_schemes_on_a_sheet(tmp_path):
    """An MMEW-format sheet with the published emotion counts (300 clips)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
               "Action Units", "Estimated Emotion", "remarks"])  # fmt: skip
    i = 0
    for emo, n in MMEW_EMOTIONS.items():
        for _ in range(n):
            i += 1
            ws.append([f"S{i % 30 + 1:02d}", f"S{i % 30 + 1:02d}_{i:03d}", 1, 5, 9, "4+7", emo])
    path = tmp_path / "MMEW_Micro_Exp.xlsx"
    wb.save(path)
    rows = mmew.parse_annotations(path)
    assert len(rows) == 300 and rows[0].folder == ("Micro_Expression", "happiness", "S02_001")
    kept, dropped = get_scheme("mmew-3").apply(rows)
    c = Counter(k.extra["class"] for k in kept)
    assert len(kept) == 234 and c == {"negative": 109, "positive": 36, "surprise": 89}
    assert len(dropped) == 66 and "emotion 'others'" in dropped[0].reason
    kept, _ = get_scheme("mmew-5").apply(rows)
    c = Counter(k.extra["class"] for k in kept)
    assert len(kept) == 279
    assert c == {"disgust": 72, "happiness": 36, "surprise": 89, "fear": 16, "others": 66}


def test_scheme_classes_are_sorted_constants():
    for name in list_schemes():
        s = get_scheme(name)
        assert s.classes == tuple(sorted(s.classes))
        assert [s.index(c) for c in s.classes] == list(range(len(s.classes)))
    with pytest.raises(MefeatError, match="unknown label scheme"):
        get_scheme("nope")


# --- errors and registry ----------------------------------------------------------------


@needs_sheets
def test_missing_column_names_file_and_column(tmp_path):
    wb = openpyxl.load_workbook(CASME2_XLSX)
    ws = wb.worksheets[0]
    assert ws.cell(1, 5).value == "ApexFrame"
    ws.cell(1, 5).value = "Apex?"
    bad = tmp_path / "CASME2-coding-broken.xlsx"
    wb.save(bad)
    with pytest.raises(AnnotationError) as err:
        casme2.parse_annotations(bad)
    assert "CASME2-coding-broken.xlsx" in str(err.value) and "'ApexFrame'" in str(err.value)


@needs_sheets
def test_samm_wrong_sheet_and_bad_cell(tmp_path):
    with pytest.raises(AnnotationError, match="no sheet 'NOPE'"):
        samm.parse_annotations(SAMM_XLSX, sheet="NOPE")
    wb = openpyxl.load_workbook(SAMM_XLSX)
    ws = wb["MICRO_ONLY"]
    ws.cell(15, 4).value = "soon"
    bad = tmp_path / "samm.xlsx"
    wb.save(bad)
    with pytest.raises(AnnotationError, match=r"samm.xlsx row 15: Onset Frame is 'soon'"):
        samm.parse_annotations(bad)


@needs_sheets
@pytest.mark.parametrize(
    ("reader", "sheet", "other", "missing"),
    [
        (casme2, SAMM_XLSX, "samm", "['OnsetFrame', 'ApexFrame', 'OffsetFrame']"),
        (casme2, SMICE_XLSX, "smic-e", "['OnsetFrame', 'ApexFrame', 'OffsetFrame', "
                                       "'Action Units', 'Estimated Emotion']"),
        (samm, CASME2_XLSX, "casme2", "['Onset Frame', 'Apex Frame', 'Offset Frame']"),
        (samm, SMICE_XLSX, "smic-e", "['Onset Frame', 'Apex Frame', 'Offset Frame', "
                                     "'Action Units', 'Estimated Emotion']"),
    ],
    ids=["casme2-on-samm", "casme2-on-smic", "samm-on-casme2", "samm-on-smic"],
)
def test_other_datasets_sheet_is_named_as_such(reader, sheet, other, missing):
    # the real sheets: SAMM's "Onset Frame" normalises to CASME II's "OnsetFrame", so the
    # column check alone would not tell them apart
    with pytest.raises(AnnotationError) as err:
        reader.parse_annotations(sheet)
    msg = str(err.value)
    assert msg.startswith(f"{sheet} looks like the "), msg
    assert f"columns {missing}; use --dataset {other} " in msg, msg
    assert msg.endswith("own annotation file"), msg


@needs_sheets
def test_samm_header_in_row_one_is_not_read_as_casme2(tmp_path):
    # SAMM's header without its 13 rows of notes, on a sheet with a neutral name
    wb = openpyxl.load_workbook(SAMM_XLSX)
    ws = wb["MICRO_ONLY"]
    ws.title = "Sheet1"
    ws.delete_rows(1, 13)
    bad = tmp_path / "CASME2-coding-x.xlsx"
    wb.save(bad)
    assert len(samm.parse_annotations(bad, sheet="Sheet1")) == 159  # still SAMM's own
    with pytest.raises(AnnotationError, match=r"CASME2-coding-x\.xlsx looks like the SAMM "
                       r"annotation file \(sheet 'Sheet1', header row 1 with "
                       r"\['Inducement Code', 'Objective Classes'\]\).*--dataset samm"):
        casme2.parse_annotations(bad)


def test_registry():
    assert set(READERS) == {"casme2", "samm", "smic", "smic-e", "mmew", "casme3a", "manifest"}
    assert get_reader("smic") is Smic
    with pytest.raises(MefeatError, match="unknown dataset 'casme9'"):
        get_reader("casme9")
    with pytest.raises(MefeatError, match="is not a folder"):
        read_dataset("casme2", "/nonexistent/casme2")


@pytest.mark.parametrize(
    ("name", "number"),
    [("img46.jpg", 46), ("reg_img9.jpg", 9), ("006_05562.jpg", 5562), ("006_0180.jpg", 180),
     ("image17581039.bmp", 17581039), ("1.jpg", 1), ("face.jpg", None)],
)  # fmt: skip
def test_frame_number(name, number):
    assert frame_number(name) == number

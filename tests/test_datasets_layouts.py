"""Every reader on a tiny fake dataset written in tmp_path (frames are 4x4 JPEG files)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from mefeat.datasets import (
    Casme2,
    Casme3A,
    Manifest,
    Mmew,
    Samm,
    Smic,
    SmicE,
    read_dataset,
)
from mefeat.errors import AnnotationError, DatasetLayoutError

_JPEG = None


def frames(folder: Path, names) -> None:
    global _JPEG
    if _JPEG is None:
        ok, buf = cv2.imencode(".jpg", np.full((4, 4), 100, np.uint8))
        assert ok
        _JPEG = buf.tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(_JPEG)


def sheet(path: Path, rows, *, title: str | None = None, above=()) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    if title:
        ws.title = title
    for r in (*above, *rows):
        ws.append(list(r))
    wb.save(path)
    return path


def reasons(dropped) -> dict[str, str]:
    return {d.clip: d.reason for d in dropped}


# --- CASME II ---------------------------------------------------------------------------

CASME2_HEAD = ("Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
               "Action Units", "Estimated Emotion")  # fmt: skip


def casme2_root(tmp_path: Path, prefix: str = "img") -> Path:
    root = tmp_path / "casme2"
    frames(root / "sub01" / "EP02_01f", [f"{prefix}{i}.jpg" for i in range(5, 14)])
    frames(root / "sub02" / "EP01_11f", [f"{prefix}{i}.jpg" for i in range(1, 6)])
    frames(root / "sub02" / "EP03_02", [f"{prefix}{i}.jpg" for i in range(1, 6)])
    (root / "sub02" / "EMPTY").mkdir()
    sheet(
        root / "CASME2-coding-20140508.xlsx",
        [
            CASME2_HEAD,
            ("01", "EP02_01f", None, 5, 9, 12, None, 12, "happiness"),
            (2, "EP01_11f", None, 1, "/", 5, None, "4+L10", "repression"),  # int subject, "/"
            ("02", "EP03_02", None, 4, 2, 5, None, 4, "others"),  # onset after apex
            ("02", "EMPTY", None, 1, 2, 3, None, 4, "others"),  # no frames
            ("03", "GONE", None, 1, 2, 3, None, 4, "others"),  # no folder
            ("02", "EP01_11f", None, 1, 2, 5, None, 4, "others"),  # duplicate
        ],
    )
    return root


def test_casme2_raw(tmp_path):
    root = casme2_root(tmp_path)
    ds = Casme2(root)
    assert len(ds) == 2
    s = ds[0]
    assert s.key == "casme2/sub01/EP02_01f"
    # sorted by number: img9 before img10 (a name sort would not)
    assert [p.name for p in s.frames[:6]] == [f"img{i}.jpg" for i in range(5, 11)]
    assert s.frames[0] == root / "sub01" / "EP02_01f" / "img5.jpg"
    assert (s.onset_frame, s.apex_frame, s.offset_frame) == (5, 9, 12)
    assert (s.onset, s.apex, s.offset) == (0, 4, 7)
    assert s.n_frames == 9 and s.emotion == "happiness" and s.action_units == ("12",)
    t = ds[1]
    assert t.apex_frame == 3 and "apex_rule" in t.extra and t.action_units == ("4", "L10")
    why = reasons(ds.dropped)
    assert set(why) == {"EP03_02", "EMPTY", "GONE", "EP01_11f"}
    assert "apex 2 is outside onset..offset 4..5" in why["EP03_02"]
    assert "has no image files" in why["EMPTY"]
    assert "does not exist" in why["GONE"] and str(root / "sub03" / "GONE") in why["GONE"]
    assert "duplicate" in why["EP01_11f"]
    assert all("row" in d.source for d in ds.dropped)


def test_casme2_cropped_and_options(tmp_path):
    root = casme2_root(tmp_path, prefix="reg_img")
    assert Casme2(root).samples == []  # raw names do not match reg_img*
    ds = Casme2(root, frames="cropped")
    assert [s.key for s in ds.samples] == ["casme2/sub01/EP02_01f", "casme2/sub02/EP01_11f"]
    assert ds[0].frames[0].name == "reg_img5.jpg"
    samples, dropped = read_dataset("casme2", root, frames="cropped")
    assert len(samples) == 2 and len(dropped) == 4
    with pytest.raises(DatasetLayoutError, match="frames must be one of"):
        Casme2(root, frames="aligned")


def test_casme2_annotation_lookup(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(AnnotationError, match=r"no casme2 annotation file CASME2-coding-\*"):
        Casme2(root)
    with pytest.raises(AnnotationError, match="does not exist"):
        Casme2(root, annotations=root / "nope.xlsx")
    for name in ("CASME2-coding-1.xlsx", "CASME2-coding-2.xlsx"):
        sheet(root / name, [CASME2_HEAD])
    with pytest.raises(AnnotationError, match="several casme2 annotation files"):
        Casme2(root)
    assert Casme2(root, annotations=root / "CASME2-coding-2.xlsx").samples == []


# --- SAMM -------------------------------------------------------------------------------

SAMM_HEAD = ("Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
             "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
             "Objective Classes", "Notes")  # fmt: skip


def test_samm(tmp_path):
    root = tmp_path / "samm"
    # 5-digit padding (long inducement-1 recording) and 4-digit padding
    frames(root / "006" / "006_1_2", [f"006_{i:05d}.jpg" for i in range(5560, 5570)])
    frames(root / "006" / "006_2_4", [f"006_{i:04d}.jpg" for i in range(178, 190)])
    frames(root / "007" / "007_6_1", ["007_0497.jpg", "007_00497.jpg"])  # clash
    notes = [("SAMM Dataset - Master FACS Codes",)] + [()] * 12
    sheet(
        root / "SAMM_Micro_FACS_Codes_v2.xlsx",
        [
            SAMM_HEAD,
            ("006", "006_1_2", 1, 5562, 5565, 5569, 8, "Micro - 1/2", "4+7", "Anger", 3, None),
            ("006", "006_2_4", 2, 180, 185, 189, 10, "Micro - 1/2", "4", "Other", 7, "x"),
            ("007", "007_6_1", 6, 497, 497, 497, 1, "Micro", "(R6 or R12)+R15", "Happiness"),
        ],
        title="MICRO_ONLY",
        above=notes,
    )
    ds = Samm(root)
    assert [s.key for s in ds.samples] == ["samm/006/006_1_2", "samm/006/006_2_4"]
    a, b = ds.samples
    assert a.frames[0].name == "006_05560.jpg" and (a.onset, a.apex, a.offset) == (2, 5, 9)
    assert b.frames[0].name == "006_0178.jpg" and (b.onset, b.apex, b.offset) == (2, 7, 11)
    assert b.emotion == "others" and b.extra["objective"] == 7 and b.extra["notes"] == "x"
    assert "both are frame 497" in reasons(ds.dropped)["007_6_1"]


# --- SMIC (HS) and SMIC-E ---------------------------------------------------------------


def test_smic_hs(tmp_path):
    hs = tmp_path / "HS"
    frames(hs / "s1" / "micro" / "negative" / "s1_ne_01", [f"image{i}.bmp" for i in range(10, 21)])
    frames(hs / "s1" / "micro" / "surprise" / "s1_sur_01", ["image7.jpg", "image9.jpg"])
    frames(hs / "s1" / "non_micro" / "n1", ["image1.jpg"])  # ignored
    frames(hs / "extras" / "micro" / "negative" / "x", ["image1.jpg"])  # not a subject
    (hs / "s2" / "micro" / "positive" / "s2_po_01").mkdir(parents=True)  # empty
    frames(hs / "s10" / "micro" / "positive" / "s10_ne_01", ["image1.jpg", "image2.jpg"])
    ds = Smic(tmp_path)
    keys = [s.key for s in ds.samples]
    assert keys == ["smic/s1/s1_ne_01", "smic/s10/s10_ne_01"]
    s = ds[0]
    assert (s.onset_frame, s.apex_frame, s.offset_frame) == (10, 15, 20)
    assert (s.onset, s.apex, s.offset) == (0, 5, 10) and "apex_rule" in s.extra
    assert s.emotion == "negative"
    assert "emotion_conflict" in ds[1].extra  # folder positive, name says negative
    why = reasons(ds.dropped)
    # the middle frame 7 + (9 - 7) // 2 = 8 is not a file: left out, not moved to 7 or 9
    assert why["s1_sur_01"].startswith(
        "apex frame 8 (no apex in the annotation: the middle of onset..offset 7..9) is not "
        "among the frames")
    assert "has no image files" in why["s2_po_01"]
    with pytest.raises(DatasetLayoutError, match="HS"):
        Smic(tmp_path / "HS")
    with pytest.raises(AnnotationError, match="smic-e"):
        Smic(tmp_path, annotations="x.xlsx")


def test_smic_e(tmp_path):
    root = tmp_path / "HS_long"
    frames(root / "SMIC_HS_E" / "s01" / "s1_ne_01", [f"image{i}.jpg" for i in range(100, 140)])
    frames(root / "SMIC_HS_E" / "s20" / "s20_po_01", [f"image{i}.jpg" for i in range(1, 9)])
    head = ("Subject", "Filename", None, "OnsetF", "OffsetF", "Onset2F", "Offset2F",
            "Onset3F", "Offset3F", None, "FirstF", "LastF", "TotalMF1", "TotalMF2",
            "TotalMF3", "TotalVL", "Emotion")  # fmt: skip
    sheet(
        root / "SMIC-HS-E_annotation.xlsx",
        [
            head,
            (
                1,
                "s1_ne_01",
                None,
                110,
                121,
                125,
                130,
                None,
                None,
                None,
                100,
                139,
                12,
                6,
                None,
                40,
                "negative",
            ),
            (20, "s20_po_01", None, 5, 30, *[None] * 11, "positive"),  # offset past the folder
            (20, "s20_po_02", None, None, 30, *[None] * 11, "positive"),  # no onset
            (),
        ],
        title="HS",
    )
    ds = SmicE(root)
    (s,) = ds.samples
    assert s.key == "smic-e/s1/s1_ne_01"
    assert s.n_frames == 12 and s.frames[0].name == "image110.jpg"  # trimmed to onset..offset
    assert (s.onset, s.apex, s.offset) == (0, 5, 11) and s.apex_frame == 115
    assert s.extra["second_interval"] == (125, 130)
    why = reasons(ds.dropped)
    assert "offset frame 30 is not among the frames" in why["s20_po_01"]
    assert "OnsetF or OffsetF is empty" in why["s20_po_02"]
    with pytest.raises(DatasetLayoutError, match="frames_dir"):
        SmicE(root, frames_dir="SMIC_E")


# --- MMEW -------------------------------------------------------------------------------


def test_mmew(tmp_path):
    root = tmp_path / "MMEW"
    frames(root / "Micro_Expression" / "happiness" / "S01_01", [f"{i}.jpg" for i in range(1, 16)])
    frames(root / "Micro_Expression" / "others" / "S02_03", [f"{i}.jpg" for i in range(1, 6)])
    head = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
            "Estimated Emotion", "remarks")  # fmt: skip
    sheet(
        root / "MMEW_Micro_Exp.xlsx",
        [
            head,
            ("S01", "S01_01", 2, 8, 14, "12", "happiness", None),
            ("S02", "S02_03", 1, 9, 4, "4", "others", "checked"),  # apex after offset
        ],
    )
    ds = Mmew(root)
    (s,) = ds.samples
    assert s.key == "mmew/S01/S01_01" and (s.onset, s.apex, s.offset) == (1, 7, 13)
    assert s.n_frames == 15  # the whole clip folder
    assert "apex 9 is outside onset..offset 1..4" in reasons(ds.dropped)["S02_03"]


# --- CAS(ME)^3 part A -------------------------------------------------------------------


def test_casme3a(tmp_path):
    root = tmp_path / "part_A"
    frames(root / "spNO.1" / "a" / "color", [f"{i}.jpg" for i in range(0, 60)])
    frames(root / "spNo.2" / "b" / "color", [f"{i}.jpg" for i in range(0, 20)])  # case differs
    head = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class",
            "emotion")  # fmt: skip
    sheet(
        root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        [
            head,
            ("spNO.1", "a", 10, 15, 20, "4+7", 1, "disgust"),
            ("spNO.1", "a", 30, 33, 40, "12", 2, "happy"),  # same task, another ME
            ("spNO.1", "a", 30, 31, 35, "12", 2, "happy"),  # true duplicate key
            ("spNO.2", "b", 2, 5, 9, "1+2", 3, "surprise"),
            ("spNO.3", "c", 2, None, 9, "1", 3, "fear"),
        ],
        title="label",
    )
    ds = Casme3A(root)
    keys = [s.key for s in ds.samples]
    assert keys == ["casme3a/spNO.1/a_10", "casme3a/spNO.1/a_30", "casme3a/spNO.2/b_2"]
    a10, a30, b2 = ds.samples
    assert a10.n_frames == 11 and a10.frames[0] == root / "spNO.1" / "a" / "color" / "10.jpg"
    assert (a10.onset, a10.apex, a10.offset) == (0, 5, 10)
    assert a30.onset_frame == 30 and a30.emotion == "happy"
    assert b2.extra["subject_dir"] == "spNo.2" and b2.frames[0].parent.parent.name == "b"
    why = reasons(ds.dropped)
    assert "duplicate" in why["a_30"] and "does not exist" in why["c_2"]


# --- manifest ---------------------------------------------------------------------------

MANIFEST_HEAD = "subject,clip,frames_dir,onset,apex,offset,label\n"


def manifest_root(tmp_path: Path, body: str) -> Path:
    root = tmp_path / "m"
    frames(root / "clips" / "s01" / "c01", [f"{i:04d}.png" for i in range(1, 10)])
    (root / "manifest.csv").write_text(MANIFEST_HEAD + body)
    return root


def test_manifest(tmp_path):
    root = manifest_root(
        tmp_path,
        "s01,c01,clips/s01/c01,1,5,9,happiness\n"
        "s01,c02,clips/./s01/c01,2,,8,2\n"
        "s01,c03,clips/s01/c03,1,2,3,sad\n",
    )
    ds = Manifest(root, dataset="mine")
    a, b = ds.samples
    assert a.key == "mine/s01/c01" and (a.onset, a.apex, a.offset) == (0, 4, 8)
    assert a.emotion == "happiness" and a.label is None
    assert b.label == 2 and b.apex_frame == 5 and "apex_rule" in b.extra
    assert "does not exist" in reasons(ds.dropped)["c03"]


@pytest.mark.parametrize(
    "frames_dir", ["../../etc/passwd", "/etc", "clips/../../outside", "C:\\data\\x", "..\\x"]
)
def test_manifest_refuses_paths_out_of_root(tmp_path, frames_dir):
    root = manifest_root(tmp_path, f"s01,c01,{frames_dir},1,5,9,happiness\n")
    with pytest.raises(DatasetLayoutError, match="frames_dir"):
        Manifest(root).read()


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_manifest_refuses_symlinks_out_of_root(tmp_path):
    outside = tmp_path / "outside"
    frames(outside, ["1.jpg", "2.jpg", "3.jpg"])
    root = manifest_root(tmp_path, "s01,c01,link,1,2,3,x\n")
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetLayoutError, match="outside the dataset root"):
        Manifest(root).read()
    # a frame file linked out of the root
    root2 = tmp_path / "m2"
    frames(root2 / "c", ["1.jpg", "2.jpg"])
    (root2 / "c" / "3.jpg").symlink_to(outside / "3.jpg")
    (root2 / "manifest.csv").write_text(MANIFEST_HEAD + "s,c,c,1,2,3,x\n")
    with pytest.raises(DatasetLayoutError, match="is a link to"):
        Manifest(root2).read()


def test_manifest_missing_column(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    (root / "manifest.csv").write_text("subject,clip,onset,apex,offset,label\ns,c,1,2,3,x\n")
    with pytest.raises(AnnotationError) as err:
        Manifest(root).read()
    assert "manifest.csv" in str(err.value) and "'frames_dir'" in str(err.value)


# --- the one missing-apex rule ----------------------------------------------------------
# Each reader on a one-clip layout whose annotation gives no apex (onset 3, offset 12):
# the README's rule, onset + (offset - onset) // 2 = 7, flagged; and the rule must come
# from mefeat.datasets._base.missing_apex, so that a reader with its own copy fails here.

ONSET, OFFSET = 3, 12


def _no_apex_layout(name: str, root: Path):
    nums = range(1, 16)
    if name == "casme2":
        frames(root / "sub01" / "EP01_01", [f"img{i}.jpg" for i in nums])
        sheet(root / "CASME2-coding-20140508.xlsx",
              [CASME2_HEAD, ("01", "EP01_01", None, ONSET, "/", OFFSET, None, 12, "happiness")])
        return Casme2(root), "/"
    if name == "samm":
        frames(root / "006" / "006_1_2", [f"006_{i:04d}.jpg" for i in nums])
        sheet(root / "SAMM_Micro_FACS_Codes_v2.xlsx",
              [SAMM_HEAD, ("006", "006_1_2", 1, ONSET, -1, OFFSET, 10, "Micro", "4", "Anger")],
              title="MICRO_ONLY")
        return Samm(root), "-1"
    if name == "smic":
        frames(root / "HS" / "s1" / "micro" / "negative" / "s1_ne_01",
               [f"image{i}.bmp" for i in range(ONSET, OFFSET + 1)])
        return Smic(root), None
    if name == "smic-e":
        frames(root / "SMIC_HS_E" / "s01" / "s1_ne_01", [f"image{i}.jpg" for i in nums])
        sheet(root / "SMIC-HS-E_annotation.xlsx",
              [("Subject", "Filename", "OnsetF", "OffsetF", "Emotion"),
               (1, "s1_ne_01", ONSET, OFFSET, "negative")], title="HS")
        return SmicE(root), None
    if name == "mmew":
        frames(root / "Micro_Expression" / "fear" / "S01_01", [f"{i}.jpg" for i in nums])
        sheet(root / "MMEW_Micro_Exp.xlsx",
              [("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                "Estimated Emotion"), ("S01", "S01_01", ONSET, "-", OFFSET, "fear")])
        return Mmew(root), "-"
    if name == "casme3a":
        frames(root / "spNO.1" / "a" / "color", [f"{i}.jpg" for i in nums])
        sheet(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
              [("Subject", "Filename", "Onset", "Apex", "Offset", "emotion"),
               ("spNO.1", "a", ONSET, None, OFFSET, "fear")], title="label")
        return Casme3A(root), None
    if name == "manifest":
        frames(root / "c", [f"{i}.png" for i in nums])
        (root / "manifest.csv").write_text(MANIFEST_HEAD + f"s01,c01,c,{ONSET},,{OFFSET},x\n")
        return Manifest(root), None
    raise AssertionError(name)


ALL_READERS = ["casme2", "samm", "smic", "smic-e", "mmew", "casme3a", "manifest"]


def test_no_apex_layouts_cover_every_reader():
    from mefeat.datasets import READERS

    assert sorted(ALL_READERS) == sorted(READERS)


@pytest.mark.parametrize("name", ALL_READERS)
def test_missing_apex_is_the_middle_frame(name, tmp_path):
    ds, cell = _no_apex_layout(name, tmp_path / name)
    (s,) = ds.samples
    assert (s.onset_frame, s.apex_frame, s.offset_frame) == (3, 3 + (12 - 3) // 2, 12) == (3, 7, 12)
    assert s.frames[s.apex].name.endswith(("7.jpg", "7.bmp", "7.png"))
    flag = s.extra["apex_rule"]
    assert flag.endswith("the middle frame onset + (offset - onset) // 2 = 7")
    assert flag.startswith("no apex in the annotation" + (f" (cell {cell!r})" if cell else ":"))
    assert "apex_cell" not in s.extra


@pytest.mark.parametrize("name", ALL_READERS)
def test_every_reader_uses_the_one_missing_apex_rule(name, tmp_path, monkeypatch):
    import mefeat.datasets._base as base

    calls = []

    def spy(onset, offset):
        calls.append((onset, offset))
        return onset + 1  # not the middle: a reader with its own rule gives 7, not 4

    monkeypatch.setattr(base, "missing_apex", spy)
    ds, _ = _no_apex_layout(name, tmp_path / name)
    (s,) = ds.samples
    assert calls == [(ONSET, OFFSET)]
    assert s.apex_frame == ONSET + 1 and "apex_rule" in s.extra


def test_missing_apex_frame_not_a_file_is_dropped_not_moved(tmp_path):
    root = tmp_path / "m"
    frames(root / "c", [f"{i}.png" for i in (1, 2, 3, 4, 6, 7, 8, 9)])  # 5.png is gone
    (root / "manifest.csv").write_text(MANIFEST_HEAD + "s01,c01,c,1,,9,x\n")
    ds = Manifest(root)
    assert ds.samples == []
    assert reasons(ds.dropped)["c01"].startswith(
        "apex frame 5 (no apex in the annotation: the middle of onset..offset 1..9) is not "
        "among the frames")

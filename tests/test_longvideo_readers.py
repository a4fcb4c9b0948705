"""The long-video readers (MEGC spotting) on tiny fake layouts written in tmp_path.

Each layout uses its dataset's real sheet layout (CAS(ME)^2's three header-less sheets,
SAMM Long Videos' nine note rows above the header, CAS(ME)^3 part A's header row) and 8x8
JPEG frames; the expected positions are worked out by hand beside each row.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from mefeat.datasets import LONG_READERS, CasmeSq, Dropped, SammLong, read_long_videos
from mefeat.datasets.longvideo import (
    Casme3ALong,
    LongVideoSet,
    parse_casme3a_long,
    parse_casme_sq,
    parse_samm_long,
)
from mefeat.errors import AnnotationError, DatasetLayoutError, MefeatError

ANN = Path(__file__).resolve().parents[2] / "shared" / "data" / "annotations"
_JPEG: bytes = b""


def frames(folder: Path, names) -> None:
    global _JPEG
    if not _JPEG:
        ok, buf = cv2.imencode(".jpg", np.full((8, 8), 100, np.uint8))
        assert ok
        _JPEG = buf.tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(_JPEG)


def workbook(path: Path, sheets: dict[str, list]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for r in rows:
            ws.append(list(r))
    wb.save(path)
    return path


def reasons(dropped: list[Dropped]) -> dict[str, str]:
    return {d.clip: d.reason for d in dropped}


def by_name(result: LongVideoSet) -> dict:
    return {e.name: e for e in result.expressions}


# --- CAS(ME)^2 --------------------------------------------------------------------------

def casme_img(n: int) -> str:
    # Mixed padding: img1..img9, img010..img099 (the baseline's '%03d'), img100...
    return f"img{n:03d}.jpg" if 10 <= n < 100 else f"img{n}.jpg"


CODE = [  # A subject index, B name, C onset, D apex, E offset, F AUs, G emotion, H type, I self
    (1, "disgust1_1", 10, 15, 20, "4+10+14", "negative", "micro-expression", "disgust"),
    (1, "disgust1_2", 30, 40, 0, 12, "positive", "macro-expression", "happy"),  # offset 0
    (1, "disgust1_3", 50, 0, 61, 4, "others", "macro-expression", None),  # apex 0
    (1, "disgust1_4", 100, 102, 110, 4, "negative", "macro-expression", None),  # past 105
    (1, "disgust2_1", 3, 5, 8, "L10", "negative", "micro-expression", "disgust"),
    (2, "anger1_1", 5, 6, 7, 4, "negative", "macro-expression", None),  # no folder
    (1, "disgust2_2", 20, 18, 10, 4, "negative", "macro-expression", None),  # onset > offset
    (1, "sad1_1", 1, 2, 3, 4, "negative", "macro-expression", None),  # not in naming rule2
    (3, "disgust1_5", 1, 2, 3, 4, "negative", "macro-expression", None),  # index 3 unknown
    (1, "disgust1_6", 1, 2, 3, 4, "negative", "expression", None),  # unknown type
]
RULE1 = [(15, "s15", 1)] * 5 + [(16, "s16", 2)] + [(15, "s15", 1)] * 4  # aligned with CODE
RULE2 = [("0101", "disgust1"), ("0102", "disgust2"), (401, "anger1"), ("0502", "happy1")]


def casme_sq_sheet(path: Path) -> Path:
    return workbook(path, {"CASFEcode_final": CODE, "naming rule1": RULE1,
                           "naming rule2": RULE2})


@pytest.fixture
def casme_sq_root(tmp_path: Path) -> Path:
    root = tmp_path / "CAS(ME)^2"
    frames(root / "rawpic" / "s15" / "15_0101disgustingteeth",
           [casme_img(n) for n in range(1, 106)])
    frames(root / "rawpic" / "s15" / "15_0102eatingworms", [casme_img(n) for n in range(1, 31)])
    frames(root / "rawpic" / "s16" / "16_0502funnyerrors", [casme_img(n) for n in range(1, 21)])
    (root / "rawpic" / "s16" / "notes").mkdir()  # no '_': not a video
    casme_sq_sheet(root / "CAS(ME)^2code_final.xlsx")
    return root


def test_casme_sq_parser_reads_the_three_sheets_without_frames(tmp_path):
    rows, dropped = parse_casme_sq(casme_sq_sheet(tmp_path / "code_final.xlsx"))
    assert [r.name for r in rows] == ["disgust1_1", "disgust1_2", "disgust1_3", "disgust1_4",
                                      "disgust2_1", "anger1_1", "disgust2_2"]
    r = rows[0]
    assert (r.subject, r.video, r.key) == ("s15", "15_0101", "casme-sq/s15/15_0101")
    assert (r.onset_frame, r.apex_frame, r.offset_frame, r.kind) == (10, 15, 20, "micro")
    assert (r.emotion, r.action_units) == ("negative", ("4", "10", "14"))
    assert r.extra["self_report"] == "disgust" and r.repairs == ()
    assert r.source == "code_final.xlsx sheet 'CASFEcode_final' row 1"
    assert rows[5].video == "16_0401"  # the code cell 401 keeps its leading zero
    why = reasons(dropped)
    assert set(why) == {"sad1_1", "disgust1_5", "disgust1_6"}
    assert "'sad1' (of 'sad1_1') is not in sheet 'naming rule2'" in why["sad1_1"]
    assert "subject index 3 is not in column C of sheet 'naming rule1'" in why["disgust1_5"]
    assert "type 'expression' (column H)" in why["disgust1_6"]
    assert {d.source for d in dropped} == {
        f"code_final.xlsx sheet 'CASFEcode_final' row {i}" for i in (8, 9, 10)}


def test_casme_sq_reader_positions_repairs_and_drops(casme_sq_root):
    reader = CasmeSq(casme_sq_root)
    res = reader.read()
    assert reader.read() is res  # read once
    assert [v.key for v in res.videos] == [
        "casme-sq/s15/15_0101", "casme-sq/s15/15_0102", "casme-sq/s16/16_0502"]
    v = res.videos[0]
    assert (v.n_frames, v.first_frame, v.fps) == (105, 1, 30.0)
    # sorted by the integer after 'img', whatever the padding
    assert [p.name for p in v.frames[7:11]] == ["img8.jpg", "img9.jpg", "img010.jpg",
                                                "img011.jpg"]
    assert [p.name for p in v.frames[98:101]] == ["img099.jpg", "img100.jpg", "img101.jpg"]
    assert v.frame_numbers == tuple(range(1, 106))

    e = by_name(res)
    assert set(e) == {"disgust1_1", "disgust1_2", "disgust1_3", "disgust2_1"}
    # frame N of a video starting at img1 is position N - 1
    one = e["disgust1_1"]
    assert (one.video, one.onset, one.apex, one.offset) == ("casme-sq/s15/15_0101", 9, 14, 19)
    assert (one.onset_frame, one.apex_frame, one.offset_frame) == (10, 15, 20)
    assert (one.kind, one.emotion, one.repairs) == ("micro", "negative", ())
    two = e["disgust1_2"]  # offset 0 -> offset = apex = 40
    assert (two.onset, two.apex, two.offset, two.kind) == (29, 39, 39, "macro")
    assert len(two.repairs) == 1 and two.repairs[0].startswith("offset 0 in the sheet: offset "
                                                               "= apex = 40")
    three = e["disgust1_3"]  # apex 0 -> (50 + 61) // 2 = 55
    assert (three.onset, three.apex, three.offset) == (49, 54, 60)
    assert three.apex_frame == 55 and "apex = (onset + offset) // 2 = 55" in three.repairs[0]
    four = e["disgust2_1"]
    assert (four.video, four.onset, four.apex, four.offset) == ("casme-sq/s15/15_0102", 2, 4, 7)

    why = reasons(res.dropped)
    assert "offset frame 110 is not among the frames of" in why["disgust1_4"]
    assert "beyond the last frame (105, 105 files)" in why["disgust1_4"]
    assert why["anger1_1"].startswith("no frame folder of video 16_0401")
    assert "rawpic/s16/16_0401*" in why["anger1_1"]
    assert why["disgust2_2"].startswith("onset 20 is after offset 10")
    assert {"sad1_1", "disgust1_5", "disgust1_6"} <= set(why)
    assert next(d for d in res.dropped if d.clip == "anger1_1").source.endswith("row 6")
    # a video without expressions is still there (false positives count on it)
    assert res.by_video()["casme-sq/s16/16_0502"] == []
    assert len(res.by_video()["casme-sq/s15/15_0101"]) == 3


def test_casme_sq_refuses_a_workbook_without_the_naming_sheets(tmp_path):
    path = workbook(tmp_path / "x.xlsx", {"CASFEcode_final": CODE})
    with pytest.raises(AnnotationError, match="x.xlsx has no sheet 'naming rule1'"):
        parse_casme_sq(path)
    if (ANN / "CASME2-coding-20140508.xlsx").is_file():  # CASME II's sheet is not CAS(ME)^2's
        with pytest.raises(AnnotationError, match="no sheet 'naming rule1'"):
            parse_casme_sq(ANN / "CASME2-coding-20140508.xlsx")


def test_casme_sq_layout_errors(tmp_path, casme_sq_root):
    with pytest.raises(DatasetLayoutError, match="is not a folder"):
        CasmeSq(tmp_path / "nowhere")
    with pytest.raises(AnnotationError, match="no casme-sq annotation file"):
        CasmeSq(casme_sq_root / "rawpic")
    bare = tmp_path / "bare"
    bare.mkdir()
    casme_sq_sheet(bare / "CASME_sq_gt.xlsx")
    with pytest.raises(DatasetLayoutError, match="rawpic is not a folder"):
        CasmeSq(bare).read()


# --- SAMM Long Videos -------------------------------------------------------------------

SAMM_HEAD = ("Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration",
             "Type", "Action Units", "Notes")
SAMM_NOTES = [("SAMM Long Videos - FACS codes",), (), ("notes",)] + [()] * 6  # rows 1-9
SAMM_ROWS = [  # from row 11
    ("006", "006_1_1", 1, 5, 10, 15, 11, "Micro - 1/2", "R12", None),
    ("006", "006_1_2", 1, 20.5, 25.4, 30.6, 11, "Macro", "4+7", "half frames"),  # fractions
    ("006", "006_1_3", 1, 32, -1, 38, 7, "Micro - 1/2", "12", None),  # no apex
    ("006", "006_1_4", 1, 35, 41, 45, 11, "Macro", "4", None),  # past the last frame, 40
    ("008", "008_1_1", 1, 5, 6, 7, 3, "Macro", "4", None),  # no folder
    ("007", "007_3_1", 2, 9, 10, 11, 3, "Micro - 1/2", "4", None),  # 5-digit padding
    ("006", "006_1_5", 1, 2, 39, 3, 2, "Macro", "4", None),  # apex outside onset..offset
    ("009", "009_1_1", 1, 2, 3, 4, 3, "Macro", "4", None),  # folder without frames
    ("006", "006_1_6", 1, 2, 3, 4, 3, "Blink", "45", None),  # unknown type
]


def samm_sheet(path: Path) -> Path:
    return workbook(path, {"FACS_Movement_Only": [*SAMM_NOTES, SAMM_HEAD, *SAMM_ROWS]})


@pytest.fixture
def samm_root(tmp_path: Path) -> Path:
    root = tmp_path / "SAMM_LV"
    lv = root / "SAMM_longvideos"
    frames(lv / "006_1", [f"006_1_{n:04d}.jpg" for n in range(1, 41)])
    frames(lv / "007_3", [f"007_3_{n:05d}.jpg" for n in range(1, 13)])
    frames(lv / "006_2", [f"006_2_{n:04d}.jpg" for n in range(1, 6)])
    (lv / "009_1").mkdir()
    samm_sheet(root / "SAMM_LongVideos_V2_Release.xlsx")
    return root


def test_samm_long_parser_finds_the_header_below_the_notes(tmp_path):
    rows, dropped = parse_samm_long(samm_sheet(tmp_path / "SAMM_LongVideos_V1_Release.xlsx"))
    assert len(rows) == 8
    r = rows[0]
    assert (r.subject, r.video, r.name, r.key) == ("006", "006_1", "006_1_1",
                                                   "samm-long/006/006_1")
    assert r.source == "SAMM_LongVideos_V1_Release.xlsx row 11"  # header on row 10
    assert (r.onset_frame, r.apex_frame, r.offset_frame, r.kind) == (5, 10, 15, "micro")
    assert r.emotion is None and r.action_units == ("R12",)
    half = rows[1]  # int(x + 0.5): 20.5 -> 21, 25.4 -> 25, 30.6 -> 31
    assert (half.onset_frame, half.apex_frame, half.offset_frame) == (21, 25, 31)
    assert half.kind == "macro" and len(half.repairs) == 3
    assert half.repairs[0].startswith("Onset 20.5 rounded half up to 21")
    assert "Apex 25.4 rounded half up to 25" in half.repairs[1]
    assert half.extra["notes"] == "half frames"
    assert rows[2].apex_frame is None and rows[2].repairs == ()  # -1: no apex, nothing changed
    assert [(d.clip, d.source) for d in dropped] == [
        ("006_1_6", "SAMM_LongVideos_V1_Release.xlsx row 19")]
    assert "Type 'Blink' is neither Micro nor Macro" in dropped[0].reason


def test_samm_long_reader_positions_and_drops(samm_root):
    res = read_long_videos("samm-long", samm_root)
    assert [v.key for v in res.videos] == [
        "samm-long/006/006_1", "samm-long/006/006_2", "samm-long/007/007_3"]
    v = res.videos[0]
    assert (v.n_frames, v.first_frame, v.fps) == (40, 1, 200.0)
    assert v.frames[0].name == "006_1_0001.jpg" and v.frames[-1].name == "006_1_0040.jpg"
    e = by_name(res)
    assert set(e) == {"006_1_1", "006_1_2", "006_1_3", "007_3_1", "006_1_5"}
    assert (e["006_1_1"].onset, e["006_1_1"].apex, e["006_1_1"].offset) == (4, 9, 14)
    assert (e["006_1_2"].onset, e["006_1_2"].apex, e["006_1_2"].offset) == (20, 24, 30)
    assert len(e["006_1_2"].repairs) == 3
    assert (e["006_1_3"].onset, e["006_1_3"].apex, e["006_1_3"].offset) == (31, None, 37)
    assert e["007_3_1"].video == "samm-long/007/007_3"
    assert (e["007_3_1"].onset, e["007_3_1"].apex, e["007_3_1"].offset) == (8, 9, 10)
    five = e["006_1_5"]  # apex 39 outside 2..3: kept without an apex, and said so
    assert (five.onset, five.apex, five.offset, five.apex_frame) == (1, None, 2, None)
    assert five.repairs == ("apex 39 is outside onset..offset 2..3: no apex",)

    why = reasons(res.dropped)
    assert "offset frame 45" in why["006_1_4"] and "beyond the last frame (40, 40 files)" in \
        why["006_1_4"]
    assert why["008_1_1"].startswith("no frame folder of video 008_1")
    assert "SAMM_longvideos/008_1" in why["008_1_1"]
    assert "has no image files" in why["009_1"]  # the video itself, sourced by its folder
    assert next(d for d in res.dropped if d.clip == "009_1").source.endswith("009_1")
    assert why["009_1_1"].startswith("video 009_1 cannot be read: frame folder")
    assert "Type 'Blink'" in why["006_1_6"]
    assert res.by_video()["samm-long/006/006_2"] == []


def test_samm_long_refuses_a_sheet_without_its_header(tmp_path):
    path = workbook(tmp_path / "SAMM_LongVideos_V1_Release.xlsx",
                    {"FACS_Movement_Only": [*SAMM_NOTES, ("Filename", "Onset"), *SAMM_ROWS]})
    with pytest.raises(AnnotationError, match=r"SAMM_LongVideos_V1_Release.xlsx.*no header row "
                                              "starting with 'Subject'"):
        parse_samm_long(path)
    if (ANN / "SAMM_Micro_FACS_Codes_v2.xlsx").is_file():  # the short-clip sheet has no Type
        with pytest.raises(AnnotationError, match="column 'Type' is missing"):
            parse_samm_long(ANN / "SAMM_Micro_FACS_Codes_v2.xlsx")


def test_samm_long_several_sheets_ask_which(samm_root):
    samm_sheet(samm_root / "SAMM_LongVideos_V3_Release.xlsx")
    with pytest.raises(AnnotationError, match="several samm-long annotation files"):
        SammLong(samm_root)
    res = SammLong(samm_root, annotations=samm_root / "SAMM_LongVideos_V3_Release.xlsx").read()
    assert len(res.expressions) == 5


# --- CAS(ME)^3 part A -------------------------------------------------------------------

C3_HEAD = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Expression type",
           "Objective class")
C3_ROWS = [
    ("spNO.1", "A", 8, 10, 20, "4", "Micro-expression", 1),
    ("spNO.1", "A", 5, 8, 12, "4", "Macro-expression", 1),  # 5..6 were never saved
    ("spNO.1", "A", 15, 16, 18, "4", "Micro-expression", 1),  # 15 lost inside
    ("spNo.1", "a", 12, 15, 20, "4+12", "Macro-expression", 2),  # apex is the lost 15
    ("spNO.2", "C", 1, 2, 3, "4", "Macro-expression", 1),  # no folder
]


@pytest.fixture
def casme3_root(tmp_path: Path) -> Path:
    root = tmp_path / "CASME3"
    part = root / "part_A" / "data" / "part_A" / "spNO.1"
    frames(part / "a" / "color", [f"{n}.jpg" for n in range(7, 31) if n != 15])
    frames(part / "a" / "depth", ["7.png"])
    frames(part / "b" / "color", [f"{n}.jpg" for n in range(1, 11)])
    (root / "part_A" / "annotation").mkdir()
    workbook(root / "part_A" / "annotation" / "CAS(ME)3_part_A_v2.xlsx",
             {"Sheet1": [C3_HEAD, *C3_ROWS]})
    return root


def test_casme3a_long_maps_frame_numbers_with_gaps_to_positions(casme3_root):
    res = Casme3ALong(casme3_root).read()
    assert [v.key for v in res.videos] == ["casme3a-long/spNO.1/a", "casme3a-long/spNO.1/b"]
    a = res.videos[0]
    # files 7..14 and 16..30: 8 + 15 = 23 frames, position 0 is frame 7
    assert (a.n_frames, a.first_frame, a.fps) == (23, 7, 30.0)
    e = res.expressions
    assert [x.name for x in e] == ["a_8", "a_12"]
    # 8 -> 1, 10 -> 3; 20: 7..14 are positions 0..7, 16 is 8, so 20 is 12
    assert (e[0].video, e[0].onset, e[0].apex, e[0].offset, e[0].kind) == (
        "casme3a-long/spNO.1/a", 1, 3, 12, "micro")
    assert e[0].emotion is None and e[0].extra["objective"] == 1
    # the sheet's spNo.1 / a finds spNO.1/a; apex 15 is not a file: no apex, said so
    assert (e[1].onset, e[1].apex, e[1].offset, e[1].kind) == (5, None, 12, "macro")
    assert e[1].repairs == ("apex frame 15 is not among the video's frame files: no apex",)
    assert e[1].action_units == ("4", "12")
    why = reasons(res.dropped)
    assert "onset frame 5 is not among the frames of" in why["a_5"]
    assert "before the first frame file (7)" in why["a_5"]
    assert "onset frame 15" in why["a_15"] and "lost inside the video" in why["a_15"]
    assert why["c_1"].startswith("no frame folder of video c")
    assert res.by_video()["casme3a-long/spNO.1/b"] == []


def test_casme3a_long_refuses_xls_and_reads_the_sheet_alone(casme3_root):
    ann = casme3_root / "part_A" / "annotation"
    rows, dropped = parse_casme3a_long(ann / "CAS(ME)3_part_A_v2.xlsx")
    assert len(rows) == 5 and dropped == []
    assert (rows[0].subject, rows[0].video, rows[0].source) == (
        "spNO.1", "a", "CAS(ME)3_part_A_v2.xlsx row 2")
    (ann / "CAS(ME)3_part_A_v2.xlsx").unlink()
    (ann / "CAS(ME)3_part_A_v2.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(AnnotationError, match=r"\.xls workbook.*save it as \.xlsx"):
        Casme3ALong(casme3_root)
    with pytest.raises(AnnotationError, match="no xlrd"):
        parse_casme3a_long(ann / "CAS(ME)3_part_A_v2.xls")


def test_registry_and_unknown_name(tmp_path):
    assert sorted(LONG_READERS) == ["casme-sq", "casme3a-long", "samm-long"]
    with pytest.raises(MefeatError, match="unknown long-video dataset 'smic'"):
        read_long_videos("smic", tmp_path)

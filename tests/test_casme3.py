"""CAS(ME)^3 part A: the reader's rules for the quirks of the label sheet and the frames.

A fake part A layout in tmp_path has each quirk the dataset's tracker lists
(github.com/jingtingEmmaLi/CAS-ME-3 issues #3, #4): recordings that lack their first
frames and one inside, rows with Onset = Apex, very long offsets.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from test_datasets_layouts import frames, reasons, sheet

from mefeat.datasets import Casme3A, casme3

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_SHEET = SHARED / "annotations" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
HEAD = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion")

ROWS = [
    ("spNO.1", "a", 10, 15, 20, "4+7", "I", "disgust"),  # plain; 17.jpg is gone
    ("spNO.1", "a", 4, 9, 30, "4", "I", "disgust"),  # onset among the lost first frames
    ("spNO.1", "a", 50, 55, 60, "4", "I", "disgust"),  # onset lost inside the recording
    ("spNO.1", "a", 12, 12, 30, "12", "II", "happy"),  # Onset = Apex
    ("spNO.1", "a", 16, 16, 25, "12", "II", "happy"),  # Onset = Apex, next file 18 (17 gone)
    ("spNO.1", "a", 30, 30, 30, "12", "II", "happy"),  # Onset = Apex = Offset
    ("spNO.1", "a", 20, 24, 80, "1", "V", "surprise"),  # Offset - Onset = 60: very long
    ("spNO.1", "a", 21, 24, 80, "1", "V", "surprise"),  # 59: not
    ("spNO.2", "b", 9, None, 19, "1+2", "V", "surprise"),  # no apex: the middle frame
    ("spNO.2", "b", 7, 7, 12, "5", "II", "fear"),  # Onset = Apex on the first file there
    ("spNO.2", "b", 5, 5, 40, "5", "II", "fear"),  # Onset = Apex but the onset is lost
]


@pytest.fixture
def part_a(tmp_path) -> Path:
    root = tmp_path / "part_A"
    # spNO.1/a lost frames 0..7 and two inside (17, 50); spNO.2/b lost 0..6
    frames(root / "spNO.1" / "a" / "color",
           [f"{i}.jpg" for i in range(8, 100) if i not in (17, 50)])
    frames(root / "spNO.2" / "b" / "color", [f"{i}.jpg" for i in range(7, 41)])
    sheet(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", [HEAD, *ROWS], title="label")
    return root


def by_clip(samples):
    return {s.clip: s for s in samples}


def test_counts(part_a):
    ds = Casme3A(part_a)
    assert len(ds) == 7 and len(ds.dropped) == 4
    assert sorted(by_clip(ds.samples)) == ["a_10", "a_12", "a_16", "a_20", "a_21", "b_7", "b_9"]
    assert sorted(reasons(ds.dropped)) == ["a_30", "a_4", "a_50", "b_5"]
    assert all(d.source.startswith("cas(me)3_part_A") and "row" in d.source for d in ds.dropped)


def test_lost_frames_key_frames_by_number_not_position(part_a):
    s = by_clip(Casme3A(part_a).samples)["a_10"]
    # the folder starts at 8.jpg: Onset 10 is the file 10.jpg, not the 11th file (18.jpg)
    assert [p.name for p in s.frames] == [f"{i}.jpg" for i in (10, 11, 12, 13, 14, 15, 16,
                                                                18, 19, 20)]
    assert (s.onset_frame, s.apex_frame, s.offset_frame) == (10, 15, 20)
    assert (s.onset, s.apex, s.offset) == (0, 5, 9)  # 17.jpg is gone: the offset is index 9
    assert s.frames[s.apex].name == "15.jpg" and s.frames[s.offset].name == "20.jpg"
    assert not {"apex_moved", "long_offset", "apex_rule"} & set(s.extra)


def test_lost_onset_is_dropped_with_the_reason(part_a):
    why = reasons(Casme3A(part_a).dropped)
    assert why["a_4"].startswith(
        "onset frame 4 is missing (the recording's frame files start at 8: part A lost the "
        "first frames of most videos)")
    assert why["a_50"].startswith(
        "onset frame 50 is missing (lost inside the recording (files 49 and 51 are there))")
    # the lost onset is reported even where Onset = Apex would otherwise move the apex
    assert why["b_5"].startswith("onset frame 5 is missing (the recording's frame files "
                                 "start at 7")


def test_onset_equal_apex_moves_the_apex_to_the_next_frame(part_a):
    k = by_clip(Casme3A(part_a).samples)
    a12, a16, b7 = k["a_12"], k["a_16"], k["b_7"]
    assert (a12.onset_frame, a12.apex_frame, a12.offset_frame) == (12, 13, 30)
    assert (a12.onset, a12.apex) == (0, 1) and a12.n_frames == 18  # 12..30 without 17
    assert a12.extra["apex_moved"] == (
        "Apex = Onset = 12 in the label sheet; apex moved to the next frame 13 (an "
        "onset-to-apex flow of zero length is meaningless)")
    # the next frame by number: 17.jpg is gone, so 18
    assert (a16.onset_frame, a16.apex_frame, a16.offset_frame) == (16, 18, 25)
    assert (a16.onset, a16.apex) == (0, 1) and "next frame 18" in a16.extra["apex_moved"]
    # the authors' case: Onset = Apex on the first frame the recording kept
    assert (b7.onset_frame, b7.apex_frame, b7.offset_frame) == (7, 8, 12)
    assert (b7.onset, b7.apex, b7.offset) == (0, 1, 5) and "apex_moved" in b7.extra
    assert k["a_10"].clip == "a_10" and a12.clip == "a_12"  # the key keeps the sheet's onset
    why = reasons(Casme3A(part_a).dropped)
    assert why["a_30"].startswith(
        "Apex = Onset = 30 and no frame file follows it up to Offset 30")


def test_very_long_offset_is_kept_and_flagged(part_a):
    k = by_clip(Casme3A(part_a).samples)
    long, short = k["a_20"], k["a_21"]
    assert casme3.LONG_CLIP_FRAMES == 60
    assert (long.onset_frame, long.apex_frame, long.offset_frame) == (20, 24, 80)
    assert long.n_frames == 60 and long.frames[-1].name == "80.jpg"  # 20..80 without 50
    assert long.extra["long_offset"] == (
        "Offset - Onset = 60 frames (2.0 s), at least 60 (2 s at 30 fps): kept as annotated")
    assert short.n_frames == 59 and "long_offset" not in short.extra


def test_missing_apex_is_the_shared_middle_frame(part_a):
    b9 = by_clip(Casme3A(part_a).samples)["b_9"]
    assert (b9.onset_frame, b9.apex_frame, b9.offset_frame) == (9, 9 + (19 - 9) // 2, 19)
    assert b9.apex == 5 and b9.extra["apex_rule"].startswith("no apex in the annotation")
    assert "apex_moved" not in b9.extra


def test_rules_need_frames_not_the_parser(part_a):
    # the sheet alone keeps the annotated key frames; only the long-offset flag is a sheet fact
    rows = {r.clip: r for r in casme3.parse_annotations(
        part_a / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")}
    assert (rows["a_12"].onset, rows["a_12"].apex) == (12, 12)
    assert rows["b_9"].apex is None
    assert [c for c, r in rows.items() if "long_offset" in r.extra] == ["a_20"]


@pytest.mark.skipif(not REAL_SHEET.is_file(), reason="CAS(ME)^3 part A label sheet not in "
                    "../shared/data/annotations")
def test_real_label_sheet_v2():
    rows = casme3.parse_annotations(REAL_SHEET)
    assert len(rows) == 860 and len({r.key for r in rows}) == 860
    assert len({r.subject for r in rows}) == 94
    assert sum(r.onset == r.apex for r in rows) == 55  # the tracker's 55
    assert sum("long_offset" in r.extra for r in rows) == 72  # the tracker's 72 over 2 s
    assert Counter(r.emotion for r in rows)["disgust"] == 250

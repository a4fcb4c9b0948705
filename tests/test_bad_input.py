"""A corpus of broken inputs, each with the exact behaviour ``extract`` must show.

Each case breaks a copy of a one-clip CASME II-layout demo (or of a manifest made over it)
and states the outcome: the whole read refused with a ``MefeatError`` subclass naming the
file, the clip left out by the reader with why (``skipped``), the clip failed with why
(``failed``, recorded in the store), or the clip extracted fine. The CLI part checks the
exit codes: non-zero only when nothing could be done or with ``--strict``, and the count
of failed samples always printed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from _stores import add_short_clip
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.demo import build_demo
from mefeat.errors import AnnotationError, DatasetLayoutError, MefeatError, StoreError
from mefeat.run.extract import extract
from mefeat.store import SCHEMA_VERSION, FeatureStore

SIZE = 112
HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
          "Action Units", "Estimated Emotion"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("bad") / "demo", subjects=1, clips=1)


@dataclass
class Ctx:
    """A fresh copy of the one-clip dataset that a case may break."""

    root: Path
    ann: Path
    clip: Path
    store: Path
    dataset: str = "casme2"

    @property
    def key(self) -> str:
        if self.dataset == "manifest":
            return "manifest/s01/c01"
        return f"casme2/{self.clip.parent.name}/{self.clip.name}"

    def frames(self) -> list[Path]:
        return sorted(self.clip.glob("img*.jpg"), key=lambda p: int(p.stem[3:]))

    def row(self) -> list:
        from openpyxl import load_workbook

        return [c.value for c in next(load_workbook(self.ann).active.iter_rows(min_row=2))]

    def key_frames(self) -> tuple[int, int, int]:
        r = self.row()
        return r[3], r[4], r[5]

    def edit_sheet(self, edit: Callable) -> None:
        from openpyxl import load_workbook

        wb = load_workbook(self.ann)
        edit(wb)
        wb.save(self.ann)

    def set_cell(self, column: str, value) -> None:
        def edit(wb):
            wb.active.cell(2, HEADER.index(column) + 1).value = value

        self.edit_sheet(edit)

    def as_manifest(self, frames_dir: str = "sub01/EP01_01") -> None:
        on, ap, off = self.key_frames()
        self.ann = self.root / "manifest.csv"
        with open(self.ann, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["subject", "clip", "frames_dir", "onset", "apex", "offset", "label"])
            w.writerow(["s01", "c01", frames_dir, on, ap, off, "happiness"])
        self.dataset = "manifest"


@pytest.fixture
def ctx(base, tmp_path) -> Ctx:
    root = tmp_path / "CASME2"
    shutil.copytree(base.root, root)
    clip = next(p for p in root.glob("sub01/EP*"))
    return Ctx(root, root / base.annotations.name, clip, tmp_path / "s.zarr")


# every message ends by saying what to do
WHAT_TO_DO = re.compile(r"\b(fix|check|restore|remove|use|pass|upgrade|choose|give|put|crop|"
                        r"wait|refusing|must)\b")


def _run(c: Ctx):
    return extract(c.root, dataset=c.dataset, annotations=c.ann, store=c.store, size=SIZE,
                   progress=False)


# --- the cases ------------------------------------------------------------------------------
# Each mutate(c) breaks the copy and returns the text the message must contain (a file
# name, a cell) besides the pattern, or None.


def corrupt_image(c):
    f = c.frames()[5]
    f.write_bytes(b"\xff\xd8 this is not a JPEG")
    return f.name


def zero_byte_image(c):
    f = c.frames()[0]
    f.write_bytes(b"")
    return f.name


def truncated_image(c):
    f = c.frames()[7]
    f.write_bytes(f.read_bytes()[:40])
    return f.name


def mixed_sizes(c):
    f = c.frames()[9]
    img = cv2.imread(str(f))
    cv2.imwrite(str(f), cv2.resize(img, (200, 180)))
    return f.name


def gap_in_frame_numbers(c):
    on, ap, off = c.key_frames()
    first = int(c.frames()[0].stem[3:])
    (c.clip / f"img{on + 1}.jpg").unlink()  # a frame number missing between onset and apex
    c.frames()[-1].unlink()

    def check(fs):  # the clip is what is there; indices count the files
        assert fs.column("n_frames")[0] == 30
        assert (fs.column("onset")[0], fs.column("apex")[0]) == (on - first, ap - first - 1)
        assert fs.column("offset_frame")[0] == off

    return check


def missing_key_frame_file(c):
    apex = c.key_frames()[1]
    (c.clip / f"img{apex}.jpg").unlink()
    return f"apex frame {apex}"


def duplicate_frame_number(c):
    first = c.frames()[0]
    n = int(first.stem[3:])
    shutil.copy(first, c.clip / f"img{n:05d}.jpg")
    return f"img{n:05d}.jpg"


def stray_files_in_clip(c):
    (c.clip / "Thumbs.db").write_bytes(b"\0" * 10)
    (c.clip / ".DS_Store").write_bytes(b"\0" * 10)
    (c.clip / "notes.txt").write_text("coder notes")
    (c.clip / "img_preview.jpg").write_bytes(b"")  # does not match img<N>.jpg: not a frame
    return None


def empty_clip_folder(c):
    for f in c.clip.iterdir():
        f.unlink()
    return str(c.clip)


def missing_clip_folder(c):
    shutil.rmtree(c.clip)
    return str(c.clip)


def clip_folder_is_a_file(c):
    shutil.rmtree(c.clip)
    c.clip.write_text("not a folder")
    return str(c.clip)


def apex_slash(c):
    on, _, off = c.key_frames()
    c.set_cell("ApexFrame", "/")

    def check(fs):  # CASME II's rule for "/": the middle of onset..offset
        assert fs.column("apex_frame")[0] == on + (off - on) // 2

    return check


def apex_minus_one(c):
    c.set_cell("ApexFrame", "-1")
    return "apex -1"


def apex_question_mark(c):
    c.set_cell("ApexFrame", "?")
    return "'?'"


def apex_after_offset(c):
    on, ap, off = c.key_frames()
    c.set_cell("ApexFrame", off + 1)
    return f"apex {off + 1}"


def onset_after_offset(c):
    on, ap, off = c.key_frames()
    c.set_cell("OnsetFrame", off + 2)
    return f"onset {off + 2}"


def onset_out_of_range(c):
    c.set_cell("OnsetFrame", 1)
    return "onset frame 1"


def offset_out_of_range(c):
    c.set_cell("OffsetFrame", 99999)
    return "offset frame 99999"


def fractional_frame(c):
    c.set_cell("OnsetFrame", 12.5)
    return "12.5"


def text_frame_number(c):
    c.set_cell("OffsetFrame", "end")
    return "'end'"


def onset_equals_offset(c):
    on, _, _ = c.key_frames()
    c.set_cell("ApexFrame", on)
    c.set_cell("OffsetFrame", on)
    return None


def bad_subject(c):
    c.set_cell("Subject", "subject one")
    return "'subject one'"


def empty_filename(c):
    c.set_cell("Filename", None)
    return "Filename is empty"


def filename_climbs_out(c):
    (c.root.parent / "elsewhere").mkdir()
    shutil.copytree(c.clip, c.root.parent / "elsewhere" / "EP01_01")
    c.set_cell("Filename", "../../elsewhere/EP01_01")
    return "'../../elsewhere/EP01_01'"


def filename_is_dotdot(c):
    c.set_cell("Filename", "..")
    return "'..'"


def duplicated_row(c):
    def edit(wb):
        ws = wb.active
        ws.append([cell.value for cell in ws[2]])

    c.edit_sheet(edit)
    return "duplicate of the clip at"


def blank_rows(c):
    def edit(wb):
        ws = wb.active
        ws.insert_rows(2, 2)  # two blank rows above the data
        ws.append([None] * 9)
        ws.append(["", "  ", None, None, None, None, None, None, None])

    c.edit_sheet(edit)
    return None


def missing_column(c):
    def edit(wb):
        wb.active.delete_cols(HEADER.index("ApexFrame") + 1)

    c.edit_sheet(edit)
    return "'ApexFrame' is missing"


def wrong_sheet_first(c):
    def edit(wb):
        notes = wb.create_sheet("Notes", 0)
        notes.append(["This workbook holds the coding on the next sheet"])

    c.edit_sheet(edit)
    return "(sheet Notes)"


def wrong_spreadsheet_version(c):
    # a SAMM sheet handed to the CASME II reader
    def edit(wb):
        ws = wb.active
        ws.delete_rows(1, ws.max_row)
        ws.append(["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
                   "Offset Frame", "Duration", "Type", "Action Units", "Notes",
                   "Estimated Emotion"])
        ws.append(["006", "006_1_2", 1, 5562, 5588, 5632, 71, "Micro - 1/2", "AU4", "", "anger"])

    c.edit_sheet(edit)
    return "Inducement Code"


def spreadsheet_not_a_workbook(c):
    c.ann.write_bytes(b"PK\x03\x04 broken zip")
    return c.ann.name


def spreadsheet_empty(c):
    def edit(wb):
        wb.active.delete_rows(1, 10)

    c.edit_sheet(edit)
    return c.ann.name


def spreadsheet_other_format(c):
    new = c.ann.with_suffix(".ods")
    c.ann.rename(new)
    c.ann = new
    return "'.ods'"


def header_only(c):
    def edit(wb):
        wb.active.delete_rows(2, 10)

    c.edit_sheet(edit)
    return None


def non_ascii_clip_folder(c):
    new = c.clip.with_name("EP01_01_ü表情")
    c.clip.rename(new)
    c.clip = new
    c.set_cell("Filename", new.name)
    return None


def non_ascii_frame_names(c):
    folder = c.root / "sub01" / "片段 01"
    c.clip.rename(folder)
    for f in folder.glob("img*.jpg"):
        f.rename(folder / f"帧_{f.stem[3:]}.jpg")
    c.as_manifest("sub01/片段 01")
    return None


def no_face_in_onset(c):
    on, _, _ = c.key_frames()
    cv2.imwrite(str(c.clip / f"img{on}.jpg"), np.full((320, 320, 3), 90, np.uint8))
    return "no face found"


def two_faces(c):
    for f in c.frames():
        img = cv2.imread(str(f))
        cv2.imwrite(str(f), np.hstack([img, img]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return "2 faces found"


def manifest_dotdot(c):
    c.as_manifest("../../etc/passwd")
    return "'../../etc/passwd'"


def manifest_absolute(c):
    c.as_manifest("/etc")
    return "'/etc'"


def manifest_windows_absolute(c):
    c.as_manifest("C:\\Windows\\System32")
    return "absolute path"


def manifest_symlink_folder_out(c):
    outside = c.root.parent / "outside"
    shutil.copytree(c.clip, outside)
    (c.root / "linked").symlink_to(outside, target_is_directory=True)
    c.as_manifest("linked")
    return str(outside)


def manifest_symlink_frame_out(c):
    outside = c.root.parent / "outside.jpg"
    first = c.frames()[-1]
    shutil.move(first, outside)
    first.symlink_to(outside)
    c.as_manifest()
    return first.name


def manifest_missing_column(c):
    c.as_manifest()
    text = c.ann.read_text().replace("frames_dir", "folder")
    c.ann.write_text(text)
    return "'frames_dir' is missing"


# (case, outcome, pattern): outcome is an exception class, "skipped", "failed" or "done".
CASES = [
    (corrupt_image, "failed", r"is not a readable image \(corrupt\?\); restore it"),
    (zero_byte_image, "failed", r"is an empty file; restore it from the dataset"),
    (truncated_image, "failed", r"is not a readable image"),
    (mixed_sizes, "failed", r"is 200×180 but .* is 320×320; all frames of a clip must have "
                            r"one size"),
    (gap_in_frame_numbers, "done", None),
    (missing_key_frame_file, "skipped", r"is not among the frames of .*EP01_01"),
    (duplicate_frame_number, "skipped", r"both are frame \d+"),
    (stray_files_in_clip, "done", None),
    (empty_clip_folder, "skipped", r"has no image files named like"),
    (missing_clip_folder, "skipped", r"frame folder .* does not exist"),
    (clip_folder_is_a_file, "skipped", r"frame folder .* does not exist"),
    (apex_slash, "done", None),
    (apex_minus_one, "skipped", r"is outside onset\.\.offset .*; fix the annotation"),
    (apex_question_mark, AnnotationError, r"row 2: ApexFrame is '\?', not a frame number; "
                                          r"fix the cell"),
    (apex_after_offset, "skipped", r"is outside onset\.\.offset .*row 2\); fix the annotation"),
    (onset_after_offset, "skipped", r"is after offset .*row 2"),
    (onset_out_of_range, "skipped", r"is not among the frames of"),
    (offset_out_of_range, "skipped", r"is not among the frames of"),
    (fractional_frame, AnnotationError, r"row 2: OnsetFrame is 12\.5, not a frame number"),
    (text_frame_number, AnnotationError, r"row 2: OffsetFrame is 'end', not a frame number"),
    (onset_equals_offset, "failed", r"onset < offset; fix the annotation"),
    (bad_subject, AnnotationError, r"row 2: Subject .* is not a CASME II subject number"),
    (empty_filename, AnnotationError, r"row 2: Filename is empty; fix the sheet"),
    (filename_climbs_out, "skipped", r"clip name '\.\./\.\./elsewhere/EP01_01' cannot name "
                                     r"a clip \(empty, '\.', '\.\.' or a slash\); fix the "
                                     r"annotation"),
    (filename_is_dotdot, "skipped", r"clip name '\.\.' cannot name a clip"),
    (duplicated_row, "done+skipped", r"row 3"),
    (blank_rows, "done", None),
    (missing_column, AnnotationError, r"header row 1 has .*; use the dataset's original "
                                      r"annotation file or fix the header"),
    (wrong_sheet_first, AnnotationError, r"column 'Subject' is missing"),
    # SAMM's headers normalise to CASME II's ("Onset Frame"): refused by SAMM's own columns
    (wrong_spreadsheet_version, AnnotationError, r"looks like the SAMM annotation file .*"
                                                 r"header row 1 with \['Inducement Code'\].*"
                                                 r"no CASME II columns \['OnsetFrame', "
                                                 r"'ApexFrame', 'OffsetFrame'\]; use "
                                                 r"--dataset samm"),
    (spreadsheet_not_a_workbook, AnnotationError, r"cannot open .* as an \.xlsx workbook"),
    (spreadsheet_empty, AnnotationError, r"is empty; pass the dataset's own annotation file"),
    (spreadsheet_other_format, AnnotationError, r"unsupported annotation format .*; use "
                                                r"\.xlsx or \.csv"),
    (header_only, "nothing", None),
    (non_ascii_clip_folder, "done", None),
    (non_ascii_frame_names, "done", None),
    (no_face_in_onset, "failed", r"in the onset frame; check the frames or crop them"),
    (two_faces, "failed", r"the clip must show one face"),
    (manifest_dotdot, DatasetLayoutError, r"climbs out with '\.\.'; manifest paths must stay "
                                          r"inside the dataset root"),
    (manifest_absolute, DatasetLayoutError, r"is an absolute path; manifest paths must be "
                                            r"relative"),
    (manifest_windows_absolute, DatasetLayoutError, r"frames_dir 'C:\\\\Windows"),
    (manifest_symlink_folder_out, DatasetLayoutError, r"outside the dataset root .*\(a "
                                                      r"symlink\?\); refusing the manifest"),
    (manifest_symlink_frame_out, DatasetLayoutError, r"is a link to .*outside the dataset "
                                                     r"root .*; refusing the manifest"),
    (manifest_missing_column, AnnotationError, r"manifest\.csv: column 'frames_dir' is "
                                               r"missing"),
]


@pytest.mark.parametrize(("mutate", "outcome", "pattern"), CASES,
                         ids=[c[0].__name__ for c in CASES])
def test_bad_input(ctx, mutate, outcome, pattern):
    must_name = mutate(ctx)
    if isinstance(outcome, type):
        with pytest.raises(outcome) as info:
            _run(ctx)
        msg = str(info.value)
        assert re.search(pattern, msg), msg
        assert WHAT_TO_DO.search(msg), msg
        assert str(ctx.ann.name) in msg or str(ctx.root) in msg, msg  # names the file
        if must_name:
            assert must_name in msg, msg
        assert not (ctx.store / "zarr.json").exists()  # refused before any store was made
        return
    summary = _run(ctx)
    fs = FeatureStore.open(ctx.store)
    if outcome == "done":
        assert summary.done == [ctx.key] and not summary.failed and not summary.dropped, \
            summary.lines()
        assert fs.variant("gt").done().all()
        assert list(fs.column("status")) == ["done"]
        frames, _ = fs.read_frames(ctx.key)
        assert frames.shape[1:] == (SIZE, SIZE) and len(frames) == fs.column("n_frames")[0]
        if callable(must_name):
            must_name(fs)
    elif outcome == "failed":
        assert not summary.done and list(summary.failed) == [ctx.key], summary.lines()
        msg = summary.failed[ctx.key]
        assert re.search(pattern, msg), msg
        assert WHAT_TO_DO.search(msg), msg
        if must_name:
            assert must_name in msg, msg
        # recorded in the store for `mefeat inspect`
        assert list(fs.column("status")) == ["failed"]
        assert fs.column("error")[0] == msg
        assert not fs.variant("gt").done().any() and not fs.has_frames(ctx.key)
    elif outcome in ("skipped", "done+skipped"):
        if outcome == "skipped":
            assert not summary.done and not summary.failed and len(fs) == 0, summary.lines()
        else:
            assert summary.done == [ctx.key] and not summary.failed, summary.lines()
        (dropped,) = summary.dropped
        text = str(dropped)  # "dataset/subject/clip: reason (file row N)"
        assert re.match(rf"{ctx.dataset}/\S+: .+ \({re.escape(ctx.ann.name)} row \d+\)$",
                        text), text
        assert re.search(pattern, text), text
        assert WHAT_TO_DO.search(dropped.reason), text
        if must_name:
            assert must_name in text, text
        assert fs.attrs["dropped"][0]["reason"] == dropped.reason  # kept in the store
    elif outcome == "nothing":
        assert not summary.done and not summary.failed and not summary.dropped
        assert len(fs) == 0
    else:
        raise AssertionError(outcome)


# --- stores -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def done_store(base, tmp_path_factory):
    store = tmp_path_factory.mktemp("bad-store") / "s.zarr"
    summary = extract(base.root, dataset="casme2", annotations=base.annotations, store=store,
                      size=SIZE, progress=False)
    assert len(summary.done) == 1
    return store


def _store_copy(done_store, tmp_path) -> Path:
    store = tmp_path / "copy.zarr"
    shutil.copytree(done_store, store)
    return store


def store_newer_schema(store, base):
    FeatureStore.open(store, mode="r+").group.attrs["schema_version"] = SCHEMA_VERSION + 1
    return dict(size=SIZE), rf"written by a newer mefeat \(store schema {SCHEMA_VERSION + 1}, "


def store_other_size(store, base):
    return dict(size=96), r"align\.size: store has 112, this run asks for 96\); use another --store"


def store_other_labels(store, base):
    return (dict(size=SIZE, label_scheme="casme2-5"),
            r"label_scheme: store has None, this run asks for 'casme2-5'")


def store_other_flow(store, base):
    return (dict(size=SIZE, flow="farneback"), None)  # another variant name: no clash


def store_variant_other_params(store, base):
    return (dict(size=SIZE, flow_params={"lambda_": 0.3}),
            r"variant 'gt' was made with other settings \(flow\.params\.lambda_: store has "
            r"None, this run asks for 0\.3\); give this one another name")


def store_annotations_edited(store, base):
    ann = store.parent / "edited.xlsx"
    shutil.copy(base.annotations, ann)
    from openpyxl import load_workbook

    wb = load_workbook(ann)
    wb.active["I2"] = "happiness"
    wb.save(ann)
    return dict(size=SIZE, annotations=ann), (
        r"the annotations changed for 1 sample\(s\): casme2/sub01/EP01_01 \(emotion: store has "
        r"'\w+', now 'happiness'\); use another --store")


def store_not_a_store(store, base):
    shutil.rmtree(store)
    store.mkdir()
    (store / "results.csv").write_text("a,b\n")
    return dict(size=SIZE), r"is a folder with other files \(results\.csv\.\.\.\) and not a " \
                            r"mefeat store; choose another --store"


def store_is_a_file(store, base):
    shutil.rmtree(store)
    store.write_text("x")
    return dict(size=SIZE), r"is a file, not a store; choose another --store"


def store_foreign_zarr(store, base):
    import zarr

    shutil.rmtree(store)
    zarr.open_group(str(store), mode="w").attrs["other_tool"] = 1
    return dict(size=SIZE), r"a Zarr group that is not a mefeat store; choose another --store"


STORE_CASES = [
    (store_newer_schema, StoreError), (store_other_size, StoreError),
    (store_other_labels, StoreError), (store_other_flow, None),
    (store_variant_other_params, StoreError), (store_annotations_edited, StoreError),
    (store_not_a_store, StoreError), (store_is_a_file, StoreError),
    (store_foreign_zarr, StoreError),
]


@pytest.mark.parametrize(("mutate", "error"), STORE_CASES, ids=[c[0].__name__ for c in STORE_CASES])
def test_bad_store(base, done_store, tmp_path, mutate, error):
    store = _store_copy(done_store, tmp_path)
    kw, pattern = mutate(store, base)
    before = sorted(p.relative_to(store) for p in store.rglob("*")) if store.is_dir() else None
    kw.setdefault("annotations", base.annotations)
    if error is None:
        summary = extract(base.root, dataset="casme2", store=store, progress=False, **kw)
        assert summary.variants == ["gt-farneback"] and len(summary.done) == 1
        return
    with pytest.raises(error) as info:
        extract(base.root, dataset="casme2", store=store, progress=False, **kw)
    msg = str(info.value)
    assert re.search(pattern, msg), msg
    assert WHAT_TO_DO.search(msg), msg
    assert str(store) in msg, msg
    if before is not None and store.is_dir():  # refused stores are left as they were
        after = sorted(p.relative_to(store) for p in store.rglob("*"))
        assert after == before


# --- the command line -----------------------------------------------------------------------


def _cli(*args):
    return CliRunner().invoke(cli, ["extract", *map(str, args)])


@pytest.fixture
def two_clips(base, tmp_path):
    """The one-clip dataset plus a broken second clip (a corrupt frame)."""
    root = tmp_path / "CASME2"
    shutil.copytree(base.root, root)
    clip = next(root.glob("sub01/EP*"))
    bad = clip.with_name("EP02_01")
    shutil.copytree(clip, bad)
    sorted(bad.glob("*.jpg"))[4].write_bytes(b"garbage")
    from openpyxl import load_workbook

    ann = root / base.annotations.name
    wb = load_workbook(ann)
    ws = wb.active
    row = [c.value for c in ws[2]]
    row[1] = "EP02_01"
    ws.append(row)
    wb.save(ann)
    return root, ann


def test_cli_some_failed_exits_zero_and_counts(two_clips, tmp_path):
    root, ann = two_clips
    args = [root, "--dataset", "casme2", "--annotations", ann, "--store", tmp_path / "s.zarr",
            "--size", SIZE]
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    assert "done 1, already done 0, failed 1, skipped by the reader/label scheme 0" in res.output
    assert re.search(r"failed  casme2/sub01/EP02_01: image .*img\d+\.jpg is not a readable "
                     r"image", res.output)
    # --strict: the same run (resumed) exits 1, still printing the counts
    res = _cli(*args, "--strict")
    assert res.exit_code == 1
    assert "done 0, already done 1, failed 1" in res.output


def test_cli_nothing_done_exits_non_zero(two_clips, tmp_path):
    root, ann = two_clips
    shutil.rmtree(root / "sub01" / "EP01_01")  # the good clip is gone: skipped
    res = _cli(root, "--dataset", "casme2", "--annotations", ann, "--store",
               tmp_path / "s.zarr", "--size", SIZE)
    assert res.exit_code == 1
    assert "done 0, already done 0, failed 1, skipped by the reader/label scheme 1" in res.output
    assert "skipped casme2/sub01/EP01_01: frame folder" in res.output
    assert "nothing was extracted" in res.output and "Traceback" not in res.output


def test_spot_variant_of_a_too_short_clip_fails_alone(base, tmp_path):
    """offset = onset + 1 is a valid annotation but leaves no frame to spot an apex in: that
    sample misses the spot variant only; its frames, its gt variant and the other clip stay."""
    root = tmp_path / "CASME2"
    shutil.copytree(base.root, root)
    ann = root / base.annotations.name
    short = add_short_clip(root, ann, "EP02_01")
    summary = extract(root, dataset="casme2", annotations=ann, store=tmp_path / "s.zarr",
                      size=SIZE, keyframes=("gt", "spot:flowpeak"), progress=False)
    good = "casme2/sub01/EP01_01"
    assert summary.done == [good] and list(summary.failed) == [short], summary.lines()
    msg = summary.failed[short]
    assert re.search(r"variant spot-flowpeak: policy spot:flowpeak: onset=\d+ and offset=\d+ "
                     r"\(indices\) leave no frame between them", msg), msg
    assert "left out of this variant" in msg and WHAT_TO_DO.search(msg), msg
    fs = FeatureStore.open(tmp_path / "s.zarr")
    keys = list(fs.column("key"))
    i_good, i_short = keys.index(good), keys.index(short)
    assert list(fs.column("status")) == ["done", "done"]  # both clips aligned
    assert not any(fs.column("error"))  # the clips are fine; one variant of one is not
    errors = fs.variant("spot-flowpeak").errors()
    assert msg == f"variant spot-flowpeak: {errors[i_short]}" and not errors[i_good]
    assert not any(fs.variant("gt").errors())
    assert fs.has_frames(short) and fs.variant("gt").done().all()
    spot = fs.variant("spot-flowpeak").done()
    assert spot[i_good] and not spot[i_short]


def test_cli_every_row_skipped_exits_non_zero(base, tmp_path):
    root = tmp_path / "CASME2"
    shutil.copytree(base.root, root)
    for clip in root.glob("sub01/EP*"):
        shutil.rmtree(clip)
    res = _cli(root, "--dataset", "casme2", "--annotations", root / base.annotations.name,
               "--store", tmp_path / "s.zarr", "--size", SIZE)
    assert res.exit_code == 1
    assert "failed 0, skipped by the reader/label scheme 1" in res.output
    assert "nothing was extracted" in res.output


REFUSALS = [c for c in CASES if isinstance(c[1], type)][:4]


@pytest.mark.parametrize(("mutate", "error", "pattern"), REFUSALS,
                         ids=[c[0].__name__ for c in REFUSALS])
def test_cli_refusals_are_one_line(ctx, mutate, error, pattern):
    mutate(ctx)
    res = _cli(ctx.root, "--dataset", ctx.dataset, "--annotations", ctx.ann,
               "--store", ctx.store, "--size", SIZE)
    assert res.exit_code == 1
    assert res.output.startswith("mefeat: error: ") and "Traceback" not in res.output
    assert re.search(pattern, res.output), res.output
    assert issubclass(error, MefeatError)


def test_cli_second_run_with_other_settings_names_them(base, done_store, tmp_path):
    store = _store_copy(done_store, tmp_path)
    res = _cli(base.root, "--dataset", "casme2", "--annotations", base.annotations,
               "--store", store, "--size", 64)
    assert res.exit_code == 1
    assert res.output.startswith("mefeat: error: ") and "align.size: store has 112" in res.output
    info = json.loads(CliRunner().invoke(cli, ["inspect", str(store), "--json"]).output)
    assert info["variants"]["gt"]["done"] == 1  # untouched


def test_unknown_dataset_and_missing_root(base, tmp_path):
    with pytest.raises(MefeatError, match=r"unknown dataset 'casme9'; choose one of casme2"):
        extract(base.root, dataset="casme9", store=tmp_path / "s.zarr", progress=False)
    with pytest.raises(DatasetLayoutError, match=r"root .*nowhere is not a folder"):
        extract(tmp_path / "nowhere", dataset="casme2", annotations=base.annotations,
                store=tmp_path / "s.zarr", progress=False)
    with pytest.raises(AnnotationError, match=r"annotation file .*none\.xlsx does not exist"):
        extract(base.root, dataset="casme2", annotations=tmp_path / "none.xlsx",
                store=tmp_path / "s.zarr", progress=False)
    assert not os.path.exists(tmp_path / "s.zarr")

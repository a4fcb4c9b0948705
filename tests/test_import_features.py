"""`mefeat import-features` on broken official folders: refuse, or report and go on; resume.

Each test builds a tiny folder in the official layout (``<sub>_<clip>[_k] .png`` 28×28 and
``combined_3_class2_for_optical_flow.csv`` with the official header) and breaks it.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.errors import AnnotationError, StoreError
from mefeat.run.import_features import CSV_NAME, import_features
from mefeat.store import FeatureStore
from mefeat.train import load_view

HEADER = ["dataset", "sub", "filename_o", "label", "apex", "imagename", "sub_filename"]
ROWS = [("casme2", "sub01", "EP02_01f", 1), ("casme2", "sub01", "EP19_05f", 0),
        ("samm", "006", "006_1_2", 2), ("samm", "006", "006_1_3", 0),
        ("smic", "s1", "s1_ne_01", 1)]
SUFFIXES = {"htnet": ("",), "causalnet": ("", "_1", "_2", "_3")}


def _official(folder: Path, fmt: str = "causalnet", rows=ROWS, header=HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with (folder / CSV_NAME).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for ds, sub, clip, label in rows:
            full = [ds, sub, clip, label, "", f"{sub}_{clip}.jpg", ""]
            w.writerow([full[HEADER.index(h)] for h in header])
            for suffix in SUFFIXES[fmt]:
                img = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
                cv2.imwrite(str(folder / f"{sub}_{clip}{suffix} .png"), img)
    return folder


def _run(folder: Path, store: Path, fmt: str = "causalnet", *extra: str):
    return CliRunner().invoke(cli, ["import-features", str(folder), "--format", fmt,
                                    "--store", str(store), *extra])


def test_bad_samples_are_reported_by_file_and_the_others_imported(tmp_path):
    rows = [*ROWS, ("smic", "s1", "s1_po_02", 7), ("smic", "s2", "s2_sur_01", "x")]
    folder = _official(tmp_path / "f", rows=rows)
    missing = folder / "sub01_EP19_05f_2 .png"
    missing.unlink()
    corrupt = folder / "006_006_1_2_1 .png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    small = folder / "s1_s1_ne_01 .png"
    cv2.imwrite(str(small), np.zeros((32, 30, 3), np.uint8))
    store = tmp_path / "s.zarr"

    res = _run(folder, store)
    assert res.exit_code == 0, res.output
    assert "imported 2, already imported 0, failed 3, rows left out 2" in res.output
    assert str(missing) in res.output and "missing" in res.output
    assert str(corrupt) in res.output and "corrupt" in res.output
    assert str(small) in res.output and "30×32" in res.output
    assert "label '7' is not a class" in res.output and f"{CSV_NAME} row 7" in res.output
    assert "label 'x'" in res.output
    assert _run(folder, tmp_path / "t.zarr", "causalnet", "--strict").exit_code == 1

    # the failures are the store's, shown by inspect
    info = json.loads(CliRunner().invoke(cli, ["inspect", str(store), "--json"]).output)
    assert info["status"] == {"done": 2, "failed": 3}
    assert str(missing) in info["failed"]["casme2/sub01/EP19_05f"]
    assert str(corrupt) in info["failed"]["samm/006/006_1_2"]
    assert str(small) in info["failed"]["smic/s1/s1_ne_01"]
    assert {d["clip"] for d in info["dropped"]} == {"s1_po_02", "s2_sur_01"}
    # the good samples hold exactly what cv2.imread gives
    data = load_view(store, "causalnet", variant="official-causalnet")
    assert dict(zip(data.keys, data.labels.tolist(), strict=True)) == {
        "casme2/sub01/EP02_01f": 1, "samm/006/006_1_3": 0}
    idx, raw = FeatureStore.open(store).variant("official-causalnet").read(["dir_oa"])
    png = cv2.imread(str(folder / "006_006_1_3_2 .png")).transpose(2, 0, 1)
    assert idx.tolist() == [0, 3] and np.array_equal(raw["dir_oa"][1], png)


def test_a_missing_column_is_refused_before_anything_is_written(tmp_path):
    folder = _official(tmp_path / "f", header=[h for h in HEADER if h != "label"])
    store = tmp_path / "s.zarr"
    res = _run(folder, store)
    assert res.exit_code == 1
    assert "'label' missing" in res.output and str(folder / CSV_NAME) in res.output
    assert "Traceback" not in res.output and not store.exists()
    with pytest.raises(AnnotationError, match="'label' missing"):
        import_features(folder, fmt="causalnet", store=store)


def test_two_rows_for_one_clip_are_refused(tmp_path):
    folder = _official(tmp_path / "f", rows=[*ROWS, ROWS[1]])
    with pytest.raises(AnnotationError, match=r"rows 3 and 7 are both casme2/sub01/EP19_05f"):
        import_features(folder, fmt="causalnet", store=tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_rerun_imports_only_what_is_missing(tmp_path):
    folder = _official(tmp_path / "f", fmt="htnet")
    png = folder / "006_006_1_2 .png"
    kept = png.read_bytes()
    png.unlink()
    store = tmp_path / "s.zarr"
    first = import_features(folder, fmt="htnet", store=store)
    assert (len(first.done), len(first.failed)) == (4, 1) and "samm/006/006_1_2" in first.failed
    chunks = [p for p in (store / "features" / "official-htnet" / "image" / "c").rglob("*")
              if p.is_file()]
    stamps = {p: p.stat().st_mtime_ns for p in chunks}
    assert len(stamps) == 4  # the failed sample has no data

    png.write_bytes(kept)  # the user restores the file and runs the same command again
    res = _run(folder, store, "htnet")
    assert res.exit_code == 0, res.output
    assert "imported 1, already imported 4, failed 0" in res.output
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # nothing rewritten
    fs = FeatureStore.open(store)
    assert len(fs) == 5 and fs.variants() == ["official-htnet"]
    assert set(fs.column("status")) == {"done"} and set(fs.column("error")) == {""}
    data = load_view(store, "ststnet", variant="official-htnet")
    assert len(data) == 5 and len(set(data.keys)) == 5
    i = list(data.keys).index("samm/006/006_1_2")
    assert np.array_equal(data.inputs[0][i], cv2.imread(str(png)).transpose(2, 0, 1))

    again = import_features(folder, fmt="htnet", store=store)
    assert (len(again.done), len(again.resumed), again.imported) == (0, 5, 5)


def test_another_import_into_the_same_store_is_refused(tmp_path):
    folder = _official(tmp_path / "f")
    import_features(folder, fmt="causalnet", store=tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="other settings"):
        import_features(folder, fmt="htnet", store=tmp_path / "s.zarr")
    # a label changed in the CSV: not the same import, so not resumed into this store
    _official(folder, rows=[("casme2", "sub01", "EP02_01f", 2), *ROWS[1:]])
    with pytest.raises(StoreError, match="csv_sha256"):
        import_features(folder, fmt="causalnet", store=tmp_path / "s.zarr")


def test_points_missing_for_a_sample_fail_that_sample(tmp_path):
    folder = _official(tmp_path / "f", fmt="htnet")
    points = tmp_path / "points.csv"
    cols = ["name"] + [f"{c}_{a}" for c in ("leye", "reye", "nose", "lmouth", "rmouth")
                       for a in "xy"]
    with points.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for _, sub, clip, _ in ROWS[1:]:
            w.writerow([f"{sub}_{clip} .png"] + [7] * 10)
    summary = import_features(folder, fmt="htnet", store=tmp_path / "s.zarr", points=points)
    assert list(summary.failed) == ["casme2/sub01/EP02_01f"]
    assert "no points for 'sub01_EP02_01f .png'" in summary.failed["casme2/sub01/EP02_01f"]
    idx, arrays = FeatureStore.open(tmp_path / "s.zarr").variant("official-htnet").read(
        ["points"])
    assert idx.tolist() == [1, 2, 3, 4] and (arrays["points"] == 7).all()


def test_the_official_scripts_working_folder_imports_like_the_flat_folder(tmp_path):
    # CausalNet's and HTNet's scripts read the CSV from their working folder and the PNGs
    # from datasets/STSNet_whole_norm_u_v_os (what `mefeat export` writes)
    flat = _official(tmp_path / "flat")
    work = tmp_path / "work"
    (work / "datasets").mkdir(parents=True)
    shutil.copytree(flat, work / "datasets" / "STSNet_whole_norm_u_v_os")
    (work / "datasets" / "STSNet_whole_norm_u_v_os" / CSV_NAME).rename(work / CSV_NAME)
    arrays = []
    for folder in (flat, work):
        summary = import_features(folder, fmt="causalnet", store=tmp_path / f"{folder.name}.zarr")
        assert summary.imported == len(ROWS) and not summary.failed
        arrays.append(FeatureStore.open(tmp_path / f"{folder.name}.zarr").variant(
            "official-causalnet").read(["image", "image_ao", "dir_oa", "dir_ao"])[1])
    for name, value in arrays[0].items():
        assert np.array_equal(value, arrays[1][name])
    missing = work / "datasets" / "STSNet_whole_norm_u_v_os" / "006_006_1_3_1 .png"
    missing.unlink()
    summary = import_features(work, fmt="causalnet", store=tmp_path / "again.zarr")
    assert str(missing) in summary.failed["samm/006/006_1_3"]

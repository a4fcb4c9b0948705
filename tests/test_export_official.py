"""`mefeat export --format causalnet|htnet|ststnet`: the official folders, read back.

An export imported again with `mefeat import-features` gives back the exported arrays (a
demo store's own flows, and the published features); an export of the published composite
has the published names, CSV and image shapes; the LOSO folders hold each subject's samples
in its u_test and every other sample in its u_train.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from _stores import demo_store
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.datasets.official import (
    APEX_IMAGES,
    CSV_NAME,
    FOLDS,
    FORMATS,
    HEADER,
    STSTNET_FOLDS,
    WHOLE,
    apex_image_name,
    image_name,
)
from mefeat.errors import MefeatError, StoreError
from mefeat.run.export_official import export_official
from mefeat.run.import_features import import_features
from mefeat.store import FeatureStore
from mefeat.views import direction_images, uvs_image


def _invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _stored(store: Path, variant: str, names) -> tuple[list[str], dict[str, np.ndarray]]:
    fs = FeatureStore.open(store)
    idx, arrays = fs.variant(variant).read(list(names))
    return [str(k) for k in fs.column("key")[idx]], arrays


def _folds(root: Path) -> dict[str, dict[str, set[tuple[str, str]]]]:
    """{subject: {split: {(label folder, file name)}}} of a LOSO folder."""
    return {s.name: {split.name: {(lab.name, f.name) for lab in split.iterdir()
                                  for f in lab.iterdir()} for split in s.iterdir()}
            for s in root.iterdir()}


# -- mefeat's own extraction -------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    # 2 subjects x 2 clips: labels 0, 1, 1, 2, all inside the official 3 classes
    return demo_store(tmp_path_factory.mktemp("export-demo"), subjects=2, clips=2, size=64)


def test_a_demo_store_exports_and_imports_back_the_views_images(demo, tmp_path):
    keys, a = _stored(demo, "gt", ["flow_oa", "strain_oa", "flow_ao", "strain_ao", "keyframes"])
    # what the views make of the flows: u_v_os images and 28-px direction maps
    expected = {"image": uvs_image(a["flow_oa"], a["strain_oa"]),
                "image_ao": uvs_image(a["flow_ao"], a["strain_ao"]),
                "dir_oa": direction_images(a["flow_oa"]),
                "dir_ao": direction_images(a["flow_ao"])}
    for fmt in ("causalnet", "htnet"):
        out = tmp_path / fmt
        res = _invoke("export", demo, "--format", fmt, "--out", out, "--variant", "gt")
        assert res.exit_code == 0, res.output
        assert f"wrote {out}: 4 samples" in res.output
        res = _invoke("import-features", out, "--format", fmt, "--store", tmp_path / f"{fmt}.zarr")
        assert res.exit_code == 0 and "imported 4, already imported 0, failed 0" in res.output
        back_keys, back = _stored(tmp_path / f"{fmt}.zarr", f"official-{fmt}",
                                  FORMATS[fmt].values())
        assert back_keys == keys
        for name in FORMATS[fmt].values():
            assert back[name].dtype == np.uint8
            assert np.array_equal(back[name], expected[name].astype(np.uint8)), (fmt, name)

    header, rows = _read_csv(tmp_path / "htnet" / CSV_NAME)
    fs = FeatureStore.open(demo)
    assert header == list(HEADER)
    assert [r["apex"] for r in rows] == [str(v) for v in fs.column("apex_frame")]
    assert [r["sub_filename"] for r in rows] == [""] * 4
    # HTNet reads the apex JPEGs: the variant's aligned apex frame of each sample
    jpegs = tmp_path / "htnet" / APEX_IMAGES
    assert sorted(p.name for p in jpegs.iterdir()) == sorted(r["imagename"] for r in rows)
    for key, kf, r in zip(keys, a["keyframes"], rows, strict=True):
        jpeg = cv2.imread(str(jpegs / r["imagename"]), cv2.IMREAD_GRAYSCALE)
        apex = fs.clip(key)[int(kf[1])].astype(np.float32)
        assert jpeg.shape == apex.shape and np.abs(jpeg - apex).mean() < 3
    assert not (tmp_path / "causalnet" / APEX_IMAGES).exists()  # CausalNet reads none


def test_a_demo_ststnet_export_holds_the_images_in_its_folds(demo, tmp_path):
    keys, a = _stored(demo, "gt", ["flow_oa", "strain_oa"])
    images = uvs_image(a["flow_oa"], a["strain_oa"]).astype(np.uint8)
    t = FeatureStore.open(demo).table()
    samples = {(str(lab), image_name(s, c)): (s, i) for i, (s, c, lab) in
               enumerate(zip(t["subject"], t["clip"], t["label"], strict=True))}
    export_official(demo, fmt="ststnet", out=tmp_path / "st", progress=False)
    assert sorted(p.name for p in (tmp_path / "st").iterdir()) == ["mefeat-export.json",
                                                                    "norm_u_v_os"]
    folds = _folds(tmp_path / "st" / STSTNET_FOLDS)
    assert set(folds) == {"sub01", "sub02"}
    for subject, splits in folds.items():
        mine = {f for f, (s, _) in samples.items() if s == subject}
        assert splits == {"u_test": mine, "u_train": set(samples) - mine}
        # STSTNet reads the pixels from its folds: the onset→apex u_v_os image
        for split, files in splits.items():
            for label, name in files:
                png = tmp_path / "st" / STSTNET_FOLDS / subject / split / label / name
                i = samples[(label, name)][1]
                assert np.array_equal(cv2.imread(str(png)).transpose(2, 0, 1), images[i])


def test_export_refusals_are_one_line_messages(demo, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = _invoke("export", demo, "--format", "htnet", "--out", out)
    assert res.exit_code == 1 and "not an empty folder" in res.output
    assert "Traceback" not in res.output and (out / "notes.txt").read_text() == "mine"
    res = _invoke("export", demo, "--format", "h5", "--variant", "gt")
    assert res.exit_code == 2 and "--variant is for the official folder formats" in res.output
    # an imported HTNet variant has no apex→offset images or direction maps for CausalNet
    export_official(demo, fmt="htnet", out=tmp_path / "h", progress=False)
    import_features(tmp_path / "h", fmt="htnet", store=tmp_path / "h.zarr")
    with pytest.raises(StoreError, match="also needs image_ao, dir_oa, dir_ao"):
        export_official(tmp_path / "h.zarr", fmt="causalnet", out=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def _tiny_official(folder: Path, rows) -> Path:
    folder.mkdir()
    with (folder / CSV_NAME).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for ds, sub, clip, label in rows:
            w.writerow([ds, sub, clip, label, "", "", ""])
            cv2.imwrite(str(folder / image_name(sub, clip)), np.zeros((28, 28, 3), np.uint8))
    return folder


@pytest.mark.parametrize("rows, message", [
    ([("casme2", "s1", "a", 0), ("samm", "s1", "b", 1)], "subject 's1' is in both"),
    ([("casme2", "a_b", "c", 0), ("casme2", "a", "b_c", 1)], "both make the file name"),
    ([("casme2", "sub01", "EP 01", 0)], "a space or a slash in it"),
])
def test_names_the_official_layout_cannot_hold_are_refused(tmp_path, rows, message):
    store = tmp_path / "s.zarr"
    import_features(_tiny_official(tmp_path / "f", rows), fmt="htnet", store=store)
    with pytest.raises(MefeatError, match=message):
        export_official(store, fmt="htnet", out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# -- the published composite -------------------------------------------------------------


@pytest.fixture(scope="module")
def composite(shared_data, tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("export-composite")
    store = root / "c.zarr"
    import_features(shared_data / "features" / "cde28_causalnet", fmt="causalnet", store=store)
    for fmt in ("causalnet", "htnet"):
        export_official(store, fmt=fmt, out=root / fmt, progress=False)
    return SimpleNamespace(root=root, store=store, official=shared_data / "features")


def test_the_composite_export_has_the_published_names_csv_and_shapes(composite):
    for fmt, published in (("causalnet", "cde28_causalnet"), ("htnet", "cde28_htnet")):
        ours, ref = composite.root / fmt, composite.official / published
        names = {p.name for p in (ours / WHOLE).iterdir()}
        assert names == {p.name for p in ref.glob("*.png")}, fmt
        assert len(names) == 442 * len(FORMATS[fmt])
        # header and rows equal up to column order
        (h1, r1), (h2, r2) = _read_csv(ours / CSV_NAME), _read_csv(ref / CSV_NAME)
        assert sorted(h1) == sorted(h2) == sorted(HEADER)
        assert sorted(map(sorted, (r.items() for r in r1))) == \
            sorted(map(sorted, (r.items() for r in r2)))
        for p in (ours / WHOLE).iterdir():  # 8-bit, 3 channels, 28x28, as cv2 reads them
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            assert img.shape == (28, 28, 3) and img.dtype == np.uint8, p
    # the apex JPEG names of the CSV follow the published rule on every row
    _, rows = _read_csv(composite.official / "cde28_htnet" / CSV_NAME)
    assert all(apex_image_name(r["dataset"], r["sub"], r["filename_o"]) == r["imagename"]
               for r in rows)


def test_the_composite_export_imports_back_to_the_same_arrays(composite, tmp_path):
    names = list(FORMATS["causalnet"].values())
    keys, original = _stored(composite.store, "official-causalnet", names)
    # (the htnet layout's round trip is the demo store's; it holds the same "image")
    summary = import_features(composite.root / "causalnet", fmt="causalnet",
                              store=tmp_path / "c.zarr")
    assert summary.imported == 442 and not summary.failed
    back_keys, back = _stored(tmp_path / "c.zarr", "official-causalnet", names)
    assert back_keys == keys
    for name in names:
        assert np.array_equal(back[name], original[name]), name


def test_each_subjects_u_test_holds_its_samples_and_u_train_the_others(composite):
    fs = FeatureStore.open(composite.store)
    t = fs.table()
    samples = {(str(lab), image_name(s, c)): s
               for s, c, lab in zip(t["subject"], t["clip"], t["label"], strict=True)}
    subjects = set(samples.values())
    assert len(subjects) == 68
    folds = _folds(composite.root / "causalnet" / FOLDS)
    assert set(folds) == subjects
    for subject, splits in folds.items():
        assert set(splits) == {"u_train", "u_test"}
        mine = {f for f, s in samples.items() if s == subject}
        assert splits["u_test"] == mine, subject
        assert splits["u_train"] == set(samples) - mine, subject
    # CausalNet/HTNet read only names and labels there: each is a link to the flat image
    whole = composite.root / "causalnet" / WHOLE
    fold = composite.root / "causalnet" / FOLDS / "sub01" / "u_test" / "1"
    for p in fold.iterdir():
        assert os.path.samefile(p, whole / p.name)

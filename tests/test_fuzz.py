"""Property-based tests: cell parsers, annotation files, key-frame policies, the store.

Whatever a spreadsheet cell, a CSV file or a policy spec holds, the readers either parse
it or raise a ``MefeatError`` subclass naming the place; never another exception. The
noise policy's guarantees on valid annotations are in tests/test_keyframes.py; here are
the cases it leaves out (any annotation, valid or not; apex on the onset or the offset;
the spotting policy; spec round trips). Stores written from random samples and arrays
read back equal. Budgets are explicit so the default suite stays fast: see BUDGET.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mefeat import frames
from mefeat.datasets import _base as base
from mefeat.datasets import casme2, samm, smic
from mefeat.datasets._sample import Sample
from mefeat.errors import AnnotationError, DatasetLayoutError, MefeatError, SampleError
from mefeat.keyframes import KeyFrames, Noise, Spot, parse_policy
from mefeat.store import FeatureStore

# max_examples of every test below; the module total is reported by the lead
BUDGET = {
    "cell_int": 600, "cell_int_numbers": 300, "cell_text": 300, "action_units": 400,
    "au_round_trip": 300, "frame_number": 400, "frame_number_known": 300, "subject_ids": 400,
    "manifest_csv": 150, "ground_truth": 400, "noise_edges": 300, "parse_policy": 400,
    "policy_round_trip": 200, "spot": 25, "store_round_trip": 30,
}

# Everything a spreadsheet or CSV cell can give a parser.
cells = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(), st.text(alphabet="0123456789+-. /?", max_size=30),
    st.from_regex(r"\s*[+-]?\d{1,40}(\.\d{0,5})?\s*", fullmatch=True),
    st.datetimes(), st.decimals(allow_nan=False), st.binary(max_size=8),
)
MISSING = ("/", "-", "?")


@settings(max_examples=BUDGET["cell_int"], deadline=None)
@given(value=cells, missing=st.sampled_from([(), ("/",), MISSING]))
@example(value="12345678901234567", missing=())  # was rounded through a float
@example(value="9" * 400, missing=())  # was an OverflowError
@example(value=False, missing=())
def test_cell_int_parses_or_names_the_row(value, missing):
    try:
        out = base.cell_int(value, what="ApexFrame", source="sheet.xlsx row 7", missing=missing)
    except AnnotationError as exc:
        assert str(exc).startswith("sheet.xlsx row 7: ApexFrame is ") and "fix the cell" in str(exc)
        return
    assert out is None or (type(out) is int)
    if out is None:
        assert value is None or str(value).strip() in (*missing, "")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        assert out == value  # exactly, never rounded through a float
    else:
        text = str(value).strip()
        assert re.fullmatch(r"[+-]?\d+(\.0+)?", text), text
        assert out == int(text.split(".")[0])


@settings(max_examples=BUDGET["cell_int_numbers"], deadline=None)
@given(n=st.integers(-(10**17), 10**17), zeros=st.integers(0, 3), pad=st.sampled_from(["", " "]))
def test_cell_int_reads_integers_in_every_spelling(n, zeros, pad):
    spellings = [n, float(n) if abs(n) < 2**53 else n, f"{pad}{n}{pad}",
                 f"{n}." + "0" * zeros if zeros else str(n)]
    for v in spellings:
        assert base.cell_int(v, what="x", source="s") == n


@settings(max_examples=BUDGET["cell_text"], deadline=None)
@given(value=cells)
def test_cell_text_is_a_stripped_string(value):
    out = base.cell_text(value)
    assert isinstance(out, str) and out == out.strip()
    if isinstance(value, float) and value.is_integer():
        assert not out.endswith(".0")
    if value is None:
        assert out == ""


@settings(max_examples=BUDGET["action_units"], deadline=None)
@given(value=cells)
def test_action_units_are_clean_tokens(value):
    aus = base.parse_action_units(value)
    assert isinstance(aus, tuple)
    for t in aus:
        assert t and t == t.strip() and "+" not in t
    # parsing the joined tokens again gives the same tokens
    assert base.parse_action_units("+".join(aus)) == aus


au_tokens = st.from_regex(r"[LRAB]?\d{1,2}[A-E]?|\(R6 or R12\)|A/L12", fullmatch=True)


@settings(max_examples=BUDGET["au_round_trip"], deadline=None)
@given(tokens=st.lists(au_tokens, max_size=6), sep=st.sampled_from(["+", " + ", "+ ", " +"]))
def test_action_units_round_trip(tokens, sep):
    text = sep.join(tokens)
    assert base.parse_action_units(text) == tuple(tokens)
    if len(tokens) == 1 and tokens[0].isdigit():  # a bare number cell (CASME II: 12)
        assert base.parse_action_units(int(tokens[0])) == (str(int(tokens[0])),)


@settings(max_examples=BUDGET["frame_number"], deadline=None)
@given(name=st.text(max_size=60))
def test_frame_number_never_raises(name):
    assume("\x00" not in name)
    out = frames.frame_number(name)
    assert out is None or (type(out) is int and out >= 0)
    if out is None:
        assert not re.search(r"\d", Path(name).stem)


@settings(max_examples=BUDGET["frame_number_known"], deadline=None)
@given(prefix=st.from_regex(r"([a-z_]*[a-z_])?", fullmatch=True), n=st.integers(0, 10**9),
       pad=st.integers(0, 6), ext=st.sampled_from([".jpg", ".png", ".bmp", ".JPG", ""]))
def test_frame_number_known_answers(prefix, n, pad, ext):
    assert frames.frame_number(f"{prefix}{n:0{pad}d}{ext}") == n
    assert frames.frame_number(f"006_{prefix}{n}{ext}") == n  # the last run of digits


@settings(max_examples=BUDGET["subject_ids"], deadline=None)
@given(value=cells)
@example(value="²")  # str.isdigit() says yes, int() says no
@example(value="1" * 5000)  # past int()'s digit limit
def test_subject_ids_parse_or_name_the_row(value):
    for fn, shape in ((casme2.subject_id, r"sub\d{2,}"), (samm.subject_id, r"\d{3,}"),
                      (smic.subject_id, r"s\d+")):
        try:
            out = fn(value, source="row 3")
        except AnnotationError as exc:
            assert str(exc).startswith("row 3: Subject ")
            continue
        assert re.fullmatch(shape, out), out
        assert fn(out if fn is not samm.subject_id else out, source="x") == out  # idempotent


csv_cells = st.one_of(st.text(max_size=12), st.integers(-5, 200).map(str),
                      st.sampled_from(["", "/", "..", "../x", "/etc", "C:\\x", "a/b", "1.0",
                                       "happiness", " 3 ", "4+L10"]))
HEADER = ["subject", "clip", "frames_dir", "onset", "apex", "offset", "label"]


@settings(max_examples=BUDGET["manifest_csv"], deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(header=st.one_of(st.just(HEADER), st.permutations(HEADER),
                        st.lists(st.sampled_from(HEADER + ["x", ""]), max_size=8)),
       rows=st.lists(st.lists(csv_cells, max_size=9), max_size=5),
       junk=st.one_of(st.none(), st.binary(max_size=40)))
@example(header=HEADER, rows=[], junk=b"subject,clip\n\xff\xfe")  # not UTF-8
@example(header=HEADER, rows=[], junk=b"subject,clip\n\"a\x00")
@example(header=HEADER, rows=[["\ud800", "c", "x", "1", "2", "3", "h"]], junk=None)  # surrogate
@example(header=HEADER + ["\udcff"], rows=[["s", "c", "x", "1", "2", "3", "h"]], junk=None)
def test_manifest_csv_parses_or_names_the_file(header, rows, junk):
    import csv

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "manifest.csv"
        if junk is not None:
            path.write_bytes(junk)
        else:
            with open(path, "w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                w.writerows(rows)
        try:
            parsed = _manifest_rows(path)
        except (AnnotationError, DatasetLayoutError) as exc:
            assert "manifest.csv" in str(exc), exc
            return
        for r in parsed:
            assert r.subject and r.clip and r.folder
            assert not any(p in ("..", "") for p in r.folder)
            assert all(isinstance(v, int) or v is None for v in (r.onset, r.apex, r.offset))


def _manifest_rows(path):
    # No exception is swallowed here: the file is written with surrogatepass, so a lone
    # surrogate reaches the parser as invalid UTF-8 bytes, which it must refuse with an
    # AnnotationError naming the file like any other undecodable byte (the @example rows
    # above with "\ud800" and "\udcff" pin that).
    from mefeat.datasets.manifest import parse_annotations

    return parse_annotations(path)


# --- key-frame policies ----------------------------------------------------------------------

any_clip = st.tuples(st.integers(-3, 60), st.integers(-5, 65), st.integers(-5, 65),
                     st.integers(-5, 65))


@settings(max_examples=BUDGET["ground_truth"], deadline=None)
@given(clip=any_clip, std=st.floats(0, 50), seed=st.integers(0, 2**32 - 1),
       move=st.sampled_from([("apex",), ("onset", "apex", "offset"), ("offset",)]))
def test_policies_on_any_annotation_keep_order_or_refuse(clip, std, seed, move):
    n, o, a, f = clip
    valid = 0 <= o <= a <= f < n and o < f
    for policy in (parse_policy("gt"), Noise(std, seed, move=move)):
        try:
            kf = policy.apply("casme2/sub01/EP01", n, KeyFrames(o, a, f))
        except SampleError as exc:
            assert not valid or (isinstance(policy, Noise) and n < 3), exc
            assert exc.key == "casme2/sub01/EP01"
            continue
        assert valid
        assert 0 <= kf.onset <= kf.apex <= kf.offset < n and kf.onset < kf.offset
        if isinstance(policy, Noise):  # the noise rule always separates the three
            assert kf.onset < kf.apex < kf.offset
        else:
            assert kf == (o, a, f)


@settings(max_examples=BUDGET["noise_edges"], deadline=None)
@given(n=st.integers(3, 300), data=st.data(), std=st.floats(0, 100),
       seed=st.integers(0, 10**6))
def test_noise_with_apex_on_onset_or_offset(n, data, std, seed):
    # annotations like CASME II sub12/EP09_06 (apex == offset): valid, and kept in order
    o = data.draw(st.integers(0, n - 2))
    f = data.draw(st.integers(o + 1, n - 1))
    a = data.draw(st.sampled_from([o, f]))
    kf = Noise(std, seed, move=("onset", "apex", "offset")).apply("k", n, KeyFrames(o, a, f))
    assert 0 <= kf.onset < kf.apex < kf.offset < n


specs = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"(gt|noise|spot|GT|Noise)(:[^:]{0,6}){0,4}", fullmatch=True),
    st.builds(lambda s, d, w: f"noise:{s}:{d}{w}", st.floats(-5, 50).map(str) | st.just("nan"),
              st.integers(-3, 10**6).map(str), st.sampled_from(["", ":all", ":apex", ":nose",
                                                                ":onset+offset"])),
)


@settings(max_examples=BUDGET["parse_policy"], deadline=None)
@given(spec=specs)
def test_parse_policy_parses_or_says_how(spec):
    try:
        policy = parse_policy(spec)
    except MefeatError as exc:
        assert "policy" in str(exc)
        return
    assert parse_policy(policy.spec) == policy and parse_policy(policy.spec).name == policy.name
    assert re.fullmatch(r"[a-z0-9.+-]+", policy.name), policy.name  # a store folder name


@settings(max_examples=BUDGET["policy_round_trip"], deadline=None)
@given(std=st.floats(0, 1e6, allow_nan=False), seed=st.integers(0, 2**63),
       move=st.lists(st.sampled_from(["onset", "apex", "offset"]), min_size=1, unique=True))
def test_noise_spec_round_trip(std, seed, move):
    p = Noise(std, seed, move=tuple(move))
    q = parse_policy(p.spec)
    assert q == p and q.name == p.name and q.params == p.params
    assert math.isclose(q.std, std) and q.seed == seed


@settings(max_examples=BUDGET["spot"], deadline=None)
@given(n=st.integers(3, 14), data=st.data(), method=st.sampled_from(["flowpeak", "featdiff"]),
       seed=st.integers(0, 1000))
def test_spotted_apex_lies_between_onset_and_offset(n, data, method, seed):
    o = data.draw(st.integers(0, n - 2))
    f = data.draw(st.integers(o + 1, n - 1))
    frames = np.random.default_rng(seed).integers(0, 255, (n, 24, 24), dtype=np.uint8)
    try:
        kf = Spot(method).apply("k", n, KeyFrames(o, o, f), frames)
    except MefeatError as exc:
        # onset and offset next to each other leave no frame for a spotted apex
        # (a SampleError, so that extract fails only this sample's spot variant)
        assert f - o < 2 and isinstance(exc, SampleError) and exc.key == "k", exc
        assert "leave no frame between them" in str(exc), exc
        return
    assert (kf.onset, kf.offset) == (o, f) and o < kf.apex < f


# --- the store -------------------------------------------------------------------------------

names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"),
                                       blacklist_characters="/\\"), min_size=1, max_size=8)


@st.composite
def sample_lists(draw):
    keys = draw(st.lists(st.tuples(names, names, names), min_size=0, max_size=5,
                         unique_by=lambda t: "/".join(t)))
    out = []
    for ds, sub, clip in keys:
        n = draw(st.integers(2, 6))
        on = draw(st.integers(0, n - 2))
        off = draw(st.integers(on + 1, n - 1))
        ap = draw(st.integers(on, off))
        first = draw(st.integers(0, 10**6))
        out.append(Sample(ds, sub, clip, tuple(Path(f"{i}.jpg") for i in range(n)),
                          first + on, first + ap, first + off, on, ap, off,
                          draw(names), label=draw(st.none() | st.integers(0, 20))))
    return out


@settings(max_examples=BUDGET["store_round_trip"], deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(samples=sample_lists(), data=st.data(), size=st.integers(4, 12))
def test_store_round_trip(samples, data, size):
    bad = [s.key for s in samples
           if any(p in (".", "..") or not p.isprintable() for p in s.key.split("/"))]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.zarr"
        config = {"dataset": "fuzz", "align": {"size": size}}
        try:
            fs = FeatureStore.create_or_resume(path, samples, config)
        except MefeatError as exc:
            assert bad and str(exc).startswith("sample key"), exc
            return
        assert not bad
        rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
        written = {}
        with fs:
            var = fs.require_variant("gt", {"keyframes": {"policy": "gt"}}, size)
            for i, s in enumerate(samples):
                if not data.draw(st.booleans()):
                    continue  # some samples stay pending
                frames = rng.integers(0, 256, (s.n_frames, size, size), dtype=np.uint8)
                landmarks = rng.normal(size=(68, 2)).astype(np.float32)
                maps = {m: rng.normal(size=(c, size, size)).astype(dt)
                        if dt == "float32" else rng.integers(0, 256, (c, size, size), np.uint8)
                        for m, (c, dt) in _maps().items()}
                fs.write_frames(s.key, frames, landmarks)
                var.write_sample(i, (s.onset, s.apex, s.offset), maps)
                fs.set_status(i, "done")
                written[i] = (frames, landmarks, maps)
        back = FeatureStore.open(path)
        assert list(back.column("key")) == [s.key for s in samples]
        for s, r in zip(samples, back.samples(), strict=True):
            assert (r.key, r.onset, r.apex, r.offset, r.onset_frame, r.apex_frame,
                    r.offset_frame, r.emotion, r.label) == \
                   (s.key, s.onset, s.apex, s.offset, s.onset_frame, s.apex_frame,
                    s.offset_frame, s.emotion, s.label)
        assert list(back.column("n_frames")) == [s.n_frames for s in samples]
        status = back.column("status")
        v = back.variant("gt")
        idx, arrays = v.read(list(_maps()) + ["keyframes"])
        assert sorted(written) == idx.tolist()
        for j, i in enumerate(idx):
            frames, landmarks, maps = written[i]
            f2, l2 = back.read_frames(samples[i].key)
            assert np.array_equal(f2, frames) and np.array_equal(l2, landmarks)
            for m, arr in maps.items():
                assert np.array_equal(arrays[m][j], arr), m
            assert tuple(arrays["keyframes"][j]) == (samples[i].onset, samples[i].apex,
                                                     samples[i].offset)
        for i, s in enumerate(samples):
            assert status[i] == ("done" if i in written else "pending")
            assert back.has_frames(s.key) == (i in written)


def _maps():
    from mefeat.store import MAPS

    return MAPS


def test_budget_total():
    # The total reported to the lead, sum(BUDGET.values()), is what this module's
    # hypothesis tests are really allowed to run: every @given test of the module runs
    # under exactly one BUDGET entry (read from its own @settings line, then checked
    # against the settings hypothesis actually applies), and every entry serves one test.
    # Fails for a test with a literal max_examples or without @settings (hypothesis's
    # default 100 examples, outside the budget), an entry no test uses, or two tests
    # sharing one entry.
    import inspect

    used = {}
    for name, fn in sorted(globals().items()):
        if not (name.startswith("test_") and hasattr(fn, "hypothesis")):
            continue
        source = inspect.getsource(fn.hypothesis.inner_test)
        keys = re.findall(r'max_examples=BUDGET\["(\w+)"\]', source)
        assert len(keys) == 1, f"{name} runs outside BUDGET: {keys}"
        applied = fn._hypothesis_internal_use_settings.max_examples
        assert applied == BUDGET[keys[0]], (name, applied)
        assert keys[0] not in used, f"{name} and {used.get(keys[0])} share {keys[0]!r}"
        used[keys[0]] = name
    assert set(used) == set(BUDGET), sorted(set(BUDGET) - set(used))

"""A fuzz test of the command line: for every command, invocations that are right but for
one value (a wrong type, an out-of-range number, an unknown name, a missing path, an empty
string, a bad NAME=VALUE) end with exit status 1 or 2, at most three lines on stderr, and
no traceback. Every command starts from a valid invocation on a small demo store, so the
bad value is what the command must refuse, wherever in its work it is read.

The default suite runs a bounded number of examples; ``-m slow`` many more.
"""

from __future__ import annotations

import re

import click
import pytest
from _stores import demo_store, official_subset
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mefeat.cli.main import cli


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("fuzz")
    store = demo_store(root, subjects=3, clips=2, size=64)
    run = root / "run"
    res = CliRunner().invoke(cli, ["train", "--model", "ststnet", "--store", str(store),
                                   "--epochs", "1", "--workers", "1", "--out", str(run)])
    assert res.exit_code == 0, res.output
    official = official_subset(shared_data / "features" / "cde28_htnet", root / "official", 2)
    clip = next((root / "data").glob("CASME2/sub01/*"))
    (root / "a-file").write_text("not a folder")
    from mefeat.datasets.longvideo import read_long_videos
    from mefeat.demo import build_long_demo
    from mefeat.run.extract_long import extract_long

    long = build_long_demo(root, videos=2, frames=600)
    extract_long(read_long_videos("casme-sq", long.root), root / "long.zarr", flow="farneback")
    return {"store": str(store), "run": str(run), "official": str(official),
            "clip": str(clip), "root": root, "blocked": root / "a-file",
            "long": str(long.root), "long_store": str(root / "long.zarr")}


def _base(world, command: str, out: str) -> list[str] | None:
    """A valid invocation of ``command`` (``out``: a fresh path), bounded in work."""
    s, r = world["store"], world["run"]
    return {
        "train": ["--model", "ststnet", "--store", s, "--epochs", "1", "--folds", "1",
                  "--workers", "1", "--out", out],
        "evaluate": ["--store", s, "--run", r, "--out", out],
        "score": [r, "--out", out],
        "bench": [s, "--out", out, "--models", "ststnet", "--epochs", "1", "--runs", "1",
                  "--conditions", "gt", "--no-tsne"],
        "extract": ["--store", s, "--keyframes", "gt"],
        "import-features": [world["official"], "--format", "htnet", "--store", out + ".zarr"],
        "inspect": [s],
        "show": [s, "casme2/sub01/EP01_01", "--out", out + ".png"],
        "spot": [s],
        "export": [s, "--format", "h5", "--out", out + ".h5"],
        "predict": [world["clip"], "--run", r],
        "demo": ["--out", out, "--subjects", "2", "--clips", "1", "--workers", "1",
                 "--long-videos", "0"],
        "extract-long": [world["long"], "--dataset", "casme-sq", "--store",
                         world["long_store"], "--flow", "farneback"],
        "spot-long": [world["long_store"], "--spotter", "flowpeak", "--recognizer", r,
                      "--out", out],
    }.get(command)


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                max_size=12)
numbers = st.one_of(st.integers(-10**6, 0).map(str), st.floats(allow_nan=True).map(str),
                    texts)
option_pairs = st.one_of(
    texts, st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
        ["dropout", "block_length", "dim", "nonsense", "strain", "lambda_", ""]), texts),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["dropout", "block_length"]),
              st.sampled_from(["-1", "1.5", "two", "null", "[1,2]", "1e9"])))


def _bad_value(param: click.Parameter, draw, world) -> str:
    """A value ``param`` must refuse."""
    kind = param.type
    # a path that can be neither read nor made: its parent is a file
    missing = str(world["blocked"] / draw(st.sampled_from(["x", "y.zarr", "z/"])))
    if param.name in ("options", "view_options", "flow_params"):
        return draw(option_pairs)
    if isinstance(kind, (click.IntRange, click.FloatRange)) or kind in (click.INT,
                                                                         click.FLOAT):
        return draw(numbers.filter(lambda v: not _valid_number(kind, v)))
    if isinstance(kind, click.Choice):
        return draw(texts.filter(lambda v: v not in kind.choices))
    if isinstance(kind, click.Path):
        return draw(st.sampled_from([missing, ""]))
    # free text: names of stores, variants, subjects, models' devices, key frames...
    return draw(st.one_of(st.just(missing), st.just(""), texts.map(lambda t: "zz" + t)))


def _valid_number(kind, text: str) -> bool:
    try:
        kind.convert(text, None, None)
    except click.BadParameter:
        return False
    return True


@st.composite
def invocations(draw, world, tmp):
    command = draw(st.sampled_from(sorted(n for n in cli.commands if n not in ("env", "models"))))
    out = str(tmp / f"o{draw(st.integers(0, 10**9))}")
    base = _base(world, command, out)
    params = [p for p in cli.commands[command].params
              if not (isinstance(p, click.Option) and (p.is_flag or p.name == "help"))
              and p.name not in ("out",)]
    param = draw(st.sampled_from(params))
    value = _bad_value(param, draw, world)
    if isinstance(param, click.Argument):  # arguments lead, in order
        args = list(base)
        position = [p.name for p in cli.commands[command].params
                    if isinstance(p, click.Argument)].index(param.name)
        args[position] = value
    else:
        flag = param.opts[0]
        args = [a for i, a in enumerate(base) if a != flag and (i == 0 or base[i - 1] != flag)]
        args += [flag, value]
    return [command, *args]


def _run(argv) -> None:
    res = CliRunner().invoke(cli, argv)
    stderr = res.stderr if hasattr(res, "stderr") else res.output
    lines = [line for line in stderr.splitlines()  # without progress bars' lines
             if line.strip() and not re.search(r"\[\d+:\d\d", line)]
    assert res.exit_code in (1, 2), (argv, res.exit_code, res.output[-2000:])
    assert "Traceback" not in res.output, (argv, res.output[-3000:])
    assert len(lines) <= 3, (argv, lines)
    assert lines and lines[-1].startswith("mefeat: error: "), (argv, lines)


def _fuzz(world, tmp_path, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        _run(data.draw(invocations(world, tmp_path)))

    check()


def test_every_command_refuses_a_bad_value_in_one_line(world, tmp_path):
    _fuzz(world, tmp_path, 80)


@pytest.mark.slow
def test_many_bad_values(world, tmp_path):
    _fuzz(world, tmp_path, 1000)

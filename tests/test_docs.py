"""Documentation that runs: every command of README.md and every ``--help`` example, run in
order on the demo data, so a documented command that fails fails CI (the slow tests, minutes;
the default suite parses every one of them and runs the README's Python example).

The commands run as written, with the data they name replaced by the demo's (and smaller
copies of the shipped official folders) and the work cut down, each rewrite listed in
``REWRITES`` / ``SMALLER`` below; nothing else is changed. The README's ``make demo`` and
``make test`` are CI's own commands and are not run again here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from _stores import official_subset
from click.testing import CliRunner

from mefeat.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def commands_of(markdown: str) -> list[str]:
    """The shell commands of a Markdown text's ``bash`` blocks (continuations joined,
    comments dropped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def _examples(text: str) -> list[str]:
    block = text.split("Example:", 1)[1] if "Example:" in text else ""
    block = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in block.splitlines() if line.strip().startswith("mefeat")]


def help_examples() -> list[str]:
    """Every ``Example:`` command of ``mefeat --help`` (first: it makes the demo folder the
    others use), then of every command's ``--help``."""
    out = _examples(cli.help)
    for _, command in sorted(cli.commands.items()):
        out += _examples(command.help or "")
    return out


def test_every_help_has_an_example():
    missing = [n for n, c in cli.commands.items() if "Example:" not in (c.help or "")]
    assert not missing, missing


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    """A working folder with the demo dataset and small copies of the official folders."""
    from mefeat.demo import build_demo

    work = tmp_path_factory.mktemp("docs")
    demo = build_demo(work / "demo-data", subjects=2, clips=2)
    feats = work / "features"
    official_subset(shared_data / "features" / "cde28_htnet", feats / "cde28_htnet", 3)
    official_subset(shared_data / "features" / "cde28_causalnet", feats / "cde28_causalnet", 3)
    shutil.copy(shared_data / "features" / "cde28_htnet_mtcnn_points.csv", feats)
    _video(demo, work / "interview.mp4")
    from mefeat.demo import build_long_demo

    build_long_demo(work, videos=2, frames=600)  # work/long-demo: CAS(ME)^2's layout
    return work, demo


def _video(demo, path: Path) -> None:
    """A video of the demo's clips with still frames between them."""
    import cv2

    clips = sorted(p for p in demo.root.glob("sub01/*") if p.is_dir())
    frames = []
    for clip in clips:
        shots = [cv2.imread(str(f)) for f in sorted(clip.glob("*.jpg"),
                                                    key=lambda f: int(f.stem[3:]))]
        frames += [shots[0]] * 10 + shots + [shots[-1]] * 10
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for f in frames:
        out.write(f)
    out.release()


def _rewrite(command: str, work: Path, demo) -> list[str]:
    """The command with the demo's data and a small amount of work (see the module doc)."""
    key = "casme2/sub01/EP01_01"
    text = command
    for old, new in REWRITES:
        text = text.replace(old, new)
    text = (text.replace("{root}", str(demo.root)).replace("{ann}", str(demo.annotations))
            .replace("{key}", key).replace("{features}", str(work / "features")))
    argv = shlex.split(text)
    less = dict(SMALLER.get(argv[1], {}))  # by subcommand
    if "--model" in argv and "--subjects" not in argv:  # --subjects already names the folds
        less.update(SMALLER_FOR_MODEL.get(argv[argv.index("--model") + 1], {}))
    for flag, value in less.items():
        if flag in argv:
            i = argv.index(flag)
            if value is None:
                del argv[i:i + 2]
            else:
                argv[i + 1] = value
        elif value is not None:
            argv += [flag, value]
    return argv


# Data the documented commands name, and what stands for it here.
REWRITES = [
    ("CASME2_RAW_selected", "{root}"),
    ("CASME2-coding-20140508.xlsx", "{ann}"),
    ("--labels megc2019", "--labels casme2-5"),  # the demo clips are not the composite's
    ("casme2/sub01/EP02_01f", "{key}"),
    ("demo/s01/EP01_01", "{key}"),
    ("../shared/data/features", "{features}"),  # 3-subject copies
    ("shared/data/features", "{features}"),
    # the repository's weights: those of the run trained on the same official images
    ("STSTNet/STSTNet_Weights", "runs/ststnet-htnet/checkpoints"),
    ("STSTNet_Weights", "runs/ststnet-htnet/checkpoints"),
    ("benchmarks/results", str(ROOT / "benchmarks" / "results")),  # the repository's runs
    ("my_clip/", "{root}/sub01/EP01_01"),  # a demo clip; interview.mp4: made by `world`
    ("block_length=1,2,4,6", "block_length=2"),  # one value of the sweep
    # two light models for every model: the bench's orchestration is what runs here (every
    # model's recipe runs in the slow tests/test_bench.py::test_baselines_bench_on_demo)
    ("--baselines", "--models ststnet,offapexnet"),
    ("CAS_ME_2", "long-demo"),  # two synthetic long videos (build_long_demo)
]
# Less work, per command: flag -> value (None: drop the flag).
_ONE = {"--epochs": "1", "--runs": "1", "--workers": "1"}
SMALLER = {
    "train": _ONE,
    "bench": {**_ONE, "--conditions": "gt"},
    "extract": {"--workers": "1"},
    "demo": {"--subjects": "2", "--clips": "2", "--workers": "1", "--long-videos": "2"},
    "extract-long": {"--flow": "farneback", "--workers": "1"},
    "spot-long": {"--epochs": "1"},
}
# The large models train one fold (CausalNet's step takes seconds on a CPU).
SMALLER_FOR_MODEL = {"causalnet": {"--folds": "1"}, "htnet": {"--folds": "1"}}
# Commands whose documented outcome is a refusal on this machine.
REFUSED = {"--gpus-per-job": "has no GPU"}


def _run(argv: list[str], cwd: Path) -> tuple[int, str]:
    if argv[0] == "mefeat":
        runner = CliRunner()
        import os

        old = os.getcwd()
        os.chdir(cwd)
        try:
            res = runner.invoke(cli, argv[1:], catch_exceptions=True)
        finally:
            os.chdir(old)
        out = res.output + (f"\n{res.exception!r}" if res.exception and
                            not isinstance(res.exception, SystemExit) else "")
        return res.exit_code, out
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    return res.returncode, res.stdout + res.stderr


def _check(argv: list[str], code: int, out: str) -> None:
    refused = next((why for flag, why in REFUSED.items() if flag in argv), None)
    if refused:
        assert code == 1 and refused in out, (argv, out[-2000:])
    else:
        assert code == 0, (argv, out[-3000:])


def _parse(argv: list[str]) -> None:
    """Parse a ``mefeat`` command line as click would, without running it: every option and
    argument must exist, have its arity and convert to its type (paths are not looked up:
    they name data the test does not have)."""
    group_ctx = click.Context(cli, info_name="mefeat")
    _, group_args, _ = cli.make_parser(group_ctx).parse_args(list(argv[1:]))
    name, command, rest = cli.resolve_command(group_ctx, group_args)
    ctx = click.Context(command, info_name=name, parent=group_ctx)
    opts, args, _ = command.make_parser(ctx).parse_args(list(rest))
    for param in command.get_params(ctx):
        if param.name not in opts:
            if param.required and param.name not in ("help",):
                raise click.MissingParameter(ctx=ctx, param=param)
            continue
        if not isinstance(param.type, click.Path):
            param.type_cast_value(ctx, opts[param.name])
    assert not args, f"{argv}: unexpected arguments {args}"


def _documented_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return [c for c in commands_of(readme) if not c.startswith("make ")] + help_examples()


def test_every_documented_command_parses():
    """The fast half of 'documentation that runs' (the slow tests below run them all): every
    README and --help command line is one that mefeat's parser accepts."""
    commands = [c for c in _documented_commands() if c.startswith("mefeat ")]
    assert len(commands) > 30
    for command in commands:
        _parse(shlex.split(command))
    with pytest.raises(click.UsageError):
        _parse(["mefeat", "train", "--model", "ststnet", "--store", "x", "--out", "o",
                "--epochs", "two"])
    with pytest.raises(click.UsageError):
        _parse(["mefeat", "train", "--no-such-option"])


def test_readme_python_example_runs_and_prints_what_it_says(tmp_path, capsys):
    """The README's Python block, as written, on a small demo store: it prints two UF1s."""
    from _stores import demo_store

    store = demo_store(tmp_path, subjects=3, clips=3, size=112)
    (block,) = python_blocks((ROOT / "README.md").read_text())
    assert '"casme2.zarr"' in block
    exec(compile(block.replace('"casme2.zarr"', repr(str(store))), "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2 and all(0 <= float(v) <= 1 for v in printed)


@pytest.mark.slow
def test_readme_commands_run(world):
    work, demo = world
    readme = (ROOT / "README.md").read_text()
    commands = [c for c in commands_of(readme) if not c.startswith("make ")]
    assert len(commands) > 20
    for command in commands:
        argv = _rewrite(command, work, demo)
        code, out = _run(argv, work)
        _check(argv, code, out)
    for block in python_blocks(readme):
        code = block.replace('"casme2.zarr"', repr(str(work / "casme2.zarr")))
        exec(compile(code, "README.md", "exec"), {})


@pytest.mark.slow
def test_help_examples_run(world):
    work, demo = world
    examples = help_examples()
    assert len(examples) >= len(cli.commands)
    for command in examples:
        argv = _rewrite(command, work, demo)
        code, out = _run(argv, work)
        _check(argv, code, out)

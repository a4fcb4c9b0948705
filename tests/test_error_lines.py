"""The bad values and mismatches users hit, each refused in one line that names the value and
what is allowed (issue: every bad value gets one clear line)."""

from __future__ import annotations

import shutil

import pytest
from _stores import demo_store
from click.testing import CliRunner

from mefeat.cli.main import cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return demo_store(tmp_path_factory.mktemp("errors"), subjects=3, clips=2, size=64)


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ststnet"
    res = CliRunner().invoke(cli, ["train", "--model", "ststnet", "--store", str(store),
                                   "--epochs", "1", "--workers", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _line(args, code=1) -> str:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == code, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert "Traceback" not in res.output
    assert lines[-1].startswith("mefeat: error: "), lines
    return lines[-1]


def _train(store, tmp_path, *extra, model="causalnet"):
    return ["train", "--model", model, "--store", store, "--out", tmp_path / "o", *extra]


@pytest.mark.parametrize(("model", "option", "expected"), [
    ("causalnet", "block_length=two", "option block_length='two' is not allowed; "
                                      "block_length is an int >= 1"),
    ("causalnet", "dropout=abc", "option dropout='abc' is not allowed; dropout is a number "
                                 ">= 0 and < 1"),
    ("causalnet", "dropout=1.5", "option dropout=1.5 is not allowed; dropout is a number "
                                 ">= 0 and < 1"),
    ("htnet", "dim=abc", "option dim='abc' is not allowed; dim is an int >= 4"),
    ("causalnet", "cross_attention=maybe", "cross_attention is one of 'positional', 'plain'"),
    ("causalnet", "depths=[3,0]", "depths is a list of ints, each >= 1"),
    ("ststnet", "width=3", "model 'ststnet' has no option(s) ['width']; its options are "
                           "['dropout']"),
])
def test_model_options_are_checked_before_anything_is_built(store, tmp_path, model, option,
                                                             expected):
    line = _line(_train(store, tmp_path, "--option", option, model=model))
    assert expected in line
    assert not (tmp_path / "o").exists()  # refused before the run folder was made


def test_evaluate_checks_options_too(store, run, tmp_path):
    line = _line(["evaluate", "--model", "ststnet", "--store", store, "--checkpoints",
                  run / "checkpoints", "--option", "dropout=abc", "--out", tmp_path / "e"])
    assert "option dropout='abc' is not allowed; dropout is a number >= 0 and < 1" in line


def test_view_options_name_what_is_allowed(store, tmp_path):
    line = _line(_train(store, tmp_path, "--view-option", "strain=sobel", model="offtanet"))
    assert "view 'offtanet': option strain='sobel' is not one of ['stored', 'offtanet']" in line


@pytest.mark.parametrize(("device", "expected"), [
    ("cuda", "device 'cuda' is not on this machine (this torch, "),
    ("cdua", "device 'cdua' is not a device name (cpu, cuda, cuda:1, mps); this machine has: "
             "cpu"),
])
def test_devices_are_checked_against_this_machine(store, tmp_path, device, expected):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine has this device")
    assert expected in _line(_train(store, tmp_path, "--device", device, model="ststnet"))


def test_usage_errors_are_one_line_too(store, tmp_path):
    line = _line(_train(store, tmp_path, "--epochs", "0", model="ststnet"), code=2)
    assert "Invalid value for '--epochs': 0 is not in the range x>=1" in line
    assert "(see `mefeat train --help`)" in line


def test_a_checkpoint_of_another_model_is_explained_from_its_metadata(store, run, tmp_path):
    other = tmp_path / "htnet-run"
    shutil.copytree(run, other)
    line = _line(["evaluate", "--model", "htnet", "--store", store, "--checkpoints",
                  other / "checkpoints", "--out", tmp_path / "e"])
    assert "this checkpoint is ststnet's (subject casme2/sub01, epoch 1, selection last); " \
           "this evaluation is htnet's" in line
    assert "missing" not in line and "Unexpected key" not in line  # no state_dict key dump

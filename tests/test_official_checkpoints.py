"""The official STSTNet checkpoints reproduce the official logfile through `mefeat evaluate`.

Opt-in: the weights are not shipped with mefeat. Point MEFEAT_STSTNET_REPO at a checkout of
github.com/christy1206/STSTNet (it holds STSTNet_Weights/ and STSTNet_python_logfile.txt).
"""

from __future__ import annotations

import ast
import csv
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = os.environ.get("MEFEAT_STSTNET_REPO")
pytestmark = pytest.mark.skipif(not REPO, reason="set MEFEAT_STSTNET_REPO to run")


def _logfile(path: Path) -> dict[str, tuple[list[int], list[int]]]:
    out, subject, pred = {}, None, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("Subject:"):
            subject = line.split(":", 1)[1].strip()
        elif line.startswith("Predicted"):
            pred = ast.literal_eval(line.split(":", 1)[1].strip())
        elif line.startswith("Ground Truth"):
            out[subject] = (pred, ast.literal_eval(line.split(":", 1)[1].strip()))
    return out


def test_official_ststnet_checkpoints_match_the_logfile(shared_data, tmp_path):
    from mefeat.cli.main import cli

    repo = Path(REPO)
    runner = CliRunner()
    store = tmp_path / "htnet.zarr"
    res = runner.invoke(cli, ["import-features", str(shared_data / "features" / "cde28_htnet"),
                              "--format", "htnet", "--store", str(store)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["evaluate", "--model", "ststnet", "--store", str(store),
                              "--variant", "official-htnet", "--checkpoints",
                              str(repo / "STSTNet_Weights"), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert "UF1 0.7209" in res.output and "UAR 0.7250" in res.output
    official = _logfile(repo / "STSTNet_python_logfile.txt")
    ours: dict[str, list[tuple[int, str, int]]] = {}
    with (tmp_path / "ev" / "predictions.csv").open() as f:
        for row in csv.DictReader(f):
            sub, clip = row["key"].split("/")[1:]
            ours.setdefault(sub, []).append(
                (int(row["label"]), f"{sub}_{clip} .png", int(row["prediction"])))
    assert set(ours) == set(official) and len(ours) == 68
    for sub, rows in ours.items():
        # the official script lists a subject's samples by label, then by file name
        rows.sort(key=lambda r: (r[0], r[1].encode()))
        pred, truth = official[sub]
        assert [r[0] for r in rows] == truth, sub
        assert [r[2] for r in rows] == pred, sub

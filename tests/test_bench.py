"""`mefeat bench`: the Table 4 layout, resume without recomputation, executors agree."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
from _stores import demo_store
from click.testing import CliRunner

from mefeat.cli.main import cli
from mefeat.run.extract import add_variants


@pytest.fixture(scope="module")
def bench_store(tmp_path_factory):
    return demo_store(tmp_path_factory.mktemp("bench"), subjects=3, clips=3, size=112)


ARGS = ["--models", "ststnet", "--conditions", "gt,std10,spot", "--runs", "2",
        "--epochs", "2", "--no-tsne"]


def _table(out):
    with (out / "table.csv").open() as f:
        return list(csv.DictReader(f))


def _jobs(out):
    return {p: p.stat().st_mtime_ns for p in (out / "jobs").rglob("*.json")}


def test_bench_table_layout_and_resume(bench_store, tmp_path):
    out = tmp_path / "b"
    res = CliRunner().invoke(cli, ["bench", str(bench_store), *ARGS, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "18 jobs run, 0 already done" in res.output  # 3 conditions × 2 runs × 3 folds
    table = _table(out)
    assert [r["model"] for r in table] == ["ststnet"]
    for cond in ("gt", "std10", "spot"):
        assert 0 <= float(table[0][f"{cond}_uf1"]) <= 1 and table[0][f"{cond}_runs"] == "2"
    md = (out / "table.md").read_text()
    assert "| Method | GT UF1 | GT UAR | STD=10 UF1 | STD=10 UAR | Spotting UF1 |" in md
    assert (out / "robustness.png").stat().st_size > 5000
    _assert_jobs_ran_their_recipe(out, epochs=2)
    before = _jobs(out)
    res = CliRunner().invoke(cli, ["bench", str(bench_store), *ARGS, "--out", str(out)])
    assert "0 jobs run, 18 already done" in res.output
    assert _jobs(out) == before  # nothing recomputed, nothing rewritten
    assert _table(out) == table


def _assert_jobs_ran_their_recipe(out, *, epochs):
    """Every job recorded the recipe it ran: its model's registered one, epochs overridden."""
    import json

    from mefeat.models import get_spec

    jobs = [json.loads(p.read_text()) for p in (out / "jobs").rglob("*.json")]
    assert jobs
    for job in jobs:
        recipe = get_spec(job["model"]).recipe
        expected = recipe.replace(epochs=epochs).to_dict()
        assert job["recipe"] == json.loads(json.dumps(expected)), job["model"]
        assert job["overrides"] == {"epochs": epochs}
        # run r trains with the recipe's seed (0 where it sets none) plus r
        assert job["seed"] == (recipe.seed or 0) + job["run"], (job["model"], job["run"])
    return {job["model"] for job in jobs}


@pytest.mark.slow  # tests/test_fault_points.py kills a bench inside and between jobs
def test_killed_bench_finishes_without_recomputing(bench_store, tmp_path):
    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "mefeat.cli.main", "bench", str(bench_store), *ARGS,
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(_jobs(out) if (out / "jobs").exists() else {}) < 5:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _jobs(out)
    assert 5 <= len(before) < 18
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{18 - len(before)} jobs run, {len(before)} already done" in res.stdout
    after = _jobs(out)
    assert len(after) == 18 and all(after[p] == t for p, t in before.items())


def test_process_pool_gives_the_same_table(bench_store, tmp_path):
    local, pool = tmp_path / "l", tmp_path / "p"
    for out, extra in ((local, []), (pool, ["--executor", "process", "--workers", "2"])):
        res = CliRunner().invoke(cli, ["bench", str(bench_store), *ARGS, *extra,
                                       "--out", str(out)])
        assert res.exit_code == 0, res.output
    assert _table(local) == _table(pool)


@pytest.mark.slow
def test_ray_gives_the_same_table(bench_store, tmp_path):
    ray = pytest.importorskip("ray")
    local, distributed = tmp_path / "l", tmp_path / "r"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for out, extra in ((local, []), (distributed, ["--executor", "ray"])):
            res = CliRunner().invoke(cli, ["bench", str(bench_store), *ARGS, *extra,
                                           "--out", str(out)])
            assert res.exit_code == 0, res.output
    finally:
        ray.shutdown()
    assert _table(local) == _table(distributed)


@pytest.mark.slow
def test_baselines_bench_on_demo(bench_store, tmp_path):
    from mefeat.models import list_models

    # Every registered model with its own recipe (about 5 min on 2 loaded cores).
    out = tmp_path / "all"
    res = CliRunner().invoke(cli, ["bench", str(bench_store), "--baselines", "--runs", "1",
                                   "--epochs", "2", "--conditions", "gt,std10", "--out",
                                   str(out)])
    assert res.exit_code == 0, res.output
    table = _table(out)
    assert [r["model"] for r in table] == list_models()
    for cond in ("gt", "std10"):
        assert all(r[f"{cond}_runs"] == "1" for r in table)
    assert (out / "robustness.png").is_file() and (out / "tsne.png").is_file()
    assert _assert_jobs_ran_their_recipe(out, epochs=2) == set(list_models())


def test_sweep_makes_one_row_per_value(bench_store, tmp_path):
    from mefeat.run.bench import parse_sweep

    models = parse_sweep("causalnet.block_length=1,2,4,6")
    assert [m.tag for m in models] == [f"causalnet[block_length={v}]" for v in (1, 2, 4, 6)]
    res = CliRunner().invoke(cli, ["bench", str(bench_store), "--sweep", "nonsense",
                                   "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "MODEL.OPTION=V1,V2" in res.output


def test_spot_reports_frame_errors_on_the_demo(bench_store):
    import json

    res = CliRunner().invoke(cli, ["spot", str(bench_store), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["clips"] == 9 and set(info["methods"]) == {"flowpeak", "featdiff"}
    assert info["methods"]["flowpeak"]["within_2"] >= 0.9  # the demo's apex is known
    text = CliRunner().invoke(cli, ["spot", str(bench_store)]).output
    assert "flowpeak" in text and "featdiff" in text and "mean error" in text


# -- the sample set and the flow method of a bench -------------------------------------------
SMALL = ["--models", "ststnet", "--runs", "1", "--epochs", "1", "--no-tsne"]


@pytest.fixture(scope="module")
def farneback_store(tmp_path_factory):
    """A two-subject demo store extracted with Farneback flows (variant gt-farneback)."""
    return demo_store(tmp_path_factory.mktemp("farneback"), subjects=2, clips=2, size=64,
                      flow="farneback")


def _copy(store, tmp_path):
    import shutil

    return shutil.copytree(store, tmp_path / "s.zarr")


def _job_keys(out, cond):
    import json

    return sorted(k for p in (out / "jobs").rglob(f"{cond}/run0/*.json")
                  for k in json.loads(p.read_text())["keys"])


def test_bench_uses_the_flow_the_store_was_made_with(farneback_store, tmp_path):
    import json

    from mefeat.store import FeatureStore

    store, out = _copy(farneback_store, tmp_path), tmp_path / "b"
    res = CliRunner().invoke(cli, ["bench", str(store), *SMALL, "--conditions", "gt,std10",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    used = json.loads((out / "bench.json").read_text())
    assert used["variants"] == {"gt/run0": "gt-farneback",
                                "std10/run0": "noise-std10-s0-farneback"}
    assert used["flow"] == "farneback"
    assert FeatureStore.open(store).variants() == ["gt-farneback", "noise-std10-s0-farneback"]
    # a flow the store was not made with is refused, naming what the store has
    res = CliRunner().invoke(cli, ["bench", str(store), *SMALL, "--conditions", "gt",
                                   "--flow", "tvl1", "--out", str(tmp_path / "t")])
    assert res.exit_code == 1 and "no variant made with the tvl1 flow" in res.output
    assert "farneback" in res.output and "Traceback" not in res.output
    assert "gt" not in FeatureStore.open(store).variants()  # nothing computed with TV-L1
    # two methods in one store: the bench must be told which
    add_variants(store, keyframes=["gt"], flow="dis", progress=False)
    res = CliRunner().invoke(cli, ["bench", str(store), *SMALL, "--conditions", "gt",
                                   "--out", str(tmp_path / "d")])
    assert res.exit_code == 1 and "several flow methods (dis, farneback)" in res.output
    res = CliRunner().invoke(cli, ["bench", str(store), *SMALL, "--conditions", "gt",
                                   "--flow", "dis", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "d" / "bench.json").read_text())["variants"] == {
        "gt/run0": "gt-dis"}


def test_conditions_are_compared_on_the_same_samples(farneback_store, tmp_path, monkeypatch):
    import json

    from mefeat.errors import SampleError
    from mefeat.keyframes.policies import Noise

    store, out = _copy(farneback_store, tmp_path), tmp_path / "b"
    victim = "casme2/sub01/EP02_01"
    apply = Noise.apply

    def failing(self, key, *args, **kwargs):  # one clip that the noisy condition cannot make
        if key == victim:
            raise SampleError(key, "key frames fell outside the clip")
        return apply(self, key, *args, **kwargs)

    monkeypatch.setattr(Noise, "apply", failing)
    res = CliRunner().invoke(cli, ["bench", str(store), *SMALL, "--conditions", "gt,std10",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{victim}: no features in variant noise-std10-s0-farneback: key frames fell " \
           "outside the clip" in res.output
    everyone = ["casme2/sub01/EP01_01", "casme2/sub02/EP01_02", "casme2/sub02/EP02_02"]
    assert _job_keys(out, "gt") == _job_keys(out, "std10") == everyone
    assert list(json.loads((out / "excluded.json").read_text())) == [victim]
    md = (out / "table.md").read_text()
    assert "the same 3 samples" in md and f"- {victim}: no features" in md


def test_run_r_of_a_bench_trains_with_the_recipe_seed_plus_r(bench_store, tmp_path):
    import json

    from mefeat.models import get_spec, register, scoped_registry
    from mefeat.run.bench import run_bench

    spec = get_spec("ststnet")
    with scoped_registry():
        register("seeded_ststnet", view="ststnet", input_shapes=spec.input_shapes,
                 recipe=spec.recipe.replace(seed=100))(spec.builder)
        run_bench(bench_store, out=tmp_path / "s", models=["seeded_ststnet"],
                  conditions=["gt"], runs=2, epochs=1, tsne=False, progress=False)
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "s" / "jobs").rglob("*.json")]
    assert sorted({(j["run"], j["seed"]) for j in jobs}) == [(0, 100), (1, 101)]


def test_official_bench_rows_also_say_what_the_paper_counts(bench_store, tmp_path):
    # Off-ApexNet's repository averages per-fold macro UAR / UF1 over folds: the table gives
    # that beside the pooled figure, and names the counting of every row.
    import json

    import numpy as np
    from sklearn.metrics import recall_score

    out = tmp_path / "o"
    res = CliRunner().invoke(cli, ["bench", str(bench_store), "--models", "offapexnet",
                                   "--conditions", "gt", "--runs", "1", "--epochs", "1",
                                   "--selection", "official", "--no-tsne", "--out", str(out)])
    assert res.exit_code == 0, res.output
    (row,) = _table(out)
    assert row["counting"] == "fold-mean"
    jobs = [json.loads(p.read_text()) for p in (out / "jobs").rglob("*.json")]
    per_fold = [recall_score(j["labels"], np.reshape(j["epoch_predictions"],
                                                     (-1, len(j["labels"])))[-1],
                             average="macro", zero_division=0) for j in jobs]
    assert len(per_fold) == 3
    assert float(row["gt_counted_uar"]) == pytest.approx(np.mean(per_fold))
    md = (out / "table.md").read_text()
    assert "As each paper counts" in md and "| offapexnet | fold-mean |" in md


def test_official_bench_trains_each_model_on_its_official_inputs(bench_store, tmp_path):
    # Under official, Off-ApexNet's rows come from TV-L1 on frames resized to 28 px (its
    # repository's data.py), OFF-TANet's at 112 px (the store's own side: the store's TV-L1
    # variants serve) with its Sobel strain; STSTNet, without a profile, from the store's flow.
    import json

    from mefeat.store import FeatureStore

    store = _copy(bench_store, tmp_path)
    out = tmp_path / "o"
    res = CliRunner().invoke(cli, ["bench", str(store), "--models", "offapexnet,offtanet,ststnet",
                                   "--conditions", "gt,std10", "--runs", "1", "--epochs", "1",
                                   "--selection", "official", "--no-tsne", "--out", str(out)])
    assert res.exit_code == 0, res.output
    jobs = [json.loads(p.read_text()) for p in (out / "jobs").rglob("*.json")]
    made = {(j["model"], j["condition"]): (j["variant"], j["view_options"]) for j in jobs}
    assert made == {("offapexnet", "gt"): ("gt-28px", {}),
                    ("offapexnet", "std10"): ("noise-std10-s0-28px", {}),
                    ("offtanet", "gt"): ("gt", {"strain": "offtanet"}),
                    ("offtanet", "std10"): ("noise-std10-s0", {"strain": "offtanet"}),
                    ("ststnet", "gt"): ("gt", {}),
                    ("ststnet", "std10"): ("noise-std10-s0", {})}
    plan = json.loads((out / "bench.json").read_text())
    assert plan["variants"] == {"gt/run0": "gt", "std10/run0": "noise-std10-s0"}
    assert plan["official_inputs"]["offapexnet"] == {
        "flow_size": 28, "view_options": {},
        "variants": {"gt/run0": "gt-28px", "std10/run0": "noise-std10-s0-28px"}}
    fs = FeatureStore.open(store)
    assert fs.variant("gt-28px").attrs["settings"]["flow"] == {"method": "tvl1", "params": {},
                                                              "size": 28}
    md = (out / "table.md").read_text()
    assert ("- offapexnet: TV-L1 (OpenCV's defaults) on the aligned frames resized to 28 px\n"
            in md)
    assert "- offtanet: TV-L1 (OpenCV's defaults) on the aligned frames resized to 112 px; " \
           "view options strain=offtanet" in md
    # With every model on its official inputs, --flow would pick nothing: refused.
    res = CliRunner().invoke(cli, ["bench", str(store), "--models", "offapexnet", "--conditions",
                                   "gt", "--runs", "1", "--epochs", "1", "--selection",
                                   "official", "--flow", "farneback", "--no-tsne", "--out",
                                   str(tmp_path / "f")])
    assert res.exit_code == 1 and "leave --flow out" in res.output
    # The same bench under last trains every model on the store's flow and view defaults.
    res = CliRunner().invoke(cli, ["bench", str(store), "--models", "offapexnet",
                                   "--conditions", "gt", "--runs", "1", "--epochs", "1",
                                   "--no-tsne", "--out", str(tmp_path / "l")])
    assert res.exit_code == 0, res.output
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "l" / "jobs").rglob("*.json")]
    assert {(j["variant"], str(j["view_options"])) for j in jobs} == {("gt", "{}")}

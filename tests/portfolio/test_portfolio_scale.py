"""A portfolio's chains over workers (loky, a Dask cluster) write the same bytes as in one process."""
from __future__ import annotations

from pathlib import Path

import pytest

from calib.cli.main import main

GRID = """base = "decision-calibrated"
folds = 3
[site]
fit = "sony"
score = "tau"
[axes]
"stages.rerank.enabled" = [true, false]
"""


def files(root: Path) -> dict[str, bytes]:
    """Every output file (the stage cache left out) -> its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".cache" not in p.relative_to(root).parts}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    assert main(["synth", str(root / "data"), "--clips", "4", "--frames", "40", "--systems", "lowthr",
                 "--eval-clips", "1", "--quiet"]) == 0
    (root / "grid.toml").write_text(GRID)
    return root


@pytest.fixture(scope="module")
def local(setup):
    """The portfolio in one process (--jobs 1): the bytes every other run must give."""
    out = setup / "one"
    assert main(["portfolio", str(setup / "grid.toml"), "--data", str(setup / "data"), "--out", str(out),
                 "--quiet"]) == 0
    return files(out)


@pytest.fixture
def always_pool(monkeypatch):
    """A pool even for this small work (below calib.score.parallel.POOL_MIN_SECONDS none is started)."""
    from calib.score import parallel

    monkeypatch.setattr(parallel, "POOL_MIN_SECONDS", 0.0)


def run_scaled(setup, name, capsys, *args) -> dict[str, bytes]:
    out = setup / name
    capsys.readouterr()
    assert main(["portfolio", str(setup / "grid.toml"), "--data", str(setup / "data"), "--out", str(out),
                 *args]) == 0
    log = capsys.readouterr().out
    # 2 variants: rerank on (full chain, 3 folds, site) and off (nothing learned: its full chain only)
    assert "portfolio: 6 chain(s) over" in log
    return files(out)


@pytest.mark.slow
def test_two_loky_workers_write_the_same_bytes(setup, local, always_pool, capsys, monkeypatch):
    from calib.score import api

    import inspect

    labelled = []  # callers of best_ious in this (the parent) process
    real = api.best_ious

    def spy(det, truth, **kw):
        labelled.append(inspect.stack()[1].function)
        return real(det, truth, **kw)

    monkeypatch.setattr(api, "best_ious", spy)
    got = run_scaled(setup, "loky", capsys, "--jobs", "2")
    assert "portfolio.json" in got and any(f.endswith("detections.parquet") for f in got)
    assert got == local
    # a variant reranks: the input detections' labels were computed once, before the workers
    # started (in the parent: the chains' own rerank fits run in the workers)
    assert labelled[0] == "prepare_inputs"


@pytest.mark.slow
def test_a_dask_local_cluster_writes_the_same_bytes(setup, local, always_pool, capsys):
    distributed = pytest.importorskip("distributed")
    # worker processes: calib's caches are per process (threads would share them)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        got = run_scaled(setup, "dask", capsys, "--backend", "dask", "--scheduler", cluster.scheduler_address)
    assert got == local


@pytest.mark.slow
def test_small_work_starts_no_pool(setup, local, capsys, monkeypatch):
    """Below POOL_MIN_SECONDS the chains run in this process, on two threads with --jobs 2; the
    input labels (rendering the GT they need in the same per-clip job) and the GT maps are still
    prepared first, over the clips, once (the same bytes)."""
    from calib.score import api

    calls = []
    for name in ("prepare_gt", "best_ious"):
        real = getattr(api, name)
        monkeypatch.setattr(api, name, lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw))
    out = setup / "small"
    assert main(["portfolio", str(setup / "grid.toml"), "--data", str(setup / "data"), "--out", str(out),
                 "--jobs", "2"]) == 0
    log = capsys.readouterr().out
    assert "chain(s) over" not in log
    assert "portfolio: 6 chain(s) on 2 threads of this process" in log
    assert calls[:2] == ["best_ious", "prepare_gt"]
    assert files(out) == local


@pytest.mark.slow
def test_chains_stay_here_when_workers_would_not_fit_in_memory(setup, local, always_pool, capsys, monkeypatch):
    """Each chain worker holds the inputs and a chain's tables: when the machine lacks the memory
    for that, the chains run in this process (saying why) and the bytes are the same."""
    from calib.portfolio import run

    monkeypatch.setattr(run, "available_memory", lambda: 1024.0)
    out = setup / "lowmem"
    assert main(["portfolio", str(setup / "grid.toml"), "--data", str(setup / "data"), "--out", str(out),
                 "--jobs", "2"]) == 0
    log = capsys.readouterr().out
    assert "chains stay in this process: 2 workers would each hold the inputs" in log
    assert "chain(s) over" not in log and "threads of this process" not in log  # nor two chains at once here
    assert files(out) == local


def test_worker_memory_counts_every_input_table_per_worker():
    import polars as pl

    from calib.portfolio.run import CHAIN_BYTES_PER_INPUT_BYTE, worker_memory
    from calib.recipe.inputs import LoadedInputs
    from calib.stages.base import Tables

    a = pl.DataFrame({"x": list(range(1000))})  # 8000 bytes
    b = pl.DataFrame({"y": [1.0] * 500})  # 4000 bytes
    ld = LoadedInputs(Tables(detections=a, systems={"s": b, "t": a}), {})
    assert worker_memory([ld], 3) == CHAIN_BYTES_PER_INPUT_BYTE * 20000 * 3


def test_scheduler_without_dask_backend_is_refused(setup, capsys):
    with pytest.raises(SystemExit, match="--scheduler needs --backend dask"):
        main(["portfolio", str(setup / "grid.toml"), "--data", str(setup / "data"), "--out", str(setup / "x"),
              "--scheduler", "tcp://127.0.0.1:1"])


def run_files(root: Path) -> dict[str, bytes]:
    """A run's outputs (run.json and report.md left out: they record each stage's seconds)."""
    return {k: v for k, v in files(root).items() if k not in ("run.json", "report.md")}


@pytest.mark.slow
def test_calib_run_over_two_workers_writes_the_same_bytes(setup, always_pool, capsys):
    """Ingest (file by file), labels and scoring (clip by clip) in a pool: the same outputs."""
    outs = {}
    for name, extra in (("run1", []), ("run2", ["--jobs", "2"])):
        assert main(["run", "decision-calibrated", "--data", str(setup / "data"), "--out", str(setup / name),
                     "--cache", str(setup / f"cache-{name}"), "--quiet", *extra]) == 0
        outs[name] = run_files(setup / name)
    assert "detections.parquet" in outs["run1"] and "metrics.json" in outs["run1"]
    assert outs["run1"] == outs["run2"]


def test_gt_work_estimate_counts_the_gt_files_the_recipes_name(tmp_path):
    from calib.portfolio.grid import Grid
    from calib.portfolio.run import gt_work_estimate
    from calib.score.api import GT_S_PER_BYTE

    for folder, name, size in [("gt/dev-a", "c1_std.json", 1000), ("gt", "c2_std.json", 500),
                               ("gt", "notes.json", 7000), ("gt2", "c3_std.json", 300)]:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / name).write_bytes(b" " * size)
    base = {"inputs": {"gt": "gt"}}
    cache = tmp_path / "cache"
    assert gt_work_estimate(base, Grid("b"), tmp_path, cache) == pytest.approx(GT_S_PER_BYTE * 1500)
    both = Grid("b", axes={"inputs.gt": ["gt2", "gt"]})
    assert gt_work_estimate(base, both, tmp_path, cache) == pytest.approx(GT_S_PER_BYTE * 1800)  # each folder once
    assert gt_work_estimate({"inputs": {"gt": "truth.parquet"}}, Grid("b"), tmp_path, cache) == 0.0
    assert gt_work_estimate({"inputs": "nonsense"}, Grid("b"), tmp_path, cache) == 0.0  # load_inputs reports it
    (cache / "score").mkdir(parents=True)
    (cache / "score" / "maps").write_bytes(b"x")  # a run sharing --cache rendered them already
    assert gt_work_estimate(base, Grid("b"), tmp_path, cache) == 0.0

"""The GT helper of ``calib run`` (calib.score.prefetch): it renders exactly the maps scoring would,
into the scoring cache, from one clip's rows at a time; stopping it leaves no partial entry; a run
with it writes the same bytes as without."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from calib.cli.main import main
from calib.io.dcase import ingest_predictions, ingest_truth
from calib.score import prefetch
from calib.score.api import prepare_gt
from calib.score.cache import GT_CACHE
from calib.tables import read_clip_rows, read_table, write_table


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefetch")
    assert main(["synth", str(root / "data"), "--clips", "4", "--frames", "30", "--systems", "lowthr",
                 "--eval-clips", "0", "--quiet"]) == 0
    truth, _ = ingest_truth(root / "data" / "gt", progress=False)
    dets, _ = ingest_predictions([root / "data" / "systems" / "lowthr"], "lowthr", progress=False)
    # row groups far smaller than a clip: one clip's rows span several, and groups hold two clips
    write_table(truth, root / "truth.parquet", "truth", row_group_rows=7)
    write_table(dets, root / "dets.parquet", "detections", row_group_rows=11)
    write_table(truth, root / "truth-one-group.parquet", "truth")
    return root, truth, dets


def test_one_clips_rows_equal_the_whole_table_filtered(data):
    root, truth, dets = data
    for path, kind, table in ((root / "truth.parquet", "truth", truth), (root / "dets.parquet", "detections", dets),
                              (root / "truth-one-group.parquet", "truth", truth)):
        whole = read_table(path, kind)
        assert whole.equals(table)
        for clip in table.get_column("clip").unique().sort().to_list() + ["no-such-clip"]:
            got = read_clip_rows(path, kind, clip)
            assert got.equals(whole.filter(pl.col("clip") == clip)), (path.name, clip)
    with pytest.raises(Exception, match="is a truth table, expected detections"):
        read_clip_rows(root / "truth.parquet", "detections", "x")


def job(root: Path, clips, cache: Path) -> dict:
    return {"truth": str(root / "truth.parquet"), "detections": [str(root / "dets.parquet")], "clips": list(clips),
            "cache_dir": str(cache), "parent": __import__("os").getppid()}


def test_the_helper_renders_every_map_scoring_needs_and_only_into_the_cache(data, tmp_path):
    root, truth, dets = data
    clips = sorted(truth.get_column("clip").unique().to_list())[:2]
    cache = tmp_path / "score"
    GT_CACHE.clear()
    assert prefetch.run_job(job(root, clips, cache)) == 2
    entries = sorted(p.name for p in cache.glob("*.npz"))
    assert len(entries) == 2 and not list(cache.glob(".*"))  # one map file per clip, no temp file left
    GT_CACHE.clear()  # what a new process (the run's scoring) sees: the files alone
    for clip in clips:
        t, d = truth.filter(pl.col("clip") == clip), dets.filter(pl.col("clip") == clip)
        assert prepare_gt(t, [d], cache_dir=cache, jobs=1) == 0  # nothing left to render
    other = sorted(truth.get_column("clip").unique().to_list())[2]
    t, d = truth.filter(pl.col("clip") == other), dets.filter(pl.col("clip") == other)
    assert prepare_gt(t, [d], cache_dir=cache, jobs=1) == 1  # a clip it was not given was not drawn


def test_the_helper_process_runs_at_low_priority_and_stops_clean(data, tmp_path):
    root, truth, _ = data
    clips = sorted(truth.get_column("clip").unique().to_list())
    done = prefetch.start(root / "truth.parquet", [root / "dets.parquet"], clips, tmp_path / "a")
    assert done.proc.wait(120) == 0
    assert done.log_path.read_text().strip().endswith(f"prefetched the GT maps of {len(clips)} of {len(clips)} clip(s)")
    stopped = prefetch.start(root / "truth.parquet", [root / "dets.parquet"], clips * 50, tmp_path / "b")
    stopped.stop()
    stopped.stop()  # idempotent
    assert stopped.proc.returncode is not None
    assert not list((tmp_path / "b").glob(".*.npz"))  # an entry being written was removed, not left half-made


def test_only_local_workers_with_enough_work_start_a_helper():
    big = prefetch.PREFETCH_MIN_SECONDS
    assert prefetch.should_prefetch(2, "loky", big)
    assert prefetch.should_prefetch(-1, "loky", big)
    assert not prefetch.should_prefetch(1, "loky", big)  # --jobs 1: one process, as asked
    assert not prefetch.should_prefetch(2, "dask", big)  # the cluster has the cores
    assert not prefetch.should_prefetch(2, "threading", big)
    assert not prefetch.should_prefetch(2, "loky", big / 2)


def test_gt_points_counts_the_clips_points(data):
    _, truth, _ = data
    clip = truth.get_column("clip")[0]
    rows = truth.filter(pl.col("clip") == clip)
    want = sum(len(poly) for ann in rows.get_column("points").to_list() for poly in ann)
    assert prefetch.gt_points(truth, [clip]) == want > 0
    assert prefetch.gt_points(truth, ["no-such-clip"]) == 0


@pytest.mark.slow
def test_calib_run_with_the_helper_writes_the_same_bytes(data, tmp_path, monkeypatch, capsys):
    root, _, _ = data
    monkeypatch.setattr(prefetch, "PREFETCH_MIN_SECONDS", 0.0)
    outs, logs = {}, {}
    for name, extra in (("one", []), ("two", ["--jobs", "2"])):
        capsys.readouterr()
        assert main(["run", "decision-calibrated", "--data", str(root / "data"), "--out", str(tmp_path / name),
                     *extra]) == 0
        logs[name] = capsys.readouterr().out
        outs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).rglob("*"))
                      if p.is_file() and ".cache" not in p.parts and p.name not in ("run.json", "report.md")}
    assert "evaluation clip(s) ahead" in logs["two"] and "ahead" not in logs["one"]
    assert (tmp_path / "two" / ".cache" / "score" / prefetch.LOG_NAME).exists()
    assert outs["one"] == outs["two"] and "metrics.json" in outs["one"]
    json.loads(outs["two"]["metrics.json"])

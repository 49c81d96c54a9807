import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the golden vectors inside the project (rebuilt from ../shared/golden by tests/data/update_golden.py)
GOLDEN_ARCHIVE = ROOT / "tests" / "data" / "golden.tar.xz"


@pytest.fixture(autouse=True)
def _fresh_feature_cache():
    """Each test starts with an empty feature cache (features.registry.FEATURE_CACHE): a test
    comparing two ways of computing features must not get the first way's values back."""
    from features.registry import FEATURE_CACHE

    FEATURE_CACHE.clear()
    yield


@pytest.fixture(autouse=True)
def _no_pool_counted_as_running(monkeypatch):
    """Each test decides its pools as a fresh command would: a loky pool an earlier test left
    running does not lower the threshold (calib.score.parallel.POOL_MIN_SECONDS_WARM) here."""
    from calib.score import parallel

    monkeypatch.setattr(parallel, "_LOKY_USED", {})
    monkeypatch.setattr(parallel, "_STARTING", {})


@pytest.fixture(scope="session")
def golden(tmp_path_factory) -> Path:
    """The golden vectors (inputs and the official scripts' numbers), unpacked once per session from
    tests/data/golden.tar.xz, so a fresh clone checks exactness too (tests/test_golden_archive.py
    checks the archive against ../shared/golden where that exists)."""
    dest = tmp_path_factory.mktemp("golden")
    with tarfile.open(GOLDEN_ARCHIVE, mode="r:xz") as tar:
        tar.extractall(dest, filter="data")
    return dest / "golden"


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """A small synthetic STAIRS26-like set shared by the tests (generated once per session)."""
    from fixtures.synth import generate

    out = tmp_path_factory.mktemp("synth_small")
    generate(out, seed=7, clips=8, frames=60)
    return out


@pytest.fixture(scope="session")
def conformance_tables(synth_small):
    """Tables every stage can run on: detections + truth + teacher + priors + two named systems."""
    import polars as pl

    from calib.io.dcase import ingest_predictions, ingest_truth
    from calib.io.priors import read_priors
    from calib.io.seld import read_teacher
    from calib.stages.base import Tables

    dets, _ = ingest_predictions([synth_small / "systems" / "lowthr"], progress=False)
    dets = dets.filter(pl.col("frame") < 25)  # enough of every case, small enough for ~25 stages x 3 runs
    truth, _ = ingest_truth(synth_small / "gt", progress=False)
    teacher, _ = read_teacher([synth_small / "teacher"])
    priors, _ = read_priors(synth_small / "priors.csv")
    systems = {name: ingest_predictions([synth_small / "systems" / name], progress=False)[0] for name in ("audio", "av")}
    # columns some stages read when present (view of a test-time ACS set, checkpoint of an ensemble)
    dets = dets.with_columns((pl.col("det_id") % 8).alias("view"), (pl.col("det_id") % 5).alias("checkpoint"))
    return Tables(detections=dets, truth=truth, teacher=teacher, priors=priors, systems=systems)


@pytest.fixture(scope="session")
def numpy_argsort_kernel() -> str | None:
    """"avx512" or "avx2": the x86-simd-sort kernel this numpy's argsort of float64 runs (from its
    runtime's SIMD report, as np.show_runtime), or None (another CPU or an old numpy)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_argsort_oracles",
                                                  ROOT / "tests" / "data" / "make_argsort_oracles.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.numpy_argsort_kernel()

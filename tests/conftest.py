from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "golden"


@pytest.fixture(scope="session")
def golden() -> Path:
    if not GOLDEN.exists():
        pytest.skip("../shared/golden not present")
    return GOLDEN


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

"""Every built-in feature on hand-computed detections."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from calib.tables import DETECTIONS, TRUTH
from features import FeatureError, compute_features, default_features, registry, resolve
from calib.canvas.points import flatten as flatten_points
from features.registry import FEATURE_CACHE


def det(frame, cls, score, polys, system="s", clip="a", det_id=0):
    return dict(system=system, clip=clip, frame=frame, det_id=det_id, class_id=cls, score=score, distance=None,
                instance_id=None, points=[[dict(x=x, y=y, e=e) for x, y, e in p] for p in polys], extra=None)


ROWS = [
    det(0, 1, 0.9, [[(10, 20, 1), (14, 20, 3), (10, 30, 2)]]),  # 0
    det(0, 1, 0.3, [[(12, 25, 1)]]),  # 1: one point inside row 0's box
    det(0, 2, 0.4, [[(355, 40, 1), (359, 44, 5)], [(3, 42, 1)]]),  # 2: crosses the seam, two polygons
    det(1, 1, 0.5, [[(12, 24, 2), (11, 22, 2), (13, 22, 2), (12, 28, 2)]]),  # 3: flat energy
    det(5, 1, 0.2, [[]]),  # 4: no points
    det(0, 1, 0.8, [[(12, 25, 1)]], system="t"),  # 5: another system
    det(2, 1, 0.7, [[(200, 100, 1)]]),  # 6: far away
]
LABELS = np.array([1, 1, 0, 1, 0, 1, 0], dtype=float)


@pytest.fixture(scope="module")
def dets():
    return pl.DataFrame([{**r, "det_id": i} for i, r in enumerate(ROWS)], schema=DETECTIONS)


@pytest.fixture(scope="module")
def truth():
    def gt(frame, cls, pts, ann_id):
        return dict(clip="a", split="dev-train-sony", frame=frame, ann_id=ann_id, class_id=cls, instance_id=None,
                    distance=None, points=[[dict(x=x, y=y, e=e) for x, y, e in pts]], category_str=False, extra=None)
    return pl.DataFrame([gt(0, 1, [(12, 25, 1), (13, 25, 1)], 0), gt(0, 2, [(0, 42, 1), (2, 42, 3)], 1),
                         gt(1, 1, [(12, 24, 1)], 2)], schema=TRUTH)


@pytest.fixture(scope="module")
def feats(dets):
    return compute_features(dets, "all")


def col(feats, name):
    return feats.get_column("feat_" + name).to_numpy()


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=1e-12)


def test_score_and_rank(feats):
    close(col(feats, "score"), [0.9, 0.3, 0.4, 0.5, 0.2, 0.8, 0.7])
    close(col(feats, "score_rank"), [1, 2, 1, 1, 1, 1, 1])


def test_score_uses_score_raw_once_rewritten(dets):
    rewritten = dets.with_columns(pl.col("score").alias("score_raw"), pl.lit(0.5).alias("score"))
    close(col(compute_features(rewritten, ["score"]), "score"), dets.get_column("score").to_numpy())


def test_box_geometry(feats):
    # row 2: x 355, 359, 3 -> the 352-degree gap crosses the seam, 3 -> 363: box 355..363 x 40..44
    close(col(feats, "box_area"), [4 * 10, 0, 8 * 4, 2 * 6, 0, 0, 0])
    close(col(feats, "box_elevation"), [25, 25, 42, 25, 0, 25, 100])
    close(col(feats, "box_aspect"), [5 / 11, 1, 9 / 5, 3 / 7, 1, 1, 1])
    close(col(feats, "n_points"), [3, 1, 3, 4, 0, 1, 1])


def test_no_seam_shift_when_gaps_are_small():
    pts = flatten_points(pl.DataFrame([det(0, 1, 1.0, [[(10, 0, 1), (100, 0, 1), (190, 0, 1), (280, 0, 1)]])],
                                      schema=DETECTIONS).get_column("points"))
    close(pts.seam_x, [10, 100, 190, 280])  # widest gap 90 < 180: stays
    pts = flatten_points(pl.DataFrame([det(0, 1, 1.0, [[(350, 0, 1), (10, 0, 1), (0, 0, 1), (360, 0, 1)]])],
                                      schema=DETECTIONS).get_column("points"))
    close(pts.seam_x, [350, 370, 360, 360])  # gap 10 -> 350 is the seam; 0 and 10 move right


def test_energy_moments(feats):
    close(col(feats, "energy_max"), [3, 1, 5, 2, 0, 1, 1])
    close(col(feats, "energy_mean"), [2, 1, 7 / 3, 2, 0, 1, 1])
    close(col(feats, "energy_std"), [math.sqrt(2 / 3), 0, math.sqrt(((1 - 7 / 3) ** 2 * 2 + (5 - 7 / 3) ** 2) / 3),
                                     0, 0, 0, 0])
    close(col(feats, "energy_prominence"), [1, 0, 5 - 7 / 3, 0, 0, 0, 0])
    close(col(feats, "energy_peak_ratio"), [1 / 3, 0, (5 - 7 / 3) / 5, 0, 0, 0, 0])


def test_energy_distribution(feats):
    # top 10% = ceil(0.1 n) points: one point for n <= 10
    close(col(feats, "energy_top10_share"), [3 / 6, 1, 5 / 7, 2 / 8, 0, 1, 1])

    def h(e):
        p = np.asarray(e, float) / np.sum(e)
        return -(p * np.log(p)).sum() / math.log(len(e))
    close(col(feats, "energy_entropy"), [h([1, 3, 2]), 0, h([1, 5, 1]), 1, 0, 0, 0])


def test_top10_counts_ceil_of_a_tenth():
    pts = [(i, 0, float(i + 1)) for i in range(11)]  # 11 points -> top 2: 11 + 10 of 66
    df = pl.DataFrame([det(0, 1, 1.0, [pts])], schema=DETECTIONS)
    close(col(compute_features(df, ["energy_top10_share"]), "energy_top10_share"), [21 / 66])


def test_distribution_features_block_by_block_are_the_one_pass_values(monkeypatch):
    # top-10% share and entropy work block by block of detections (their per-point temporaries
    # stay small on a dev set); blocks of a few points give the same bits as one block of all
    import features.energy as energy

    rng = np.random.default_rng(3)
    rows = []
    for i in range(60):
        k = int(rng.choice([0, 1, 3, 11, 12, 25, 40]))
        e = rng.choice([-0.5, 0.0, 0.25, 0.5, 1.0], size=k) if i % 3 else rng.random(k)  # ties, <= 0
        polys = [[(float(x), float(y), float(v)) for x, y, v in zip(rng.random(k) * 360, rng.random(k) * 180, e)]]
        rows.append({**det(i % 4, i % 13, float(rng.random()), polys), "det_id": i})
    df = pl.DataFrame(rows, schema=DETECTIONS)
    names = ["energy_top10_share", "energy_entropy"]
    monkeypatch.setattr(FEATURE_CACHE, "budget", 0)  # computed each time, not taken from the cache
    whole = compute_features(df, names)
    for block in (1, 7, 30):
        monkeypatch.setattr(energy, "BLOCK_POINTS", block)
        assert compute_features(df, names).equals(whole)  # bit for bit
    # and a detection of more points than a block is a block of its own
    fp = flatten_points(df.get_column("points"))
    blocks = fp.blocks(7)
    assert blocks[0][0] == 0 and blocks[-1][1] == len(df) and all(b > a for a, b in blocks)
    assert all(blocks[i][1] == blocks[i + 1][0] for i in range(len(blocks) - 1))
    assert all(fp.count[a:b].sum() <= 7 or b == a + 1 for a, b in blocks)
    # the values themselves, detection by detection
    for i, r in enumerate(rows):
        e = np.clip([p["e"] for poly in r["points"] for p in poly], 0.0, None)
        total = e.sum()
        top = np.sort(e)[::-1][:math.ceil(0.1 * e.size)].sum() / total if total > 0 else 0.0
        prob = e[e > 0] / total if total > 0 else e[:0]
        ent = -(prob * np.log(prob)).sum() / math.log(e.size) if e.size > 1 and total > 0 else 0.0
        close(col(whole, "energy_top10_share")[i], top)
        close(col(whole, "energy_entropy")[i], ent)


def test_peak_offset(feats):
    # row 0: peak (14,20), centre (12,25): a corner -> 1; row 2: peak (359,44), centre (359,42),
    # half diagonal sqrt(8^2+4^2)/2; row 3: first of four equal peaks (12,24), centre (12,25)
    close(col(feats, "peak_offset"), [1, 0, 2 / math.sqrt(20), 1 / math.sqrt(10), 0, 0, 0])


def test_frame_counts(feats):
    close(col(feats, "n_frame"), [3, 3, 3, 1, 1, 1, 1])
    close(col(feats, "n_frame_class"), [2, 2, 1, 1, 1, 1, 1])


def test_nms_dominance(feats):
    close(col(feats, "nms_dominance"), [1, 0.3 / 0.9, 1, 1, 1, 1, 1])


def test_nms_dominance_across_the_seam_and_only_same_class():
    rows = [det(0, 3, 0.2, [[(358, 10, 1), (2, 12, 1)]]),  # box 358..362
            det(0, 3, 0.8, [[(1, 11, 1)]]),  # inside it, across the seam
            det(0, 3, 0.4, [[(100, 11, 1)]]),  # elsewhere
            det(0, 4, 0.9, [[(1, 11, 1)]])]  # other class
    df = pl.DataFrame([{**r, "det_id": i} for i, r in enumerate(rows)], schema=DETECTIONS)
    close(col(compute_features(df, ["nms_dominance"]), "nms_dominance"), [0.25, 1, 1, 1])


def test_temporal(feats):
    close(col(feats, "nbr_score"), [0.5, 0.5, 0, 0.9, 0, 0, 0.5])
    # row 6's neighbour (row 3, frame 1) is 100 degrees away; rows 0/1 and 3 are close
    close(col(feats, "nbr_score_near"), [0.5, 0.5, 0, 0.9, 0, 0, 0])
    # class 1 of system s is seen in frames 0, 1, 2 (a run of 3) and 5 (alone)
    close(col(feats, "track_len"), [3, 3, 1, 3, 1, 1, 3])


def test_gates_are_train_only(dets, truth, feats):
    close(col(feats, "closure"), np.zeros(7))  # inference: 0
    close(col(feats, "diffuseness"), np.zeros(7))
    train = compute_features(dets, ["closure", "diffuseness"], train=True, truth=truth, labels=LABELS)
    # frame 0 has 2 GT (classes 1, 2); system s matches class 1 twice -> min(2, 1) = 1 of 2
    close(col(train, "closure"), [0.5, 0.5, 0.5, 1, 0, 0.5, 0])
    hb = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(2)
    close(col(train, "diffuseness"), [(1 + hb) / 2] * 3 + [0, 0, (1 + hb) / 2, 0])
    with pytest.raises(FeatureError, match="train-only"):
        compute_features(dets, ["closure"], train=True)


def test_slices_and_row_order(dets, feats):
    # point features depend on the row alone: a slice gives the same values
    pointwise = ["box_area", "box_elevation", "box_aspect", "n_points", "energy_max", "energy_mean", "energy_std",
                 "energy_prominence", "energy_top10_share", "energy_entropy", "peak_offset"]
    close(compute_features(dets[2:5], pointwise).to_numpy(), feats.select(["feat_" + n for n in pointwise])[2:5].to_numpy())
    perm = [6, 3, 0, 5, 1, 4, 2]
    close(compute_features(dets[perm], "all").to_numpy(), feats[perm].to_numpy())


def test_empty_table():
    out = compute_features(pl.DataFrame(schema=DETECTIONS), "all")
    assert out.height == 0 and out.width == len(registry())
    assert all(dt == pl.Float64 for dt in out.dtypes)


HAND_TESTED = {"score", "score_rank", "box_area", "box_elevation", "box_aspect", "n_points", "energy_max",
               "energy_mean", "energy_std", "energy_prominence", "energy_peak_ratio", "energy_top10_share",
               "energy_entropy", "peak_offset", "n_frame", "n_frame_class", "nms_dominance", "nbr_score",
               "nbr_score_near", "track_len", "closure", "diffuseness"}


def test_every_builtin_feature_is_hand_tested():
    builtin = {n for n, f in registry().items() if f.module.startswith("features.")}
    assert builtin == HAND_TESTED, "add a hand-computed test for every new built-in feature"


def test_registry_contents():
    reg = registry()
    required = ["score", "box_area", "box_elevation", "box_aspect", "n_frame", "n_frame_class", "energy_max",
                "energy_mean", "energy_std", "energy_prominence", "energy_top10_share", "energy_entropy",
                "peak_offset", "nms_dominance", "closure", "diffuseness", "nbr_score", "track_len"]
    assert set(required) <= set(reg)
    assert all(f.doc for f in reg.values())
    assert {n for n, f in reg.items() if f.train_only} == {"closure", "diffuseness"}
    assert "closure" not in default_features()
    with pytest.raises(FeatureError, match="unknown feature 'nope'.*energy_max"):
        resolve(["nope"])
    assert [f.name for f in resolve("score,default")][:2] == ["score", "score_rank"]


def test_a_big_table_is_computed_a_few_clips_at_a_time_with_the_same_values(dets, truth, monkeypatch):
    import importlib

    R = importlib.import_module("features.registry")  # the module (features.registry is also a function)
    from features import feature
    from features.registry import unregister

    monkeypatch.setattr(R.FEATURE_CACHE, "budget", 0)  # computed each time, not taken from the cache

    # three clips of the hand-made rows (frames and scores moved per clip), their GT likewise
    parts = [dets.with_columns(pl.lit(c).alias("clip"), pl.col("frame") + k, pl.col("score") * (1 - 0.125 * k))
             for k, c in enumerate("abc")]
    table = pl.concat(parts).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("det_id"))
    gt = pl.concat([truth.with_columns(pl.lit(c).alias("clip"), pl.col("frame") + k) for k, c in enumerate("abc")])
    labels = np.tile(LABELS, 3)
    scattered = np.array([0, 7, 14, 1, 8, 15, 2, 9, 16, 3, 10, 17, 4, 11, 18, 5, 12, 19, 6, 13, 20])

    @feature(default=False)  # not per_clip: compares rows across clips, so computed on the whole table
    def table_score_rank_test(ctx):
        """Rank of the score in the whole table (a test feature)."""
        return np.argsort(np.argsort(-ctx.score, kind="stable"), kind="stable").astype(float)

    try:
        names = [*registry(), "table_score_rank_test"]
        for rows in (np.arange(21), scattered):  # each clip's rows together, then scattered
            t, y = table[rows], labels[rows]
            whole = compute_features(t, names, train=True, truth=gt, labels=y)
            monkeypatch.setattr(R, "CHUNK_ROWS", 8)
            chunks = R.clip_chunks(t)
            assert len(chunks) == 2 and sorted(np.concatenate([np.arange(21)[c] for c in chunks])) == list(range(21))
            assert isinstance(chunks[0], slice) == (rows is not scattered)
            chunked = compute_features(t, names, train=True, truth=gt, labels=y)
            monkeypatch.setattr(R, "CHUNK_ROWS", 1 << 16)
            assert chunked.equals(whole)  # bit for bit, every feature
            np.testing.assert_array_equal(col(chunked, "table_score_rank_test"),
                                          np.argsort(np.argsort(-t.get_column("score").to_numpy(), kind="stable"),
                                                     kind="stable"))
        assert all(f.per_clip for f in registry().values() if f.name != "table_score_rank_test")
    finally:
        unregister("table_score_rank_test")


def test_feature_cache_gives_the_computed_values_and_recomputes_what_changed(dets, monkeypatch):
    """A clip whose rows were computed before gets the same bits from the cache; a clip whose rows
    differ in any bit a built-in feature reads is computed again; plug-in features never cached."""
    import importlib

    R = importlib.import_module("features.registry")
    from features import feature
    from features.registry import unregister

    parts = [dets.with_columns(pl.lit(c).alias("clip"), pl.col("frame") + k, pl.col("score") * (1 - 0.125 * k))
             for k, c in enumerate("abc")]
    table = pl.concat(parts).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("det_id"))
    calls = []

    @feature(default=False, per_clip=True)
    def plugin_rows_test(ctx):
        """Rows seen (a test plug-in feature)."""
        calls.append(ctx.n)
        return np.full(ctx.n, float(ctx.n))

    try:
        names = [k for k, f in registry().items() if not f.train_only and f.module in R.BUILTIN_MODULES]
        monkeypatch.setattr(R.FEATURE_CACHE, "budget", 0)
        fresh = {k: compute_features(t, names) for k, t in
                 (("all", table), ("bc", table.filter(pl.col("clip") != "a")), ("rev", table.reverse()))}
        monkeypatch.setattr(R.FEATURE_CACHE, "budget", 1 << 20)
        R.FEATURE_CACHE.clear()
        assert compute_features(table, names).equals(fresh["all"])
        assert len(R.FEATURE_CACHE._entries) == 3  # one entry per clip

        real = R._compute
        computed = []
        monkeypatch.setattr(R, "_compute", lambda df, todo, **kw: computed.append(df.height) or real(df, todo, **kw))
        assert compute_features(table, names).equals(fresh["all"]) and computed == []  # every clip cached
        assert compute_features(table.filter(pl.col("clip") != "a"), names).equals(fresh["bc"]) and computed == []
        assert compute_features(table.reverse(), names).equals(fresh["rev"])  # rows in another order: computed
        assert computed == [21]
        # one bit of one point of clip b (x 12 -> 12 + 1 ulp), and clip c's score_raw: those clips again
        computed.clear()
        pts = table.get_column("points").to_list()
        pts[8][0][0]["x"] = float(np.nextafter(12.0, 13.0))
        changed = table.with_columns(pl.Series("points", pts, dtype=table.schema["points"]),
                                     pl.when(pl.col("clip") == "c").then(pl.col("score") / 2).otherwise(None)
                                     .alias("score_raw"))
        monkeypatch.setattr(R.FEATURE_CACHE, "budget", 0)
        expect = compute_features(changed, names)
        monkeypatch.setattr(R.FEATURE_CACHE, "budget", 1 << 20)
        computed.clear()
        assert compute_features(changed, names).equals(expect)
        assert computed == [14]  # clips b and c
        assert not expect.equals(fresh["all"])
        # a plug-in per-clip feature is computed every time, on the whole table
        calls.clear()
        compute_features(table, ["plugin_rows_test", "score"])
        compute_features(table, ["plugin_rows_test", "score"])
        assert calls == [21, 21]
        # beyond the budget, the least recently used clips are dropped: room for two clips of 7 rows
        R.FEATURE_CACHE.clear()
        monkeypatch.setattr(R.FEATURE_CACHE, "budget", 2 * 7 * len(names) * 8)
        compute_features(table, names)  # clips a, b, c stored in that order: a dropped
        computed.clear()
        compute_features(table.filter(pl.col("clip") != "a"), names)
        assert computed == []
        compute_features(table.filter(pl.col("clip") == "a"), names)
        assert computed == [7]
    finally:
        unregister("plugin_rows_test")

import numpy as np
import pytest
from fusedata import blob, det

from calib.stages.base import Tables
from calib.stages.fuse import mask_fusion
from calib.score.render import render_annotation as official_render
from calib.stages.fuse.mask_fusion import MaskFusion, greedy_clusters, map_polygons, soft_iou


def system(name, rows):
    return det([dict(r, system=name) for r in rows])


def fuse(systems, **params):
    return MaskFusion(**params).fit_apply(Tables(systems=systems))["detections"].sort("score", descending=True)


def as_map(points):
    """The official 100 x 50 map of one detection's points (as polars lists them)."""
    return render_annotation([np.array([(p["x"], p["y"], p["e"]) for p in poly]).reshape(-1, 3) for poly in points])


def render_annotation(polygons):
    return official_render(polygons)[0]


def test_soft_iou_by_hand():
    a = np.array([1.0, 1.0, 0.0, 0.0], dtype=np.float32)
    maps = np.array([[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    assert soft_iou(maps, a).tolist() == [0.75, 0.0, 0.0]
    assert soft_iou(np.zeros((1, 4), np.float32), np.zeros(4, np.float32)).tolist() == [0.0]


def test_greedy_clusters_one_member_per_source_and_weighted_mean_map():
    maps = np.array([[1.0, 1.0, 0.0, 0.0],    # a, best score: opens cluster 0
                     [1.0, 0.5, 0.0, 0.0],    # a again: same source, opens cluster 1 despite IoU 0.75
                     [1.0, 1.0, 0.0, 0.0],    # b: IoU 1 with cluster 0 -> joins it
                     [0.0, 0.0, 1.0, 1.0]],   # b: no overlap -> cluster 2
                    dtype=np.float32)
    labels, fused = greedy_clusters(maps, np.array([3.0, 2.0, 1.0, 1.0]), np.array(["a", "a", "b", "b"]), 0.5)
    assert labels.tolist() == [0, 1, 0, 2]
    np.testing.assert_allclose(fused[0], [1.0, 1.0, 0.0, 0.0])
    labels, fused = greedy_clusters(maps[[0, 3, 1]], np.array([3.0, 1.0, 1.0]), np.array(["a", "b", "c"]), 0.5)
    assert labels.tolist() == [0, 1, 0]
    np.testing.assert_allclose(fused[0], [1.0, (3.0 + 0.5) / 4.0, 0.0, 0.0])  # (3 m_a + 1 m_c) / 4


def test_two_systems_on_one_mask_fuse_into_one_detection():
    rows = [{"frame": 3, "class_id": 2, "points": blob(200.0, 90.0, 15.0)}]
    out = fuse({"a": system("a", [dict(rows[0], score=0.8)]), "b": system("b", [dict(rows[0], score=0.4)])})
    assert out.height == 1
    assert out.get_column("score").to_list() == pytest.approx([0.6])  # mean 0.6 x 2 systems / 2
    assert out.select("system", "clip", "frame", "class_id", "det_id", "fuse_support", "fuse_source").rows() == [
        ("mask_fusion", "c1", 3, 2, 0, 2, "a+b")]
    original = as_map(det(rows).get_column("points")[0].to_list())
    got = as_map(out.get_column("points")[0].to_list())
    assert np.abs(got - original).max() < 1e-4


def test_disjoint_masks_stay_apart_with_the_singleton_penalty():
    a = system("a", [{"frame": 0, "class_id": 1, "score": 0.8, "points": blob(100.0, 90.0)}])
    b = system("b", [{"frame": 0, "class_id": 1, "score": 0.6, "points": blob(250.0, 40.0)},
                     {"frame": 5, "class_id": 1, "score": 0.5, "points": blob(10.0, 10.0)}])
    c = system("c", [])
    out = fuse({"a": a, "b": b, "c": c})
    assert out.get_column("score").to_list() == pytest.approx([0.8 / 3, 0.6 / 3, 0.5 / 3])
    assert out.get_column("fuse_support").to_list() == [1, 1, 1]
    assert out.get_column("points").to_list() == [a.get_column("points")[0].to_list(),
                                                  b.get_column("points")[0].to_list(),
                                                  b.get_column("points")[1].to_list()]
    assert out.get_column("score_raw").to_list() == [0.8, 0.6, 0.5]
    assert fuse({"a": a, "b": b, "c": c}, count_weighting=False).get_column("score").to_list() == [0.8, 0.6, 0.5]
    assert fuse({"a": a, "b": b, "c": c}, keep_singletons=False).height == 0


def test_partial_overlap_weighted_map_and_system_weights():
    pa, pb = blob(180.0, 90.0, 15.0), blob(187.2, 90.0, 15.0)  # two pixels apart
    a = system("a", [{"frame": 0, "class_id": 4, "score": 0.8, "points": pa}])
    b = system("b", [{"frame": 0, "class_id": 4, "score": 0.4, "points": pb}])
    c = system("c", [{"frame": 0, "class_id": 9, "score": 0.3, "points": pa}])
    out = fuse({"a": a, "b": b, "c": c}, weights={"a": 3.0, "b": 1.0}, iou_threshold=0.2)
    assert out.height == 2
    # weighted score (3*0.8 + 1*0.4) / 4 = 0.7, times 2 of 3 systems; c alone in class 9: 0.3 / 3
    assert out.get_column("score").to_list() == pytest.approx([0.7 * 2 / 3, 0.1])
    ma, mb = (as_map(det([{"class_id": 0, "score": 1, "points": p}]).get_column("points")[0].to_list())
              for p in (pa, pb))
    want = (3 * 0.8 * ma + 1 * 0.4 * mb) / 2.8
    got = as_map(out.get_column("points")[0].to_list())
    assert np.abs(got - want / want.max()).max() < 1e-4
    assert out.get_column("score_raw").to_list() == pytest.approx([0.6, 0.3])
    with pytest.raises(ValueError, match="unknown system"):
        fuse({"a": a}, weights={"z": 1.0})


def test_below_threshold_overlap_does_not_fuse():
    a = system("a", [{"frame": 0, "class_id": 4, "score": 0.8, "points": blob(180.0, 90.0, 15.0)}])
    b = system("b", [{"frame": 0, "class_id": 4, "score": 0.4, "points": blob(205.2, 90.0, 15.0)}])
    assert fuse({"a": a, "b": b}, iou_threshold=0.3).get_column("fuse_support").to_list() == [1, 1]
    assert fuse({"a": a, "b": b}, iou_threshold=0.0).get_column("fuse_support").to_list() == [2]


@pytest.mark.parametrize("centres", [[(200.0, 60.0)], [(1.0, 90.0)], [(100.0, 90.0), (300.0, 40.0)]])
def test_map_polygons_reemits_the_map(centres):
    maps = [as_map(det([{"class_id": 0, "score": 1, "points": blob(x, y, 15.0)}]).get_column("points")[0].to_list())
            for x, y in centres]
    amap = (sum(w * m for w, m in zip((0.7, 0.3), maps))).astype(np.float32)
    polys = map_polygons(amap)
    assert len(polys) == len(centres)
    back = render_annotation(polys)
    assert np.abs(back - amap / amap.max()).max() < 1e-4
    xy = np.concatenate(polys)
    assert np.all((xy[:, 0] >= 0) & (xy[:, 0] <= 360) & (xy[:, 1] >= 0) & (xy[:, 1] <= 180))


def test_box_prefilter_changes_nothing(monkeypatch):
    rows = [{"frame": f, "class_id": k, "score": 0.5 + 0.1 * k, "points": blob(40.0 * k + 7.2 * f, 90.0 - 9 * f)}
            for f in range(4) for k in range(3)]
    systems = {"a": system("a", rows),
               "b": system("b", [dict(r, points=blob(40.0 * r["class_id"] + 3.6, 90.0)) for r in rows])}
    fast = fuse(systems, iou_threshold=0.2)
    monkeypatch.setattr(mask_fusion, "BOX_MARGIN_DEG", 720.0)  # every box meets every other: all rendered
    slow = fuse(systems, iou_threshold=0.2)
    assert fast.equals(slow)
    assert sorted(set(fast.get_column("fuse_support"))) == [1, 2]

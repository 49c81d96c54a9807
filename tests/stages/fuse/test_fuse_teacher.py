import pytest
from fusedata import det, teacher

from calib.io.seld import to_canvas
from calib.stages.base import Tables
from calib.stages.fuse.teacher_count import TeacherCount
from calib.stages.fuse.teacher_relabel import TeacherRelabel


def relabel(rows, trows, **params):
    return TeacherRelabel(**params).fit_apply(Tables(detections=det(rows), teacher=teacher(trows)))["detections"]


def test_teacher_15_degrees_away_relabels_25_does_not():
    rows = [{"frame": 0, "class_id": 2, "score": 0.9, "az": 0, "el": 0},
            {"frame": 1, "class_id": 2, "score": 0.9, "az": 0, "el": 0}]
    trows = [{"frame": 0, "class_id": 5, "azimuth": 15, "elevation": 0},
             {"frame": 1, "class_id": 7, "azimuth": 0, "elevation": 25}]
    out = relabel(rows, trows)
    assert out.get_column("class_id").to_list() == [5, 2]
    assert out.get_column("fuse_class_raw").to_list() == [2, 2]
    assert out.get_column("fuse_teacher_deg").to_list() == pytest.approx([15.0, 25.0])
    assert relabel(rows, trows, threshold_deg=10).get_column("class_id").to_list() == [2, 2]
    assert relabel(rows, trows, threshold_deg=30).get_column("class_id").to_list() == [5, 7]


def test_nearest_teacher_of_the_same_clip_and_frame_wins():
    rows = [{"frame": 3, "class_id": 0, "score": 0.5, "az": 100, "el": 10}]
    trows = [{"frame": 3, "class_id": 5, "azimuth": 110, "elevation": 10},
             {"frame": 3, "class_id": 6, "azimuth": 100, "elevation": 15},  # 5 degrees: nearest
             {"frame": 4, "class_id": 8, "azimuth": 100, "elevation": 10},  # other frame
             {"clip": "c2", "frame": 3, "class_id": 9, "azimuth": 100, "elevation": 10}]  # other clip
    out = relabel(rows, trows)
    assert out.get_column("class_id").to_list() == [6]
    assert out.get_column("fuse_teacher_deg").to_list() == pytest.approx([5.0])


def test_direction_is_the_peak_point_and_mask_and_score_stay():
    x0, y0 = to_canvas(0.0, 0.0)
    x1, y1 = to_canvas(-60.0, 0.0)
    rows = [{"frame": 0, "class_id": 1, "score": 0.7,
             "points": [[(float(x0), float(y0), 0.4), (float(x1), float(y1), 0.9)]]}]
    trows = [{"frame": 0, "class_id": 3, "azimuth": 0, "elevation": 0},     # at the weak point
             {"frame": 0, "class_id": 4, "azimuth": -50, "elevation": 0}]   # 10 degrees from the peak
    out = relabel(rows, trows)
    d = det(rows)
    assert out.get_column("class_id").to_list() == [4]
    assert out.select("points", "score").equals(d.select("points", "score"))


def test_across_the_seam_and_without_teacher_or_points():
    rows = [{"frame": 0, "class_id": 2, "score": 0.9, "az": 179, "el": 0},
            {"frame": 9, "class_id": 2, "score": 0.9, "az": 0, "el": 0},
            {"frame": 0, "class_id": 2, "score": 0.9, "points": []}]
    out = relabel(rows, [{"frame": 0, "class_id": 11, "azimuth": -175, "elevation": 0}])
    assert out.get_column("class_id").to_list() == [11, 2, 2]
    assert out.get_column("fuse_teacher_deg").to_list()[1:] == [None, None]
    assert out.get_column("fuse_teacher_deg")[0] == pytest.approx(6.0)


def test_relabel_keeps_the_first_raw_class_when_chained():
    rows = [{"frame": 0, "class_id": 2, "score": 0.9, "az": 0, "el": 0}]
    tab = Tables(detections=det(rows), teacher=teacher([{"frame": 0, "class_id": 5, "azimuth": 5, "elevation": 0}]))
    once = TeacherRelabel().apply(tab)
    twice = TeacherRelabel().apply(once.replace(teacher=teacher([{"frame": 0, "class_id": 8, "azimuth": 0,
                                                                  "elevation": 1}])))
    assert twice["detections"].get_column("class_id").to_list() == [8]
    assert twice["detections"].get_column("fuse_class_raw").to_list() == [2]


COUNT_ROWS = [
    {"frame": 0, "class_id": 1, "score": s, "az": 10 * i, "el": 0} for i, s in enumerate([0.9, 0.5, 0.7, 0.2])
] + [{"frame": 0, "class_id": 2, "score": 0.8, "az": 0, "el": 0},
     {"frame": 1, "class_id": 1, "score": 0.6, "az": 0, "el": 0},
     {"clip": "c9", "frame": 0, "class_id": 1, "score": 0.6, "az": 0, "el": 0}]
COUNT_TEACHER = [{"frame": 0, "class_id": 1, "azimuth": 0, "elevation": 0},
                 {"frame": 0, "class_id": 1, "azimuth": 90, "elevation": 0},
                 {"frame": 1, "class_id": 1, "azimuth": 0, "elevation": 0}]


def count(**params):
    tab = Tables(detections=det(COUNT_ROWS), teacher=teacher(COUNT_TEACHER))
    return TeacherCount(**params).fit_apply(tab)["detections"]


def test_count_keeps_the_teachers_count_of_highest_scores_in_row_order():
    out = count()
    assert out.select("clip", "frame", "class_id", "score").rows() == [
        ("c1", 0, 1, 0.9), ("c1", 0, 1, 0.7), ("c1", 1, 1, 0.6), ("c9", 0, 1, 0.6)]


def test_count_plus_k_and_unknown_clips_dropped():
    assert count(extra=1).get_column("score").to_list() == [0.9, 0.5, 0.7, 0.8, 0.6, 0.6]
    assert count(unknown_clips="drop").get_column("clip").to_list() == ["c1"] * 3


def test_count_ties_keep_the_lower_det_id():
    rows = [{"frame": 0, "class_id": 1, "score": 0.5, "az": a, "el": 0} for a in (0, 10, 20)]
    tab = Tables(detections=det(rows), teacher=teacher(COUNT_TEACHER))
    assert TeacherCount().apply(tab)["detections"].get_column("det_id").to_list() == [0, 1]


def test_count_rejects_bad_params():
    with pytest.raises(ValueError, match="extra"):
        count(extra=-1)
    with pytest.raises(ValueError, match="unknown_clips"):
        count(unknown_clips="maybe")

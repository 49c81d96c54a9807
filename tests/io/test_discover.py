"""The one naming rule (calib/io/discover.py) that ingest and both scoring protocols share."""
import json

import pytest

from calib.io.discover import pair_files, prediction_clip, prediction_index, truth_index
from calib.io.errors import InputError

EMPTY = json.dumps({"annotations": []})


def _touch(path, text=EMPTY):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, clip", [("a.json", "a"), ("a_inference.json", "a"), ("a_std.json", "a"),
                                        ("fold4_room9_mix000.json", "fold4_room9_mix000"),
                                        ("_inference.json", "_inference"), ("a.b.json", "a.b")])
def test_prediction_clip(tmp_path, name, clip):
    assert prediction_clip(tmp_path / name) == clip


def test_predictions_of_a_dataset_root_with_split_folders(tmp_path):
    root = tmp_path / "pred"
    _touch(root / "dev-test-sony" / "b_inference.json")
    _touch(root / "dev-test-tau" / "a_inference.json")
    _touch(root / ".cache" / "z.json")  # hidden folders are not splits
    assert {c: f.relative_to(root).as_posix() for c, f in prediction_index(root).items()} == {
        "a": "dev-test-tau/a_inference.json", "b": "dev-test-sony/b_inference.json"}
    _touch(root / "c.json")  # files directly in the folder: only those count (as officially)
    assert list(prediction_index(root)) == ["c"]


def test_gt_clip_found_twice_is_an_error_naming_both(tmp_path):
    _touch(tmp_path / "gt" / "dev-test-sony" / "a_std.json")
    _touch(tmp_path / "gt" / "dev-test-tau" / "a_std.json")
    with pytest.raises(InputError) as e:
        truth_index(tmp_path / "gt")
    assert "dev-test-tau/a_std.json" in str(e.value) and "dev-test-sony/a_std.json" in str(e.value)


def test_coco_protocol_also_takes_plain_gt_names(tmp_path):
    gt = tmp_path / "gt"
    _touch(gt / "a.json")
    _touch(gt / "b_std.json")
    _touch(gt / "b.json")  # b_std.json names clip b first
    assert {c: f.name for c, (f, _) in truth_index(gt, "dcase2026").items()} == {"b": "b_std.json"}
    assert {c: f.name for c, (f, _) in truth_index(gt, "dcase2026-coco").items()} == {"a": "a.json", "b": "b_std.json"}
    pred = tmp_path / "pred"
    _touch(pred / "a.json")
    with pytest.raises(InputError, match="no prediction file matches a ground-truth file"):
        pair_files(pred, gt, "dcase2026")
    assert [c for c, _, _ in pair_files(pred, gt, "dcase2026-coco").pairs] == ["a"]


def test_unsafe_names_and_missing_folders(tmp_path):
    _touch(tmp_path / "gt" / "a b_std.json")
    with pytest.raises(InputError, match=r"a b_std.json: unsafe clip name 'a b'"):
        truth_index(tmp_path / "gt")
    with pytest.raises(InputError, match="no such file or folder"):
        prediction_index(tmp_path / "nothing")
    with pytest.raises(InputError, match="no such ground-truth folder"):
        truth_index(tmp_path / "nothing")

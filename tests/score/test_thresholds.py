"""parse_thresholds: every form the dcase2026 IoU thresholds arrive in, parsed or refused in one place."""
from __future__ import annotations

import numpy as np
import pytest

from calib.constants import DEFAULT_THRESHOLDS
from calib.score import parse_thresholds, score
from calib.score.thresholds import COCO_FIXED


@pytest.mark.parametrize("spec, expected", [
    (None, None),
    ("0.5:0.05:0.95", [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]),
    (" 0.25:0.25:0.75 ", [0.25, 0.5, 0.75]),
    ("0.5:0.1:0.5", [0.5]),
    ("0.25,0.5", [0.25, 0.5]),
    ("0.25, 0.5,", [0.25, 0.5]),
    ("1", [1.0]),
    ([0.25, 0.5, 0.75], [0.25, 0.5, 0.75]),
    ((1, 0.5), [1.0, 0.5]),
    (np.array([0.3, 0.6]), [0.3, 0.6]),
    (DEFAULT_THRESHOLDS, [0.25, 0.5, 0.75]),
])
def test_accepted_forms(spec, expected):
    got = parse_thresholds(spec)
    assert got == expected
    assert got is None or all(type(v) is float for v in got)


@pytest.mark.parametrize("spec, message", [
    ("0.5:0:0.9", "need step > 0 and end >= start"),
    ("0.9:0.1:0.5", "need step > 0 and end >= start"),
    ("0.5:0.1", "expected start:step:end"),
    ("0.1:0.1:0.2:0.3", "expected start:step:end"),
    ("0.5:0.5:1.5", "expected numbers in (0, 1], got 1.5"),
    ("0:0.5:1", "expected numbers in (0, 1], got 0.0"),
    ("1.5", "expected numbers in (0, 1], got 1.5"),
    ("nan", "expected numbers in (0, 1], got nan"),
    ("0.25,half", "expected numbers such as '0.25,0.5'"),
    ("a:b:c", "expected numbers such as '0.25,0.5'"),
    ("", "expected at least one threshold"),
    (",", "expected at least one threshold"),
    ([], "expected at least one threshold"),
    ([0.5, 0], "expected numbers in (0, 1], got 0.0"),
    ([0.5, -0.1], "expected numbers in (0, 1], got -0.1"),
    ([0.5, True], "True is not a number"),
    (["0.5"], "'0.5' is not a number"),
    (0.5, "expected a list of numbers or a string"),
    ({"a": 0.5}, "expected a list of numbers or a string"),
])
def test_refused_forms_say_why(spec, message):
    with pytest.raises(ValueError) as e:
        parse_thresholds(spec)
    assert message in str(e.value)
    assert str(e.value).startswith("IoU thresholds ")


def test_coco_takes_no_thresholds_in_any_form():
    assert parse_thresholds(None, "dcase2026-coco") is None
    for spec in ("0.5", [0.5], "0.5:0.05:0.95"):
        with pytest.raises(ValueError, match="fixed IoU thresholds 0.50:0.05:0.95") as e:
            parse_thresholds(spec, "dcase2026-coco")
        assert str(e.value) == COCO_FIXED
    with pytest.raises(ValueError, match="unknown protocol 'coco'"):
        parse_thresholds(None, "coco")


def test_score_refuses_bad_thresholds_before_reading_anything(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="expected numbers in"):
        score(missing, missing, iou_thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="fixed IoU thresholds"):
        score(missing, missing, protocol="dcase2026-coco", iou_thresholds="0.5")

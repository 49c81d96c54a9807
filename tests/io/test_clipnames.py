"""The one clip-name rule: a value that becomes an output path component must be harmless."""
import pytest

from calib.io.clipnames import check_clip_name, check_clip_names, is_safe_clip_name
from calib.io.errors import InputError


@pytest.mark.parametrize("name", ["fold4_room9_mix000", "mix-001", "a.b", "X", "0", "a" * 200])
def test_safe_names(name):
    assert is_safe_clip_name(name)
    assert check_clip_name(name, "t.parquet") == name


@pytest.mark.parametrize("name", ["", "..", ".", ".hidden", "../x", "../../x", "a/b", "/abs", "a\\b", "a b",
                                  "a\x00b", "é", "a" * 201, None, 3, "fold4\n"])
def test_unsafe_names(name):
    assert not is_safe_clip_name(name)
    with pytest.raises(InputError, match="unsafe clip name"):
        check_clip_name(name, "t.parquet")


def test_check_clip_names_names_the_row():
    with pytest.raises(InputError) as e:
        check_clip_names(["ok", "fine", "../../etc"], "dets.parquet")
    assert "dets.parquet: row 2" in str(e.value) and "'../../etc'" in str(e.value)

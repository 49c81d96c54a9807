"""Every bad-input case: non-zero exit, the file and annotation named, no output left behind."""
import json
import math

import pytest

from calib.cli.main import main

GOOD = {"metadata_frame_index": 0, "category_id": 1, "score": 0.5, "segmentation": [[[10, 20, 1.0], [11, 20, 0.5]]]}


def _write(tmp_path, anns=None, text=None, name="clip1.json"):
    d = tmp_path / "preds"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(text if text is not None else json.dumps({"annotations": anns}, allow_nan=True))
    return d, p


def _ingest_fails(tmp_path, capsys, d, *extra):
    out = tmp_path / "o" / "t.parquet"
    rc = main(["ingest", str(d), "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc != 0
    assert not out.exists() and not any((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True
    return err


def _bad(**changes):
    a = json.loads(json.dumps(GOOD))
    for k, v in changes.items():
        if v is KeyError:
            del a[k]
        else:
            a[k] = v
    return [GOOD, GOOD, a]  # the bad one is annotation 2


@pytest.mark.parametrize("anns, words", [
    (_bad(segmentation=[[[10, 20, 1.0], [11, 20]]]), ["annotation 2", "N x 3", "[1]"]),
    (_bad(segmentation=[[[361, 20, 1.0]]]), ["annotation 2", "outside the canvas", "x outside [0, 360] at triplet(s) [0]"]),
    (_bad(segmentation=[[[10, 20, 1.0], [10, -0.5, 1.0]]]), ["annotation 2", "outside the canvas", "[1]"]),
    (_bad(segmentation=[[[10, 180.5, 1.0]]]), ["annotation 2", "outside the canvas"]),
    (_bad(score=math.nan), ["annotation 2", "score", "finite"]),
    (_bad(score=math.inf), ["annotation 2", "score", "finite"]),
    (_bad(score=KeyError), ["annotation 2", 'missing key "score"']),
    (_bad(category_id=KeyError), ["annotation 2", "category_id"]),
    (_bad(metadata_frame_index=KeyError), ["annotation 2", "metadata_frame_index"]),
    (_bad(segmentation=KeyError), ["annotation 2", "segmentation"]),
    (_bad(category_id=13), ["annotation 2", "class id 13", "0..12"]),
    (_bad(category_id=-1), ["annotation 2", "class id -1"]),
    (_bad(category_id="x"), ["annotation 2", "category_id"]),
    (_bad(metadata_frame_index=1.5), ["annotation 2", "metadata_frame_index"]),
])
def test_bad_annotation(tmp_path, capsys, anns, words):
    d, p = _write(tmp_path, anns)
    err = _ingest_fails(tmp_path, capsys, d)
    assert str(p) in err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.parametrize("text, word", [
    ('{"annotations": [{"metadata_frame_index": 0, "category_id": 1, "sco', "truncated JSON"),
    ('{"annotations": [}', "malformed JSON"),
    ('[1, 2, 3]', "not a DCASE file"),
    ('', "truncated JSON"),
])
def test_malformed_files(tmp_path, capsys, text, word):
    d, p = _write(tmp_path, text=text)
    err = _ingest_fails(tmp_path, capsys, d)
    assert str(p) in err and word in err, err


def test_unknown_classes_can_be_dropped_with_a_warning(tmp_path, capsys):
    d, _ = _write(tmp_path, _bad(category_id=13))
    out = tmp_path / "t.parquet"
    with pytest.warns(UserWarning, match="dropped 1 annotation"):
        rc = main(["ingest", str(d), "--out", str(out), "--quiet", "--drop-unknown-classes"])
    assert rc == 0
    from calib.tables import read_table

    assert len(read_table(out)) == 2


def test_oversized_prediction_warns_on_ingest_and_fails_on_export(tmp_path, capsys):
    big = {"metadata_frame_index": 0, "category_id": 1, "score": 0.5,
           "segmentation": [[[float(x % 360) + 0.123456, float(y) + 0.654321, 0.987654] for x in range(360) for y in range(10)]]}
    anns = [dict(big, metadata_frame_index=i) for i in range(240)]  # ~ 29 MiB as written, ~ 25 MiB compact
    d, p = _write(tmp_path, anns)
    assert p.stat().st_size > 20 * 2**20
    table = tmp_path / "t.parquet"
    with pytest.warns(UserWarning, match="over the challenge's 20 MiB"):
        assert main(["ingest", str(d), "--out", str(table), "--quiet"]) == 0
    out = tmp_path / "sub"
    rc = main(["export", str(table), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0 and "clip1.json" in err and "20 MiB" in err
    assert not out.exists() or not any(out.iterdir())
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".sub")]


def test_reading_a_non_calib_parquet_is_an_error(tmp_path, capsys):
    import polars as pl

    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "x.parquet")
    rc = main(["export", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "o")])
    assert rc != 0 and "no calib metadata" in capsys.readouterr().err


@pytest.mark.slow
def test_size_guard_flag_exports_an_oversized_clip_within_the_limit(tmp_path, capsys):
    big = {"metadata_frame_index": 0, "category_id": 1, "score": 0.5,
           "segmentation": [[[float(x % 360) + 0.123456, float(y) + 0.654321, 0.987654] for x in range(360) for y in range(10)]]}
    d, _ = _write(tmp_path, [dict(big, metadata_frame_index=i) for i in range(240)])
    table = tmp_path / "t.parquet"
    with pytest.warns(UserWarning):
        assert main(["ingest", str(d), "--out", str(table), "--quiet"]) == 0
    out = tmp_path / "sub"
    assert main(["export", str(table), "--out", str(out), "--quiet", "--size-guard"]) == 0
    files = list(out.glob("*.json"))
    assert len(files) == 1 and files[0].stat().st_size <= 20 * 2**20
    assert "size guard" in capsys.readouterr().out

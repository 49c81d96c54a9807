"""The plots a user reads: one distinct colour per class in the PR curves, variant settings on the
estimates plot, file-size bars that are visible whatever their size. Each plot's figure is caught
as it is saved and its artists are checked."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from calib.constants import CLASS_NAMES
from calib.plotting import CLASS_COLOURS

matplotlib.use("Agg")


@pytest.fixture
def saved(monkeypatch) -> dict[str, Figure]:
    """File name -> the figure saved to it (kept for inspection after plt.close)."""
    figures: dict[str, Figure] = {}
    original = Figure.savefig

    def savefig(fig, fname, *args, **kwargs):
        figures[Path(fname).name] = fig
        return original(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def test_class_colours_are_13_distinct_colours():
    assert len(CLASS_COLOURS) == len(CLASS_NAMES) == 13
    assert len({to_rgb(c) for c in CLASS_COLOURS}) == 13


def _blob(cls: int) -> list[list[float]]:
    """A 5 x 5 pixel square of class ``cls``'s own column band (classes never overlap)."""
    return [[20.0 * cls + 5 + dx, 60.0 + dy, 1.0] for dy in range(5) for dx in range(5)]


def test_pr_curves_draw_each_of_the_13_classes_in_its_own_colour(tmp_path, saved):
    from calib.score import score
    from calib.score.report import write_report

    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    gt = [{"metadata_frame_index": 0, "category_id": c, "instance_id": 0, "segmentation": [_blob(c)]} for c in range(13)]
    pred = [{"metadata_frame_index": 0, "category_id": c, "score": 0.9, "segmentation": [_blob(c)]} for c in range(13)]
    (tmp_path / "gt" / "clip_std.json").write_text(json.dumps({"annotations": gt}))
    (tmp_path / "pred" / "clip.json").write_text(json.dumps({"annotations": pred}))
    res = score(tmp_path / "pred", tmp_path / "gt")
    assert res["macro_mAP"] == pytest.approx(1.0)  # every class active, each found
    write_report(res, tmp_path / "report")
    lines = saved["pr_curves.png"].axes[0].get_lines()
    assert [ln.get_label().split(" (AP")[0] for ln in lines] == list(CLASS_NAMES)
    assert [to_rgb(ln.get_color()) for ln in lines] == [to_rgb(c) for c in CLASS_COLOURS]


ROWS = [  # estimates rows as calib.portfolio.run.estimate_rows makes them
    {"variant": "v01", "settings": "rerank.enabled=on, cap.per_class=1", "rank": 2, "in_sample_mAP": 0.14,
     "oof_mAP": 0.12, "site_mAP": 0.05, "in_sample_pearson": 0.3, "oof_pearson": 0.3, "site_pearson": math.nan,
     "max_file_bytes": 48_000, "total_bytes": 300_000},
    {"variant": "v02", "settings": "rerank.enabled=off, cap.per_class=1", "rank": None, "in_sample_mAP": 0.11,
     "oof_mAP": 0.11, "site_mAP": 0.04, "in_sample_pearson": 0.2, "oof_pearson": 0.2, "site_pearson": 0.2,
     "max_file_bytes": 51_200, "total_bytes": 290_000},
]


def test_estimates_plot_labels_each_variant_with_its_settings(tmp_path, saved):
    from calib.portfolio.report import plot_estimates

    plot_estimates(ROWS, tmp_path / "estimates.png")
    labels = [t.get_text() for t in saved["estimates.png"].axes[1].get_xticklabels()]
    assert labels == ["v01*\nrerank.enabled=on\ncap.per_class=1", "v02\nrerank.enabled=off\ncap.per_class=1"]


def test_per_class_plot_names_each_chosen_system_with_its_settings(tmp_path, saved):
    from types import SimpleNamespace

    from calib.portfolio.choose import Choice
    from calib.portfolio.report import plot_per_class

    oof = {"macro_mAP": 0.1, "per_class": {n: {"mAP": 0.1 * (k % 3)} for k, n in enumerate(CLASS_NAMES)}}
    results = {name: SimpleNamespace(oof=oof, variant=SimpleNamespace(label=label))
               for name, label in (("v01", "rerank.enabled=on"), ("v02", "rerank.enabled=off"))}
    chosen = [Choice("v01", "best", "highest out-of-fold mAP"), Choice("v02", "hedge", "nothing fitted on dev")]
    plot_per_class(chosen, results, tmp_path / "per_class_ap.png")
    ax = saved["per_class_ap.png"].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["1: v01 (rerank.enabled=on)", "2: v02 (rerank.enabled=off)"]
    assert _bars(ax)[:3] == pytest.approx([0.0, 0.1, 0.2])


def _bars(ax) -> list[float]:
    return [p.get_height() for p in ax.patches]


def test_file_size_bars_fill_an_axis_scaled_to_them(tmp_path, saved):
    from calib.portfolio.report import plot_sizes

    plot_sizes(ROWS, tmp_path / "file_sizes.png")
    largest, total = saved["file_sizes.png"].axes
    assert largest.get_ylabel() == "largest file (KiB)" and total.get_ylabel() == "all files (KiB)"
    assert _bars(largest) == pytest.approx([48_000 / 1024, 50.0])
    top = largest.get_ylim()[1]
    assert 50.0 < top < 1.25 * 50.0  # the tallest bar takes most of the axis (not 0.24 % of a 20 MiB one)
    assert [t.get_text() for t in largest.texts] == ["46.9", "50"]  # every bar labelled with its value
    assert "0.24 % of the 20 MiB limit" in largest.get_title() and not largest.get_lines()  # limit named, not drawn
    assert _bars(total) == pytest.approx([300_000 / 1024, 290_000 / 1024])


def test_file_size_plot_draws_the_limit_when_a_file_nears_it(tmp_path, saved):
    from calib.portfolio.report import plot_sizes

    near = [dict(ROWS[0], max_file_bytes=15 * 2**20), ROWS[1]]
    plot_sizes(near, tmp_path / "file_sizes.png")
    largest = saved["file_sizes.png"].axes[0]
    assert largest.get_ylabel() == "largest file (MiB)" and _bars(largest)[0] == pytest.approx(15.0)
    assert [ln.get_ydata()[0] for ln in largest.get_lines()] == [20.0] and largest.get_ylim()[1] > 20.0

"""The choice of up to four systems from hand-made estimates."""
from __future__ import annotations

import math

import pytest

from calib.portfolio import Estimate, choose, fold_assignment, fragility

# gaps: A .15, B .11, C 0, D .01, E 0
ESTIMATES = [
    Estimate("A", ["rerank"], in_sample=.60, oof=.45, site=.40),
    Estimate("B", ["rerank", "cal"], in_sample=.58, oof=.47, site=.35),
    Estimate("C", [], in_sample=.44, oof=.44, site=.42),
    Estimate("D", ["cal"], in_sample=.47, oof=.46, site=.30),
    Estimate("E", [], in_sample=.43, oof=.43, site=.43, submittable=False),  # files over 20 MiB
]


def test_fragility_by_gap_difference():
    f = {x.component: x for x in fragility(ESTIMATES, 0.02)}
    # rerank: with A, B mean gap .13; without C, D, E mean (0 + .01 + 0) / 3
    assert f["rerank"].gap_with == pytest.approx(.13) and f["rerank"].gap_without == pytest.approx(.01 / 3)
    assert f["rerank"].fragile and (f["rerank"].n_with, f["rerank"].n_without) == (2, 3)
    # cal: with B, D mean .06; without A, C, E mean .05: excess .01 < .02
    assert f["cal"].excess == pytest.approx(.01) and not f["cal"].fragile


def test_choice_best_then_hedges():
    chosen, _ = choose(ESTIMATES, max_systems=4, fragile_gap=0.02)
    assert [(c.name, c.role) for c in chosen] == [
        ("B", "best"),                          # highest out-of-fold .47
        ("D", "hedge: no fragile component"),   # best without rerank (C .44 < D .46; E not submittable)
        ("C", "hedge: cross-site"),             # remaining A .40 vs C .42 on the other site
        ("A", "next best"),                     # no un-fitted variant left (C taken, E too big)
    ]
    assert "without rerank" in chosen[1].reason and "0.4600" in chosen[1].reason


def test_choice_respects_max_systems_and_skips_missing_numbers():
    chosen, _ = choose(ESTIMATES, max_systems=2)
    assert [c.name for c in chosen] == ["B", "D"]
    est = [Estimate("X", ["m"], in_sample=.9, oof=math.nan, site=math.nan), Estimate("Y", [], .2, .2, math.nan)]
    chosen, frag = choose(est)
    assert [(c.name, c.role) for c in chosen] == [("Y", "best")]
    assert not any(f.fragile for f in frag)  # X's gap is unknown: not flagged


def test_no_fragile_component_means_no_such_hedge():
    est = [Estimate("P", ["m"], .50, .49, .30), Estimate("Q", [], .45, .45, .40), Estimate("R", ["m"], .48, .47, .20)]
    chosen, frag = choose(est, fragile_gap=0.02)
    assert [(c.name, c.role) for c in chosen] == [("P", "best"), ("Q", "hedge: cross-site"), ("R", "next best")]
    assert [f.fragile for f in frag] == [False]


def test_ties_go_to_the_earlier_variant():
    est = [Estimate("first", [], .5, .5, .1), Estimate("second", [], .5, .5, .1)]
    assert [c.name for c in choose(est, max_systems=1)[0]] == ["first"]


def test_fold_assignment_balanced_and_seeded():
    clips = [f"c{i}" for i in range(11)]
    a = fold_assignment(clips, 3, seed=0)
    assert sorted(a) == sorted(clips)
    sizes = sorted(list(a.values()).count(f) for f in range(3))
    assert sizes == [3, 4, 4]
    assert fold_assignment(list(reversed(clips)), 3, seed=0) == a  # order of the input does not matter
    assert fold_assignment(clips, 3, seed=1) != a

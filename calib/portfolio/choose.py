"""Choosing up to four systems from the variants' honest estimates.

Each variant has an in-sample dev mAP (stages fit on the dev clips and scored on them), an
out-of-fold mAP (fit on K-1 clip folds, scored on the held-out fold, pooled) and a site-held-out
mAP (fit on one site's clips, scored on the other's). The gap in-sample minus out-of-fold measures
how much a variant's dev-fitted components flatter themselves; a component is *fragile* when the
variants using it show a larger gap than those without it by more than ``fragile_gap``.

Picks, in order (each skipped when it has no candidate, never the same variant twice):

1. ``best``: the highest out-of-fold mAP;
2. ``hedge: no fragile component``: the highest out-of-fold mAP among variants that use none of
   the fragile components (only when some component is flagged);
3. ``hedge: cross-site``: the highest site-held-out mAP among the variants not yet chosen;
4. ``hedge: nothing fitted on dev``: the highest out-of-fold mAP among variants without any
   dev-fitted component (their estimate carries no in-sample optimism at all);
5. then the next best by out-of-fold mAP, until ``max_systems``.

Variants whose files break the 20 MiB limit are never chosen. Ties go to the earlier variant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class Estimate:
    """The numbers the choice uses for one variant."""

    name: str
    learned: list[str] = field(default_factory=list)  # addresses of enabled stages that learn
    in_sample: float = math.nan
    oof: float = math.nan
    site: float = math.nan
    submittable: bool = True

    @property
    def gap(self) -> float:
        return self.in_sample - self.oof


@dataclass
class Choice:
    name: str
    role: str
    reason: str


@dataclass
class Fragility:
    component: str
    gap_with: float  # mean gap of the variants using it
    gap_without: float  # mean gap of the variants without it (0 when every variant uses it)
    n_with: int
    n_without: int
    fragile: bool

    @property
    def excess(self) -> float:
        return self.gap_with - self.gap_without


def _mean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def fragility(estimates: Sequence[Estimate], fragile_gap: float) -> list[Fragility]:
    components = sorted({c for e in estimates for c in e.learned})
    out = []
    for c in components:
        with_c = [e.gap for e in estimates if c in e.learned]
        without = [e.gap for e in estimates if c not in e.learned]
        gw = _mean(with_c)
        gwo = _mean(without) if without else 0.0
        gwo = 0.0 if math.isnan(gwo) else gwo
        excess = gw - gwo
        out.append(Fragility(c, gw, gwo, len(with_c), len(without), bool(not math.isnan(excess) and excess > fragile_gap)))
    return out


def _best(cands: Sequence[Estimate], key) -> Estimate | None:
    best = None
    for e in cands:
        v = key(e)
        if math.isnan(v):
            continue
        if best is None or v > key(best):
            best = e
    return best


def choose(estimates: Sequence[Estimate], *, max_systems: int = 4, fragile_gap: float = 0.02
           ) -> tuple[list[Choice], list[Fragility]]:
    frag = fragility(estimates, fragile_gap)
    fragile = {f.component for f in frag if f.fragile}
    chosen: list[Choice] = []
    taken: set[str] = set()

    def pool(pred=lambda e: True):
        return [e for e in estimates if e.submittable and e.name not in taken and pred(e)]

    def take(e: Estimate | None, role: str, reason: str) -> None:
        if e is not None and len(chosen) < max_systems:
            chosen.append(Choice(e.name, role, reason))
            taken.add(e.name)

    e = _best(pool(), lambda e: e.oof)
    if e is not None:
        take(e, "best", f"highest out-of-fold mAP ({e.oof:.4f}; in-sample {e.in_sample:.4f})")
    if fragile:
        e = _best(pool(lambda e: not (set(e.learned) & fragile)), lambda e: e.oof)
        names = ", ".join(sorted(fragile))
        if e is not None:
            take(e, "hedge: no fragile component",
                 f"best out-of-fold mAP ({e.oof:.4f}) without {names}, whose variants lose more from in-sample "
                 f"to out-of-fold than the others (by more than {fragile_gap:g} mAP)")
    e = _best(pool(), lambda e: e.site)
    if e is not None:
        take(e, "hedge: cross-site", f"best site-held-out mAP of the variants not yet chosen ({e.site:.4f}; "
             "fit on one site's clips, scored on the other's)")
    e = _best(pool(lambda e: not e.learned), lambda e: e.oof)
    if e is not None:
        take(e, "hedge: nothing fitted on dev",
             f"best out-of-fold mAP ({e.oof:.4f}) among variants with no dev-fitted component: no in-sample optimism")
    while len(chosen) < max_systems:
        e = _best(pool(), lambda e: e.oof)
        if e is None:
            break
        take(e, "next best", f"next best out-of-fold mAP ({e.oof:.4f})")
    return chosen, frag

"""Do per-class decisions made on a dozen dev clips hold on another set? Gated vs ungated stages.

Two independent synthetic sets (``fixtures.synth.generate``): dev (seed 31) and test (seed 32),
12 clips each by default. Every recipe is fit on all dev clips (the stages that learn, and every
gate, see only dev) and applied to the test clips; each is scored on test with its own protocol
and printed beside the best of its raw inputs on test (each input system scored as it comes):

- the shipped recipes (``calib recipes``), as shipped (gated where a stage can hurt) and with
  every gate removed;
- the four cases of issue #20, each a one-stage recipe on the strong system ``dense`` (primary),
  ungated, gated per class and gated globally: ``teacher_relabel`` and ``teacher_count`` (with the
  SELD teacher), ``calibrated_union`` with ``audio`` and ``av``, ``max_envelope`` over five
  systems (dense, lowthr, grid, audio, av).

Acceptance: no gated recipe scores below its best raw input on test (the script prints OK or
FAIL per line, and exits 1 on a FAIL). Not a timed test: the seconds are for orientation.

Run from the repository root::

    PYTHONPATH=. python tests/benchmarks/gating_transfer.py [--clips 12] [--frames 200] [--folds 4]

(about 20 minutes on 2 busy cores at the defaults, nearly all of it in the scorer)

Measured (defaults: dev seed 31, test seed 32, 12 clips x 200 frames, 4 gate folds, confidence
0.95; macro mAP on test, dcase2026)::

    recipe                            best raw  ungated  gated (kept classes)
    av-ensemble                         0.2028   0.3444  0.2921 shipped (0,1,2,4,12)
    enhanced-baseline                   0.0236   0.0461  0.0464 shipped (relabel none; count all but 11)
    teacher_relabel(dense)              0.4117   0.3970  0.4117 per_class / 0.4117 global (none)
    teacher_count(dense)                0.4117   0.3501  0.4117 / 0.4117 (none)
    calibrated_union(dense+audio+av)    0.4117   0.3272  0.4117 / 0.4117 (none)
    max_envelope(5 systems)             0.4117   0.4005  0.4117 / 0.4117 (none)

(decision-calibrated 0.0607, dense-16band 0.4512 and prior-fusion 0.4267 have no gated stage.)
With the earlier rule "mean > 1 s.d. of the fold gains" max_envelope kept class 6 on 3 folds
(gains +0.22, +0.02, +0.19) and lost 0.0195 AP on it on test (0.4102 < 0.4117): the Student-t
bar (2.92 standard errors at 3 folds) drops it.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from calib.recipe import Recipe, load_recipe, run_chain, shipped_recipes
from calib.recipe.inputs import load_inputs
from calib.recipe.scoring import official_scorer
from calib.stages.base import Tables
from calib.stages.gate import RECIPE_KEYS
from calib.tables import conform

SYSTEMS = ("lowthr", "grid", "dense", "audio", "av")
STRONG = "dense"


def issue_recipes(folds: int) -> dict[str, dict]:
    """The four cases of the issue, as recipe documents (ungated: gate keys are set per run)."""
    def doc(name, systems, stage, teacher=False):
        inputs = {"gt": "gt", "primary": STRONG, "systems": {s: f"systems/{s}" for s in systems}}
        if teacher:
            inputs["teacher"] = "teacher"
        return {"name": name, "inputs": inputs, "stages": [stage], "scoring": {"protocol": "dcase2026"}}

    return {
        "teacher_relabel(dense)": doc("relabel", [STRONG], {"type": "teacher_relabel", "threshold_deg": 20.0}, True),
        "teacher_count(dense)": doc("count", [STRONG], {"type": "teacher_count"}, True),
        "calibrated_union(dense+audio+av)": doc("union", [STRONG, "audio", "av"], {"type": "calibrated_union"}),
        "max_envelope(5 systems)": doc("envelope", [STRONG, "lowthr", "grid", "audio", "av"], {"type": "max_envelope"}),
    }


def with_gate(doc: dict, gate: str | None, folds: int, *, only_gated: bool = False) -> Recipe:
    """The recipe ``doc`` with every stage gated ``gate`` (None: every gate removed); with
    ``only_gated`` the stages that already carry a gate keep it (the shipped recipe as is)."""
    d = copy.deepcopy(doc)
    d["splits"] = {"fit": [], "evaluate": []}  # every labeled clip: all of dev is fit, all of test scored
    for st in d.get("stages", []):
        if only_gated:
            continue
        for k in RECIPE_KEYS:
            st.pop(k, None)
        if gate is not None:
            st.update(gate=gate, gate_folds=folds)
    return Recipe.from_dict(d)


def apply_fitted(recipe: Recipe, stages: list, tables: Tables) -> pl.DataFrame:
    """The chain's fitted stages applied in order to ``tables`` (new clips), as the runner applies
    them after fitting: without the truth, a stage ``on_system`` replacing that system's table."""
    for (path, spec), st in zip(recipe.chain(), stages):
        view = tables if spec.on_system is None else tables.replace(detections=tables.systems[spec.on_system])
        out = Tables(st.apply(view.without_truth()))
        if spec.on_system is not None:
            systems = out.systems or tables.systems
            systems[spec.on_system] = conform(out["detections"], "detections", where=path)
            out = out.replace(systems=systems, detections=tables["detections"])
        else:
            out = out.replace(detections=conform(out["detections"], "detections", where=path))
        tables = out
    return tables["detections"]


def evaluate(recipe: Recipe, dev_root: Path, test_root: Path, cache: Path) -> tuple[float, float, str]:
    """(best raw input on test, the recipe fit on dev and scored on test, what the gates kept)."""
    dev = load_inputs(recipe, dev_root, cache_dir=cache / "dev")
    test = load_inputs(recipe, test_root, cache_dir=cache / "test")
    dev_clips = sorted(dev.tables["truth"].get_column("clip").unique().to_list())
    chain = run_chain(recipe, dev.tables, dev.key, fit_clips=dev_clips)
    det = apply_fitted(recipe, chain.stages, test.tables)
    truth = test.tables["truth"]
    systems = test.tables.systems or {"detections": test.tables.detections}
    raw = max(official_scorer(d, truth, recipe.scoring)["macro_mAP"] for d in systems.values())
    got = official_scorer(det, truth, recipe.scoring)["macro_mAP"]
    kept = "; ".join(f"{r.address}: {','.join(map(str, r.kept_classes)) or 'none'}" for r in chain.records
                     if r.gate is not None)
    return raw, got, kept


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=12, help="clips of each set (dev and test)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--dev-seed", type=int, default=31)
    ap.add_argument("--test-seed", type=int, default=32)
    ap.add_argument("--folds", type=int, default=4, help="gate_folds of the issue cases")
    ap.add_argument("--only", default="", help="comma-separated names: run only these recipes / cases")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    from fixtures.synth import generate

    t0 = time.perf_counter()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for which, seed in (("dev", args.dev_seed), ("test", args.test_seed)):
            roots[which] = Path(tmp) / which
            generate(roots[which], seed=seed, clips=args.clips, frames=args.frames, n_jobs=1)
        print(f"dev: seed {args.dev_seed}, test: seed {args.test_seed}; {args.clips} clips x {args.frames} frames each "
              f"(generated in {time.perf_counter() - t0:.1f} s)")
        print(f"\n{'recipe':<36s} {'variant':<10s} {'best raw':>8s} {'fit dev -> test':>15s} {'vs raw':>8s}  "
              "gate kept classes")
        cases: list[tuple[str, dict, list[tuple[str, str | None, bool]]]] = []
        from calib.recipe.io import read_document

        for name, path in sorted(shipped_recipes().items()):
            cases.append((name, read_document(path), [("ungated", None, False), ("shipped", None, True)]))
        for name, doc in issue_recipes(args.folds).items():
            cases.append((name, doc, [("ungated", None, False), ("per_class", "per_class", False),
                                      ("global", "global", False)]))
        for name, doc, variants in cases:
            if only and name not in only:
                continue
            for label, gate, as_shipped in variants:
                t1 = time.perf_counter()
                recipe = with_gate(doc, gate, args.folds, only_gated=as_shipped)
                gated = any(s.gated for _, s in recipe.chain())
                raw, got, kept = evaluate(recipe, roots["dev"], roots["test"], Path(tmp) / "cache")
                verdict = ""
                if gated:
                    ok = got >= raw
                    failures += not ok
                    verdict = "OK  " if ok else "FAIL"
                print(f"{name:<36s} {label:<10s} {raw:8.4f} {got:15.4f} {got - raw:+8.4f} {verdict} {kept} "
                      f"({time.perf_counter() - t1:.0f} s)")
    print(f"\n{'no gated recipe below its best raw input' if not failures else f'{failures} gated recipe(s) below raw'}"
          f"; total {time.perf_counter() - t0:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

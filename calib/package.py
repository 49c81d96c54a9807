"""Submission packages: the chosen systems of a portfolio as the challenge wants them.

``build_package(PORTFOLIO_DIR, OUT, label="Lastname_INST", track="a")`` writes, for the k-th
chosen system, ``OUT/Lastname_INST_task3a_k/`` holding one ``<clip>.json`` per evaluation clip and
``Lastname_INST_task3a_k.meta.yaml`` (submission label, name, abbreviation of at most 10
characters, authors, a system description generated from the recipe, development results), checks
every file against the official loader's rules (:func:`check_package`) and zips the lot into
``OUT/Lastname_INST_task3a.zip`` with fixed timestamps, so the same inputs give the same bytes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from calib.io.errors import InputError

LABEL = re.compile(r"[A-Za-z][A-Za-z-]*_[A-Za-z0-9]+")
SYSTEM_DIR = re.compile(r"(?P<label>[A-Za-z][A-Za-z-]*_[A-Za-z0-9]+)_task3(?P<track>[ab])_(?P<rank>[1-4])")
MAX_ABBREVIATION = 10
CLIP_SETS = ("unlabeled", "dev", "all")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass
class PackageResult:
    out_dir: Path
    systems: list[Path]
    zip_path: Path | None
    clips: list[str]


def parse_author(text: str) -> dict[str, Any]:
    """``"Lastname, Firstname, email[, institute]"`` -> an author entry."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) < 3 or not all(parts[:3]) or "@" not in parts[2]:
        raise InputError("--author", f"{text!r}: expected \"Lastname, Firstname, email[, institute]\"")
    author: dict[str, Any] = {"lastname": parts[0], "firstname": parts[1], "email": parts[2]}
    if len(parts) > 3 and parts[3]:
        author["affiliation"] = {"institute": ", ".join(parts[3:])}
    return author


def default_abbreviation(recipe_name: str, rank: int) -> str:
    """Initials of the recipe's name plus the rank, e.g. decision-calibrated, 2 -> DC2."""
    initials = "".join(w[0] for w in re.split(r"[^A-Za-z0-9]+", recipe_name) if w).upper() or "SYS"
    return f"{initials[:MAX_ABBREVIATION - 1]}{rank}"


def describe_recipe(recipe, entry: dict) -> str:
    """The system description: what the pipeline does, stage by stage, and how it was chosen."""
    parts = []
    if recipe.description:
        parts.append(recipe.description.strip().rstrip(".") + ".")
    systems = ", ".join(recipe.inputs.systems)
    parts.append(f"Input system(s): {systems} (primary: {recipe.inputs.primary_system}).")
    steps = []
    for path, spec in recipe.chain():
        params = ", ".join(f"{k}={v!r}" for k, v in spec.build().get_params().items())
        steps.append(f"{'emission ' if path == 'emit' else ''}{spec.type}({params})")
    parts.append("Pipeline: " + (" -> ".join(steps) if steps else "the input detections as they are") + ".")
    learned = entry.get("learned") or []
    if learned:
        parts.append(f"Fitted on the {entry.get('dev_clips')} development clips: {', '.join(learned)}.")
    else:
        parts.append("Nothing is fitted on development data.")
    parts.append(f"Chosen as '{entry['role']}': {entry['reason']}.")
    return " ".join(parts)


def _results(entry: dict) -> dict:
    def clean(h):
        if not h:
            return None
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in h.items() if k in ("mAP", "pearson")}

    return {"development_dataset": {
        "protocol": entry.get("protocol"),
        "in_sample": clean(entry.get("in_sample")),
        "out_of_fold": clean(entry.get("out_of_fold")),
        "site_held_out": clean(entry.get("site_held_out")),
        "folds": entry.get("folds"),
        "site_note": entry.get("site_note"),
    }}


def _clips_for(metrics: dict, which: str, pdir: Path) -> list[str]:
    all_clips = metrics.get("all_clips") or []
    if which == "all":
        clips = all_clips
    elif which == "dev":
        clips = metrics.get("dev_clips") or []
    else:
        labeled = set(metrics.get("labeled_clips") or [])
        clips = [c for c in all_clips if c not in labeled]
    if not clips:
        hint = " (every clip has ground truth; pass --clips all or --clips dev for a rehearsal package)" \
            if which == "unlabeled" else ""
        raise InputError(pdir, f"no {which} clips to package{hint}")
    return sorted(clips)


@dataclass
class _System:
    """One chosen system, read and checked before anything is written."""

    entry: dict
    rank: int
    variant: str
    recipe: Any
    detections: Any  # polars DataFrame of its clips
    clips: list[str]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise InputError(path, f"cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise InputError(path, f"not valid JSON ({e})") from None


def _plan(pdir: Path, portfolio: dict, clips: str) -> list[_System]:
    """Everything the package takes from the portfolio folder, with every value that becomes a path
    checked: variant folders (by :func:`calib.portfolio.run.load_portfolio`) and clip names (one
    file each). Reads only."""
    import polars as pl

    from calib.recipe.io import load_recipe
    from calib.recipe.outputs import check_clip_values
    from calib.tables import read_table

    systems = []
    for entry in portfolio["chosen"]:
        rank, variant = int(entry["rank"]), entry["variant"]
        vdir = pdir / "variants" / variant
        recipe = load_recipe(vdir / "recipe.toml")
        metrics = _read_json(vdir / "metrics.json")
        if not isinstance(metrics, dict):
            raise InputError(vdir / "metrics.json", "expected a JSON object")
        for key in ("all_clips", "dev_clips", "labeled_clips"):
            listed = metrics.get(key) or []
            if not isinstance(listed, list):
                raise InputError(vdir / "metrics.json", f"{key}: expected a list of clip names")
            check_clip_values(listed, f"{vdir / 'metrics.json'}: {key}")
        these = _clips_for(metrics, clips, pdir)
        det = read_table(vdir / "detections.parquet", "detections").filter(pl.col("clip").is_in(these))
        systems.append(_System(entry, rank, variant, recipe, det, these))
    return systems


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` and its parents that does not exist yet (None: all exist)."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing = p
    return missing


def build_package(portfolio_dir: str | os.PathLike, out_dir: str | os.PathLike, *, label: str, track: str,
                  authors: Sequence[dict], clips: str = "unlabeled", names: Sequence[str] | None = None,
                  abbreviations: Sequence[str] | None = None, make_zip: bool = True,
                  log=print) -> PackageResult:
    """Write the package (see the module docstring). Everything read from the portfolio is checked
    before the first byte is written; on any refusal the file system is left as it was."""
    from calib.portfolio.run import load_portfolio
    from calib.publish import publish_staged, staging

    pdir = Path(portfolio_dir)
    if not LABEL.fullmatch(label):
        raise InputError("--label", f"{label!r} is not Lastname_INST (letters, then _, then letters/digits)")
    if track not in ("a", "b"):
        raise InputError("--track", f"{track!r}: the track is a or b")
    if clips not in CLIP_SETS:
        raise InputError("--clips", f"{clips!r}: one of {', '.join(CLIP_SETS)}")
    if not authors:
        raise InputError("--author", "the meta file needs at least one author (--author \"Last, First, email\")")
    portfolio = load_portfolio(pdir)
    chosen = portfolio.get("chosen") or []
    if not chosen:
        raise InputError(pdir / "portfolio.json", "the portfolio chose no system")
    for opt, given in (("--name", names), ("--abbreviation", abbreviations)):
        if given and len(given) != len(chosen):
            raise InputError(opt, f"given {len(given)} time(s); the portfolio has {len(chosen)} system(s)")
    systems = _plan(pdir, portfolio, clips)
    out = Path(out_dir)
    created = _first_missing(out.parent)
    done = False
    try:
        with staging(out) as stage:
            system_dirs, clip_list, zip_path = _write_package(stage, out, systems, label, track, authors, names,
                                                              abbreviations, make_zip, log)
            publish_staged(stage, out)
        done = True
    finally:
        if not done and created is not None:
            shutil.rmtree(created, ignore_errors=True)  # folders made for the refused package only
    final_dirs = [out / d.name for d in system_dirs]
    return PackageResult(out, final_dirs, out / zip_path.name if zip_path else None, clip_list or [])


def _write_package(stage: Path, out: Path, systems: list, label: str, track: str, authors: Sequence[dict],
                   names: Sequence[str] | None, abbreviations: Sequence[str] | None, make_zip: bool,
                   log) -> tuple[list[Path], list[str] | None, Path | None]:
    """The package's folders (and zip) in the staging folder ``stage``, checked against the rules."""
    import yaml

    from calib.constants import MAX_FILE_BYTES
    from calib.recipe.outputs import export_clips

    system_dirs, clip_list = [], None
    for s in systems:
        entry, rank, variant, recipe = s.entry, s.rank, s.variant, s.recipe
        clip_list = s.clips if clip_list is None else clip_list
        sys_label = f"{label}_task3{track}_{rank}"  # built from checked parts only
        sdir = stage / sys_label
        export_clips(s.detections, sdir, s.clips, max_bytes=MAX_FILE_BYTES)
        abbreviation = abbreviations[rank - 1] if abbreviations else default_abbreviation(recipe.name, rank)
        meta = {
            "submission": {
                "label": sys_label,
                "name": names[rank - 1] if names else f"{recipe.name} {variant} ({entry.get('label') or 'base'})",
                "abbreviation": abbreviation,
                "authors": [dict(a) for a in authors],
            },
            "system": {"description": {
                "summary": describe_recipe(recipe, entry),
                "recipe": recipe.name,
                "variant": variant,
                "settings": entry.get("settings") or {},
                "dev_fitted_components": entry.get("learned") or [],
                "portfolio_role": entry["role"],
            }},
            "results": _results(entry),
        }
        (sdir / f"{sys_label}.meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
        system_dirs.append(sdir)
        log(f"{sys_label}: {variant} ({entry['role']}), {len(s.clips)} clip files")
    problems = check_package(stage, expected_clips=clip_list)
    if problems:
        raise InputError(out, "the package breaks the official rules:\n  " + "\n  ".join(problems))
    zip_path = None
    if make_zip:
        zip_path = stage / f"{label}_task3{track}.zip"
        write_zip(zip_path, [d for d in system_dirs])
    return system_dirs, clip_list, zip_path


def write_zip(path: Path, folders: Sequence[Path]) -> Path:
    """Deterministic zip: sorted entries, fixed timestamps and permissions."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for folder in folders:
            for f in sorted(folder.rglob("*")):
                if not f.is_file():
                    continue
                info = zipfile.ZipInfo(str(f.relative_to(folder.parent)).replace(os.sep, "/"), date_time=ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, f.read_bytes())
    return path


def check_package(package_dir: str | os.PathLike, *, expected_clips: Sequence[str] | None = None,
                  max_bytes: int | None = None) -> list[str]:
    """Problems (empty when none) of a package folder against the challenge's rules: system folders
    ``<Label>_task3<a|b>_<1..4>`` (at most 4, one label and track), a meta file per system with
    label, name, abbreviation (<= 10 chars) and authors, and every ``<clip>.json`` within 20 MiB and
    readable by the official loader (N x 3 triplets, x in [0, 360], y in [0, 180], classes 0..12,
    finite scores); every system holds the same clips."""
    import yaml

    from calib.constants import MAX_FILE_BYTES
    from calib.io.dcase import read_file

    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    root = Path(package_dir)
    problems: list[str] = []
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        return [f"{root}: no system folders"]
    if len(dirs) > 4:
        problems.append(f"{root}: {len(dirs)} systems; the challenge accepts at most 4")
    ids = set()
    clip_sets: dict[str, set[str]] = {}
    for d in dirs:
        m = SYSTEM_DIR.fullmatch(d.name)
        if not m:
            problems.append(f"{d.name}: folder name is not <Lastname_INST>_task3<a|b>_<1..4>")
            continue
        ids.add((m["label"], m["track"]))
        meta_path = d / f"{d.name}.meta.yaml"
        if not meta_path.exists():
            problems.append(f"{d.name}: no {meta_path.name}")
        else:
            problems += [f"{meta_path.name}: {p}" for p in _check_meta(yaml.safe_load(meta_path.read_text()), d.name)]
        files = sorted(f for f in d.glob("*.json") if not f.name.startswith("."))
        if not files:
            problems.append(f"{d.name}: no <clip>.json files")
        for f in files:
            size = f.stat().st_size
            if size > limit:
                problems.append(f"{d.name}/{f.name}: {size / 2**20:.2f} MiB, over the {limit / 2**20:.0f} MiB limit")
                continue
            try:
                read_file(f, "pred")
            except InputError as e:
                problems.append(f"{d.name}/{f.name}: {str(e).removeprefix(str(f) + ': ')}")
        clip_sets[d.name] = {f.stem for f in files}
    if len(ids) > 1:
        problems.append(f"{root}: systems of several labels/tracks {sorted(ids)}")
    expected = set(expected_clips) if expected_clips is not None else (next(iter(clip_sets.values())) if clip_sets else set())
    for name, got in clip_sets.items():
        if got != expected:
            missing, extra = sorted(expected - got), sorted(got - expected)
            problems.append(f"{name}: clip files differ from the expected set (missing {missing[:5]}, extra {extra[:5]})")
    return problems


def _check_meta(meta: Any, label: str) -> list[str]:
    if not isinstance(meta, dict) or not isinstance(meta.get("submission"), dict):
        return ["no 'submission' section"]
    sub = meta["submission"]
    out = []
    if sub.get("label") != label:
        out.append(f"submission.label is {sub.get('label')!r}, the folder is {label!r}")
    if not isinstance(sub.get("name"), str) or not sub["name"].strip():
        out.append("submission.name is empty")
    abbr = sub.get("abbreviation")
    if not isinstance(abbr, str) or not abbr.strip():
        out.append("submission.abbreviation is empty")
    elif len(abbr) > MAX_ABBREVIATION:
        out.append(f"submission.abbreviation {abbr!r} is longer than {MAX_ABBREVIATION} characters")
    authors = sub.get("authors")
    if not isinstance(authors, list) or not authors:
        out.append("submission.authors is empty")
    else:
        for i, a in enumerate(authors):
            miss = [k for k in ("lastname", "firstname", "email") if not (isinstance(a, dict) and a.get(k))]
            if miss:
                out.append(f"submission.authors[{i}] lacks {', '.join(miss)}")
    if not isinstance(meta.get("system"), dict) or not meta["system"].get("description"):
        out.append("no system description")
    if not isinstance(meta.get("results"), dict):
        out.append("no results section")
    return out

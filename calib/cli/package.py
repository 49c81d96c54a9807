"""calib package: a portfolio's chosen systems -> a checked, zipped submission package."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "package",
        help="write the chosen systems of a portfolio as a submission package, check it, zip it",
        description="For the k-th system chosen by 'calib portfolio', write LABEL_task3<track>_k/ with one "
        "<clip>.json per evaluation clip (clips without ground truth by default) and LABEL_task3<track>_k.meta.yaml "
        "(label, name, abbreviation of at most 10 characters, authors, a system description generated from the "
        "recipe, development results: in-sample, out-of-fold, site-held-out). Every file is checked against the "
        "official loader's rules (at most 20 MiB, N x 3 triplets, x in [0, 360], y in [0, 180], classes 0..12, "
        "finite scores); on any problem nothing is written. Every value of the portfolio that becomes a path "
        "(variant folders, clip names in metrics.json) is checked first: a clip name is one path component of "
        "letters, digits, '_', '-' and '.', so nothing can land outside --out. The folders are zipped to LABEL_task3<track>.zip "
        "with fixed timestamps (same inputs, same bytes).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  calib package portfolio/ --label Doe_ABC --track a --author \"Doe, Jane, jane@abc.edu, ABC University\" "
        "--out submission/\n"
        "  calib package portfolio/ --label Doe_ABC --track a --author \"Doe, Jane, jane@abc.edu\" --clips dev "
        "--out rehearsal/   # a package of the dev clips, to score it yourself\n"
        "  calib package --check submission/             # re-check a package folder\n",
    )
    p.add_argument("portfolio", metavar="PORTFOLIO_DIR", help="output folder of 'calib portfolio' (or, with --check, a package folder)")
    p.add_argument("--label", metavar="Lastname_INST", help="submission label: first author's last name and institute")
    p.add_argument("--track", choices=["a", "b"], help="task 3 track")
    p.add_argument("--out", metavar="DIR")
    p.add_argument("--author", dest="authors", action="append", default=[], metavar="\"Last, First, email[, institute]\"",
                   help="an author (repeat in order; the first is the corresponding author)")
    p.add_argument("--authors-file", metavar="FILE.yaml", help="authors as a YAML list of entries (lastname, firstname, "
                   "email, affiliation...), as the challenge's meta file has them")
    p.add_argument("--clips", choices=["unlabeled", "dev", "all"], default="unlabeled",
                   help="which clips get a file: those without ground truth (the evaluation set, default), the dev "
                   "clips, or all")
    p.add_argument("--name", dest="names", action="append", metavar="TEXT", help="system name, once per system in order")
    p.add_argument("--abbreviation", dest="abbreviations", action="append", metavar="ABBR",
                   help="system abbreviation (<= 10 chars), once per system in order (default: recipe initials + rank)")
    p.add_argument("--no-zip", action="store_true", help="write the folders only")
    p.add_argument("--check", action="store_true", help="only check PORTFOLIO_DIR as an existing package folder")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from calib.package import build_package, check_package, parse_author

    if args.check:
        problems = check_package(args.portfolio)
        for pr in problems:
            print(pr, file=sys.stderr)
        print(f"{args.portfolio}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    missing = [o for o, v in (("--label", args.label), ("--track", args.track), ("--out", args.out)) if not v]
    if missing:
        print(f"calib package: error: {', '.join(missing)} required", file=sys.stderr)
        return 2
    authors = [parse_author(a) for a in args.authors]
    if args.authors_file:
        import yaml

        from calib.io.errors import InputError

        from pathlib import Path

        try:
            loaded = yaml.safe_load(Path(args.authors_file).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise InputError(args.authors_file, f"cannot read the authors file ({e})") from None
        if not isinstance(loaded, list) or not all(isinstance(a, dict) for a in loaded):
            raise InputError(args.authors_file, "expected a YAML list of author entries")
        authors += loaded
    res = build_package(args.portfolio, args.out, label=args.label, track=args.track, authors=authors,
                        clips=args.clips, names=args.names, abbreviations=args.abbreviations,
                        make_zip=not args.no_zip)
    print(f"wrote {len(res.systems)} system(s), {len(res.clips)} clip file(s) each, to {res.out_dir}"
          + (f"; {res.zip_path}" if res.zip_path else "") + "; official-rules check passed")
    return 0
